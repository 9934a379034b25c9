"""Tests of vla_lessons.vision: captions, preprocessing, encoders, fusion, training, probes."""

from __future__ import annotations

import math
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vla_lessons import vision as V
from vla_lessons.vision import augment, captions, data, encoders, fusion, probes
from vla_lessons.vision import pixels as pix
from vla_lessons.vision.captions import ObjectRecord

TINY = dict(image_size=28, patch_size=14, hidden_size=32, num_layers=2, num_heads=2)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run ~10x faster on one thread when the shared machine is busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- captions

SCENE = [
    ObjectRecord("cube_0", "red", "cube", "small", (0.10, 0.00)),
    ObjectRecord("bowl_0", "blue", "bowl", 0.04, (0.30, 0.02, 0.01)),
    ObjectRecord("ball_0", "orange", "ball", 0.01, (0.0, 0.25)),
]


def test_caption_of_a_fixed_scene():
    assert captions.caption_scene(SCENE[:1]) == "a small red cube"
    assert captions.caption_scene(SCENE[:2]) == "a small red cube left of a large blue bowl"
    assert captions.caption_scene(SCENE) == "a small red cube left of a large blue bowl, and a small orange ball"
    assert captions.caption_scene([SCENE[2], SCENE[0]]) == "a small orange ball behind a small red cube"
    assert captions.caption_scene([SCENE[0], SCENE[2]]) == "a small red cube in front of a small orange ball"
    assert captions.caption_scene([]) == "an empty table"


def test_caption_articles_axes_and_record_types():
    orange = {"name": "o", "color": "Orange", "shape": "Cube", "size": "large", "position": [0.0, 0.0]}
    assert captions.caption_scene([orange]) == "a large orange cube"
    assert captions.caption_scene([{**orange, "size": "extra"}]) == "an extra orange cube"
    as_attrs = SimpleNamespace(name="b", colour="blue", shape="bowl", size=0.01, position=(0.2, 0.0))
    # a camera for which +x points left: the red cube (x=0.1) is right of the bowl (x=0.2)
    assert captions.caption_scene([SCENE[0], as_attrs], right_axis=(-1.0, 0.0)) == (
        "a small red cube right of a small blue bowl")
    assert captions.caption_scene([SCENE[0], as_attrs], small_below=0.005) == (
        "a small red cube left of a large blue bowl")
    no_size = ObjectRecord("p", "white", "plate", None, (0.0, 0.0), kind="receptacle")
    assert captions.caption_scene([no_size, SCENE[0]]) == "a white plate left of a small red cube"


@pytest.mark.parametrize("bad", [
    dict(colour="", shape="cube", size="small", position=(0, 0)),
    dict(colour="red", shape="cube", size=float("nan"), position=(0, 0)),
    dict(colour="red", shape="cube", size="small", position=(0, float("inf"))),
    dict(colour="red", shape="cube", size="small", position=(0,)),
])
def test_bad_object_records_raise(bad):
    with pytest.raises(ValueError):
        captions.caption_scene([{"name": "x", **bad}])
    with pytest.raises(ValueError, match="no field"):
        captions.caption_scene([{"name": "x", "colour": "red"}])


def test_caption_tokenizer_ids_padding_and_overflow():
    tok = captions.build_caption_tokenizer(["a red cube", "a blue bowl, and a cube"], max_length=8)
    assert [tok.id_to_token(i) for i in range(3)] == ["[PAD]", "[UNK]", "[EOS]"]
    ids = captions.encode_captions(tok, ["A red cube", "a green cube"])
    assert ids.dtype == torch.long and ids.shape == (2, 8)
    assert tok.decode(ids[0].tolist(), skip_special_tokens=False).split()[:4] == ["a", "red", "cube", "[EOS]"]
    assert ids[1, 1] == tok.token_to_id("[UNK]") and ids[0, -1] == 0
    again = captions.build_caption_tokenizer(["a blue bowl, and a cube", "a red cube"], max_length=8)
    assert again.get_vocab() == tok.get_vocab()
    with pytest.raises(ValueError, match="max_length"):
        captions.encode_captions(tok, ["a red cube " * 4])


