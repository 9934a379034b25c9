"""The course's own converter: an openvla-7b checkpoint into the transformers-native OpenVLA.

Introduced in lesson 07. openvla-7b's safetensors hold its two vision towers in **timm's**
layout and its projector and Llama-2 in transformers' layout::

    vision_backbone.featurizer.*        DINOv2 ViT-L/14 + registers (timm, fused attn.qkv)
    vision_backbone.fused_featurizer.*  SigLIP So400m/14            (timm, fused attn.qkv, attn_pool)
    projector.fc1 / fc2 / fc3.*         the fused GELU MLP
    language_model.model.* / language_model.lm_head.weight          Llama-2-7B

:func:`conversion_plan` lists, for every tensor of :class:`OpenVLAForActionPrediction`, the
checkpoint tensor(s) it comes from and how: copied, one third of a fused ``qkv`` (timm
computes ``qkv(x).reshape(B, N, 3, heads, head_dim)``, so rows ``[0:d]`` are q, ``[d:2d]`` k,
``[2d:3d]`` v), DINOv2's position table with a zero row for the class token (timm's
``no_embed_class`` layout already folded that position into ``cls_token``), SigLIP's
attention-pool ``q`` and ``kv`` stacked into ``nn.MultiheadAttention``'s ``in_proj``.
:func:`convert_state_dict` applies it and refuses to finish with a checkpoint key left over or
a model tensor left empty. Every key is mapped, including the parts OpenVLA never uses (last
blocks, final norms, SigLIP's ``attn_pool`` head -> ``head``); the only tensor without a
source is DINOv2's ``mask_token`` (masked-image pretraining only; timm drops it), set to zeros.

No weights can be downloaded here: :func:`write_synthetic_checkpoint` writes a tiny
checkpoint with openvla's exact key layout (and folder layout: ``config.json``, sharded
safetensors with an index, tokenizer files) so the whole path is exercised offline.
:func:`load_openvla` is the same path for the real 15 GB folder, on a GPU.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vla_lessons import env
from vla_lessons.model.openvla import (
    BRIDGE_ORIG_ACTION_STATS,
    DINO_MEAN,
    DINO_STD,
    SIGLIP_MEAN,
    SIGLIP_STD,
    OpenVLAConfig,
    OpenVLAForActionPrediction,
    OpenVLAProcessor,
    tiny_llama_tokenizer,
)

DINO_SRC, SIGLIP_SRC = "vision_backbone.featurizer.", "vision_backbone.fused_featurizer."
DINO_DST, SIGLIP_DST = "vision_backbone.dino.", "vision_backbone.siglip."
#: openvla's ``config.json`` values for the fused DINOv2 + SigLIP backbone at 224 px.
TIMM_MODEL_IDS = ["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"]
#: Checkpoint keys that are dropped on purpose, with the reason.
DROPPED_KEYS = {
    r"\.rotary_emb\.inv_freq$": "RoPE frequencies are a buffer recomputed from rope_theta",
}
#: openvla renames timm's LayerScale ``gamma`` to ``scale_factor`` (transformers re-initialised
#: parameters named gamma in 4.40); a prismatic/timm checkpoint still says ``gamma``.
LAYERSCALE_ALIASES = (".scale_factor", ".gamma")
MISSING_WEIGHTS_HELP = ("Nothing is downloaded in this course: download openvla/openvla-7b on a machine with "
                        "network (e.g. `huggingface-cli download openvla/openvla-7b --local-dir openvla-7b`) "
                        "and pass its folder.")


# ----------------------------------------------------------------------------- the key layout


def _vit_block_shapes(prefix: str, d: int, mlp: int, layerscale: bool) -> dict[str, tuple]:
    shapes = {
        f"{prefix}norm1.weight": (d,), f"{prefix}norm1.bias": (d,),
        f"{prefix}attn.qkv.weight": (3 * d, d), f"{prefix}attn.qkv.bias": (3 * d,),
        f"{prefix}attn.proj.weight": (d, d), f"{prefix}attn.proj.bias": (d,),
        f"{prefix}norm2.weight": (d,), f"{prefix}norm2.bias": (d,),
        f"{prefix}mlp.fc1.weight": (mlp, d), f"{prefix}mlp.fc1.bias": (mlp,),
        f"{prefix}mlp.fc2.weight": (d, mlp), f"{prefix}mlp.fc2.bias": (d,),
    }
    if layerscale:
        shapes.update({f"{prefix}ls1.scale_factor": (d,), f"{prefix}ls2.scale_factor": (d,)})
    return shapes


def checkpoint_shapes(config: OpenVLAConfig) -> dict[str, tuple[int, ...]]:
    """Every key of an openvla-style checkpoint for ``config`` and its shape.

    Introduced in lesson 07. For ``OpenVLAConfig()`` these are openvla-7b's keys (7,541M
    values); :func:`write_synthetic_checkpoint` fills them for a tiny config.
    """
    n, ps = config.num_patches, config.patch_size
    d, s, si = config.dino_hidden_size, config.siglip_hidden_size, config.siglip_intermediate_size
    shapes: dict[str, tuple] = {
        f"{DINO_SRC}cls_token": (1, 1, d), f"{DINO_SRC}pos_embed": (1, n, d),
        f"{DINO_SRC}patch_embed.proj.weight": (d, 3, ps, ps), f"{DINO_SRC}patch_embed.proj.bias": (d,),
    }
    if config.dino_num_registers:
        shapes[f"{DINO_SRC}reg_token"] = (1, config.dino_num_registers, d)
    for i in range(config.dino_num_layers):
        shapes.update(_vit_block_shapes(f"{DINO_SRC}blocks.{i}.", d, 4 * d, layerscale=True))
    shapes.update({f"{DINO_SRC}norm.weight": (d,), f"{DINO_SRC}norm.bias": (d,)})

    shapes.update({f"{SIGLIP_SRC}pos_embed": (1, n, s), f"{SIGLIP_SRC}patch_embed.proj.weight": (s, 3, ps, ps),
                   f"{SIGLIP_SRC}patch_embed.proj.bias": (s,)})
    for i in range(config.siglip_num_layers):
        shapes.update(_vit_block_shapes(f"{SIGLIP_SRC}blocks.{i}.", s, si, layerscale=False))
    pool = f"{SIGLIP_SRC}attn_pool."
    shapes.update({
        f"{SIGLIP_SRC}norm.weight": (s,), f"{SIGLIP_SRC}norm.bias": (s,), f"{pool}latent": (1, 1, s),
        f"{pool}q.weight": (s, s), f"{pool}q.bias": (s,), f"{pool}kv.weight": (2 * s, s), f"{pool}kv.bias": (2 * s,),
        f"{pool}proj.weight": (s, s), f"{pool}proj.bias": (s,), f"{pool}norm.weight": (s,), f"{pool}norm.bias": (s,),
        f"{pool}mlp.fc1.weight": (si, s), f"{pool}mlp.fc1.bias": (si,),
        f"{pool}mlp.fc2.weight": (s, si), f"{pool}mlp.fc2.bias": (s,),
    })

    vd, h = config.vision_dim, config.text_hidden_size
    shapes.update({"projector.fc1.weight": (4 * vd, vd), "projector.fc1.bias": (4 * vd,),
                   "projector.fc2.weight": (h, 4 * vd), "projector.fc2.bias": (h,),
                   "projector.fc3.weight": (h, h), "projector.fc3.bias": (h,)})

    v, i_, kv = config.padded_vocab_size, config.text_intermediate_size, \
        config.text_num_kv_heads * (h // config.text_num_heads)
    shapes["language_model.model.embed_tokens.weight"] = (v, h)
    for i in range(config.text_num_layers):
        p = f"language_model.model.layers.{i}."
        shapes.update({
            f"{p}self_attn.q_proj.weight": (h, h), f"{p}self_attn.k_proj.weight": (kv, h),
            f"{p}self_attn.v_proj.weight": (kv, h), f"{p}self_attn.o_proj.weight": (h, h),
            f"{p}mlp.gate_proj.weight": (i_, h), f"{p}mlp.up_proj.weight": (i_, h),
            f"{p}mlp.down_proj.weight": (h, i_),
            f"{p}input_layernorm.weight": (h,), f"{p}post_attention_layernorm.weight": (h,),
        })
    shapes.update({"language_model.model.norm.weight": (h,), "language_model.lm_head.weight": (v, h)})
    return shapes


# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Step:
    """One model tensor: ``target`` <- ``op`` applied to the checkpoint tensors ``sources``.

    Introduced in lesson 07.
    """

    target: str
    op: str  # copy | q | k | v | pos_with_cls | squeeze0 | concat0 | zeros
    sources: tuple[str, ...] = ()


def _vit_block_steps(src: str, dst: str, names: dict[str, str]) -> list[Step]:
    """A timm block -> a transformers block; ``names`` gives the target names of each part."""
    steps = []
    for w in ("weight", "bias"):
        for part in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
            steps.append(Step(f"{dst}{names[part]}.{w}", "copy", (f"{src}{part}.{w}",)))
        steps.append(Step(f"{dst}{names['attn.proj']}.{w}", "copy", (f"{src}attn.proj.{w}",)))
        for third in ("q", "k", "v"):
            steps.append(Step(f"{dst}{names[third]}.{w}", third, (f"{src}attn.qkv.{w}",)))
    for ls in ("ls1", "ls2"):
        if ls in names:
            steps.append(Step(f"{dst}{names[ls]}", "copy", (f"{src}{ls}.scale_factor",)))
    return steps


_DINO_BLOCK = {"norm1": "norm1", "norm2": "norm2", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
               "attn.proj": "attention.o_proj", "q": "attention.q_proj", "k": "attention.k_proj",
               "v": "attention.v_proj", "ls1": "layer_scale1.lambda1", "ls2": "layer_scale2.lambda1"}
_SIGLIP_BLOCK = {"norm1": "layer_norm1", "norm2": "layer_norm2", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
                 "attn.proj": "self_attn.out_proj", "q": "self_attn.q_proj", "k": "self_attn.k_proj",
                 "v": "self_attn.v_proj"}


def conversion_plan(config: OpenVLAConfig) -> list[Step]:
    """Every tensor of the transformers-native OpenVLA and where it comes from in openvla's checkpoint.

    Introduced in lesson 07.
    """
    s, d = SIGLIP_SRC, DINO_SRC
    steps = [
        Step(f"{DINO_DST}embeddings.cls_token", "copy", (f"{d}cls_token",)),
        Step(f"{DINO_DST}embeddings.position_embeddings", "pos_with_cls", (f"{d}pos_embed",)),
        Step(f"{DINO_DST}embeddings.mask_token", "zeros"),
        Step(f"{DINO_DST}embeddings.patch_embeddings.projection.weight", "copy", (f"{d}patch_embed.proj.weight",)),
        Step(f"{DINO_DST}embeddings.patch_embeddings.projection.bias", "copy", (f"{d}patch_embed.proj.bias",)),
        Step(f"{DINO_DST}layernorm.weight", "copy", (f"{d}norm.weight",)),
        Step(f"{DINO_DST}layernorm.bias", "copy", (f"{d}norm.bias",)),
    ]
    if config.dino_num_registers:
        steps.append(Step(f"{DINO_DST}embeddings.register_tokens", "copy", (f"{d}reg_token",)))
    for i in range(config.dino_num_layers):
        steps += _vit_block_steps(f"{d}blocks.{i}.", f"{DINO_DST}encoder.layer.{i}.", _DINO_BLOCK)

    pool, head = f"{s}attn_pool.", f"{SIGLIP_DST}head."
    steps += [
        Step(f"{SIGLIP_DST}embeddings.patch_embedding.weight", "copy", (f"{s}patch_embed.proj.weight",)),
        Step(f"{SIGLIP_DST}embeddings.patch_embedding.bias", "copy", (f"{s}patch_embed.proj.bias",)),
        Step(f"{SIGLIP_DST}embeddings.position_embedding.weight", "squeeze0", (f"{s}pos_embed",)),
        Step(f"{SIGLIP_DST}post_layernorm.weight", "copy", (f"{s}norm.weight",)),
        Step(f"{SIGLIP_DST}post_layernorm.bias", "copy", (f"{s}norm.bias",)),
        Step(f"{head}probe", "copy", (f"{pool}latent",)),
        Step(f"{head}attention.in_proj_weight", "concat0", (f"{pool}q.weight", f"{pool}kv.weight")),
        Step(f"{head}attention.in_proj_bias", "concat0", (f"{pool}q.bias", f"{pool}kv.bias")),
    ]
    for w in ("weight", "bias"):
        steps += [Step(f"{head}attention.out_proj.{w}", "copy", (f"{pool}proj.{w}",)),
                  Step(f"{head}layernorm.{w}", "copy", (f"{pool}norm.{w}",)),
                  Step(f"{head}mlp.fc1.{w}", "copy", (f"{pool}mlp.fc1.{w}",)),
                  Step(f"{head}mlp.fc2.{w}", "copy", (f"{pool}mlp.fc2.{w}",))]
    for i in range(config.siglip_num_layers):
        steps += _vit_block_steps(f"{s}blocks.{i}.", f"{SIGLIP_DST}encoder.layers.{i}.", _SIGLIP_BLOCK)

    for key in checkpoint_shapes(config):  # projector and Llama keep their names
        if key.startswith(("projector.", "language_model.")):
            steps.append(Step(key, "copy", (key,)))
    return steps


# ----------------------------------------------------------------------------- conversion


@dataclass
class ConversionReport:
    """What :func:`convert_state_dict` did. Introduced in lesson 07."""

    checkpoint_keys: int = 0
    target_tensors: int = 0
    qkv_split: int = 0
    dropped: dict[str, str] = field(default_factory=dict)
    synthesized: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for a notebook."""
        return (f"{self.checkpoint_keys} checkpoint tensors -> {self.target_tensors} model tensors; "
                f"{self.qkv_split} fused qkv tensors split in three; dropped {len(self.dropped)}, "
                f"synthesized {len(self.synthesized)} ({', '.join(k.rsplit('.', 1)[-1] for k in self.synthesized)})")


