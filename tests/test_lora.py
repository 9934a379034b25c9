"""LoRA (lesson 07): the hand-written layer against peft, merging, zero-initialised B, peft on the mini VLA."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from vla_lessons.train.lora import (LoRALinear, add_lora, compare_with_peft, linear_names, lora_summary, lora_vla,
                                    merge_lora)


@pytest.fixture(scope="module")
def tiny_vla(make_toy_vla):
    """A VLA with 28 px towers and a 1-layer Llama: the mini VLA's module names at toy size."""
    return make_toy_vla(llama_layers=1)


def _inputs(model, n=2, seed=0):
    images = np.random.default_rng(seed).integers(0, 255, (n, 28, 28, 3), dtype=np.uint8)
    from vla_lessons.model.vla import encode_action_prompts

    enc = encode_action_prompts(model.tokenizer, ["pick up the red cube"] * n)
    return enc["input_ids"], model.preprocess(images), enc["attention_mask"]


@pytest.mark.parametrize("shape, r, alpha", [((48, 80), 8, 16), ((192, 512), 32, 16), ((64, 64), 64, 16)])
def test_hand_lora_equals_peft_on_the_same_weights(shape, r, alpha):
    diffs = compare_with_peft(nn.Linear(*shape), r=r, alpha=alpha, seed=1)
    assert diffs["output"] < 1e-6, f"LoRALinear and peft's lora.Linear should agree to ~1e-7, got {diffs['output']}"
    assert diffs["grad_A"] < 1e-5 and diffs["grad_B"] < 1e-5, f"gradients should agree too, got {diffs}"


def test_lora_starts_at_the_base_layer_and_counts_r_in_plus_out():
    torch.manual_seed(0)
    base = nn.Linear(40, 24)
    layer = LoRALinear(copy.deepcopy(base), r=4, alpha=8)
    x = torch.randn(3, 5, 40)
    assert torch.equal(layer(x), base(x)), "B = 0 at init: the wrapped layer must compute exactly the base layer"
    trainable = [p for p in layer.parameters() if p.requires_grad]
    assert sum(p.numel() for p in trainable) == 4 * (40 + 24)
    assert not layer.base.weight.requires_grad and layer.scale == 2.0
    assert abs(float(layer.lora_A.std()) - 1 / 4) < 0.08, "A ~ N(0, 1/r^2), peft's gaussian init"


def test_merge_gives_the_unmerged_output_and_a_plain_linear():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(32, 16), r=4, alpha=16)
    with torch.no_grad():
        layer.lora_B.normal_()
    merged = layer.merge()
    x = torch.randn(8, 32)
    assert type(merged) is nn.Linear
    assert (merged(x) - layer(x)).abs().max() < 1e-5
    assert torch.linalg.matrix_rank(layer.delta_weight()) <= 4


@pytest.mark.parametrize("bad", [dict(r=0, alpha=1), dict(r=2.5, alpha=1), dict(r=4, alpha=float("nan")),
                                 dict(r=4, alpha=8, dropout=1.0)])
def test_bad_lora_settings_are_value_errors(bad):
    with pytest.raises(ValueError):
        LoRALinear(nn.Linear(4, 4), **bad)
    with pytest.raises(TypeError, match="nn.Linear"):
        LoRALinear(nn.Conv2d(3, 3, 1), r=2, alpha=2)


def test_add_lora_by_name_freezes_the_rest_and_merges_back(tiny_vla):
    model = copy.deepcopy(tiny_vla)
    inputs = _inputs(model)
    with torch.no_grad():
        before = model(*inputs).logits
    names = linear_names(model)
    assert "language_model.lm_head" not in names and "projector.fc1" in names
    add_lora(model, names, r=4, alpha=8)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(("lora_A", "lora_B")) for n in trainable)
    with torch.no_grad():
        assert torch.equal(model(*inputs).logits, before), "B = 0: the wrapped VLA must equal the base VLA"
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.normal_(std=0.01)
        changed = model(*inputs).logits
        merge_lora(model)
        assert not any(isinstance(m, LoRALinear) for m in model.modules())
        assert (model(*inputs).logits - changed).abs().max() < 1e-4
    with pytest.raises(ValueError, match="nn.Linear"):
        add_lora(model, ["language_model.model.embed_tokens"], r=2, alpha=2)


def test_peft_all_linear_on_the_vla_wraps_every_linear_but_lm_head(tiny_vla):
    model = copy.deepcopy(tiny_vla)
    n_linear = len([m for m in model.modules() if isinstance(m, nn.Linear)])
    peft_model = lora_vla(model, rank=8)
    summary = lora_summary(peft_model)
    assert summary["left_out"] == ["language_model.lm_head"]
    assert sum(summary["wrapped"].values()) == n_linear - 1
    assert set(summary["wrapped"]) == {"siglip", "dino", "projector", "llama"}
    assert summary["trainable"] == sum(summary["lora_params"].values()) and summary["modules_to_save"] == []
    assert all("lora_" in n for n, p in peft_model.named_parameters() if p.requires_grad)
    with_head = lora_summary(lora_vla(copy.deepcopy(tiny_vla), rank=8, modules_to_save=["lm_head"]))
    assert with_head["modules_to_save"] == ["language_model.lm_head"] and with_head["left_out"] == []
    assert with_head["trainable"] == summary["trainable"] + tiny_vla.language_model.lm_head.weight.numel()


def test_peft_vla_starts_equal_merges_and_saves_an_adapter(tiny_vla, tmp_path):
    from peft import PeftModel

    inputs = _inputs(tiny_vla)
    with torch.no_grad():
        base_logits = tiny_vla(*inputs).logits
    peft_model = lora_vla(copy.deepcopy(tiny_vla), rank=8).eval()
    with torch.no_grad():
        assert (peft_model(*inputs).logits - base_logits).abs().max() < 1e-5, "B = 0 at init"
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.02)
        adapted = peft_model(*inputs).logits
    assert (adapted - base_logits).abs().max() > 1e-3
    actions = peft_model.predict_actions(np.zeros((1, 28, 28, 3), np.uint8), ["pick up the red cube"], "tabletop")
    assert actions.shape == (1, 7), "predict_actions must fall through the PeftModel to the VLA"
    peft_model.save_pretrained(tmp_path)
    assert (tmp_path / "adapter_model.safetensors").is_file() and (tmp_path / "adapter_config.json").is_file()
    again = PeftModel.from_pretrained(copy.deepcopy(tiny_vla), tmp_path).eval()
    merged = peft_model.merge_and_unload()
    assert type(merged).__name__ == "PrismaticVLA"
    with torch.no_grad():
        assert (again(*inputs).logits - adapted).abs().max() < 1e-5, "a reloaded adapter must give the same logits"
        assert (merged(*inputs).logits - adapted).abs().max() < 1e-4, "merge_and_unload must keep the outputs"
