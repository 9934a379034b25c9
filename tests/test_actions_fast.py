"""FAST action tokens (lesson 03): DCT, scale and round, byte-level BPE; strict and relaxed decoding."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vla_lessons.actions import (
    FASTTokenizer,
    dct_coefficients,
    energy_compaction,
    error_bound,
    inverse_dct,
    make_chunks,
    naive_token_count,
    reconstruction_error_vs_scale,
    smooth_action_chunks,
)
from vla_lessons.actions.fast import chunks_at_rate, char_to_int, int_to_char, measure_fast, resample_actions
from vla_lessons.env import REPO_ROOT

FAST_SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)
T, D = 15, 7


@pytest.fixture(scope="module")
def chunks() -> np.ndarray:
    return smooth_action_chunks(400, 15, seed=0)


@pytest.fixture(scope="module")
def tok(chunks) -> FASTTokenizer:
    return FASTTokenizer(vocab_size=512).fit(chunks)


def test_dct_is_orthonormal_and_inverts(chunks):
    c = dct_coefficients(chunks[:10])
    np.testing.assert_allclose((c**2).sum(axis=1), (chunks[:10] ** 2).sum(axis=1), rtol=1e-10)
    np.testing.assert_allclose(inverse_dct(c), chunks[:10], atol=1e-12)
    const = np.ones((8, 2))  # a constant signal is all DC: sqrt(T) * value
    np.testing.assert_allclose(dct_coefficients(const)[0], np.sqrt(8))
    np.testing.assert_allclose(dct_coefficients(const)[1:], 0, atol=1e-12)


def test_smooth_chunks_compact_energy(chunks, tok):
    curve = energy_compaction(tok.normalizer.normalize(chunks))
    assert curve.shape == (T,) and np.all(np.diff(curve) >= -1e-12) and curve[-1] == pytest.approx(1.0)
    # 0.2-2 Hz motion over 1 s: the first 5 of 15 coefficients hold nearly all of it
    assert energy_compaction(tok.normalizer.normalize(chunks), 5) > 0.95
    with pytest.raises(ValueError, match="k must be"):
        energy_compaction(chunks, 0)
    with pytest.raises(ValueError, match="no energy"):
        energy_compaction(np.zeros((2, 4, 3)))


def test_coefficients_are_flattened_lowest_frequency_first(tok, chunks):
    chunk = chunks[3]
    q = np.rint(dct_coefficients(tok.normalizer.normalize(chunk)) * tok.scale).astype(np.int64)
    flat = tok.coefficients(chunk)
    assert flat.shape == (T * D,)
    assert np.array_equal(flat[:D], q[0])        # every dimension's DC term first
    assert np.array_equal(flat[D:2 * D], q[1])   # then every dimension's first harmonic
    assert np.array_equal(flat.reshape(T, D), q)


@FAST_SETTINGS
@given(x=arrays(np.float64, st.tuples(st.integers(1, 24), st.just(D)),
                elements=st.floats(-0.2, 1.2, allow_nan=False)),
       scale=st.sampled_from([2.0, 10.0, 50.0]))
def test_decode_encode_error_is_within_the_scale_bound(chunks, x, scale):
    tok = FASTTokenizer(scale=scale, vocab_size=300).fit(chunks[:50])
    ids = tok.encode(x)
    assert all(0 <= i < tok.vocab_size for i in ids)
    decoded = tok.decode(ids, x.shape)
    assert decoded.shape == x.shape
    # normalised space (clipping the decoded values only brings them closer to the in-range target)
    err = tok.normalizer.normalize(decoded) - tok.normalizer.normalize(x)
    l2_per_dim = np.sqrt((err**2).sum(axis=0))
    assert (l2_per_dim <= error_bound(scale, x.shape[0]) + 1e-9).all()


def test_batches_and_torch(tok, chunks):
    batch = chunks[:5]
    ids = tok.encode(batch)
    assert ids == [tok.encode(c) for c in batch]
    assert tok.encode(torch.from_numpy(batch[0])) == ids[0]
    decoded = tok.decode(ids, (T, D))
    assert decoded.shape == (5, T, D)
    np.testing.assert_allclose(decoded[2], tok.decode(ids[2], (T, D)))


def test_fast_uses_fewer_tokens_than_bins_more_so_at_higher_rates():
    ratios = {}
    for rate in (5, 15, 50):
        fit, held_out = smooth_action_chunks(300, rate, seed=0), smooth_action_chunks(50, rate, seed=1)
        ratios[rate] = FASTTokenizer().fit(fit).compression_ratio(held_out)
    assert 1.0 < ratios[5] < ratios[15] < ratios[50]
    assert naive_token_count((50, 7)) == 350


def test_save_load_gives_identical_tokens(tok, chunks, tmp_path):
    path = tok.save(tmp_path / "fast.json")
    again = FASTTokenizer.load(path)
    for chunk in chunks[100:120]:
        ids = tok.encode(chunk)
        assert again.encode(chunk) == ids
        np.testing.assert_array_equal(again.decode(ids, (T, D)), tok.decode(ids, (T, D)))
    assert again.scale == tok.scale and again.vocab_size == tok.vocab_size
    (tmp_path / "bad.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not a FAST tokenizer"):
        FASTTokenizer.load(tmp_path / "bad.json")
    damaged = tok.to_dict()
    del damaged["normalizer"]["q99"]
    (tmp_path / "damaged.json").write_text(json.dumps(damaged))
    with pytest.raises(ValueError, match="damaged"):
        FASTTokenizer.load(tmp_path / "damaged.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="invalid JSON"):
        FASTTokenizer.load(tmp_path / "broken.json")


def test_strict_decode_rejects_invalid_sequences(tok, chunks):
    ids = tok.encode(chunks[7])
    with pytest.raises(ValueError, match="coefficients, expected 105"):
        tok.decode(ids[:-1], (T, D))
    with pytest.raises(ValueError, match="coefficients, expected 105"):
        tok.decode(ids + ids[:1], (T, D))
    with pytest.raises(ValueError, match="expected 105"):
        tok.decode([], (T, D))
    with pytest.raises(ValueError, match="unknown FAST token ids \\[9999\\]"):
        tok.decode(ids[:3] + [9999] + ids[3:], (T, D))
    with pytest.raises(ValueError, match="unknown FAST token ids"):
        tok.decode([-1] + ids, (T, D))
    # a lone UTF-8 lead byte is half a character: a sequence cut inside a coefficient
    lead_byte = tok.bpe.token_to_id("Ã")  # byte 0xC3 in the byte-level alphabet
    with pytest.raises(ValueError, match="broken"):
        tok.decode(ids + [lead_byte], (T, D))
    with pytest.raises(ValueError, match=r"chunk_shape must be \(T, 7\)"):
        tok.decode(ids, (T, 6))
    with pytest.raises(TypeError, match="integers"):
        tok.decode([1.5, 2.0], (T, D))


def test_relaxed_decode_repairs_to_the_chunk_shape(tok, chunks):
    chunk = chunks[7]
    ids = tok.encode(chunk)
    full = tok.decode(ids, (T, D))
    truncated = tok.decode(ids[: len(ids) // 2], (T, D), strict=False)
    assert truncated.shape == (T, D) and np.isfinite(truncated).all()
    # the lowest frequencies came first, so half the tokens still give a coarse chunk
    assert np.abs(truncated - chunk).mean() < np.abs(tok.decode([], (T, D), strict=False) - chunk).mean()
    longer = tok.decode(ids + ids, (T, D), strict=False)
    np.testing.assert_allclose(longer, full)
    assert tok.decode(ids + [9999, -5], (T, D), strict=False).shape == (T, D)
    lead_byte = tok.bpe.token_to_id("Ã")
    assert tok.decode([lead_byte] + ids, (T, D), strict=False).shape == (T, D)


def test_bad_chunks_and_unfitted_tokenizer(tok):
    with pytest.raises(RuntimeError, match="not trained"):
        FASTTokenizer().encode(np.zeros((T, D)))
    bad = np.zeros((T, D))
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        tok.encode(bad)
    with pytest.raises(ValueError, match=r"\(T, 7\)"):
        tok.encode(np.zeros((T, 6)))
    with pytest.raises(ValueError, match=r"\(T, 7\)"):
        tok.encode(np.zeros(7))
    with pytest.raises(ValueError, match="too large"):
        tok.encode(np.full((T, D), 1e6))  # the gripper dimension is not normalised
    with pytest.raises(ValueError, match="scale"):
        FASTTokenizer(scale=0)
    with pytest.raises(ValueError, match="vocab_size"):
        FASTTokenizer(vocab_size=100)
    with pytest.raises(ValueError, match="no chunks"):
        FASTTokenizer().fit([])


def test_fitting_is_deterministic_across_processes(chunks, tmp_path):
    code = (
        "import hashlib, numpy as np\n"
        "from vla_lessons.actions import FASTTokenizer, smooth_action_chunks\n"
        "tok = FASTTokenizer(vocab_size=512).fit(smooth_action_chunks(400, 15, seed=0))\n"
        "ids = tok.encode(smooth_action_chunks(20, 15, seed=9))\n"
        "print(hashlib.sha256((tok.bpe.to_str() + repr(ids)).encode()).hexdigest())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO_ROOT).stdout.strip()
    here = FASTTokenizer(vocab_size=512).fit(chunks)
    ids = here.encode(smooth_action_chunks(20, 15, seed=9))
    assert out == hashlib.sha256((here.bpe.to_str() + repr(ids)).encode()).hexdigest()


def test_reconstruction_error_shrinks_with_scale(tok, chunks):
    y = tok.normalizer.normalize(chunks[:100])
    report = reconstruction_error_vs_scale(y, [1, 10, 100])
    assert report[1.0]["rmse"] > report[10.0]["rmse"] > report[100.0]["rmse"]
    assert report[1.0]["nonzero_fraction"] < report[100.0]["nonzero_fraction"]
    assert report[10.0]["bound"] == pytest.approx(0.5 / 10 * np.sqrt(T))
    for r in report.values():  # the bound is on one dimension's L2 error over a chunk
        assert r["max_abs"] <= r["max_l2"] <= r["bound"] + 1e-12


def test_lm_id_mapping(tok):
    ids = [0, 5, tok.vocab_size - 1]
    lm = tok.to_lm_ids(ids, 257152, skip_tokens=128)
    assert lm[0] == 257152 - 1 - 128
    assert tok.from_lm_ids(lm, 257152, skip_tokens=128) == ids
    with pytest.raises(ValueError, match="not FAST tokens"):
        tok.from_lm_ids([5], 257152, skip_tokens=128)
    with pytest.raises(ValueError, match="cannot hold"):
        tok.to_lm_ids(ids, 300)


@FAST_SETTINGS
@given(n=arrays(np.int64, st.integers(0, 50), elements=st.integers(-27647, 27647)))
def test_zigzag_characters_round_trip(n):
    assert np.array_equal(char_to_int(int_to_char(n)), n)


def test_chunking_helpers():
    episode = np.arange(20 * 7, dtype=float).reshape(20, 7)
    c = make_chunks(episode, 5, stride=3)
    assert c.shape == (6, 5, 7) and np.array_equal(c[1], episode[3:8])
    with pytest.raises(ValueError, match="shorter than the horizon"):
        make_chunks(episode[:3], 5)
    a = smooth_action_chunks(4, 50, seed=1)
    assert a.shape == (4, 50, 7) and np.array_equal(a, smooth_action_chunks(4, 50, seed=1))
    assert set(np.unique(a[..., -1])) <= {0.0, 1.0}


def test_measure_fast_agrees_with_the_tokenizer(tok, chunks):
    held_out = chunks[300:340]
    r = measure_fast(tok, held_out)
    assert r["horizon"] == T and r["naive_tokens"] == T * D
    assert r["compression"] == pytest.approx(tok.compression_ratio(held_out))
    assert r["rmse_per_dim"].shape == (D,) and r["max_abs"] <= error_bound(tok.scale, T)


def test_resampling_keeps_the_motion_and_holds_the_gripper():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(14, D))
    a[:, -1] = rng.random(14) > 0.5
    down = resample_actions(a, 10, 5)  # deltas of the pose: two old steps make one new step
    np.testing.assert_allclose(down[:, :-1], a[0::2, :-1] + a[1::2, :-1], atol=1e-12)
    assert np.array_equal(down[:, -1], a[0::2, -1])
    up = resample_actions(a, 10, 50)   # the spline passes through every recorded pose
    assert up.shape == (70, D)
    np.testing.assert_allclose(up[:, :-1].reshape(14, 5, D - 1).sum(axis=1), a[:, :-1], atol=1e-12)
    assert np.array_equal(up[:, -1], np.repeat(a[:, -1], 5))  # the gripper command is held, not interpolated
    assert resample_actions(a, 10, 15).shape == (21, D)
    np.testing.assert_allclose(resample_actions(a, 10, 10), a, atol=1e-12)
    with pytest.raises(ValueError, match="to_hz"):
        resample_actions(a, 10, 0)
    with pytest.raises(ValueError, match="less than one step"):
        resample_actions(a[:1], 10, 3)
    with pytest.raises(ValueError, match="finite"):
        resample_actions(np.full((3, D), np.nan), 10, 50)
    chunks = chunks_at_rate([a, a[:3]], 10, 15)  # the 0.3 s episode is shorter than a chunk: skipped
    assert chunks.shape == (21 - 15 + 1, 15, D) and np.array_equal(chunks[0], resample_actions(a, 10, 15)[:15])
    with pytest.raises(ValueError, match="no episode"):
        chunks_at_rate([a[:3]], 10, 15)
