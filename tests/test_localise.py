"""The localisation objective (lesson 06): "where is the X?" scenes, the head, the loss inside fine-tuning."""

import numpy as np
import pytest
import torch

from vla_lessons.model.vla import vla_from_vlm
from vla_lessons.train.finetune import ActionFrames, FinetuneConfig, finetune_vla
from vla_lessons.train.localise import (LocalisationHead, WhereData, localisation_error, localisation_loss,
                                        render_where, train_localisation, vision_parameters)

from conftest import TOY_STATS, toy_vlm


@pytest.fixture(scope="module")
def vla():
    tok, vlm = toy_vlm()
    return vla_from_vlm(vlm, tok, {"tabletop": TOY_STATS}, visual_position="learned-2d")


def _bright_square_data(n=64, seed=0, size=28):
    """Scenes with one white 6 x 6 square on black: "where is the square?" has a learnable answer."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, size, size, 3), dtype=np.uint8)
    corner = rng.integers(0, size - 6, (n, 2))
    for i, (r, c) in enumerate(corner):
        images[i, r:r + 6, c:c + 6] = 255
    xy = ((corner + 3) / size).astype(np.float32)[:, ::-1].copy()  # (column, row) as (x, y) in [0, 1]
    return WhereData(images, ["square"], np.arange(n), np.zeros(n, dtype=np.int64), xy)


def test_render_where_asks_about_uniquely_named_things_and_is_reproducible():
    data = render_where(4, 123)
    again = render_where(4, 123)
    np.testing.assert_array_equal(data.images, again.images)
    np.testing.assert_array_equal(data.xy, again.xy)
    assert data.images.shape == (4, 96, 96, 3) and len(data) >= 4
    for s in range(4):  # each scene is asked about several things, never the same phrase twice
        asked = data.phrase[data.scene == s]
        assert len(asked) >= 2 and len(set(asked.tolist())) == len(asked)
    assert np.abs(data.xy).max() < 0.6, "positions are on the table, in metres"
    assert any(" " in p for p in data.phrases), "objects are named by colour and shape"
    other = render_where(2, 999, phrases=data.phrases[:3])
    assert other.phrases == data.phrases[:3] and set(other.phrase.tolist()) <= {0, 1, 2}
    with pytest.raises(ValueError, match="positive int"):
        render_where(0, 1)


def test_where_data_and_head_reject_inconsistent_input(vla):
    data = _bright_square_data(4)
    with pytest.raises(ValueError, match="same 4 questions"):
        WhereData(data.images, data.phrases, data.scene, data.phrase[:3], data.xy)
    with pytest.raises(ValueError, match="out of range"):
        WhereData(data.images, data.phrases, data.scene + 1, data.phrase, data.xy)
    with pytest.raises(ValueError, match="uint8"):
        WhereData(data.images.astype(np.float32), data.phrases, data.scene, data.phrase, data.xy)
    head = LocalisationHead.for_data(vla, data)
    with pytest.raises(ValueError, match=r"tokens \(B, P, 192\)"):
        head(torch.zeros(2, 4, 7), torch.zeros(2, dtype=torch.long))
    other = WhereData(data.images, ["circle"], data.scene, data.phrase, data.xy)
    with pytest.raises(ValueError, match="different phrases"):
        localisation_loss(vla, head, other, np.arange(2))
    xy = torch.tensor([[0.1, -0.2], [0.3, 0.0]])
    torch.testing.assert_close(head.to_metres(head.standardise(xy)), xy)


def test_training_the_towers_on_the_loss_finds_the_object(vla):
    train, heldout = _bright_square_data(96, 0), _bright_square_data(32, 1)
    head = LocalisationHead.for_data(vla, train)
    towers = [p.detach().clone() for p in vla.vision_backbone.parameters()]
    guess = np.median(np.linalg.norm(heldout.xy - train.xy.mean(0), axis=1)) * 100
    history = train_localisation(vla, head, train, steps=150, batch_size=16, lr=1e-3, heldout=heldout,
                                 log_every=150, progress=False)
    error = localisation_error(vla, head, heldout)
    assert error["n"] == 32 and history[-1]["median_cm"] == pytest.approx(error["median_cm"])
    assert error["median_cm"] < 0.6 * guess, f"{error['median_cm']:.1f} vs guessing the mean {guess:.1f}"
    assert any(not torch.equal(a, b) for a, b in zip(towers, vla.vision_backbone.parameters()))
    assert vla.patch_position.rows.abs().sum() > 0 and not vla.training and not head.training
    assert len(vision_parameters(vla)) == len(list(vla.vision_backbone.parameters())) + \
        len(list(vla.projector.parameters())) + 2


def test_finetune_vla_adds_the_localisation_loss_when_asked(vla):
    rng = np.random.default_rng(0)
    n = 12
    actions = rng.uniform(-0.02, 0.02, (n, 7)).astype(np.float32)
    actions[:, 5], actions[:, 6] = 0.0, rng.integers(0, 2, n)
    frames = ActionFrames(rng.integers(0, 255, (n, 28, 28, 3), dtype=np.uint8), ["pick up the red cube"] * n,
                          actions, np.arange(n) // 4, ["pick"] * n)
    data = _bright_square_data(16)
    head = LocalisationHead.for_data(vla, data)
    with pytest.raises(ValueError, match="needs where="):
        finetune_vla(vla, frames, FinetuneConfig(steps=2, batch_size=4, loc_batch=4), unnorm_key="tabletop",
                     progress=False)
    with pytest.raises(ValueError, match="loc_batch"):
        FinetuneConfig(steps=2, loc_batch=-1)
    before = [p.detach().clone() for p in head.parameters()]
    result = finetune_vla(vla, frames, FinetuneConfig(steps=3, batch_size=4, loc_batch=4, log_every=1),
                          unnorm_key="tabletop", progress=False, where=data, loc_head=head)
    assert all("loc_loss" in h and np.isfinite(h["loc_loss"]) for h in result.history)
    assert any(not torch.equal(a, b) for a, b in zip(before, head.parameters())), "the head trains along"
    assert result.trainable == sum(p.numel() for p in vla.parameters()), "the head is not the VLA's"


def test_the_build_refuses_a_localisation_batch_without_the_objective():
    from vla_lessons.train.build_vla import LocaliseConfig, build_course_vla

    stages = (FinetuneConfig(steps=2), FinetuneConfig(steps=2, loc_batch=8))
    with pytest.raises(ValueError, match="loc_batch > 0 but the localisation objective"):
        build_course_vla("unused", full=False, stages=stages, localise=None)
    with pytest.raises(ValueError, match="loc_batch > 0 but the localisation objective"):
        build_course_vla("unused", full=False, stages=stages[::-1], localise=LocaliseConfig(from_stage=1))
    with pytest.raises(ValueError, match="warmup_steps must be an int >= 0"):
        LocaliseConfig(warmup_steps=-1)
    with pytest.raises(ValueError, match="lr must be a positive number"):
        LocaliseConfig(lr=float("nan"))
    with pytest.raises(ValueError, match="from_stage must be a stage index"):
        build_course_vla("unused", full=False, stages=stages, localise=LocaliseConfig(from_stage=2))