# ---------------------------------------------------------------- preprocessing

def test_preprocess_shapes_and_normalisation():
    images = np.zeros((2, 40, 30, 3), dtype=np.uint8)
    images[1] = 255
    out = pix.preprocess(images, 28, "siglip")
    assert out.shape == (2, 3, 28, 28) and out.dtype == torch.float32
    assert torch.allclose(out[0], torch.full_like(out[0], -1.0)) and torch.allclose(out[1], torch.ones_like(out[1]))
    dino = pix.preprocess(torch.from_numpy(images[1]), 28, "dino")  # one image, torch
    assert dino.shape == (1, 3, 28, 28)
    assert torch.allclose(dino[0, :, 0, 0], (1 - torch.tensor(pix.IMAGENET_MEAN)) / torch.tensor(pix.IMAGENET_STD))
    fused = pix.preprocess_fused(images, 28)
    assert fused.shape == (2, 6, 28, 28)
    assert torch.allclose(fused[:, 3:], out) and torch.allclose(fused[1:, :3], dino)


@pytest.mark.parametrize("images, message", [
    (np.zeros((2, 28, 28, 3), dtype=np.float32), "uint8"),
    (np.zeros((2, 3, 28, 28), dtype=np.uint8), r"\(B, H, W, 3\)"),
    (np.zeros((2, 28, 28, 4), dtype=np.uint8), "3 colour channels"),
    (np.zeros((0, 28, 28, 3), dtype=np.uint8), "non-empty"),
])
def test_preprocess_rejects_bad_images(images, message):
    with pytest.raises(ValueError, match=message):
        pix.preprocess(images, 28)
    with pytest.raises(ValueError, match="encoder"):
        pix.preprocess(np.zeros((1, 28, 28, 3), dtype=np.uint8), 28, "clip")


# ---------------------------------------------------------------- encoders and fusion

@pytest.fixture(scope="module")
def tiny_encoders():
    tok = captions.build_caption_tokenizer(["a small red cube left of a large blue bowl"], max_length=12)
    siglip = encoders.build_siglip(encoders.small_siglip_config(
        tok.get_vocab_size(), text_hidden_size=32, text_layers=1, max_length=12, **TINY), seed=0).eval()
    dino = encoders.build_dino(encoders.small_dino_config(num_register_tokens=4, **TINY), seed=1).eval()
    return siglip, dino, tok


def test_siglip_init_follows_the_paper(tiny_encoders):
    siglip, _, _ = tiny_encoders
    assert math.isclose(float(siglip.logit_scale.detach().exp()), 10.0, rel_tol=1e-6)
    assert float(siglip.logit_bias.detach()) == -10.0


def test_fused_features_and_projectors(tiny_encoders):
    siglip, dino, _ = tiny_encoders
    backbone = fusion.FusedBackbone(siglip, dino)
    images = np.random.default_rng(0).integers(0, 256, size=(3, 50, 50, 3), dtype=np.uint8)
    pixels = backbone.preprocess(images)
    with torch.no_grad():
        feats = backbone(pixels)
        assert feats.shape == (3, 4, 64) and feats.dtype == torch.float32
        # DINOv2 first, then SigLIP; both from the second-to-last block; CLS + 4 registers dropped
        d_part, s_part = backbone.split(feats)
        d_ref = dino(pixel_values=pixels[:, :3], output_hidden_states=True).hidden_states[-2][:, 5:]
        s_ref = siglip.vision_model(pixel_values=pixels[:, 3:], output_hidden_states=True).hidden_states[-2]
        torch.testing.assert_close(d_part, d_ref)
        torch.testing.assert_close(s_part, s_ref)
        last = fusion.FusedBackbone(siglip, dino, feature_layer=-1)(pixels)
        assert not torch.allclose(last, feats)
        out = fusion.FusedProjector(64, 48)(feats)
        assert out.shape == (3, 4, 48)
        assert fusion.MLPProjector(64, 48)(feats).shape == (3, 4, 48)
    assert [n for n, _ in fusion.FusedProjector(64, 48).named_children()] == ["fc1", "act_fn1", "fc2", "act_fn2", "fc3"]
    assert fusion.count_parameters(fusion.FusedProjector(64, 48)) == 64 * 256 + 256 + 256 * 48 + 48 + 48 * 48 + 48
    with pytest.raises(ValueError, match=r"\(\.\.\., 64\)"):
        fusion.FusedProjector(64, 48)(torch.zeros(2, 4, 63))


