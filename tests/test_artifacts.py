"""The committed trained artifacts load, agree with their metrics, and do what the lessons rely on."""

import json

import numpy as np
import pytest

from vla_lessons import env

MODELS = env.DATA_DIR / "models"


def test_encoders_and_vlm_load_with_the_course_shapes():
    from vla_lessons.model.vlm import load_vlm, parameter_counts
    from vla_lessons.vision.encoders import load_dino, load_siglip

    siglip = load_siglip(MODELS / "siglip")[0]
    dino = load_dino(MODELS / "dino")
    vlm, tokenizer = load_vlm(MODELS / "vlm")
    metrics = json.loads((MODELS / "vlm" / "metrics.json").read_text())
    assert parameter_counts(vlm) == metrics["params"]
    assert siglip.config.vision_config.hidden_size == dino.config.hidden_size == 128 and vlm.num_patches == 64
    assert len(tokenizer) == vlm.vocab_size == 1024
    for name in ("siglip", "dino"):
        history = json.loads((MODELS / name / "history.json").read_text())
        assert len(history["history"]["loss"]) == 1200 and history["minutes"] > 0


def test_the_course_vla_predicts_bounded_actions_with_its_statistics():
    from vla_lessons.data.recipes import course_dataset_path
    from vla_lessons.train.build_vla import UNNORM_KEY, load_course_vla
    from vla_lessons.train.finetune import load_action_frames

    vla = load_course_vla()
    stats = json.loads((MODELS / "vla" / "dataset_statistics.json").read_text())
    assert list(stats) == [UNNORM_KEY] == vla.action_tokenizer.unnorm_keys
    frames = load_action_frames(course_dataset_path("tabletop_lessons"), episodes=[0])
    metrics = json.loads((MODELS / "vla" / "metrics.json").read_text())
    inputs = {}
    if metrics.get("proprio_from_stage") is None:  # older builds had no such key
        assert not vla.config.proprio_dim
    else:  # the VLA reads the robot state too, with the dataset's state statistics
        assert vla.config.proprio_dim == frames.states.shape[1] == len(stats[UNNORM_KEY]["proprio"]["q01"])
        inputs["proprio"] = frames.states[:4]
    assert vla.config.num_images == metrics.get("num_images", 1)
    if vla.config.num_images == 2:  # and the wrist camera
        inputs["wrist_images"] = frames.wrist_images[:4]
    for missing in inputs:
        with pytest.raises(ValueError, match="proprio" if missing == "proprio" else "wrist"):
            vla.predict_actions(frames.images[:4], frames.instructions[:4], UNNORM_KEY,
                                **{k: v for k, v in inputs.items() if k != missing})
    actions = vla.predict_actions(frames.images[:4], frames.instructions[:4], UNNORM_KEY, **inputs)
    q01, q99 = (np.array(stats[UNNORM_KEY]["action"][k]) for k in ("q01", "q99"))
    assert actions.shape == (4, 7) and np.isfinite(actions).all()
    assert (actions[:, :6] >= q01[:6] - 1e-9).all() and (actions[:, :6] <= q99[:6] + 1e-9).all()


def test_vla_metrics_agree_with_their_episodes():
    metrics = json.loads((MODELS / "vla" / "metrics.json").read_text())
    closed = metrics["closed_loop"]
    episodes = closed["episodes"]
    n = closed["episodes_per_family"]
    assert n >= 50, "the course reports closed-loop success over at least 50 episodes per family"
    for family in ("pick", "place", "push"):
        rows = [e for e in episodes if e["family"] == family]
        assert len(rows) == n and len({e["seed"] for e in rows}) == n
        assert closed["vla"][family]["success"] == sum(e["success"] for e in rows)
        assert closed["expert"][family]["success"] == n  # the expert is the ceiling
    steps = [h["step"] for h in metrics["history"]]
    assert steps == sorted(steps) and steps[-1] == sum(s["steps"] for s in metrics["finetune"])


