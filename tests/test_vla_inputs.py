"""The VLA's extra inputs (lesson 06): learned 2-D patch positions, the proprioception token, the wrist camera."""

import numpy as np
import pytest
import torch

from vla_lessons.model.vla import add_proprio, add_wrist_camera, load_vla, save_vla, vla_from_vlm
from vla_lessons.model.vlm import PatchPosition2D, PrismaticVLMConfig
from vla_lessons.train.finetune import ActionFrames, FinetuneConfig, action_loss, finetune_vla, vla_policy

from conftest import STATE_STATS, TOY_STATS, toy_vlm


@pytest.fixture(scope="module")
def parts():
    return toy_vlm()


def _frames(n=16, seed=0):
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-0.02, 0.02, (n, 7)).astype(np.float32)
    actions[:, 5], actions[:, 6] = 0.0, rng.integers(0, 2, n)
    states = rng.uniform(0.0, 0.2, (n, 8)).astype(np.float32)
    return ActionFrames(rng.integers(0, 255, (n, 28, 28, 3), dtype=np.uint8), ["pick up the red cube"] * n,
                        actions, np.arange(n) // 4, ["pick"] * n, states,
                        rng.integers(0, 255, (n, 28, 28, 3), dtype=np.uint8))


def test_patch_positions_start_as_a_no_op_and_are_row_plus_column():
    pos = PatchPosition2D(3, 5)
    assert pos().shape == (9, 5) and float(pos().detach().abs().sum()) == 0.0
    with torch.no_grad():
        pos.rows[1] = 1.0
        pos.cols[2] = 10.0
    table = pos().reshape(3, 3, 5)[..., 0]  # row-major patch order
    assert table[1, 2] == 11.0 and table[0, 2] == 10.0 and table[1, 0] == 1.0 and table[0, 0] == 0.0
    with pytest.raises(ValueError, match="visual_position"):
        PrismaticVLMConfig(visual_position="sinusoidal")


def test_a_vlm_gains_2d_positions_without_changing_its_output(parts):
    tok, vlm = parts
    plain = vla_from_vlm(vlm, tok, {"tabletop": TOY_STATS}).eval()
    with_pos = vla_from_vlm(vlm, tok, {"tabletop": TOY_STATS}, visual_position="learned-2d").eval()
    assert plain.patch_position is None and with_pos.patch_position.rows.shape == (2, 192)
    image = np.random.default_rng(1).integers(0, 255, (28, 28, 3), dtype=np.uint8)
    np.testing.assert_array_equal(plain.predict_action(image, "pick up the red cube", "tabletop"),
                                  with_pos.predict_action(image, "pick up the red cube", "tabletop"))
    frames = _frames()
    loss, _, _ = action_loss(with_pos, frames, np.arange(8), unnorm_key="tabletop")
    loss.backward()
    assert with_pos.patch_position.rows.grad.abs().sum() > 0, "the positions must be trainable"


def test_proprio_token_is_read_normalised_saved_and_checked(parts, tmp_path):
    tok, vlm = parts
    stats = {"tabletop": {**TOY_STATS, "proprio": STATE_STATS}}
    torch.manual_seed(0)
    vla = vla_from_vlm(vlm, tok, stats, proprio_dim=8).eval()
    norm = vla.normalize_proprio([[0.2, 0.0, 0.2, 0.0, 1.2, 0.0, 1.0, 5.0]], "tabletop")
    np.testing.assert_allclose(norm.numpy(), [[0, 0, 1, 0, 0, 0, 1, 0]], atol=1e-6)  # clipped; constant dim -> 0
    image = np.random.default_rng(1).integers(0, 255, (28, 28, 3), dtype=np.uint8)
    low = vla.predict_action(image, "pick up the red cube", "tabletop", proprio=[0.1] * 8)
    high = vla.predict_action(image, "pick up the red cube", "tabletop", proprio=[0.3] * 8)
    assert low.shape == (7,) and not np.array_equal(low, high), "the state must reach the action"
    with pytest.raises(ValueError, match="reads the robot state"):
        vla.predict_action(image, "pick up the red cube", "tabletop")
    with pytest.raises(ValueError, match=r"\(B, 8\)"):
        vla.predict_action(image, "pick up the red cube", "tabletop", proprio=[0.1] * 7)
    with pytest.raises(ValueError, match="NaN"):
        vla.predict_action(image, "pick up the red cube", "tabletop", proprio=[np.nan] * 8)
    with pytest.raises(ValueError, match="proprio"):
        vla_from_vlm(vlm, tok, {"tabletop": TOY_STATS}, proprio_dim=8)  # no state statistics
    save_vla(vla, tmp_path / "vla", dtype=torch.float32)
    again = load_vla(tmp_path / "vla")
    assert again.config.proprio_dim == 8
    np.testing.assert_array_equal(again.predict_action(image, "pick up the red cube", "tabletop", proprio=[0.3] * 8),
                                  high)
    plain = vla_from_vlm(vlm, tok, {"tabletop": TOY_STATS}).eval()
    with pytest.raises(ValueError, match="reads no robot state"):
        plain.predict_actions(image[None], ["pick up the red cube"], "tabletop", proprio=[[0.1] * 8])


