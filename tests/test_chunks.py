"""Action chunks (lesson 06): the VLA answers with the next K actions and the rollout executes them;
OpenVLA-OFT's continuous (L1) head answers a whole chunk in one forward pass."""

import numpy as np
import pytest
import torch

from vla_lessons.model.vla import (PrismaticVLAConfig, add_l1_head, add_proprio, load_vla, save_vla, set_action_chunk,
                                   vla_from_vlm)
from vla_lessons.train.finetune import (ActionFrames, FinetuneConfig, action_loss, chunk_indices, evaluate_actions,
                                        finetune_vla, vla_policy)

from conftest import STATE_STATS, TOY_STATS, toy_vlm


@pytest.fixture(scope="module")
def parts():
    return toy_vlm()


def _frames(n=12, seed=0):
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-0.02, 0.02, (n, 7)).astype(np.float32)
    actions[:, 5], actions[:, 6] = 0.0, rng.integers(0, 2, n)
    return ActionFrames(rng.integers(0, 255, (n, 28, 28, 3), dtype=np.uint8), ["pick up the red cube"] * n,
                        actions, np.array([0] * 5 + [1] * 3 + [2] * 4), ["pick"] * n)


def test_chunk_indices_stay_in_the_episode_and_repeat_its_last_step():
    episodes = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    got = chunk_indices(episodes, np.array([0, 1, 2, 3, 5, 7]), 3)
    np.testing.assert_array_equal(got, [[0, 1, 2], [1, 2, 2], [2, 2, 2], [3, 4, 4], [5, 6, 7], [7, 8, 8]])
    np.testing.assert_array_equal(chunk_indices(episodes, np.arange(9), 1), np.arange(9)[:, None])
    with pytest.raises(ValueError, match="contiguous"):
        chunk_indices(np.array([0, 1, 0]), np.array([0]), 2)
    with pytest.raises(ValueError, match="positive int"):
        chunk_indices(episodes, np.array([0]), 0)
    with pytest.raises(ValueError, match=r"step indices in \[0, 8\]"):
        chunk_indices(episodes, np.array([9]), 2)


def test_a_chunked_vla_trains_on_the_next_actions_and_keeps_its_chunk_size(parts, tmp_path):
    tok, vlm = parts
    torch.manual_seed(0)
    vla = set_action_chunk(vla_from_vlm(vlm, tok, {"tabletop": TOY_STATS}), 3)
    frames = _frames()
    _, logits, targets = action_loss(vla, frames, np.array([0, 3, 6]), unnorm_key="tabletop")
    assert logits.shape == (3, 21, vla.vocab_size) and targets.shape == (3, 21)
    want = vla.action_tokenizer.encode(frames.actions[[[0, 1, 2], [3, 4, 4], [6, 7, 7]]], "tabletop")
    np.testing.assert_array_equal(targets.numpy(), want.reshape(3, 21))  # episode 0 from step 0; the rest padded
    result = finetune_vla(vla, frames, FinetuneConfig(steps=3, batch_size=4, lr=3e-3, log_every=3),
                          unnorm_key="tabletop", progress=False)
    assert np.isfinite(result.history[-1]["loss"])
    images = frames.images[:2]
    chunks = vla.predict_action_chunks(images, frames.instructions[:2], "tabletop")
    assert chunks.shape == (2, 3, 7)
    np.testing.assert_array_equal(vla.predict_actions(images, frames.instructions[:2], "tabletop"), chunks[:, 0])
    np.testing.assert_array_equal(vla.predict_action_chunk(images[0], frames.instructions[0], "tabletop"), chunks[0])
    save_vla(vla, tmp_path / "vla", dtype=torch.float32)
    again = load_vla(tmp_path / "vla")
    assert again.config.chunk_size == 3
    np.testing.assert_array_equal(again.predict_action_chunks(images, frames.instructions[:2], "tabletop"), chunks)
    with_state = add_proprio(vla, STATE_STATS)
    assert with_state.config.chunk_size == 3, "adding an input keeps the chunk size"
    with pytest.raises(ValueError, match="chunk_size must be an int in"):
        set_action_chunk(vla, 0)
    with pytest.raises(ValueError, match="chunk_size must be an int in"):
        PrismaticVLAConfig(chunk_size=True)


def test_the_rollout_executes_each_chunk_before_asking_again(parts):
    from vla_lessons.deploy.evaluate import rollout_batch

    calls = []

    def hold_still(images, instructions):
        calls.append(len(images))
        return np.zeros((len(images), 4, 7))

    hold_still.chunk_size = 4
    results = rollout_batch(hold_still, ["pick", "push"], [10_000_000, 10_000_001])
    # pick ends after 60 steps, push after 70: a call every 4 steps for each
    assert [r.steps for r in results] == [60, 70] and calls == [2] * 15 + [1] * 3
    hold_still.chunk_size = 3
    with pytest.raises(ValueError, match=r"shape \(2, 3, 7\) \(chunk_size 3\)"):
        rollout_batch(hold_still, ["pick", "push"], [10_000_000, 10_000_001])
    hold_still.chunk_size = 0
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        rollout_batch(hold_still, ["pick"], [10_000_000])
    tok, vlm = parts
    vla = set_action_chunk(vla_from_vlm(vlm, tok, {"tabletop": TOY_STATS}), 5)
    policy = vla_policy(vla, "tabletop")
    assert policy.chunk_size == 5 and policy(np.zeros((2, 28, 28, 3), np.uint8), ["push the cube"] * 2).shape == (2, 5, 7)


