"""The mini VLA (lesson 06): prompt and label mask, predict_action, save/load with statistics,
the fine-tuning loop's metrics, closed-loop evaluation."""

import json

import numpy as np
import pytest
import torch

from vla_lessons.model.text_tokenizer import reserved_ids, train_text_tokenizer
from vla_lessons.model.vla import (ACTION_PROMPT, PrismaticVLA, build_action_prompt, encode_action_examples,
                                   load_vla, save_vla, vla_from_vlm)
from vla_lessons.model.vlm import IGNORE_INDEX, build_vlm
from vla_lessons.train.finetune import (ActionFrames, FinetuneConfig, action_loss, evaluate_actions, finetune_vla,
                                        lr_at, random_shift)

CORPUS = ["pick up the red cube", "put the blue ball in the bowl", "push the green cylinder left",
          "what action should the robot take to", "what colour is the cube?", "red", "blue"] * 5
STATS = {"action": {"q01": [-0.02, -0.02, -0.02, -0.1, -0.1, 0.0, 0.0],
                    "q99": [0.02, 0.02, 0.02, 0.1, 0.1, 0.0, 1.0],
                    "min": [-0.03] * 7, "max": [0.03] * 7}}


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    tok = train_text_tokenizer(CORPUS, vocab_size=700)
    vlm = build_vlm(tok, seed=0, siglip_config=dict(image_size=28), dino_config=dict(image_size=28),
                    num_hidden_layers=1)
    return tok, vla_from_vlm(vlm, tok, {"tabletop": STATS})