def test_misaligned_patch_grids_raise(tiny_encoders):
    siglip, _, _ = tiny_encoders
    other_patch = encoders.build_dino(encoders.small_dino_config(**{**TINY, "patch_size": 7}))
    with pytest.raises(ValueError, match="grids do not align"):
        fusion.FusedBackbone(siglip, other_patch)
    other_size = encoders.build_dino(encoders.small_dino_config(**{**TINY, "image_size": 56}))
    with pytest.raises(ValueError, match="2x2 grid.*4x4 grid"):
        fusion.FusedBackbone(siglip, other_size)
    with pytest.raises(TypeError):
        fusion.FusedBackbone(other_size, siglip)


def test_wrong_pixel_values_raise(tiny_encoders):
    siglip, dino, _ = tiny_encoders
    backbone = fusion.FusedBackbone(siglip, dino)
    with pytest.raises(ValueError, match=r"\(B, 6, 28, 28\)"):
        backbone(torch.zeros(1, 6, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 6, 28, 28\)"):
        backbone(torch.zeros(1, 3, 28, 28))
    with pytest.raises(ValueError, match="float32"):
        backbone(torch.zeros(1, 6, 28, 28, dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN"):
        backbone(torch.full((1, 6, 28, 28), float("nan")))
    with pytest.raises(ValueError, match="feature_layer"):
        encoders.patch_tokens(dino, torch.zeros(1, 3, 28, 28), feature_layer=5)


def test_real_openvla_sizes_on_meta_device():
    start = time.perf_counter()
    real = fusion.from_real_configs()
    assert time.perf_counter() - start < 2.0
    assert real.params["siglip"] == 427_680_704  # 427.7M with the attention-pool (MAP) head
    assert real.params["siglip_map_head"] == 15_238_352
    assert real.params["dino"] == 303_233_024  # 303.2M
    assert real.params["projector"] == 71_385_600  # 2176 -> 8704 -> 4096 -> 4096
    assert real.params["total"] == 802_299_328
    assert real.backbone.embed_dim == 2176 and real.backbone.num_patches == 256
    assert next(real.siglip.parameters()).device.type == "meta"
    with torch.no_grad():
        out = real.projector(real.backbone(torch.zeros(1, 6, 224, 224, device="meta")))
    assert out.shape == (1, 256, 4096)


def test_save_load_round_trip(tiny_encoders, tmp_path):
    siglip, dino, tok = tiny_encoders
    pixels = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    ids = captions.encode_captions(tok, ["a red cube", "a large blue bowl"])
    encoders.save_siglip(siglip, tok, tmp_path / "siglip")
    encoders.save_dino(dino, tmp_path / "dino")
    assert (tmp_path / "siglip" / "model.safetensors").is_file() and (tmp_path / "dino" / "config.json").is_file()
    siglip2, tok2 = encoders.load_siglip(tmp_path / "siglip")
    dino2 = encoders.load_dino(tmp_path / "dino")
    assert type(dino2) is type(dino) and tok2.get_vocab() == tok.get_vocab()
    with torch.no_grad():
        a = siglip(input_ids=ids, pixel_values=pixels)
        b = siglip2(input_ids=captions.encode_captions(tok2, ["a red cube", "a large blue bowl"]), pixel_values=pixels)
        assert torch.equal(a.logits_per_image, b.logits_per_image)
        assert torch.equal(dino(pixel_values=pixels).last_hidden_state, dino2(pixel_values=pixels).last_hidden_state)
    with pytest.raises(ValueError, match="config.json"):
        encoders.load_dino(tmp_path / "missing")


# ---------------------------------------------------------------- losses, augmentation, training

def test_sigmoid_loss_matches_transformers(tiny_encoders):
    siglip, _, tok = tiny_encoders
    pixels = torch.randn(4, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    ids = captions.encode_captions(tok, ["a red cube", "a blue bowl", "a large cube", "a small bowl"])
    with torch.no_grad():
        out = siglip(input_ids=ids, pixel_values=pixels, return_loss=True)
        ours = V.sigmoid_loss(out.image_embeds, out.text_embeds, siglip.logit_scale, siglip.logit_bias)
    torch.testing.assert_close(ours, out.loss)
    # with t = 10, b = -10 and a perfect match, each positive costs log(1 + e^0) = log 2
    e = torch.eye(4)
    assert math.isclose(float(V.sigmoid_loss(e, e, torch.tensor(math.log(10)), torch.tensor(-10.0))),
                        math.log(2) + 3 * math.log1p(math.exp(-10)), rel_tol=1e-5)


def test_augmentations_are_seeded_and_a_full_flip_mirrors():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    full = augment.random_resized_crop(x, 16, (1.0, 1.0), torch.Generator().manual_seed(0), ratio=(1, 1), flip_p=1.0)
    torch.testing.assert_close(full, torch.flip(x, dims=[-1]), atol=1e-5, rtol=0)
    a = augment.dino_view(x, 8, (0.3, 1.0), torch.Generator().manual_seed(3))
    b = augment.dino_view(x, 8, (0.3, 1.0), torch.Generator().manual_seed(3))
    assert a.shape == (2, 3, 8, 8) and torch.equal(a, b) and a.min() >= 0 and a.max() <= 1


@pytest.fixture(scope="module")
def tiny_data():
    return V.synthetic_dataset(48, seed=0, image_size=28)


def test_synthetic_dataset_is_seeded_and_round_trips(tiny_data, tmp_path):
    again = V.synthetic_dataset(48, seed=0, image_size=28)
    assert np.array_equal(again.images, tiny_data.images) and again.captions == tiny_data.captions
    assert tiny_data.captions[0] == captions.caption_scene(tiny_data.objects[0])
    present = tiny_data.presence("colour")
    where = tiny_data.positions("colour")
    assert present.shape == (48, 4) and where.shape == (48, 4, 2)
    for n, objs in enumerate(tiny_data.objects):
        for k, colour in enumerate(tiny_data.colours):
            matching = [o for o in objs if o.colour == colour]
            assert present[n, k] == (len(matching) > 0)
            assert np.isfinite(where[n, k]).all() == (len(matching) == 1)
    loaded = data.load_vision_data(data.save_vision_data(tiny_data, tmp_path / "scenes.npz"))
    assert np.array_equal(loaded.images, tiny_data.images) and loaded.objects == tiny_data.objects
    assert loaded.captions == tiny_data.captions and loaded.shapes == tiny_data.shapes


def test_siglip_training_reduces_the_loss_and_is_seeded(tiny_data):
    tok = captions.build_caption_tokenizer(tiny_data.captions)
    config = encoders.small_siglip_config(tok.get_vocab_size(), text_hidden_size=32, text_layers=1, **TINY)
    recipe = V.SiglipRecipe(batch_size=16, lr=2e-3)
    _, _, h1 = V.pretrain_siglip(tiny_data.images, tiny_data.captions, config, steps=12, tokenizer=tok,
                                 recipe=recipe, seed=0)
    _, _, h2 = V.pretrain_siglip(tiny_data.images, tiny_data.captions, config, steps=12, tokenizer=tok,
                                 recipe=recipe, seed=0)
    assert h1 == h2
    assert np.mean(h1["loss"][-3:]) < 0.7 * np.mean(h1["loss"][:3])
    with pytest.raises(ValueError, match="captions"):
        V.pretrain_siglip(tiny_data.images, tiny_data.captions[:-1], config, steps=1)


def test_dino_training_learns_and_is_seeded(tiny_data):
    config = encoders.small_dino_config(num_register_tokens=2, **TINY)
    recipe = V.DinoRecipe(batch_size=12, n_local_crops=2, local_size=14, out_dim=64, head_hidden_dim=32,
                          head_bottleneck_dim=16, lr=1e-3)
    model, h1 = V.pretrain_dino(tiny_data.images, config, steps=6, recipe=recipe, seed=0)
    _, h2 = V.pretrain_dino(tiny_data.images, config, steps=6, recipe=recipe, seed=0)
    assert h1 == h2 and all(math.isfinite(v) for v in h1["loss"])
    assert max(h1["ibot_loss"]) > 0
    assert 0 < h1["teacher_entropy"][-1] < math.log(64)
    initial = encoders.build_dino(config, seed=0)
    moved = [not torch.equal(p, q) for p, q in zip(model.parameters(), initial.parameters())]
    assert any(moved)  # the EMA teacher followed the student


def test_a_few_steps_reduce_the_dino_loss():
    """The student's half of DINO: matching a fixed, centred and sharpened teacher."""
    torch.manual_seed(0)
    head = V.DINOHead(8, out_dim=16, hidden_dim=16, bottleneck_dim=4)
    x = [torch.randn(32, 8), torch.randn(32, 8)]
    teacher = [torch.randn(32, 16), torch.randn(32, 16)]
    center = torch.stack(teacher).mean(dim=(0, 1))
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = V.dino_loss([head(x[0]), head(x[1])], teacher, center, 0.1, 0.04)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_dino_loss_skips_same_view_pairs_and_centres():
    t = [torch.tensor([[5.0, 0.0]]), torch.tensor([[0.0, 5.0]])]
    same = [t[0].clone(), t[1].clone()]
    swapped = [t[1].clone(), t[0].clone()]
    center = torch.zeros(2)
    assert V.dino_loss(swapped, t, center, 0.1, 0.04) < V.dino_loss(same, t, center, 0.1, 0.04)


# ---------------------------------------------------------------- probes

def test_linear_probes_read_linear_signals_and_reject_nan():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6))
    labels = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64) + 2 * (x[:, 2] > 0)
    cls = V.fit_linear_classifier(x, labels)
    assert cls.score >= 0.85 and cls.score > cls.baseline + 0.5 and cls.n_test == 40
    pos = x[:, :2] @ np.array([[1.0, 0.5], [-0.3, 2.0]]) + 0.01 * rng.normal(size=(200, 2))
    reg = V.fit_linear_regressor(x, pos)
    assert reg.score > 0.99 and reg.mean_error < 0.05
    wide = rng.normal(size=(60, 500))  # more features than samples: the dual ridge path
    assert np.isfinite(V.fit_linear_regressor(wide, wide[:, :2]).score)
    what = probes.what_probe(x, np.stack([x[:, 0] > 0.5, x[:, 3] < 0], axis=1).astype(int), names=["a", "b"])
    assert what.columns == ["a", "b"] and what.score > 0.9 and what.baseline < what.score - 0.2
    targets = np.stack([pos, np.full_like(pos, np.nan)], axis=1)
    where = probes.where_probe(x, targets, names=["a", "b"])
    assert where.columns == ["a"] and where.score > 0.99 and where.mean_error < 0.1 * where.baseline_error
    x_bad = x.copy()
    x_bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        V.fit_linear_regressor(x_bad, pos)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_newton_logistic_solver_reaches_the_lbfgs_optimum(n_classes):
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.normal(size=(240, 30)))
    y = torch.tensor((x[:, 0].numpy() + 0.5 * rng.normal(size=240) > 0).astype(np.int64)
                     + (n_classes == 3) * (x[:, 1].numpy() > 0.3))
    xb = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    for l2 in (1e-3, 1e-1):
        objective = lambda w: float(torch.nn.functional.cross_entropy(xb @ w, y) + l2 * (w[:-1] ** 2).sum())  # noqa: E731
        w_lbfgs = probes._fit_logistic(x, y, n_classes, l2)
        w_newton = probes._fit_logistic_newton(x, y, n_classes, l2)
        assert w_newton.shape == (31, n_classes)
        assert objective(w_newton) <= objective(w_lbfgs) + 1e-9
        assert torch.allclose(w_newton, w_lbfgs, atol=1e-4)
        assert torch.equal((xb @ w_newton).argmax(1), (xb @ w_lbfgs).argmax(1))
    if n_classes == 2:
        a = V.fit_linear_classifier(x.numpy(), y.numpy(), solver="newton", l2_grid=(1e-3, 1e-1))
        b = V.fit_linear_classifier(x.numpy(), y.numpy(), l2_grid=(1e-3, 1e-1))
        assert a.score == b.score and a.penalty == b.penalty
        with pytest.raises(ValueError, match="solver"):
            V.fit_linear_classifier(x.numpy(), y.numpy(), solver="sgd")


