"""The fine-tuning strategies of OpenVLA's Table 1 on a tiny VLA (lesson 07): what trains, measured memory."""

import copy
import json

import numpy as np
import pytest
import torch

from vla_lessons.train.finetune import ActionFrames
from vla_lessons.train.strategies import (ALL_STRATEGIES, MEMORY_PARTS, PAPER_TABLE1, STRATEGIES, load_strategies,
                                          measure_training_memory, prepare, run_strategies)


@pytest.fixture(scope="module")
def tiny_vla(make_toy_vla):
    """28 px towers and a 2-layer Llama (so "last layer" is not the whole Llama)."""
    return make_toy_vla(llama_layers=2)


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    n = 24
    actions = rng.uniform(-0.02, 0.02, (n, 7)).astype(np.float32)
    actions[:, 6] = rng.integers(0, 2, n)
    return ActionFrames(images=rng.integers(0, 255, (n, 28, 28, 3), dtype=np.uint8),
                        instructions=["pick up the red cube", "push the green cylinder left"] * (n // 2),
                        actions=actions, episodes=np.arange(n) // 6, families=["pick", "push"] * (n // 2))


def _trainable(model, prefix):
    return sum(p.numel() for n, p in model.named_parameters()
               if p.requires_grad and n.removeprefix("base_model.model.").startswith(prefix))


def test_each_strategy_trains_what_the_paper_says(tiny_vla):
    counts = {}
    for strategy in ALL_STRATEGIES:
        model, params = prepare(copy.deepcopy(tiny_vla), strategy)
        counts[strategy] = sum(p.numel() for p in params)
        assert counts[strategy] == sum(p.numel() for p in model.parameters() if p.requires_grad)
        vision, projector = _trainable(model, "vision_backbone."), _trainable(model, "projector.")
        llm = model.base_model.model.language_model if strategy.startswith("lora") else model.language_model
        if strategy == "full":
            assert counts["full"] == sum(p.numel() for p in tiny_vla.parameters())
        elif strategy == "frozen_vision":
            assert vision == 0 and projector > 0 and all(p.requires_grad for p in llm.parameters())
        elif strategy == "last_layer":
            assert vision == 0 and projector == 0
            assert not any(p.requires_grad for p in llm.model.layers[0].parameters())
            assert all(p.requires_grad for p in llm.model.layers[-1].parameters())
            assert llm.model.embed_tokens.weight.requires_grad and llm.lm_head.weight.requires_grad
        elif strategy == "sandwich":
            assert vision == sum(p.numel() for p in tiny_vla.vision_backbone.parameters()) and projector > 0
            assert not any(p.requires_grad for p in llm.model.layers[0].parameters())
        elif strategy == "lora_r32_lm_head":  # LoRA + a trained copy of lm_head (peft modules_to_save)
            head = [n for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n]
            assert head == ["base_model.model.language_model.lm_head.modules_to_save.default.weight"]
        else:  # LoRA: every base weight frozen, only lora_A / lora_B train
            assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)
            assert not llm.lm_head.weight.requires_grad
    assert counts["last_layer"] < counts["sandwich"] < counts["full"]
    assert counts["frozen_vision"] < counts["full"] and counts["lora_r32"] * 2 == counts["lora_r64"]
    assert counts["lora_r32_lm_head"] == counts["lora_r32"] + tiny_vla.language_model.lm_head.weight.numel()
    assert set(PAPER_TABLE1) == set(STRATEGIES) and set(STRATEGIES) < set(ALL_STRATEGIES)


def test_unknown_strategy_is_a_clear_value_error(tiny_vla):
    with pytest.raises(ValueError, match="unknown fine-tuning strategy 'lora_r16'.*known"):
        prepare(copy.deepcopy(tiny_vla), "lora_r16")
    with pytest.raises(ValueError, match="unknown fine-tuning strategy"):
        run_strategies(["everything"], None, None, steps=1, batch_size=1, eval_episodes=0, base_model=tiny_vla)


def test_measured_memory_parts_add_up_and_follow_the_strategy(tiny_vla, frames):
    reports = {}
    for strategy in ("full", "last_layer", "lora_r32"):
        model, params = prepare(copy.deepcopy(tiny_vla), strategy)
        before = [p.detach().clone() for p in params]
        mem = measure_training_memory(model, params, frames, batch_size=4, unnorm_key="tabletop")
        assert all(mem[k] > 0 for k in MEMORY_PARTS), f"{strategy}: every part must be positive, got {mem}"
        assert mem["total"] == sum(mem[k] for k in MEMORY_PARTS)
        assert all(torch.equal(a, b) for a, b in zip(before, params)), "measuring must leave the weights unchanged"
        assert all(p.grad is None for p in params)
        reports[strategy] = mem
    full = reports["full"]
    total_bytes = 4 * sum(p.numel() for p in tiny_vla.parameters())
    assert full["weights"] == full["trainable_weights"] == total_bytes
    # AdamW keeps two fp32 moments per parameter that got a gradient
    assert abs(full["optimizer"] - 2 * full["gradients"]) <= 4 * len(list(tiny_vla.parameters()))
    assert reports["lora_r32"]["gradients"] < full["gradients"]
    assert reports["last_layer"]["activations"] < full["activations"], "freezing the towers must save activations"
    with pytest.raises(ValueError, match="nothing to train"):
        measure_training_memory(tiny_vla, [], frames)


def test_more_batch_means_more_activations_only(tiny_vla, frames):
    model, params = prepare(copy.deepcopy(tiny_vla), "frozen_vision")
    small = measure_training_memory(model, params, frames, batch_size=2)
    big = measure_training_memory(model, params, frames, batch_size=8)
    assert big["activations"] > 2 * small["activations"]
    assert (big["weights"], big["gradients"], big["optimizer"]) == (small["weights"], small["gradients"],
                                                                   small["optimizer"])


def test_run_strategies_starts_each_from_the_same_model(tiny_vla, frames, tmp_path):
    rows = run_strategies(["last_layer", "lora_r32_lm_head"], frames.subset(np.arange(18)),
                          frames.subset(np.arange(18, 24)),
                          steps=2, batch_size=4, eval_episodes=0, base_model=tiny_vla, unnorm_key="tabletop",
                          log_every=1)
    assert [r["strategy"] for r in rows] == ["last_layer", "lora_r32_lm_head"]
    for r in rows:
        assert r["closed_loop"] is None and len(r["history"]) == 2
        assert 0.0 <= r["heldout"]["action_accuracy"] <= 1.0 and r["memory"]["total"] > 0
    assert rows[1]["lr"] > rows[0]["lr"]
    assert not any("lora" in n for n, _ in tiny_vla.named_parameters()), "the base VLA must stay untouched"
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"strategies": rows}))
    assert load_strategies(path)["strategies"][0]["strategy"] == "last_layer"
    with pytest.raises(FileNotFoundError, match="python -m vla_lessons.build strategies"):
        load_strategies(tmp_path / "missing.json")