def _frames(n=24, size=28, seed=0):
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-0.02, 0.02, (n, 7)).astype(np.float32)
    actions[:, 5] = 0.0
    actions[:, 6] = rng.integers(0, 2, n)
    return ActionFrames(images=rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8),
                        instructions=["pick up the red cube", "push the green cylinder left"] * (n // 2),
                        actions=actions, episodes=np.arange(n) // 6, families=["pick", "push"] * (n // 2))


def test_prompt_is_openvlas():
    assert build_action_prompt("Pick up the red cube.") == "In: What action should the robot take to pick up the red cube?\nOut:"
    assert ACTION_PROMPT.startswith("In: What action should the robot take to {instruction}?")
    with pytest.raises(ValueError, match="non-empty"):
        build_action_prompt("  ")


def test_labels_are_the_seven_action_ids_only(tiny):
    tok, vla = tiny
    ids = vla.action_tokenizer.encode(np.zeros((2, 7)), "tabletop")
    enc = encode_action_examples(tok, ["pick up the red cube", "put the blue ball in the bowl next to the red cube"], ids)
    labels, input_ids, mask = enc["labels"], enc["input_ids"], enc["attention_mask"]
    assert (labels[:, :-7] == IGNORE_INDEX).all()
    assert torch.equal(labels[:, -7:], torch.as_tensor(ids)) and torch.equal(input_ids[:, -7:], labels[:, -7:])
    assert set(labels[:, -7:].flatten().tolist()) <= set(reserved_ids(tok))
    assert (mask[:, -7:] == 1).all() and mask[0].sum() != mask[1].sum()  # different prompt lengths
    # left padding: every row's first attended token is <s>
    first = mask.argmax(-1)
    assert (input_ids[torch.arange(2), first] == tok.bos_token_id).all()


def test_loss_on_last_positions_equals_the_label_masked_loss(tiny):
    tok, vla = tiny
    frames = _frames()
    index = np.arange(4)
    loss, logits, targets = action_loss(vla, frames, index, unnorm_key="tabletop")
    enc = encode_action_examples(tok, [frames.instructions[i] for i in index],
                                 vla.action_tokenizer.encode(frames.actions[index], "tabletop"))
    with torch.no_grad():
        full = vla(enc["input_ids"], vla.preprocess(frames.images[index]), enc["attention_mask"], enc["labels"])
    assert logits.shape == (4, 7, vla.vocab_size) and targets.shape == (4, 7)
    assert abs(full.loss.item() - loss.item()) < 1e-5


def test_predict_action_restricted_to_action_block_and_unnormalised(tiny):
    _, vla = tiny
    image = np.random.default_rng(1).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    a = vla.predict_action(image, "pick up the red cube", unnorm_key="tabletop")
    assert a.shape == (7,) and np.isfinite(a).all()
    q01, q99 = np.array(STATS["action"]["q01"]), np.array(STATS["action"]["q99"])
    assert (a[:6] >= q01[:6] - 1e-9).all() and (a[:6] <= q99[:6] + 1e-9).all()
    ids = vla.generate_action_ids(*_prompt(vla, image))
    assert ids.shape == (1, 7) and bool(vla.action_tokenizer.is_action_id(ids).all())


def _prompt(vla, image):
    from vla_lessons.model.vla import encode_action_prompts

    enc = encode_action_prompts(vla.tokenizer, ["pick up the red cube"])
    return enc["input_ids"], vla.preprocess(image[None]), enc["attention_mask"]


def test_predict_action_rejects_bad_input(tiny):
    _, vla = tiny
    image = np.zeros((28, 28, 3), np.uint8)
    with pytest.raises(ValueError, match="unknown unnorm_key"):
        vla.predict_action(image, "pick up the red cube", unnorm_key="bridge_orig")
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        vla.predict_action(np.zeros((28, 28)), "pick up the red cube")
    with pytest.raises(ValueError, match="uint8"):
        vla.predict_actions(np.zeros((1, 28, 28, 3), np.float32), ["pick up the red cube"])
    with pytest.raises(ValueError, match="one instruction per image"):
        vla.predict_actions(np.zeros((2, 28, 28, 3), np.uint8), ["pick up the red cube"])


def test_save_load_keeps_statistics_and_actions(tiny, tmp_path):
    _, vla = tiny
    image = np.random.default_rng(2).integers(0, 255, (28, 28, 3), dtype=np.uint8)
    before = vla.predict_action(image, "push the green cylinder left", "tabletop")
    save_vla(vla, tmp_path / "vla", dtype=torch.float32)
    stats = json.loads((tmp_path / "vla" / "dataset_statistics.json").read_text())
    assert stats["tabletop"]["action"]["q99"] == STATS["action"]["q99"]
    again = load_vla(tmp_path / "vla")
    assert isinstance(again, PrismaticVLA) and again.config.norm_stats == vla.config.norm_stats
    np.testing.assert_allclose(again.predict_action(image, "push the green cylinder left", "tabletop"), before)
    (tmp_path / "vla" / "dataset_statistics.json").write_text(json.dumps({"other": stats["tabletop"]}))
    with pytest.raises(ValueError, match="disagrees"):
        load_vla(tmp_path / "vla")
    with pytest.raises(ValueError, match="no saved VLA"):
        load_vla(tmp_path / "missing")


def test_finetune_learns_and_is_deterministic(tiny):
    tok, vla = tiny
    frames = _frames()
    config = FinetuneConfig(steps=30, batch_size=8, lr=3e-3, log_every=10, shift=2)
    runs = []
    for _ in range(2):
        model = vla_from_vlm(vla, tok, vla.config.norm_stats)
        before = evaluate_actions(model, frames)
        result = finetune_vla(model, frames, config, unnorm_key="tabletop", progress=False)
        runs.append((before, evaluate_actions(model, frames), result))
    (before, after, result), (_, after2, _) = runs
    assert after["loss"] < before["loss"] - 1.0, (before, after)
    assert after == after2, "same seed, same data -> the same model"
    assert [h["step"] for h in result.history] == [10, 20, 30]
    assert {"loss", "action_accuracy", "l1", "lr"} <= set(result.history[0])


def test_finetune_config_and_helpers_reject_bad_values():
    with pytest.raises(ValueError, match="steps"):
        FinetuneConfig(steps=0)
    with pytest.raises(ValueError, match="vqa_ratio"):
        FinetuneConfig(steps=1, vqa_ratio=1.0)
    assert lr_at(0, 100, 1.0, 0.1) == pytest.approx(0.1) and lr_at(99, 100, 1.0, 0.1) < 0.01
    images = np.arange(2 * 8 * 8 * 3, dtype=np.uint8).reshape(2, 8, 8, 3)
    shifted = random_shift(images, 2, np.random.default_rng(0))
    assert shifted.shape == images.shape and shifted.dtype == np.uint8
    frames = _frames()
    with pytest.raises(ValueError, match="actions must be finite"):
        ActionFrames(frames.images, frames.instructions, np.full((24, 7), np.nan, np.float32),
                     frames.episodes, frames.families)


def test_rollouts_are_seeded_and_checked():
    from vla_lessons.deploy.evaluate import evaluate_expert, rollout_batch, success_table

    def still(images, instructions):
        return np.zeros((len(images), 7))

    a = rollout_batch(still, ["pick", "push"], [10_000_000, 10_000_001])
    b = rollout_batch(still, ["pick", "push"], [10_000_000, 10_000_001])
    assert [(r.instruction, r.steps, r.success) for r in a] == [(r.instruction, r.steps, r.success) for r in b]
    assert not any(r.success for r in a) and a[0].steps == 60  # standing still never succeeds
    table = success_table(evaluate_expert(families=("pick",), episodes=3))
    assert table["pick"]["rate"] == 1.0 and table["all"]["episodes"] == 3

    def broken(images, instructions):
        return np.full((len(images), 7), np.nan)

    with pytest.raises(ValueError, match="NaN"):
        rollout_batch(broken, ["pick"], [10_000_000])
    with pytest.raises(ValueError, match="shape"):
        rollout_batch(lambda i, s: np.zeros((len(i), 6)), ["pick"], [10_000_000])


def test_failure_table_tells_reaching_from_grasping():
    from vla_lessons.deploy.evaluate import EpisodeResult, evaluate_expert, failure_table, rollout_batch

    def still(images, instructions):
        return np.zeros((len(images), 7))

    idle = rollout_batch(still, ["pick"], [10_000_000])[0]
    assert np.isfinite(idle.reach_cm) and idle.reach_cm > 2.0 and not idle.grasped
    expert = evaluate_expert(families=("pick",), episodes=2)
    assert all(r.reach_cm < 2.0 and r.grasped and r.success for r in expert)
    table = failure_table([idle, *expert])
    assert table["pick"] == {"episodes": 3, "reached": 2 / 3, "nearer_other": table["pick"]["nearer_other"],
                             "grasped": 2 / 3, "success": 2 / 3}
    assert table["all"]["episodes"] == 3
    far = EpisodeResult("place", 0, "x", False, 5, reach_cm=9.0, other_cm=1.0)
    assert failure_table([far])["place"]["nearer_other"] == 1.0
    with pytest.raises(ValueError, match="at least one"):
        failure_table([])
    with pytest.raises(ValueError, match="near_cm"):
        failure_table([far], near_cm=0)
