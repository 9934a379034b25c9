"""Grounding (lesson 06): the VLA says where the task's object and receptacle are, then acts on it."""

import numpy as np
import pytest
import torch

from vla_lessons.model.grounding import GROUND_STEPS, GROUNDING_DIM, GroundingHead, task_grounding
from vla_lessons.model.vla import (PrismaticVLAConfig, add_grounding, add_l1_head, encode_action_prompts, load_vla,
                                   save_vla, vla_from_vlm)
from vla_lessons.train.finetune import (ActionFrames, FinetuneConfig, action_loss, evaluate_actions, finetune_vla,
                                        vla_policy)

from conftest import STATE_STATS, TOY_STATS, toy_vlm

#: Grounding statistics (metres) for the toy VLA: object xy, receptacle xy.
GROUND_STATS = {"q01": [0.3, -0.2, 0.0, -0.2], "q99": [0.6, 0.2, 0.6, 0.2]}


@pytest.fixture(scope="module")
def parts():
    return toy_vlm()


def _frames(n=12, seed=0):
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-0.02, 0.02, (n, 7)).astype(np.float32)
    actions[:, 5], actions[:, 6] = 0.0, rng.integers(0, 2, n)
    episodes = np.array([0] * 5 + [1] * 3 + [2] * 4)
    where = rng.uniform([0.3, -0.2, 0.0, -0.2], [0.6, 0.2, 0.6, 0.2], (3, 4)).astype(np.float32)
    return ActionFrames(rng.integers(0, 255, (n, 28, 28, 3), dtype=np.uint8), ["pick up the red cube"] * n,
                        actions, episodes, ["pick"] * n, rng.uniform(0.0, 0.2, (n, 8)).astype(np.float32),
                        grounding=where[episodes])


def _grounding_vla(parts, chunk=3):
    tok, vlm = parts
    torch.manual_seed(0)
    tokens = vla_from_vlm(vlm, tok, {"tabletop": {**TOY_STATS, "proprio": STATE_STATS}}, proprio_dim=8)
    return add_grounding(add_l1_head(tokens, chunk), GROUND_STATS)


def test_task_grounding_is_where_the_task_object_and_receptacle_start():
    from vla_lessons.sim import TabletopEnv
    from vla_lessons.train.privileged import privileged_features

    sim = TabletopEnv(render_images=False)
    try:
        with pytest.raises(ValueError, match="reset"):
            task_grounding(sim)
        for family in ("pick", "place"):
            sim.reset(seed=5, options={"task": family})
            got = task_grounding(sim)
            target = next(o for o in sim.scene_objects() if o.kind == "object" and o.is_target)
            assert got.shape == (GROUNDING_DIM,) and got.dtype == np.float32
            np.testing.assert_allclose(got[:2], target.position[:2], atol=1e-6)
            assert (np.abs(got[2:]).sum() > 0) == (family == "place"), "a receptacle only for place"
            np.testing.assert_array_equal(privileged_features(sim)[:GROUNDING_DIM], got)
    finally:
        sim.close()


def test_the_grounding_head_reads_visual_tokens_with_the_query():
    head = GroundingHead(16, 4)
    torch.manual_seed(0)
    out = head(torch.randn(3, 16), torch.randn(3, 5, 16))
    assert out.shape == (3, 4)
    with pytest.raises(ValueError, match=r"need query \(B, D\) and tokens \(B, N, D\)"):
        head(torch.randn(3, 16), torch.randn(2, 5, 16))