@pytest.mark.parametrize("name", ["cofinetune.json"])
def test_results_files_are_json(name):
    data = json.loads((env.DATA_DIR / "results" / name).read_text())
    assert data


def test_strategy_table_is_the_full_run_with_every_strategy():
    from vla_lessons.train.strategies import ALL_STRATEGIES, load_strategies

    data = load_strategies()
    assert data["full"] and data["dataset"]["name"] == "tabletop_train"
    rows = {r["strategy"]: r for r in data["strategies"]}
    assert list(rows) == list(ALL_STRATEGIES)
    for name, r in rows.items():
        assert 0 < r["trainable"] <= r["total_params"], name
        assert r["memory"]["total"] == sum(r["memory"][k] for k in ("weights", "gradients", "optimizer", "activations"))
        assert 0 <= r["heldout"]["action_accuracy"] <= 1 and np.isfinite(r["heldout"]["loss"])
        cl = r["closed_loop"]
        assert cl["all"]["episodes"] == 3 * data["settings"]["eval_episodes"]
        assert cl["all"]["success"] == sum(cl[f]["success"] for f in ("pick", "place", "push"))


def test_privileged_ceiling_is_the_full_run_with_each_head():
    from vla_lessons.train.privileged import CHUNK, HEADS, load_privileged

    data = load_privileged()
    assert data["dataset"] == "tabletop_train" and data["episodes_per_family"] >= 50
    rows = [(r["config"]["head"], r["config"]["label_sigma"], r["config"]["loss"], r["config"]["chunk_size"])
            for r in data["rows"]]
    assert {r[0] for r in rows} == set(HEADS) and len(set(rows)) == len(rows) == 6, "each build row once"
    assert {r[3] for r in rows} == {1, CHUNK}, "one action per call and chunks"
    for r in data["rows"]:
        cl = r["closed_loop"]
        assert [cl[f]["episodes"] for f in ("pick", "place", "push")] == [data["episodes_per_family"]] * 3
        assert cl["all"]["success"] == sum(cl[f]["success"] for f in ("pick", "place", "push"))
        assert np.isfinite(r["final_loss"])


def test_the_course_vla_grounds_better_than_guessing_and_was_rolled_out_both_ways():
    from vla_lessons.data.recipes import course_dataset_path
    from vla_lessons.model.grounding import GROUNDING_DIM, episode_grounding
    from vla_lessons.train.build_vla import UNNORM_KEY, load_course_vla
    from vla_lessons.train.finetune import load_action_frames, step_in_episode

    metrics = json.loads((MODELS / "vla" / "metrics.json").read_text())
    if metrics.get("ground_from_stage") is None:
        pytest.skip("the committed VLA does not ground")
    vla = load_course_vla()
    assert vla.config.grounding_dim == GROUNDING_DIM and vla.config.action_head == "l1"
    closed = metrics["closed_loop"]
    assert {f: v["episodes"] for f, v in closed["vla_true_grounding"].items()} == \
        {f: v["episodes"] for f, v in closed["vla"].items()}
    root = course_dataset_path("tabletop_lessons")  # never seen by the built VLA
    frames = load_action_frames(root, wrist=False)
    first = frames.subset(step_in_episode(frames.episodes) == 0)
    truth = episode_grounding(root)
    said = vla.predict_grounding(first.images, first.instructions, UNNORM_KEY, proprio=first.states)
    average = np.array(vla.config.norm_stats[UNNORM_KEY]["grounding"]["mean"])
    miss = np.median(np.linalg.norm(said[:, :2] - truth[:, :2], axis=1))
    guess = np.median(np.linalg.norm(average[:2] - truth[:, :2], axis=1))
    assert miss < 0.8 * guess, f"the grounding misses the named object by {miss * 100:.1f} cm, guessing by {guess * 100:.1f}"