def test_proprio_vla_trains_and_rolls_out_with_states(parts):
    from vla_lessons.deploy.evaluate import rollout_batch

    tok, vlm = parts
    torch.manual_seed(0)
    vla = vla_from_vlm(vlm, tok, {"tabletop": {**TOY_STATS, "proprio": STATE_STATS}}, proprio_dim=8,
                       visual_position="learned-2d")
    frames = _frames()
    result = finetune_vla(vla, frames, FinetuneConfig(steps=4, batch_size=4, lr=3e-3, log_every=2),
                          unnorm_key="tabletop", progress=False)
    assert len(result.history) == 2
    assert float(vla.proprio_projector.fc1.weight.grad.abs().sum()) > 0
    no_states = ActionFrames(frames.images, frames.instructions, frames.actions, frames.episodes, frames.families)
    with pytest.raises(ValueError, match="no states"):
        action_loss(vla, no_states, np.arange(4), unnorm_key="tabletop")
    policy = vla_policy(vla, "tabletop")
    assert policy.needs_state
    seen = []

    def spy(images, instructions, states):
        seen.append(states.shape)
        return policy(images, instructions, states)

    spy.needs_state = True
    results = rollout_batch(spy, ["pick"], [10_000_000])
    assert results[0].steps == 60 and seen[0] == (1, 8)


def test_gaussian_bin_targets_are_a_normalised_bump_on_the_action_block():
    from vla_lessons.train.finetune import gaussian_bin_targets

    soft = gaussian_bin_targets(torch.tensor([[1000, 768]]), 1024, 256, 2.0)
    assert soft.shape == (1, 2, 1024)
    np.testing.assert_allclose(soft.sum(-1).numpy(), 1.0, rtol=1e-6)
    assert float(soft[..., :768].sum()) == 0.0, "no mass on text ids"
    assert int(soft[0, 0].argmax()) == 1000 and soft[0, 0, 999] == soft[0, 0, 1001] > soft[0, 0, 998]
    assert int(soft[0, 1].argmax()) == 768  # a bump cut at the block's edge is renormalised
    with pytest.raises(ValueError, match="action ids"):
        gaussian_bin_targets(torch.tensor([5]), 1024, 256, 2.0)
    with pytest.raises(ValueError, match="label_sigma"):
        FinetuneConfig(steps=1, label_sigma=-1.0)


def test_soft_label_loss_is_the_cross_entropy_in_the_narrow_limit(parts):
    tok, vlm = parts
    vla = vla_from_vlm(vlm, tok, {"tabletop": {**TOY_STATS, "proprio": STATE_STATS}}, proprio_dim=8).eval()
    frames = _frames()
    with torch.no_grad():
        hard, _, _ = action_loss(vla, frames, np.arange(8), unnorm_key="tabletop")
        narrow, _, _ = action_loss(vla, frames, np.arange(8), unnorm_key="tabletop", label_sigma=0.05)
        wide, _, _ = action_loss(vla, frames, np.arange(8), unnorm_key="tabletop", label_sigma=5.0)
    assert float(narrow) == pytest.approx(float(hard), rel=1e-5) and float(wide) != pytest.approx(float(hard))