def test_coordinate_pooling_is_a_shared_linear_detector():
    rng = np.random.default_rng(1)
    cells = rng.integers(0, 16, size=300)  # the object's patch on a 4 x 4 grid
    feats = torch.zeros(300, 16, 3, dtype=torch.float64)
    feats[torch.arange(300), torch.from_numpy(cells), 0] = 1.0  # a perfect "object here" detector
    feats[..., 1:] = torch.from_numpy(rng.normal(size=(300, 16, 2)))  # and some noise channels
    pooled = probes.coordinate_pooled(feats)
    assert pooled.shape == (300, 18)
    u = ((cells % 4) + 0.5) / 4 * 2 - 1
    assert np.allclose(pooled[:, 1 * 3].numpy(), u / 16)  # weight u on the detector channel
    table_xy = np.stack([0.3 * u, 0.1 + 0.2 * (((cells // 4) + 0.5) / 4 * 2 - 1)], axis=1)
    result = probes.where_probe(pooled, table_xy[:, None, :])
    assert result.score > 0.99
    with pytest.raises(ValueError, match="square"):
        probes.coordinate_pooled(torch.zeros(2, 15, 3))


def test_probe_table_rows(tiny_encoders, tiny_data):
    siglip, dino, _ = tiny_encoders
    rows = probes.probe_table({"siglip": siglip, "fused": fusion.FusedBackbone(siglip, dino)}, tiny_data,
                              min_samples=10)
    assert [r["model"] for r in rows] == ["siglip", "fused"] and [r["dim"] for r in rows] == [32, 64]
    assert "where_r2" not in rows[0]  # synthetic scenes have no receptacles
    for r in rows:
        assert 0 <= r["what_colour"] <= 1 and math.isfinite(r["bind_cm"]) and r["bind_baseline_cm"] > 0


def test_probe_feature_helpers(tiny_encoders, tiny_data):
    siglip, dino, _ = tiny_encoders
    pixels = pix.preprocess(tiny_data.images[:5], 28, "dino")
    feats = probes.encoder_features(dino, pixels, batch_size=2)
    assert feats.shape == (5, 4, 32)
    assert probes.mean_pooled(feats).shape == (5, 32) and probes.flattened(feats).shape == (5, 128)
    fused = probes.encoder_features(fusion.FusedBackbone(siglip, dino), pix.preprocess_fused(tiny_data.images[:5], 28))
    torch.testing.assert_close(fused[..., :32], feats)


# ---------------------------------------------------------------- the simulator as a data source

def test_sim_dataset_is_seeded_and_captioned_from_ground_truth():
    from vla_lessons.vision import sim_data

    right, forward = sim_data.camera_axes()
    assert abs(right[0] * forward[0] + right[1] * forward[1]) < 1e-9  # perpendicular unit vectors
    a = sim_data.sim_dataset(3, seed=5, image_size=96)
    b = sim_data.sim_dataset(3, seed=5, image_size=96)
    assert a.images.shape == (3, 96, 96, 3) and a.images.dtype == np.uint8
    assert np.array_equal(a.images, b.images) and a.captions == b.captions
    for objs, caption in zip(a.objects, a.captions):
        assert objs[0].kind == "object" and any(o.kind == "receptacle" for o in objs)
        assert caption == captions.caption_scene(objs, right_axis=right, forward_axis=forward)
    assert a.presence("colour").shape == (3, 6) and a.presence("shape").shape == (3, 3)
    receptacles = a.positions("shape", "receptacle")
    assert set(a.values("shape", "receptacle")) <= {"bowl", "plate", "tray"}
    assert (np.isfinite(receptacles).all(axis=2).sum(axis=1) == 2).all()  # two receptacles per scene