def _resolve(checkpoint: Mapping, key: str) -> str | None:
    """The checkpoint key holding ``key`` (LayerScale may be saved as ``gamma``), or None."""
    if key in checkpoint:
        return key
    if key.endswith(LAYERSCALE_ALIASES[0]):
        alias = key[: -len(LAYERSCALE_ALIASES[0])] + LAYERSCALE_ALIASES[1]
        if alias in checkpoint:
            return alias
    return None


def _apply(op: str, tensors: list[torch.Tensor], target_shape: tuple) -> torch.Tensor:
    if op == "copy":
        return tensors[0]
    if op in ("q", "k", "v"):  # fused rows [q; k; v]
        fused = tensors[0]
        if fused.shape[0] % 3:
            raise ValueError(f"a fused qkv tensor needs 3k rows, got shape {tuple(fused.shape)}")
        return fused.chunk(3, dim=0)["qkv".index(op)]
    if op == "pos_with_cls":  # (1, N, d) -> (1, 1 + N, d): class position is zero (folded into cls_token)
        pos = tensors[0]
        return torch.cat([pos.new_zeros(pos.shape[0], 1, pos.shape[2]), pos], dim=1)
    if op == "squeeze0":
        return tensors[0].squeeze(0)
    if op == "concat0":
        return torch.cat(tensors, dim=0)
    if op == "zeros":
        return torch.zeros(target_shape)
    raise ValueError(f"unknown conversion op {op!r}")