def test_a_grounding_vla_says_where_before_it_acts(parts):
    vla = _grounding_vla(parts).eval()
    assert vla.config.grounding_dim == GROUNDING_DIM and vla.config.visual_position == "learned-2d"
    assert vla.config.norm_stats["tabletop"]["grounding"]["q01"] == GROUND_STATS["q01"]
    frames = _frames()
    enc_ids = encode_action_prompts(vla.tokenizer, frames.instructions[:2])["input_ids"]
    pixels = vla.preprocess(frames.images[:2])
    proprio = vla.normalize_proprio(frames.states[:2], "tabletop")
    near = vla.normalize_grounding(frames.grounding[:2], "tabletop")
    far = vla.normalize_grounding(frames.grounding[:2] + 0.1, "tabletop")
    with torch.no_grad():
        chunk_near, said_near = vla.normalized_action_chunks(enc_ids, pixels, proprio=proprio, grounding=near,
                                                             return_grounding=True)
        chunk_far, said_far = vla.normalized_action_chunks(enc_ids, pixels, proprio=proprio, grounding=far,
                                                           return_grounding=True)
        alone = vla.normalized_grounding(enc_ids, pixels, proprio=proprio)
    assert chunk_near.shape == (2, 3, 7) and said_near.shape == (2, GROUNDING_DIM)
    torch.testing.assert_close(said_near, said_far)  # the query precedes the where token: it cannot peek
    torch.testing.assert_close(said_near, alone, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(chunk_near, chunk_far), "the actions read the where token"
    with pytest.raises(ValueError, match="acts on a grounding"):
        vla.normalized_action_chunks(enc_ids, pixels, proprio=proprio)
    with pytest.raises(ValueError, match=r"grounding must be a float tensor \(2, 4\)"):
        vla.normalized_action_chunks(enc_ids, pixels, proprio=proprio, grounding=near[:, :2])
    with pytest.raises(ValueError, match="NaN"):
        vla.normalize_grounding(np.full((2, 4), np.nan), "tabletop")
    with pytest.raises(ValueError, match=r"groundings must be \(B, 4\)"):
        vla.normalize_grounding(np.zeros(4), "tabletop")
    metres = vla.unnormalize_grounding(np.array([[-1.0, 1.0, 0.0, 5.0]]), "tabletop")
    np.testing.assert_allclose(metres, [[0.3, 0.2, 0.3, 0.2]], atol=1e-12)


def test_a_grounding_vla_learns_where_and_grounds_itself_at_run_time(parts, tmp_path):
    vla = _grounding_vla(parts)
    frames = _frames()
    extras = {}
    loss, predicted, targets = action_loss(vla, frames, np.arange(12), unnorm_key="tabletop", extras=extras)
    assert predicted.shape == (12, 3, 7) and np.isfinite(float(loss.detach()))
    assert set(extras) == {"action_loss", "ground_l1", "ground_cm"}
    act_only = float((predicted - targets).abs().mean())
    assert extras["action_loss"] == pytest.approx(act_only, rel=1e-5)
    assert float(loss.detach()) == pytest.approx(act_only + extras["ground_l1"], rel=1e-5)
    later = np.flatnonzero(np.arange(12) - np.array([0, 0, 0, 0, 0, 5, 5, 5, 8, 8, 8, 8]) >= GROUND_STEPS)
    late = {}
    loss_late, predicted_late, _ = action_loss(vla, frames, later, unnorm_key="tabletop", extras=late)
    assert set(late) == {"action_loss"}, "only an episode's first steps teach the grounding"
    before = evaluate_actions(vla, frames, unnorm_key="tabletop")
    assert set(before) == {"loss", "l1", "ground_cm"}
    result = finetune_vla(vla, frames, FinetuneConfig(steps=40, batch_size=6, lr=3e-3, log_every=10, ground_batch=4),
                          unnorm_key="tabletop", progress=False)
    assert {"ground_l1", "ground_cm"} <= set(result.history[-1])
    after = evaluate_actions(vla, frames, unnorm_key="tabletop")
    assert after["ground_cm"] < 0.7 * before["ground_cm"] and after["loss"] < before["loss"], (before, after)
    images, said = frames.images[:4], frames.instructions[:4]
    where = vla.predict_grounding(images, said, "tabletop", proprio=frames.states[:4])
    assert where.shape == (4, GROUNDING_DIM) and where.dtype == np.float64
    own = vla.predict_action_chunks(images, said, "tabletop", proprio=frames.states[:4])
    moved = vla.predict_action_chunks(images, said, "tabletop", proprio=frames.states[:4], grounding=where + 0.05)
    assert not np.allclose(own, moved), "a grounding passed in is the one acted on"
    first = vla.predict_action(images[0], said[0], "tabletop", proprio=frames.states[0], grounding=where[0])
    np.testing.assert_allclose(first, own[0, 0], atol=1e-6)
    save_vla(vla, tmp_path / "grounding", dtype=torch.float32)
    again = load_vla(tmp_path / "grounding")
    assert again.config.norm_stats["tabletop"]["grounding"] == vla.config.norm_stats["tabletop"]["grounding"]
    np.testing.assert_allclose(again.predict_grounding(images, said, "tabletop", proprio=frames.states[:4]), where,
                               atol=1e-6)
    policy = vla_policy(again, "tabletop")
    assert policy.needs_grounding and policy.needs_state
    np.testing.assert_allclose(policy.ground(images, said, frames.states[:4]), where, atol=1e-6)
    no_truth = ActionFrames(frames.images, frames.instructions, frames.actions, frames.episodes, frames.families,
                            frames.states)
    with pytest.raises(ValueError, match="frames have no grounding"):
        action_loss(vla, no_truth, np.arange(3), unnorm_key="tabletop")


def test_a_left_padded_batch_answers_as_each_row_alone(parts):
    vla = _grounding_vla(parts).eval()
    frames = _frames()
    said = ["pick up the red cube", "put the blue ball in the bowl", "push the green cylinder left"]
    images, states = frames.images[:3], frames.states[:3]
    where = vla.predict_grounding(images, said, "tabletop", proprio=states)
    chunks = vla.predict_action_chunks(images, said, "tabletop", proprio=states, grounding=where)
    for i in range(3):
        alone = vla.predict_grounding(images[i:i + 1], said[i:i + 1], "tabletop", proprio=states[i:i + 1])
        np.testing.assert_allclose(alone, where[i:i + 1], atol=1e-6)
        np.testing.assert_allclose(vla.predict_action_chunks(images[i:i + 1], said[i:i + 1], "tabletop",
                                                             proprio=states[i:i + 1], grounding=where[i:i + 1]),
                                   chunks[i:i + 1], atol=1e-6)


def test_a_grounding_vla_with_the_wrist_camera_evaluates(parts):
    from vla_lessons.model.vla import add_wrist_camera

    tok, vlm = parts
    torch.manual_seed(0)
    tokens = add_wrist_camera(vla_from_vlm(vlm, tok, {"tabletop": {**TOY_STATS, "proprio": STATE_STATS}}, proprio_dim=8))
    vla = add_grounding(add_l1_head(tokens, 2), GROUND_STATS)
    frames = _frames()
    frames.wrist_images = frames.images[:, ::-1].copy()
    metrics = evaluate_actions(vla, frames, unnorm_key="tabletop")
    assert set(metrics) == {"loss", "l1", "ground_cm"} and metrics["loss"] == pytest.approx(metrics["l1"], rel=1e-5)


def test_grounding_is_refused_where_it_cannot_work(parts):
    tok, vlm = parts
    tokens = vla_from_vlm(vlm, tok, {"tabletop": TOY_STATS})
    with pytest.raises(ValueError, match="add_l1_head first"):
        add_grounding(tokens, GROUND_STATS)
    with pytest.raises(ValueError, match="needs action_head='l1'"):
        PrismaticVLAConfig(grounding_dim=4)
    with pytest.raises(ValueError, match="'grounding' statistics"):
        PrismaticVLAConfig(grounding_dim=4, action_head="l1", norm_stats={"tabletop": TOY_STATS})
    with pytest.raises(ValueError, match="grounding_dim must be an int"):
        PrismaticVLAConfig(grounding_dim=True)
    with pytest.raises(ValueError, match="does not ground"):
        tokens.predict_actions(np.zeros((1, 28, 28, 3), np.uint8), ["push the cube"], "tabletop",
                               grounding=np.zeros((1, 4)))
    with pytest.raises(ValueError, match="does not ground"):
        tokens.predict_grounding(np.zeros((1, 28, 28, 3), np.uint8), ["push the cube"], "tabletop")
    with pytest.raises(ValueError, match="does not ground"):
        tokens.unnormalize_grounding(np.zeros((1, 4)), "tabletop")
    with pytest.raises(ValueError, match=r"got lengths \[2, 4\]"):
        PrismaticVLAConfig(grounding_dim=4, action_head="l1",
                           norm_stats={"tabletop": {**TOY_STATS, "grounding": {"q01": [0, 0, 0, 0], "q99": [1, 1]}}})
    assert not vla_policy(tokens, "tabletop").needs_grounding
    with pytest.raises(ValueError, match="already grounds"):
        add_grounding(_grounding_vla(parts), GROUND_STATS)
    with pytest.raises(ValueError, match="ground_batch > 0 needs a grounding VLA"):
        finetune_vla(add_l1_head(tokens, 2), _frames(), FinetuneConfig(steps=1, ground_batch=2), progress=False)
    for bad in (dict(ground_batch=-1), dict(ground_batch=True), dict(ground_noise=float("nan")),
                dict(ground_weight=-1.0)):
        with pytest.raises(ValueError, match="ground_"):
            FinetuneConfig(steps=1, **bad)


def test_the_rollout_grounds_each_episode_once_and_passes_it_back():
    from vla_lessons.deploy.evaluate import rollout_batch

    grounded, seen = [], []

    def hold_still(images, instructions, *, grounding=None):
        seen.append(grounding.copy())
        return np.zeros((len(images), 5, 7))

    def ground(images, instructions):
        grounded.append(len(images))
        return np.arange(len(images) * 4, dtype=np.float64).reshape(len(images), 4)

    hold_still.chunk_size, hold_still.needs_grounding, hold_still.ground = 5, True, ground
    results = rollout_batch(hold_still, ["pick", "push"], [10_000_000, 10_000_001])
    assert [r.steps for r in results] == [60, 70] and grounded == [2], "one grounding per episode, at reset"
    np.testing.assert_array_equal(seen[0], [[0, 1, 2, 3], [4, 5, 6, 7]])
    np.testing.assert_array_equal(seen[-1], [[4, 5, 6, 7]])  # the episode still running keeps its own
    hold_still.ground = lambda images, instructions: np.full((len(images), 4), np.nan)
    with pytest.raises(ValueError, match="policy.ground must return finite"):
        rollout_batch(hold_still, ["pick"], [10_000_000])


def test_the_build_refuses_a_bad_grounding_setting():
    from vla_lessons.train.build_vla import build_course_vla

    stages = (FinetuneConfig(steps=2), FinetuneConfig(steps=2))
    with pytest.raises(ValueError, match="ground_from must be None or a stage index"):
        build_course_vla("unused", full=False, stages=stages, chunk=(1, 2), action_head="l1", ground_from=2,
                         localise=None)
    with pytest.raises(ValueError, match="needs action_head='l1'"):
        build_course_vla("unused", full=False, stages=stages, chunk=(1, 2), action_head="tokens", ground_from=1,
                         localise=None)
    with pytest.raises(ValueError, match="chunk stage at or before"):
        build_course_vla("unused", full=False, stages=stages, chunk=(1, 2), action_head="l1", ground_from=0,
                         localise=None)
    early = (FinetuneConfig(steps=2, ground_batch=4), FinetuneConfig(steps=2, ground_batch=4))
    with pytest.raises(ValueError, match="ground_batch > 0 but grounding starts later or never"):
        build_course_vla("unused", full=False, stages=early, chunk=(0, 2), action_head="l1", ground_from=1,
                         localise=None)
    with pytest.raises(ValueError, match="ground_batch > 0 but grounding starts later or never"):
        build_course_vla("unused", full=False, stages=early, chunk=(0, 2), action_head="l1", ground_from=None,
                         localise=None)