def test_vision_lr_scale_sets_the_vision_sides_learning_rate(parts):
    tok, vlm = parts
    torch.manual_seed(0)
    vla = vla_from_vlm(vlm, tok, {"tabletop": {**TOY_STATS, "proprio": STATE_STATS}}, proprio_dim=8)
    before = {k: v.clone() for k, v in vla.state_dict().items()}
    finetune_vla(vla, _frames(), FinetuneConfig(steps=2, batch_size=4, lr=1e-3, log_every=1, vision_lr_scale=0.0),
                 unnorm_key="tabletop", progress=False)
    after = vla.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and not any(k.startswith(("vision_backbone.", "projector.")) for k in moved)
    assert any(k.startswith("language_model.") for k in moved) and any(k.startswith("proprio_projector.") for k in moved)


def test_add_proprio_keeps_every_weight_and_adds_the_state(parts):
    from vla_lessons.model.vla import add_proprio

    tok, vlm = parts
    vla = vla_from_vlm(vlm, tok, {"tabletop": TOY_STATS}).eval()
    torch.manual_seed(0)
    more = add_proprio(vla, STATE_STATS).eval()
    assert more.config.proprio_dim == 8 and more.config.norm_stats["tabletop"]["proprio"] == STATE_STATS
    assert more.config.norm_stats["tabletop"]["action"] == vla.config.norm_stats["tabletop"]["action"]
    old = vla.state_dict()
    for k, v in more.state_dict().items():
        if not k.startswith("proprio_projector."):
            assert torch.equal(v, old[k]), k
    with pytest.raises(ValueError, match="already"):
        add_proprio(more, STATE_STATS)


def test_wrist_camera_adds_n_tokens_that_reach_the_action_and_survive_save_load(parts, tmp_path):
    tok, vlm = parts
    torch.manual_seed(0)
    scene_only = vla_from_vlm(vlm, tok, {"tabletop": TOY_STATS}).eval()
    vla = add_proprio(add_wrist_camera(scene_only), STATE_STATS).eval()
    assert vla.config.num_images == 2 and vla.config.proprio_dim == 8
    rng = np.random.default_rng(2)
    image, wrist_a, wrist_b = rng.integers(0, 255, (3, 28, 28, 3), dtype=np.uint8)
    state = [0.2] * 8
    a = vla.predict_action(image, "pick up the red cube", "tabletop", proprio=state, wrist_image=wrist_a)
    b = vla.predict_action(image, "pick up the red cube", "tabletop", proprio=state, wrist_image=wrist_b)
    assert a.shape == (7,) and not np.array_equal(a, b), "the wrist image must reach the action"
    enc = tok(["<s>"], add_special_tokens=False, return_tensors="pt")["input_ids"]
    pixels = vla.preprocess(image[None])
    out = vla(enc, pixels, proprio=vla.normalize_proprio([state], "tabletop"),
              wrist_pixel_values=vla.preprocess(wrist_a[None]))
    assert out.logits.shape[1] == enc.shape[1] + 2 * vla.num_patches + 1, "scene N + wrist N + 1 state token"
    with torch.no_grad():  # the order after <s>: scene tokens, wrist tokens, the state token
        n, norm = vla.num_patches, vla.normalize_proprio([state], "tabletop")
        embeds, _, _ = vla.prepare_inputs_embeds(enc, pixels, extra_tokens=vla.extra_tokens(
            1, norm, vla.preprocess(wrist_a[None])))
        torch.testing.assert_close(embeds[0, 1:1 + n], vla.visual_tokens(pixels)[0])
        torch.testing.assert_close(embeds[0, 1 + n:1 + 2 * n], vla.visual_tokens(vla.preprocess(wrist_a[None]))[0])
        torch.testing.assert_close(embeds[0, 1 + 2 * n], vla.proprio_projector(norm)[0, 0])
    with pytest.raises(ValueError, match="wrist_pixel_values must be float32"):
        vla(enc, pixels, proprio=norm, wrist_pixel_values=pixels[:, :3])
    with pytest.raises(ValueError, match="go with the scene image"):
        vla(enc, proprio=norm)
    with pytest.raises(ValueError, match="wrist"):
        vla.predict_action(image, "pick up the red cube", "tabletop", proprio=state)
    with pytest.raises(ValueError, match="wrist_images must be uint8"):
        vla.predict_actions(image[None], ["pick up the red cube"], "tabletop", proprio=[state],
                            wrist_images=wrist_a[None, :14])
    with pytest.raises(ValueError, match="scene camera only"):
        scene_only.predict_actions(image[None], ["pick up the red cube"], "tabletop", wrist_images=wrist_a[None])
    with pytest.raises(ValueError, match="already reads the wrist"):
        add_wrist_camera(vla)
    with pytest.raises(ValueError, match="num_images"):
        vla_from_vlm(vlm, tok, {"tabletop": TOY_STATS}, num_images=3)
    save_vla(vla, tmp_path / "vla", dtype=torch.float32)
    again = load_vla(tmp_path / "vla")
    assert again.config.num_images == 2
    np.testing.assert_array_equal(
        again.predict_action(image, "pick up the red cube", "tabletop", proprio=state, wrist_image=wrist_a), a)