def _listing(keys, limit: int = 12) -> str:
    keys = sorted(keys)
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def convert_state_dict(checkpoint: Mapping[str, torch.Tensor], model: OpenVLAForActionPrediction,
                       dtype: torch.dtype | None = None,
                       check_finite: bool = True) -> tuple[dict[str, torch.Tensor], ConversionReport]:
    """openvla checkpoint tensors -> a state dict for ``model`` (transformers layout), and a report.

    Introduced in lesson 07. ``model`` may live on the ``meta`` device: only its tensor names
    and shapes are read. Raises ValueError listing every checkpoint key the plan does not
    consume (and that is not in :data:`DROPPED_KEYS`), every model tensor the plan does not
    fill, every source the checkpoint lacks, any shape that does not fit and (``check_finite``)
    any NaN/inf value. ``dtype`` casts the floating tensors (openvla-7b is stored in bf16).
    """
    targets = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    plan = conversion_plan(model.config)
    planned = {step.target for step in plan}
    if planned != set(targets):
        raise ValueError("conversion plan and model disagree: not planned: "
                         f"[{_listing(set(targets) - planned)}]; not in model: [{_listing(planned - set(targets))}]")
    report = ConversionReport(checkpoint_keys=len(checkpoint), target_tensors=len(targets))
    for key in checkpoint:
        for pattern, reason in DROPPED_KEYS.items():
            if re.search(pattern, key):
                report.dropped[key] = reason
    missing = sorted({src for step in plan for src in step.sources if _resolve(checkpoint, src) is None})
    if missing:
        raise ValueError(f"the checkpoint lacks {len(missing)} tensor(s) the model needs: [{_listing(missing)}]")
    consumed = {_resolve(checkpoint, src) for step in plan for src in step.sources}
    leftover = set(checkpoint) - consumed - set(report.dropped)
    if leftover:
        raise ValueError(f"{len(leftover)} checkpoint tensor(s) would be silently ignored: [{_listing(leftover)}]; "
                         "is this an openvla dinosiglip-224px checkpoint of the configured size?")
    state, split = {}, set()
    for step in plan:
        tensors = [checkpoint[_resolve(checkpoint, src)] for src in step.sources]
        for src, t in zip(step.sources, tensors):
            if check_finite and not t.is_meta and t.is_floating_point() and not torch.isfinite(t).all():
                raise ValueError(f"checkpoint tensor {src} holds NaN/inf values")
        tensor = _apply(step.op, tensors, targets[step.target])
        if tuple(tensor.shape) != targets[step.target]:
            raise ValueError(f"{step.target}: expected shape {targets[step.target]}, got {tuple(tensor.shape)} "
                             f"from {list(step.sources)} ({step.op})")
        if step.op == "zeros":
            report.synthesized[step.target] = ("DINOv2's mask token is used only in masked-image pretraining; timm's "
                                               "checkpoint has none: set to zeros")
        if step.op in ("q", "k", "v"):
            split.add(step.sources[0])
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        state[step.target] = tensor.contiguous()
    report.qkv_split = len(split)
    return state, report