def test_the_l1_head_answers_a_chunk_in_one_pass_and_learns_with_the_l1_loss(parts, tmp_path):
    tok, vlm = parts
    torch.manual_seed(0)
    tokens = vla_from_vlm(vlm, tok, {"tabletop": {**TOY_STATS, "proprio": STATE_STATS}}, proprio_dim=8)
    vla = add_l1_head(tokens, 3)
    assert vla.config.action_head == "l1" and vla.action_queries.weight.shape == (3, 192)
    assert all(torch.equal(a, vla.state_dict()[k]) for k, a in tokens.state_dict().items()), "every weight is copied"
    rng = np.random.default_rng(0)
    frames = _frames()
    frames.states = rng.uniform(0.0, 0.2, (len(frames), 8)).astype(np.float32)
    loss, predicted, targets = action_loss(vla, frames, np.array([0, 3, 6]), unnorm_key="tabletop")
    want = vla.action_tokenizer.normalizer("tabletop").normalize(frames.actions[[[0, 1, 2], [3, 4, 4], [6, 7, 7]]])
    np.testing.assert_allclose(targets.numpy(), want, atol=1e-6)
    assert predicted.shape == (3, 3, 7)
    np.testing.assert_allclose(float(loss.detach()), float((predicted - targets).abs().mean()), rtol=1e-5)
    before = evaluate_actions(vla, frames, unnorm_key="tabletop")
    assert set(before) == {"loss", "l1"}, "no token accuracy without tokens"
    finetune_vla(vla, frames, FinetuneConfig(steps=30, batch_size=8, lr=3e-3, log_every=10),
                 unnorm_key="tabletop", progress=False)
    after = evaluate_actions(vla, frames, unnorm_key="tabletop")
    assert after["loss"] < 0.7 * before["loss"], (before, after)
    chunks = vla.predict_action_chunks(frames.images[:4], frames.instructions[:4], "tabletop", proprio=frames.states[:4])
    low, high = np.array(TOY_STATS["action"]["q01"]), np.array(TOY_STATS["action"]["q99"])
    assert chunks.shape == (4, 3, 7) and (chunks >= low - 1e-9).all() and (chunks <= high + 1e-9).all()
    assert not np.allclose(chunks[0], chunks[1]), "the chunk depends on the observation"
    save_vla(vla, tmp_path / "l1", dtype=torch.float32)
    again = load_vla(tmp_path / "l1")
    np.testing.assert_allclose(again.predict_action_chunks(frames.images[:4], frames.instructions[:4], "tabletop",
                                                           proprio=frames.states[:4]), chunks, atol=1e-6)
    with pytest.raises(ValueError, match="continuous head"):
        vla.generate_action_ids(torch.zeros(1, 3, dtype=torch.long), vla.preprocess(frames.images[:1]))
    with pytest.raises(ValueError, match="add_l1_head"):
        set_action_chunk(vla, 4)
    with pytest.raises(ValueError, match="label_sigma"):
        action_loss(vla, frames, np.arange(2), unnorm_key="tabletop", label_sigma=2.0)
    with pytest.raises(ValueError, match="action tokens"):
        tokens.normalized_action_chunks(torch.zeros(1, 3, dtype=torch.long), tokens.preprocess(frames.images[:1]))
    with pytest.raises(ValueError, match="action_head must be one of"):
        PrismaticVLAConfig(action_head="diffusion")


def test_the_build_refuses_a_bad_chunk_setting():
    from vla_lessons.train.build_vla import build_course_vla

    stages = (FinetuneConfig(steps=2), FinetuneConfig(steps=2))
    for bad in ((2, 4), (0, 0), [1, 4], (1,), ("1", 4), (1, True)):
        with pytest.raises(ValueError, match=r"chunk must be None or \(stage, K\)"):
            build_course_vla("unused", full=False, stages=stages, chunk=bad, localise=None)
    with pytest.raises(ValueError, match="pass chunk="):
        build_course_vla("unused", full=False, stages=stages, chunk=None, action_head="l1", localise=None)
    with pytest.raises(ValueError, match="action_head must be"):
        build_course_vla("unused", full=False, stages=stages, chunk=(1, 2), action_head="bins", localise=None)
    soft = (FinetuneConfig(steps=2), FinetuneConfig(steps=2, label_sigma=2.0))
    with pytest.raises(ValueError, match="label_sigma"):
        build_course_vla("unused", full=False, stages=soft, chunk=(1, 2), action_head="l1", localise=None)
