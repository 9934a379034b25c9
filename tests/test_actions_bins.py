"""Action bins (lesson 02): RT-2 text bins and OpenVLA's quantile bins on the last vocabulary ids."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vla_lessons.actions import (
    ActionTokenizer,
    QuantileNormalizer,
    UniformBinTokenizer,
    roundtrip_error,
    smooth_action_chunks,
)

VOCAB = 32000
FAST_SETTINGS = settings(max_examples=60, deadline=None, derandomize=True)


def _stats(seed: int = 0) -> dict:
    """LeRobot's meta/stats.json form, with plain lists as the file holds them."""
    a = smooth_action_chunks(200, 15, seed=seed).reshape(-1, 7)
    q01, q99 = np.quantile(a, [0.01, 0.99], axis=0)
    block = {"min": a.min(0), "max": a.max(0), "mean": a.mean(0), "std": a.std(0), "q01": q01, "q99": q99}
    return {"action": {k: v.tolist() for k, v in block.items()}, "observation.state": {}}


STATS = _stats()
Q01 = np.array(STATS["action"]["q01"])
Q99 = np.array(STATS["action"]["q99"])


def _in_range(unit: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] onto each dimension's [q01, q99] (the gripper's [0, 1] as it is)."""
    x = np.clip(Q01 + unit * (Q99 - Q01), Q01, Q99)  # clip: q01 + 1 * (q99 - q01) may pass q99
    x[..., -1] = unit[..., -1]
    return x


unit_batches = arrays(np.float64, st.tuples(st.integers(1, 20), st.just(7)),
                      elements=st.floats(0.0, 1.0, allow_nan=False))


@pytest.mark.parametrize("layout", ["centers256", "openvla"])
@FAST_SETTINGS
@given(unit=unit_batches)
def test_in_range_values_round_trip_within_half_a_bin(layout, unit):
    tok = ActionTokenizer(STATS, vocab_size=VOCAB, layout=layout)
    x = _in_range(unit)
    ids = tok.encode(x)
    assert not tok.saturated(x).any()
    norm = tok.normalizer()
    err_norm = np.abs(norm.normalize(tok.decode(ids)) - norm.normalize(x))
    assert err_norm.max() <= tok.bin_width / 2 + 1e-9
    # in action units: half a bin times the dimension's half range (the gripper is not rescaled)
    half_range = np.where(norm.mask, (Q99 - Q01) / 2, 1.0)
    assert (np.abs(tok.decode(ids) - x) <= tok.bin_width / 2 * half_range + 1e-9).all()


@pytest.mark.parametrize("layout", ["centers256", "openvla"])
@FAST_SETTINGS
@given(x=arrays(np.float64, st.tuples(st.integers(1, 10), st.just(7)),
                elements=st.floats(-1e6, 1e6, allow_nan=False)))
def test_ids_are_always_in_the_action_range(layout, x):
    tok = ActionTokenizer(STATS, vocab_size=VOCAB, layout=layout)
    ids = tok.encode(x)
    assert ids.dtype == np.int64 and ids.shape == x.shape
    assert ((ids >= VOCAB - 256) & (ids <= VOCAB - 1)).all()
    assert tok.is_action_id(ids).all()


def test_ids_follow_openvla_contract_vocab_minus_bin():
    tok = ActionTokenizer(STATS, vocab_size=VOCAB)
    low, high = Q01.copy(), Q99.copy()
    low[-1], high[-1] = -1.0, 1.0  # the gripper is binned as it is
    assert tok.encode(low).tolist() == [VOCAB - 1] * 7       # bin k = 1
    assert tok.encode(high).tolist() == [VOCAB - 256] * 7    # bin k = 256
    assert tok.first_action_id == VOCAB - 256


def test_openvla_layout_reproduces_255_centres():
    tok = ActionTokenizer(STATS, vocab_size=VOCAB, layout="openvla")
    edges = np.linspace(-1, 1, 256)
    centers = (edges[:-1] + edges[1:]) / 2
    # OpenVLA's encoder and decoder, written out: ids = vocab - digitize, centres clipped to 0..254
    y = np.random.default_rng(0).uniform(-1.2, 1.2, size=(5000, 7))
    y = np.concatenate([y, np.tile(edges[:, None], (1, 7)), np.full((1, 7), 1.0)])
    x = tok.normalizer().unnormalize(np.clip(y, -1, 1))
    x[:, -1] = y[:, -1]
    ref_ids = VOCAB - np.digitize(np.clip(tok.normalizer().normalize(x), -1, 1), edges)
    assert np.array_equal(tok.encode(x), ref_ids)
    # exactly on and next to every edge (a mask of False bins the values as they are)
    raw = ActionTokenizer(STATS, vocab_size=VOCAB, layout="openvla", mask=[False] * 7)
    on_edges = np.concatenate([edges, np.nextafter(edges, -2), np.nextafter(edges, 2)])
    on_edges = np.clip(on_edges, -1, 1)[:, None].repeat(7, 1)
    assert np.array_equal(raw.encode(on_edges), VOCAB - np.digitize(on_edges, edges))
    all_ids = np.arange(VOCAB - 256, VOCAB)
    ref_values = centers[np.clip(VOCAB - all_ids - 1, 0, 254)]
    assert np.array_equal(tok.decode_normalized(all_ids[:, None].repeat(7, 1))[:, 0], ref_values)
    # two ids decode to the same value: 255 distinct values for 256 ids
    assert np.unique(tok.bin_values).size == 255
    assert tok.bin_values[-1] == tok.bin_values[-2]
    assert tok.decode_normalized(np.full(7, VOCAB - 256))[0] == tok.decode_normalized(np.full(7, VOCAB - 255))[0]


def test_centers256_layout_has_256_distinct_symmetric_values():
    tok = ActionTokenizer(STATS, vocab_size=VOCAB)
    values = tok.bin_values
    assert np.unique(values).size == 256
    np.testing.assert_allclose(values, -values[::-1], atol=1e-15)
    assert values[0] == pytest.approx(-1 + 1 / 256) and tok.bin_width == pytest.approx(2 / 256)


def test_out_of_range_ids_raise_unless_clip():
    tok = ActionTokenizer(STATS, vocab_size=VOCAB, layout="openvla")
    text_token = np.array([100, VOCAB - 1, VOCAB - 1, VOCAB - 1, VOCAB - 1, VOCAB - 1, VOCAB - 1])
    with pytest.raises(ValueError, match=r"outside the action range \[31744, 31999\]: \[100\]"):
        tok.decode(text_token)  # the message names the id the model emitted, not a bin number
    with pytest.raises(ValueError, match="outside the action range"):
        tok.decode(np.full(7, VOCAB))  # one past the vocabulary
    # clip=True is OpenVLA's behaviour: the text token becomes a full-scale action near q99
    action = tok.decode(text_token, clip=True)
    assert action[0] == pytest.approx(tok.normalizer().unnormalize(tok.bin_values[-1] * np.ones(7))[0])
    assert action[0] > Q99[0] - (Q99[0] - Q01[0]) / 255


def test_unnorm_key_resolution():
    two = {"tabletop": STATS, "bridge": _stats(seed=1)}
    tok = ActionTokenizer(two, vocab_size=VOCAB)
    x = smooth_action_chunks(2, 5, seed=3)[0]
    with pytest.raises(ValueError, match="pass unnorm_key.*tabletop.*bridge"):
        tok.encode(x)
    with pytest.raises(ValueError, match="unknown unnorm_key 'libero'.*tabletop"):
        tok.decode(tok.encode(x, "tabletop"), "libero")
    ids = tok.encode(x, "bridge")
    np.testing.assert_allclose(tok.decode(ids, "bridge"), x, atol=0.01)
    # different statistics decode the same ids to different actions
    assert not np.allclose(tok.decode(ids, "tabletop"), tok.decode(ids, "bridge"))
    single = ActionTokenizer(STATS, vocab_size=VOCAB)
    assert single.unnorm_keys == ["default"] and single.resolve_unnorm_key() == "default"


def test_bad_inputs_are_clear_errors():
    tok = ActionTokenizer(STATS, vocab_size=VOCAB)
    x = np.zeros((3, 7))
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[1, 2] = bad
        with pytest.raises(ValueError, match="finite"):
            tok.encode(y)
    with pytest.raises(ValueError, match=r"\(\.\.\., 7\)"):
        tok.encode(np.zeros((3, 6)))
    with pytest.raises(ValueError, match=r"\(\.\.\., 7\)"):
        tok.decode(np.full((2, 8), VOCAB - 1))
    with pytest.raises(TypeError, match="integers"):
        tok.decode(np.full(7, VOCAB - 1.0))
    with pytest.raises(TypeError, match="real numbers"):
        tok.encode(["a"] * 7)
    with pytest.raises(ValueError, match=r"'q99' must have shape \(7,\)"):
        QuantileNormalizer(Q01, Q99[:6])
    with pytest.raises(ValueError, match="q99 >= q01.*\\[2\\]"):
        q99 = Q99.copy()
        q99[2] = Q01[2] - 1
        QuantileNormalizer(Q01, q99)
    with pytest.raises(ValueError, match="finite"):
        QuantileNormalizer(np.full(7, np.nan), Q99)
    with pytest.raises(ValueError, match="mask must have shape"):
        QuantileNormalizer(Q01, Q99, mask=[True] * 6)
    with pytest.raises(ValueError, match="LeRobot"):
        ActionTokenizer({"tabletop": {"observation.state": {}}}, vocab_size=VOCAB)
    with pytest.raises(ValueError, match="layout"):
        ActionTokenizer(STATS, vocab_size=VOCAB, layout="rt2")
    with pytest.raises(ValueError, match="vocab_size"):
        ActionTokenizer(STATS, vocab_size=100)


def test_normalisation_formula_mask_and_constant_dims():
    q01 = np.array([-1.0, 0.0, 2.0, 0.5])
    q99 = np.array([1.0, 4.0, 2.0, 0.5])  # dims 2 and 3 are constant; dim 3 is left as it is
    norm = QuantileNormalizer(q01, q99, mask=[True, True, True, False])
    x = np.array([[0.5, 1.0, 2.0, 0.7], [-3.0, 9.0, 2.5, -2.0]])
    y = norm.normalize(x)
    np.testing.assert_allclose(y[0], [0.5, 2 * 1.0 / 4 - 1, 0.0, 0.7])
    np.testing.assert_allclose(y[1], [-1.0, 1.0, 0.0, -2.0])  # clipped; constant -> 0; unmasked unclipped
    np.testing.assert_array_equal(norm.saturated(x), [[False, False, False, False], [True, True, True, True]])
    np.testing.assert_allclose(norm.unnormalize(y[0]), [0.5, 1.0, 2.0, 0.7])
    # the stats' own mask is used when present; the default leaves the last dimension (gripper)
    assert QuantileNormalizer.from_stats({"action": {"q01": q01, "q99": q99 + 1, "mask": [False] * 4}}).mask.sum() == 0
    assert QuantileNormalizer.from_stats(STATS).mask.tolist() == [True] * 6 + [False]


def test_saturation_is_counted_and_clipped():
    tok = ActionTokenizer(STATS, vocab_size=VOCAB)
    x = np.tile((Q01 + Q99) / 2, (4, 1))
    x[0, 0] = Q99[0] + 1.0
    x[1, 3] = Q01[3] - 1.0
    x[2, 6] = 1.5  # the gripper is binned as it is, on [-1, 1]
    ids, sat = tok.encode(x, return_saturated=True)
    assert sat.sum() == 3 and sat[0, 0] and sat[1, 3] and sat[2, 6]
    decoded = tok.decode(ids)
    assert decoded[0, 0] == pytest.approx(Q99[0], abs=(Q99[0] - Q01[0]) / 256)
    assert decoded[1, 3] == pytest.approx(Q01[3], abs=(Q99[3] - Q01[3]) / 256)


def test_any_batch_shape_and_torch_in_torch_out():
    tok = ActionTokenizer(STATS, vocab_size=VOCAB)
    x = smooth_action_chunks(6, 5, seed=2).reshape(2, 3, 5, 7)
    ids = tok.encode(x)
    assert ids.shape == (2, 3, 5, 7)
    assert np.array_equal(ids.reshape(-1, 7), tok.encode(x.reshape(-1, 7)))
    tids = tok.encode(torch.from_numpy(x))
    assert isinstance(tids, torch.Tensor) and tids.dtype == torch.long
    assert np.array_equal(tids.numpy(), ids)
    out = tok.decode(tids)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), tok.decode(ids), rtol=1e-6)


def test_encoding_is_deterministic():
    x = smooth_action_chunks(50, 15, seed=5).reshape(-1, 7)
    a = ActionTokenizer(_stats(), vocab_size=VOCAB).encode(x)
    b = ActionTokenizer(_stats(), vocab_size=VOCAB).encode(x)
    assert np.array_equal(a, b)


def test_roundtrip_error_reports_both_layouts():
    x = smooth_action_chunks(100, 15, seed=7).reshape(-1, 7)
    report = roundtrip_error(x, STATS)
    assert set(report) == {"centers256", "openvla"}
    assert report["centers256"]["distinct_values"] == 256 and report["openvla"]["distinct_values"] == 255
    for layout, r in report.items():
        assert r["max_abs_error"] <= r["bin_width"] / 2 + 1e-9
        assert 0 < r["mean_abs_error"] < r["max_abs_error"]
        assert r["max_abs_error_per_dim"].shape == (7,)
        assert 0 <= r["saturated_fraction"] < 0.1
    assert report["openvla"]["bin_width"] == pytest.approx(2 / 255)


def test_roundtrip_error_leaves_constant_dimensions_out():
    # dimension 1 never moves: it decodes exactly, so its normalised 0 (a bin edge in the
    # centers256 layout) must not add a fictitious 1/256 to the normalised error
    stats = {"action": {"q01": [-1.0, 0.0], "q99": [1.0, 0.0], "mask": [True, True]}}
    x = np.array([[0.3, 0.0], [0.7, 0.0]])
    report = roundtrip_error(x, stats)["centers256"]
    assert report["max_abs_error_per_dim"][1] == 0.0
    y = np.array([0.3, 0.7])
    expected = np.abs((np.floor((y + 1) * 128) + 0.5) / 128 - 1 - y)
    assert report["max_abs_error"] == pytest.approx(expected.max())
    assert report["mean_abs_error"] == pytest.approx(expected.mean())


# --------------------------------------------------------------------------- RT-2 text bins


@FAST_SETTINGS
@given(y=arrays(np.float64, st.tuples(st.integers(1, 8), st.integers(1, 8)),
                elements=st.floats(-1.0, 1.0, allow_nan=False)))
def test_uniform_bins_text_round_trip(y):
    tok = UniformBinTokenizer()
    bins = tok.encode(y)
    assert ((bins >= 0) & (bins <= 255)).all()
    texts = tok.to_text(bins)
    parsed = np.stack([tok.from_text(t, dim=y.shape[1]) for t in texts])
    assert np.array_equal(parsed, bins)
    assert np.abs(tok.decode(parsed) - y).max() <= tok.bin_width / 2 + 1e-12


def test_uniform_bins_text_format_and_errors():
    tok = UniformBinTokenizer()
    assert tok.to_text(tok.encode([0.0, -1.0, 1.0, 0.5])) == "128 0 255 192"
    assert tok.from_text("  1 128\t91 ").tolist() == [1, 128, 91]
    assert tok.saturated([1.5, 0.0]).tolist() == [True, False]
    for text, match in [("", "no bin numbers"), ("12 a 3", "'a'"), ("12 -1", "'-1'"), ("1 256", "'256'"),
                        ("1.5 2", "'1.5'")]:
        with pytest.raises(ValueError, match=match):
            tok.from_text(text)
    with pytest.raises(ValueError, match="expected 7"):
        tok.from_text("1 2 3", dim=7)
    with pytest.raises(TypeError):
        tok.from_text(b"1 2 3")
    with pytest.raises(ValueError, match="out of range"):
        tok.to_text([0, 256])
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([300])