# ----------------------------------------------------------------------------- files


class SafetensorsCheckpoint(Mapping):
    """A read-only, lazy ``{key: tensor}`` view of a folder's safetensors (sharded or single).

    Introduced in lesson 07. Tensors are read on access, so a 15 GB checkpoint is never held
    twice in memory.
    """

    def __init__(self, folder: str | Path):
        from safetensors import safe_open

        folder = Path(folder)
        index = folder / "model.safetensors.index.json"
        if index.exists():
            weight_map = json.loads(index.read_text())["weight_map"]
            files = sorted(set(weight_map.values()))
        else:
            files = sorted(p.name for p in folder.glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"no *.safetensors in {folder}. {MISSING_WEIGHTS_HELP}")
        self._handles, self._where = {}, {}
        for name in files:
            path = folder / name
            if not path.exists():
                raise FileNotFoundError(f"{path} is listed in the index but missing")
            handle = safe_open(str(path), framework="pt", device="cpu")
            self._handles[name] = handle
            for key in handle.keys():
                self._where[key] = name

    def __getitem__(self, key: str) -> torch.Tensor:
        return self._handles[self._where[key]].get_tensor(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


def _synthetic_tensor(key: str, shape: tuple, generator: torch.Generator) -> torch.Tensor:
    """Distinct random values per tensor; norms and layer scales around 1 so activations stay sane."""
    noise = torch.randn(shape, generator=generator)
    if re.search(r"(norm\w*|layernorm)\.weight$", key) or key.endswith(LAYERSCALE_ALIASES):
        return 1.0 + 0.1 * noise
    if key.endswith("bias"):
        return 0.02 * noise
    return (0.5 if key.endswith(("token", "latent", "pos_embed")) else 0.08) * noise


_ARCH_FIELDS = (
    "image_size", "patch_size", "dino_hidden_size", "dino_num_layers", "dino_num_heads", "dino_num_registers",
    "dino_layerscale_init", "siglip_hidden_size", "siglip_intermediate_size", "siglip_num_layers",
    "siglip_num_heads", "vision_feature_layer", "text_hidden_size", "text_intermediate_size", "text_num_layers",
    "text_num_heads", "text_num_kv_heads", "text_rms_norm_eps", "text_rope_theta", "text_max_position_embeddings",
    "base_vocab_size", "pad_to_multiple_of", "n_action_bins",
)


def openvla_config_json(config: OpenVLAConfig, norm_stats: dict | None = None) -> dict:
    """An openvla-style ``config.json`` for ``config`` (architecture sizes under a course-only key).

    Introduced in lesson 07. openvla-7b's own file has no sizes: they follow from
    ``timm_model_ids`` and ``llm_backbone_id``; the tiny model stores its sizes in
    ``"vla_lessons_architecture"``. ``norm_stats`` defaults to ``config.norm_stats``.
    """
    return {
        "architectures": ["OpenVLAForActionPrediction"], "model_type": "openvla",
        "arch_specifier": "no-align+fused-gelu-mlp", "vision_backbone_id": "dinosiglip-vit-so-224px",
        "llm_backbone_id": "llama2-7b-pure", "use_fused_vision_backbone": True,
        "timm_model_ids": TIMM_MODEL_IDS, "timm_override_act_layers": [None, None],
        "image_sizes": [config.image_size, config.image_size], "image_resize_strategy": "resize-naive",
        "n_action_bins": config.n_action_bins,
        "norm_stats": norm_stats if norm_stats is not None else config.norm_stats,
        "pad_token_id": config.text_pad_token_id, "pad_to_multiple_of": config.pad_to_multiple_of,
        "text_config": {"model_type": "llama", "vocab_size": config.padded_vocab_size,
                        "pad_token_id": config.text_pad_token_id},
        "vla_lessons_architecture": {name: getattr(config, name) for name in _ARCH_FIELDS},
    }


def config_from_openvla_json(folder: str | Path) -> OpenVLAConfig:
    """Read an openvla ``config.json``: the real one (openvla-7b) or a synthetic one.

    Introduced in lesson 07. Checks that it describes the fused DINOv2 + SigLIP 224 px
    backbone that this code implements; takes the vocabulary, bins and ``norm_stats`` from it.
    """
    path = Path(folder) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"no config.json in {folder}. {MISSING_WEIGHTS_HELP}")
    raw = json.loads(path.read_text())
    if not raw.get("use_fused_vision_backbone", False) or list(raw.get("timm_model_ids", [])) != TIMM_MODEL_IDS:
        raise ValueError(f"{path} is not a fused DINOv2 + SigLIP checkpoint (timm_model_ids "
                         f"{raw.get('timm_model_ids')!r}, expected {TIMM_MODEL_IDS})")
    if raw.get("image_resize_strategy", "resize-naive") != "resize-naive":
        raise ValueError(f"only the 'resize-naive' image strategy is implemented, got {raw['image_resize_strategy']!r}")
    pad_multiple = int(raw.get("pad_to_multiple_of", 64))
    vocab = int(raw.get("text_config", {}).get("vocab_size", 32064))
    fields = dict(image_size=int(raw.get("image_sizes", [224])[0]), pad_to_multiple_of=pad_multiple,
                  base_vocab_size=vocab - pad_multiple, n_action_bins=int(raw.get("n_action_bins", 256)))
    fields.update(raw.get("vla_lessons_architecture", {}))
    config = OpenVLAConfig(**fields, norm_stats=raw.get("norm_stats"))
    if config.padded_vocab_size != vocab:
        raise ValueError(f"text_config.vocab_size {vocab} does not match base {config.base_vocab_size} + <PAD> "
                         f"padded to {pad_multiple}")
    return config