def test_wrist_vla_trains_on_wrist_frames_and_rolls_out_with_the_wrist_camera(parts):
    from vla_lessons.deploy.evaluate import rollout_batch

    tok, vlm = parts
    torch.manual_seed(0)
    vla = add_wrist_camera(vla_from_vlm(vlm, tok, {"tabletop": TOY_STATS}))
    frames = _frames()
    loss, _, _ = action_loss(vla, frames, np.arange(8), unnorm_key="tabletop")
    shuffled = ActionFrames(frames.images, frames.instructions, frames.actions, frames.episodes, frames.families,
                            frames.states, frames.wrist_images[::-1].copy())
    other, _, _ = action_loss(vla, shuffled, np.arange(8), unnorm_key="tabletop")
    assert float(loss.detach()) != float(other.detach()), "the loss must depend on the wrist images"
    finetune_vla(vla, frames, FinetuneConfig(steps=2, batch_size=4, lr=3e-3, log_every=1),
                 unnorm_key="tabletop", progress=False)
    no_wrist = frames.subset(np.arange(16))
    no_wrist.wrist_images = None
    with pytest.raises(ValueError, match="no wrist_images"):
        action_loss(vla, no_wrist, np.arange(4), unnorm_key="tabletop")
    with pytest.raises(ValueError, match="wrist_images must be uint8"):
        ActionFrames(frames.images, frames.instructions, frames.actions, frames.episodes, frames.families,
                     frames.states, frames.wrist_images[:, :10])
    policy = vla_policy(vla, "tabletop")
    assert policy.needs_wrist and not policy.needs_state
    seen = []

    def spy(images, instructions, *, wrist_images):
        seen.append((images.shape, wrist_images.shape, bool((images != wrist_images).any())))
        return policy(images, instructions, wrist_images=wrist_images)

    spy.needs_wrist = True
    results = rollout_batch(spy, ["pick"], [10_000_000])
    assert results[0].steps == 60 and seen[0] == ((1, 96, 96, 3), (1, 96, 96, 3), True)


def test_heading_by_step_compares_directions_per_step_index():
    from vla_lessons.train.finetune import heading_by_step, step_in_episode

    np.testing.assert_array_equal(step_in_episode([4, 4, 4, 7, 7, 2]), [0, 1, 2, 0, 1, 0])
    with pytest.raises(ValueError, match="contiguous"):
        step_in_episode([1, 2, 1])
    frames = _frames(n=16)  # 4 episodes of 4 steps
    rows = heading_by_step(frames.actions, frames, max_step=6)
    assert [r["t"] for r in rows] == [0, 1, 2, 3] and all(r["n"] == 4 for r in rows)
    assert all(r["cosine"] == pytest.approx(1.0) and r["error_cm"] == 0.0 for r in rows)
    backwards = frames.actions.copy()
    backwards[:, :2] *= -1
    first = heading_by_step(backwards, frames)[0]
    assert first["cosine"] == pytest.approx(-1.0) and first["error_cm"] == pytest.approx(2 * first["move_cm"])
    with pytest.raises(ValueError, match=r"\(N, 7\)"):
        heading_by_step(frames.actions[:, :6], frames)
    with pytest.raises(ValueError, match="NaN"):
        heading_by_step(np.full_like(frames.actions, np.nan), frames)
