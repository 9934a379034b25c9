"""The real OpenVLA-7B offline: meta-device figures, LoRA, memory model, converter, predict_action."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vla_lessons.model import openvla as ov
from vla_lessons.model import openvla_convert as oc

M = 1e6


@pytest.fixture(scope="module")
def meta_model():
    return ov.build_meta_openvla()


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return oc.write_synthetic_checkpoint(tmp_path_factory.mktemp("openvla_tiny"), seed=0)


@pytest.fixture(scope="module")
def tiny(tiny_folder):
    return oc.load_converted_model(tiny_folder)


@pytest.fixture(scope="module")
def raw(tiny_folder):
    checkpoint = oc.SafetensorsCheckpoint(tiny_folder)
    return {key: checkpoint[key] for key in checkpoint}


# ----------------------------------------------------------------------------- figures on meta


def test_meta_parameter_counts(meta_model):
    counts = ov.parameter_counts(meta_model)
    assert round(counts["siglip"] / M, 1) == 427.7
    assert round(counts["dino"] / M, 1) == 303.2
    assert round(counts["projector"] / M, 1) == 71.4
    assert round(counts["llama"] / M, 1) == 6738.9
    assert round(counts["total"] / M, 1) == 7541.2
    assert counts["total"] == counts["vision"] + counts["projector"] + counts["llama"]
    assert round(counts["unused_by_actions"] / M, 1) == 43.1  # last blocks, final norms, SigLIP head
    assert next(meta_model.parameters()).is_meta


def test_checkpoint_layout_covers_the_architecture(meta_model):
    # openvla's keys hold every value of the model but DINOv2's mask token and the class position row
    shapes = oc.checkpoint_shapes(meta_model.config)
    n_values = sum(math.prod(s) for s in shapes.values())
    assert n_values == ov.parameter_counts(meta_model)["total"] - 2 * meta_model.config.dino_hidden_size
    assert shapes["vision_backbone.featurizer.blocks.0.attn.qkv.weight"] == (3072, 1024)
    assert shapes["vision_backbone.fused_featurizer.attn_pool.kv.weight"] == (2304, 1152)
    assert shapes["language_model.lm_head.weight"] == (32064, 4096)


def test_real_checkpoint_layout_converts_onto_the_real_architecture(meta_model):
    # openvla-7b's 7.5B values as meta tensors: every key consumed, every shape checked, no memory
    checkpoint = {k: torch.empty(s, device="meta") for k, s in oc.checkpoint_shapes(meta_model.config).items()}
    state, report = oc.convert_state_dict(checkpoint, meta_model, dtype=torch.bfloat16)
    assert set(state) == set(meta_model.state_dict()) and report.qkv_split == 2 * (24 + 27)
    assert state["vision_backbone.siglip.head.attention.in_proj_weight"].shape == (3456, 1152)
    assert state["language_model.model.layers.31.mlp.down_proj.weight"].dtype == torch.bfloat16


def test_strategies_and_the_papers_siglip_only_counts(meta_model):
    strategies = ov.strategy_counts(meta_model)
    assert {k: round(v / M, 1) for k, v in strategies.items()} == {
        "full": 7541.2, "frozen_vision": 6810.3, "last_layer": 465.1, "sandwich": 1267.4}
    paper = ov.paper_count_reconstruction(meta_model)
    P = ov.PAPER_FIGURES
    assert round(paper["full"] / M, 1) == P["full_ft_trainable_params_M"] == 7188.1
    assert round(paper["frozen_vision"] / M, 1) == P["frozen_vision_trainable_params_M"]
    assert round(paper["last_layer"] / M, 1) == P["last_layer_trainable_params_M"]
    assert round(paper["sandwich"] / M, 1) == P["sandwich_trainable_params_M"]


def test_set_trainable_freezes_the_rest(meta_model):
    model = ov.build_meta_openvla()
    n = ov.set_trainable(model, "frozen_vision")
    assert n == ov.strategy_counts(meta_model)["frozen_vision"]
    assert not any(p.requires_grad for p in model.vision_backbone.parameters())
    assert all(p.requires_grad for p in model.projector.parameters())
    with pytest.raises(ValueError, match="unknown strategy 'lora'.*known"):
        ov.set_trainable(model, "lora")


def test_lora_counts_with_peft_on_meta():
    counts = ov.lora_parameter_counts(32)
    ours, fused = counts["ours_peft"], counts["fused_qkv_layout"]
    assert round(ours["total"] / M, 1) == 112.9
    assert round(fused["total"] / M, 1) == 109.6
    assert round(counts["fused_qkv_layout_old_peft"]["total"] / M, 1) == 110.8
    assert round(counts["paper_reconstruction"]["total"] / M, 1) == ov.PAPER_FIGURES["lora_r32_trainable_params_M"]
    # Llama: 32 blocks x r x [4 (4096 + 4096) + 3 (4096 + 11008)], lm_head left out as in openvla
    assert ours["by_part"]["llama"] == fused["by_part"]["llama"] == 32 * 32 * (4 * 8192 + 3 * 15104)
    # per ViT block: q, k, v separately cost 3 r (d + d); the fused qkv costs r (d + 3d)
    d, depth = 1024, 24
    assert ours["by_part"]["dino"] - fused["by_part"]["dino"] == depth * 32 * (6 * d - 4 * d)
    assert ours["wrapped_layers"] == 536 and fused["wrapped_layers"] == 436
    r64 = ov.lora_parameter_counts(64, use_peft=False)
    assert "ours_peft" not in r64 and r64["fused_qkv_layout"]["total"] == 2 * fused["total"]
    assert round(r64["paper_reconstruction"]["total"] / M, 1) == ov.PAPER_FIGURES["lora_r64_trainable_params_M"]


# ----------------------------------------------------------------------------- memory model


def test_memory_model_arithmetic():
    total = 7_541_237_248
    inf = ov.estimate_memory("inference", total_params=total)
    assert inf["weights_gb"] == pytest.approx(total * 2 / 1e9)
    assert 15.0 < inf["total_gb"] < 15.6
    full = ov.estimate_memory("full_finetune", total_params=total)
    assert full["trainable_states_gb"] == pytest.approx(total * 16 / 1e9)
    assert full["frozen_weights_gb"] == 0
    lora = ov.estimate_memory("lora_finetune", total_params=total, trainable_params=100_000_000)
    assert lora["trainable_states_gb"] == pytest.approx(1.6)
    assert lora["frozen_weights_gb"] == pytest.approx(total * 2 / 1e9)
    acts = [k for k in full if k.startswith("activations_")]
    assert acts and all(full[k] == pytest.approx(lora[k]) for k in acts)
    parts = sum(v for k, v in full.items() if k.endswith("_gb") and k != "total_gb")
    assert full["total_gb"] == pytest.approx(parts)
    double = ov.estimate_memory("full_finetune", total_params=total, batch_size=32)
    assert double["activations_llama_gb"] == pytest.approx(2 * full["activations_llama_gb"])
    ckpt = ov.estimate_memory("full_finetune", total_params=total, activation_checkpointing=True)
    assert ckpt["activations_llama_gb"] < full["activations_llama_gb"] / 5
    assert full["assumptions"]["batch_size"] == 16 and inf["assumptions"]["batch_size"] == 1
    with pytest.raises(ValueError, match="unknown regime"):
        ov.estimate_memory("training", total_params=total)
    with pytest.raises(ValueError, match="weight_bytes"):
        ov.estimate_memory("inference", total_params=total, weight_bytes=float("nan"))


# ----------------------------------------------------------------------------- converter


def test_synthetic_checkpoint_is_deterministic(tmp_path, tiny_folder):
    again = oc.write_synthetic_checkpoint(tmp_path / "again", seed=0)
    for shard in sorted(tiny_folder.glob("*.safetensors")):
        a = hashlib.sha256(shard.read_bytes()).hexdigest()
        assert a == hashlib.sha256((again / shard.name).read_bytes()).hexdigest()
    assert len(list(tiny_folder.glob("model-*-of-00002.safetensors"))) == 2


def test_converter_consumes_every_key(tiny, raw):
    report = tiny.conversion_report
    assert report.checkpoint_keys == len(raw) == len(oc.checkpoint_shapes(tiny.config))
    assert report.target_tensors == len(tiny.state_dict())
    assert list(report.synthesized) == ["vision_backbone.dino.embeddings.mask_token"]
    assert report.qkv_split == 2 * (tiny.config.dino_num_layers + tiny.config.siglip_num_layers)
    with torch.device("meta"):
        target = ov.OpenVLAForActionPrediction(tiny.config)
    extra = dict(raw, **{"vision_backbone.featurizer.head.weight": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="silently ignored.*featurizer.head.weight"):
        oc.convert_state_dict(extra, target)
    missing = {k: v for k, v in raw.items() if not k.endswith("blocks.1.attn.qkv.bias")}
    with pytest.raises(ValueError, match="lacks 2 tensor.*blocks.1.attn.qkv.bias"):
        oc.convert_state_dict(missing, target)
    broken = dict(raw, **{"projector.fc2.bias": torch.full_like(raw["projector.fc2.bias"], float("nan"))})
    with pytest.raises(ValueError, match="projector.fc2.bias holds NaN"):
        oc.convert_state_dict(broken, target)
    wrong = dict(raw, **{"projector.fc3.bias": torch.zeros(3)})
    with pytest.raises(ValueError, match="projector.fc3.bias: expected shape"):
        oc.convert_state_dict(wrong, target)
    # a prismatic/timm checkpoint names LayerScale "gamma" instead of openvla's "scale_factor"
    renamed = {k.replace(".scale_factor", ".gamma"): v for k, v in raw.items()}
    state, _ = oc.convert_state_dict(renamed, target)
    assert torch.equal(state["vision_backbone.dino.encoder.layer.0.layer_scale1.lambda1"],
                       raw["vision_backbone.featurizer.blocks.0.ls1.scale_factor"])
    # dropped on purpose, and said so
    state, report = oc.convert_state_dict(dict(raw, **{"language_model.model.rotary_emb.inv_freq": torch.ones(8)}),
                                          target)
    assert "language_model.model.rotary_emb.inv_freq" in report.dropped


def test_qkv_split_and_pool_head_land_in_place(tiny, raw):
    sd = tiny.state_dict()
    for src, dst, names in (("vision_backbone.featurizer.blocks.1.attn.qkv", "vision_backbone.dino."
                             "encoder.layer.1.attention.", ("q_proj", "k_proj", "v_proj")),
                            ("vision_backbone.fused_featurizer.blocks.2.attn.qkv", "vision_backbone."
                             "siglip.encoder.layers.2.self_attn.", ("q_proj", "k_proj", "v_proj"))):
        for w in ("weight", "bias"):
            fused = raw[f"{src}.{w}"]
            d = fused.shape[0] // 3
            for i, name in enumerate(names):
                assert torch.equal(sd[f"{dst}{name}.{w}"], fused[i * d:(i + 1) * d])
    pool, head = "vision_backbone.fused_featurizer.attn_pool.", "vision_backbone.siglip.head."
    in_proj = torch.cat([raw[f"{pool}q.weight"], raw[f"{pool}kv.weight"]])
    assert torch.equal(sd[f"{head}attention.in_proj_weight"], in_proj)
    pos = sd["vision_backbone.dino.embeddings.position_embeddings"]
    assert torch.equal(pos[:, 1:], raw["vision_backbone.featurizer.pos_embed"]) and not pos[:, 0].any()


def _ln(x, raw, key):
    return F.layer_norm(x, x.shape[-1:], raw[f"{key}.weight"], raw[f"{key}.bias"], eps=1e-6)


def _attention(q, k, v, heads):
    b, n, d = q.shape
    split = lambda t: t.reshape(b, t.shape[1], heads, d // heads).transpose(1, 2)  # noqa: E731
    q, k, v = split(q), split(k), split(v)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // heads), dim=-1)
    return (weights @ v).transpose(1, 2).reshape(b, -1, d)


def _timm_block(x, raw, p, heads):
    """One timm ViT block computed straight from the raw checkpoint tensors (fused qkv, exact GELU)."""
    q, k, v = F.linear(_ln(x, raw, f"{p}norm1"), raw[f"{p}attn.qkv.weight"], raw[f"{p}attn.qkv.bias"]).chunk(3, -1)
    a = F.linear(_attention(q, k, v, heads), raw[f"{p}attn.proj.weight"], raw[f"{p}attn.proj.bias"])
    x = x + a * raw.get(f"{p}ls1.scale_factor", 1.0)
    h = F.gelu(F.linear(_ln(x, raw, f"{p}norm2"), raw[f"{p}mlp.fc1.weight"], raw[f"{p}mlp.fc1.bias"]))
    m = F.linear(h, raw[f"{p}mlp.fc2.weight"], raw[f"{p}mlp.fc2.bias"])
    return x + m * raw.get(f"{p}ls2.scale_factor", 1.0)


def _timm_tower(raw, p, pixels, heads, n_blocks, patch):
    x = F.conv2d(pixels, raw[f"{p}patch_embed.proj.weight"], raw[f"{p}patch_embed.proj.bias"], stride=patch)
    x = x.flatten(2).transpose(1, 2) + raw[f"{p}pos_embed"]
    n_prefix = 0
    if f"{p}cls_token" in raw:  # DINOv2, timm's no_embed_class layout: [cls, registers, patches]
        b = x.shape[0]
        prefix = [raw[f"{p}cls_token"].expand(b, -1, -1), raw[f"{p}reg_token"].expand(b, -1, -1)]
        n_prefix = sum(t.shape[1] for t in prefix)
        x = torch.cat(prefix + [x], dim=1)
    for i in range(n_blocks):
        x = _timm_block(x, raw, f"{p}blocks.{i}.", heads)
    return x, n_prefix


def _reference_patches(raw, cfg, pixel_values):
    dino, n_prefix = _timm_tower(raw, "vision_backbone.featurizer.", pixel_values[:, :3], cfg.dino_num_heads,
                                 cfg.dino_num_layers - 1, cfg.patch_size)
    siglip, _ = _timm_tower(raw, "vision_backbone.fused_featurizer.", pixel_values[:, 3:], cfg.siglip_num_heads,
                            cfg.siglip_num_layers - 1, cfg.patch_size)
    return torch.cat([dino[:, n_prefix:], siglip], dim=2)


def test_forward_matches_a_reference_from_raw_tensors(tiny, raw):
    cfg = tiny.config
    pixels = torch.randn(2, 6, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        patches = tiny.vision_backbone(pixels)
        ref_patches = _reference_patches(raw, cfg, pixels)
        torch.testing.assert_close(patches, ref_patches, atol=1e-5, rtol=1e-5)
        # projector and Llama from the raw tensors: the whole multimodal forward
        proj = F.gelu(F.linear(ref_patches, raw["projector.fc1.weight"], raw["projector.fc1.bias"]))
        proj = F.gelu(F.linear(proj, raw["projector.fc2.weight"], raw["projector.fc2.bias"]))
        proj = F.linear(proj, raw["projector.fc3.weight"], raw["projector.fc3.bias"])
        llama = ov.LlamaForCausalLM(cfg.llama_config()).eval()
        llama.load_state_dict({k.removeprefix("language_model."): v for k, v in raw.items()
                               if k.startswith("language_model.")})
        ids = torch.tensor([[1, 5, 40, 9, 3], [1, 7, 7, 60, 3]])
        embeds = F.embedding(ids, raw["language_model.model.embed_tokens.weight"])
        ref_logits = llama(inputs_embeds=torch.cat([embeds[:, :1], proj, embeds[:, 1:]], dim=1)).logits
        logits = tiny(input_ids=ids, pixel_values=pixels).logits
    assert logits.shape == (2, 1 + cfg.num_patches + 4, cfg.padded_vocab_size)
    torch.testing.assert_close(logits, ref_logits, atol=1e-4, rtol=1e-4)


def test_siglip_head_matches_timm_attention_pool(tiny, raw):
    cfg, p = tiny.config, "vision_backbone.fused_featurizer."
    pixels = torch.randn(1, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        x, _ = _timm_tower(raw, p, pixels, cfg.siglip_num_heads, cfg.siglip_num_layers, cfg.patch_size)
        x = _ln(x, raw, f"{p}norm")
        pool = f"{p}attn_pool."
        q = F.linear(raw[f"{pool}latent"], raw[f"{pool}q.weight"], raw[f"{pool}q.bias"])
        k, v = F.linear(x, raw[f"{pool}kv.weight"], raw[f"{pool}kv.bias"]).chunk(2, -1)
        y = F.linear(_attention(q, k, v, cfg.siglip_num_heads), raw[f"{pool}proj.weight"], raw[f"{pool}proj.bias"])
        h = F.gelu(F.linear(_ln(y, raw, f"{pool}norm"), raw[f"{pool}mlp.fc1.weight"], raw[f"{pool}mlp.fc1.bias"]))
        ref = (y + F.linear(h, raw[f"{pool}mlp.fc2.weight"], raw[f"{pool}mlp.fc2.bias"]))[:, 0]
        pooled = tiny.vision_backbone.siglip(pixels).pooler_output
    torch.testing.assert_close(pooled, ref, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- predict_action


def _image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)


def test_predict_action_on_the_tiny_converted_model(tiny):
    action = tiny.predict_action(_image(), "put the carrot on the plate")
    stats = ov.BRIDGE_ORIG_ACTION_STATS
    q01, q99, mask = (np.array(stats[k]) for k in ("q01", "q99", "mask"))
    assert action.shape == (7,) and action.dtype == np.float64
    assert np.all(action[mask] >= q01[mask]) and np.all(action[mask] <= q99[mask])
    assert np.all(np.abs(action[~mask]) <= 1.0)  # the gripper stays normalised, as in openvla
    assert np.array_equal(action, tiny.predict_action(_image(), "put the carrot on the plate"))
    # the KV-cache decoding equals greedy decoding with full forwards
    inputs = tiny.processor("put the carrot on the plate", _image())
    ids = ov.append_empty_token(inputs["input_ids"], tiny.processor.empty_token_id)
    for _ in range(7):
        with torch.no_grad():
            step = tiny(input_ids=ids, pixel_values=inputs["pixel_values"]).logits[:, -1].argmax(-1)
        ids = torch.cat([ids, step[:, None]], dim=1)
    expected = ov.unnormalize_actions(ov.decode_action_ids(ids[0, -7:].numpy(), 512), ov.action_stats(
        tiny.config.norm_stats, "bridge_orig"))
    np.testing.assert_array_equal(action, expected)


def test_prompt_and_empty_token(tiny):
    processor = tiny.processor
    assert processor.prompt("wipe the table") == "In: What action should the robot take to wipe the table?\nOut:"
    inputs = processor("wipe the table", _image())
    assert inputs["input_ids"][0, 0] == processor.tokenizer.bos_token_id
    tokens = processor.tokenizer.convert_ids_to_tokens(inputs["input_ids"][0])
    assert tokens[-4:] == ["O", "u", "t", ":"]
    ids = ov.append_empty_token(inputs["input_ids"], processor.empty_token_id)
    assert ids[0, -1] == processor.empty_token_id == processor.tokenizer.convert_tokens_to_ids("\u2581")
    assert torch.equal(ov.append_empty_token(ids, processor.empty_token_id), ids)
    with pytest.raises(ValueError, match="non-empty string"):
        processor.prompt("  ")


def test_pixel_values_are_two_normalisations(tiny):
    gray = np.full((30, 20, 3), 128, dtype=np.uint8)
    px = tiny.processor.pixel_values(gray)
    assert px.shape == (1, 6, 28, 28) and px.dtype == torch.float32
    v = 128 / 255
    torch.testing.assert_close(px[0, :3, 0, 0], torch.tensor([(v - m) / s for m, s in zip(ov.DINO_MEAN, ov.DINO_STD)]))
    torch.testing.assert_close(px[0, 3:, 5, 5], torch.full((3,), (v - 0.5) / 0.5))
    with pytest.raises(ValueError, match="uint8"):
        tiny.processor.pixel_values(gray.astype(np.float32))
    with pytest.raises(TypeError, match="PIL image"):
        tiny.processor.pixel_values([[1, 2, 3]])


def test_unknown_unnorm_key_lists_the_known_keys(tiny):
    with pytest.raises(ValueError, match=r"unknown unnorm_key 'libero_spatial'.*\['bridge_orig'\]"):
        tiny.predict_action(_image(), "pick up the cube", unnorm_key="libero_spatial")
    assert ov.action_stats({"a": {"action": ov.BRIDGE_ORIG_ACTION_STATS}}, None)["q01"].shape == (7,)
    with pytest.raises(ValueError, match=r"pass unnorm_key= one of \['a', 'b'\]"):
        ov.action_stats({"a": {"action": ov.BRIDGE_ORIG_ACTION_STATS}, "b": {"action": ov.BRIDGE_ORIG_ACTION_STATS}},
                        None)


def test_action_decoding_follows_openvla():
    edges = np.linspace(-1, 1, 256)
    centers = (edges[:-1] + edges[1:]) / 2
    ids = np.array([31999, 31744, 31745, 32000, 32063, 100])
    np.testing.assert_array_equal(ov.decode_action_ids(ids), centers[[0, 254, 254, 0, 0, 254]])
    stats = {"q01": [-1.0, 0.0], "q99": [3.0, 1.0], "mask": [True, False]}
    np.testing.assert_allclose(ov.unnormalize_actions([0.5, 0.5], stats), [2.0, 0.5])
    with pytest.raises(TypeError, match="integers"):
        ov.decode_action_ids(np.array([1.5]))
    with pytest.raises(ValueError, match="finite"):
        ov.unnormalize_actions([np.nan, 0.0], stats)


# ----------------------------------------------------------------------------- weights, GPU paths, configs


def test_missing_weights_give_the_clear_error(tmp_path):
    for folder in (None, tmp_path / "openvla-7b", tmp_path):
        with pytest.raises(FileNotFoundError, match="download openvla/openvla-7b on a machine with network"):
            oc.load_openvla(folder)
    with pytest.raises(FileNotFoundError, match="no converted OpenVLA"):
        oc.prepare_qlora_model(tmp_path / "nothing")


def test_real_model_needs_a_gpu_unless_allowed(tiny_folder, monkeypatch):
    monkeypatch.setattr(oc.env, "has_gpu", lambda: False)
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        oc.load_openvla(tiny_folder)
    model = oc.load_openvla(tiny_folder, dtype=torch.float32, allow_cpu=True)
    assert model.vision_backbone.dino.embeddings.cls_token.device.type == "cpu"


def test_finetune_setup_builds_openvla_configs():
    setup = ov.finetune_setup(32, use_quantization=True)
    lora, bnb = setup["lora"], setup["quantization"]
    assert (lora.r, lora.lora_alpha, lora.lora_dropout, lora.init_lora_weights) == (32, 16, 0.0, "gaussian")
    assert lora.target_modules == "all-linear"
    assert ov.lora_config(8).lora_alpha == 8
    assert bnb.load_in_4bit and bnb.bnb_4bit_quant_type == "nf4" and bnb.bnb_4bit_compute_dtype == torch.bfloat16
    assert ov.finetune_setup(32)["quantization"] is None
    with pytest.raises(ValueError, match="rank"):
        ov.lora_config(0)


def test_bitsandbytes_is_imported_lazily_with_a_message(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_bnb(name, *args, **kwargs):
        if name == "bitsandbytes":
            raise ImportError("No module named 'bitsandbytes'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_bnb)
    with pytest.raises(ImportError, match="needs bitsandbytes and a CUDA GPU"):
        ov.require_bitsandbytes()


def test_config_validation_and_json_roundtrip(tiny_folder):
    with pytest.raises(ValueError, match="multiple of patch_size"):
        ov.OpenVLAConfig.tiny(image_size=30)
    with pytest.raises(ValueError, match="vision_feature_layer"):
        ov.OpenVLAConfig.tiny(vision_feature_layer=0)
    with pytest.raises(ValueError, match="positive integer"):
        ov.OpenVLAConfig.tiny(text_num_layers=0)
    real = ov.OpenVLAConfig()
    sizes = (real.padded_vocab_size, real.num_patches, real.vision_dim, real.action_vocab_size)
    assert sizes == (32064, 256, 2176, 32000)
    cfg = oc.config_from_openvla_json(tiny_folder)
    assert cfg.to_dict() == ov.OpenVLAConfig.tiny(norm_stats=cfg.norm_stats).to_dict()
    assert sorted(cfg.norm_stats) == ["bridge_orig"]


def test_converted_model_saves_and_reloads_with_transformers(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    again = ov.OpenVLAForActionPrediction.from_pretrained(tmp_path).eval()
    ids = torch.tensor([[1, 5, 9]])
    pixels = torch.zeros(1, 6, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=ids, pixel_values=pixels).logits,
                                   tiny(input_ids=ids, pixel_values=pixels).logits)