def write_synthetic_checkpoint(folder: str | Path, config: OpenVLAConfig | None = None, seed: int = 0,
                               n_shards: int = 2, norm_stats: dict | None = None,
                               dtype: torch.dtype = torch.float32) -> Path:
    """Write a tiny openvla-7b look-alike folder: config.json, sharded safetensors + index, tokenizer.

    Introduced in lesson 07. Keys and layout are openvla's (:func:`checkpoint_shapes`), values
    are seeded random numbers (same seed, same bytes). ``config`` defaults to
    :meth:`OpenVLAConfig.tiny`; ``norm_stats`` to ``{"bridge_orig": ...}`` with openvla's real
    BridgeData statistics. Returns the folder.
    """
    from safetensors.torch import save_file

    config = config if config is not None else OpenVLAConfig.tiny()
    if norm_stats is None:
        norm_stats = config.norm_stats or {"bridge_orig": {"action": BRIDGE_ORIG_ACTION_STATS}}
    if not isinstance(n_shards, int) or n_shards < 1:
        raise ValueError(f"n_shards must be a positive integer, got {n_shards!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    shapes = checkpoint_shapes(config)
    tensors = {key: _synthetic_tensor(key, shape, generator).to(dtype) for key, shape in shapes.items()}
    keys = list(tensors)
    per_shard = -(-len(keys) // n_shards)
    weight_map, total = {}, 0
    for i in range(n_shards):
        name = f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors"
        shard = {k: tensors[k] for k in keys[i * per_shard:(i + 1) * per_shard]}
        save_file(shard, str(folder / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, name))
        total += sum(t.numel() * t.element_size() for t in shard.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    (folder / "config.json").write_text(json.dumps(openvla_config_json(config, norm_stats), indent=2))
    tiny_llama_tokenizer(config.base_vocab_size).save_pretrained(str(folder))
    return folder


# ----------------------------------------------------------------------------- loading


def _check_folder(folder) -> Path:
    if folder is None or not Path(folder).is_dir():
        raise FileNotFoundError(f"no OpenVLA weights folder at {folder!r}. {MISSING_WEIGHTS_HELP}")
    folder = Path(folder)
    if not (folder / "config.json").exists() or not any(folder.glob("*.safetensors")):
        raise FileNotFoundError(f"{folder} has no config.json and *.safetensors of openvla-7b. {MISSING_WEIGHTS_HELP}")
    return folder


def _materialize_buffers(model: OpenVLAForActionPrediction) -> None:
    """Recreate the non-persistent buffers that a ``meta`` build leaves without storage."""
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    lm = model.language_model.model
    lm.rotary_emb = LlamaRotaryEmbedding(config=model.language_model.config)
    embeddings = model.vision_backbone.siglip.embeddings
    embeddings.register_buffer("position_ids", torch.arange(embeddings.num_positions)[None], persistent=False)
    still_meta = [name for name, b in model.named_buffers() if b.is_meta]
    if still_meta:
        raise RuntimeError(f"buffers left on the meta device: {still_meta}")


def _processor_for(folder: Path, config: OpenVLAConfig) -> OpenVLAProcessor:
    from transformers import PreTrainedTokenizerFast

    if not (folder / "tokenizer.json").exists():
        raise FileNotFoundError(f"no tokenizer.json in {folder}: the Llama-2 tokenizer ships with openvla-7b. "
                                f"{MISSING_WEIGHTS_HELP}")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder))  # reads tokenizer.json; never the network
    means, stds = (DINO_MEAN, SIGLIP_MEAN), (DINO_STD, SIGLIP_STD)
    preprocessor = folder / "preprocessor_config.json"
    if preprocessor.exists():  # openvla-7b ships the two normalisations here
        raw = json.loads(preprocessor.read_text())
        if any(mode != "bicubic" for mode in raw.get("interpolations", ["bicubic"])):
            raise ValueError(f"{preprocessor}: only bicubic resizing is implemented, got {raw['interpolations']}")
        means, stds = raw.get("means", means), raw.get("stds", stds)
    return OpenVLAProcessor(tokenizer, image_size=config.image_size, means=means, stds=stds)


def load_converted_model(folder: str | Path, dtype: torch.dtype = torch.float32,
                         device: str | torch.device = "cpu") -> OpenVLAForActionPrediction:
    """Build the model on ``meta``, convert the folder's checkpoint into it, attach a processor.

    Introduced in lesson 07. Works on any openvla-style folder; for the real 7B use
    :func:`load_openvla`, which adds the GPU guard. The model is returned in eval mode with
    ``model.processor`` and ``model.conversion_report`` set.
    """
    folder = _check_folder(folder)
    config = config_from_openvla_json(folder)
    with torch.device("meta"):
        model = OpenVLAForActionPrediction(config)
    state, report = convert_state_dict(SafetensorsCheckpoint(folder), model, dtype=dtype)
    model.load_state_dict(state, strict=True, assign=True)
    _materialize_buffers(model)
    model.to(device)
    model.eval()
    model.processor = _processor_for(folder, config)
    model.conversion_report = report
    return model


def load_openvla(folder: str | Path | None, device: str | torch.device | None = None,
                 dtype: torch.dtype = torch.bfloat16, allow_cpu: bool = False) -> OpenVLAForActionPrediction:
    """The real openvla-7b from a local folder, converted to the transformers-native model.

    Introduced in lesson 07. Never downloads: a missing folder raises FileNotFoundError
    explaining where to get it. Needs a CUDA GPU with about 16 GB in bf16 (and about 15 GB of
    CPU RAM while converting); ``allow_cpu=True`` runs it on the CPU anyway (bf16 on a CPU
    without bf16 units is very slow; fp32 would need 30 GB).
    """
    folder = _check_folder(folder)
    if device is None:
        if not env.has_gpu() and not allow_cpu:
            raise RuntimeError("openvla-7b needs a CUDA GPU (about 16 GB in bf16); this machine has none. "
                               "Pass allow_cpu=True to run it on the CPU anyway (slow).")
        device = "cuda" if env.has_gpu() else "cpu"
    return load_converted_model(folder, dtype=dtype, device=device)


def prepare_qlora_model(converted_folder: str | Path, rank: int = 32):
    """A 4-bit NF4 model with LoRA adapters, as openvla's finetune.py with ``use_quantization``.

    Introduced in lesson 07. ``converted_folder`` is a ``model.save_pretrained`` of a converted
    model (transformers layout). GPU-only: needs CUDA and bitsandbytes, checked in that order
    after the folder.
    """
    from vla_lessons.model.openvla import finetune_setup, require_bitsandbytes

    folder = Path(converted_folder) if converted_folder is not None else None
    if folder is None or not (folder / "config.json").exists():
        raise FileNotFoundError(f"no converted OpenVLA at {converted_folder!r}: convert with load_openvla(...) and "
                                f"save with model.save_pretrained(folder) first. {MISSING_WEIGHTS_HELP}")
    if not env.has_gpu():
        raise RuntimeError("4-bit QLoRA fine-tuning needs a CUDA GPU; this machine has none")
    require_bitsandbytes()
    from peft import get_peft_model, prepare_model_for_kbit_training

    setup = finetune_setup(rank, use_quantization=True)
    model = OpenVLAForActionPrediction.from_pretrained(str(folder), quantization_config=setup["quantization"],
                                                       dtype=setup["torch_dtype"], device_map={"": 0})
    model = prepare_model_for_kbit_training(model)
    return get_peft_model(model, setup["lora"])
