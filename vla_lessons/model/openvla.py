"""The real OpenVLA-7B, offline: its architecture from transformers classes, its figures, ``predict_action``.

Introduced in lesson 06 (prompt, ``predict_action``) and lesson 07 (parameter and memory figures,
LoRA). Every figure here is *computed* from the real configurations on PyTorch's ``meta``
device (shapes without storage), so nothing is downloaded and the 7.5 billion parameters cost
no memory. The paper's own numbers sit apart, in :data:`PAPER_FIGURES`, for comparison.

OpenVLA (Kim et al., 2024) is a Prismatic VLM turned into a policy::

    image --+-- DINOv2 ViT-L/14 + 4 registers (1024) --+                      (256 patches x 2176)
            +-- SigLIP So400m/14           (1152) ------+-- concat --> fused MLP projector
                                                             2176 -> 8704 -> 4096 -> 4096
    "<s>" + [256 projected patches] + "In: What action should the robot take to ...?\\nOut: "
        --> Llama-2-7B (vocabulary 32000 + <PAD>, padded to 32064) --> 7 action tokens
        --> bins --> un-normalise with the dataset's q01/q99 --> 7 numbers

OpenVLA's released code builds the two vision towers with ``timm`` (a fused ``qkv`` projection
per block) and needs transformers 4.40.1; neither runs in this course's environment. Here the
same architecture is assembled from transformers-native classes (``Dinov2WithRegistersModel``,
``SiglipVisionModel``, ``LlamaForCausalLM``) and :mod:`vla_lessons.model.openvla_convert`
maps the released checkpoint onto it.

Two facts from openvla's code that a reader might not expect:

* ``featurizer`` is DINOv2 and ``fused_featurizer`` is SigLIP (``timm_model_ids`` lists DINOv2
  first); the 6-channel ``pixel_values`` hold the DINOv2-normalised image in channels 0-2 and
  the SigLIP-normalised one in channels 3-5, and the features are concatenated in that order.
* Both towers are read at their **second-to-last** block (``get_intermediate_layers`` with
  ``n={depth - 2}``), without the final norm; the last block, the final norms and SigLIP's
  attention-pooling head are carried in the checkpoint but never touch an action.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn
from transformers import (
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersModel,
    LlamaConfig,
    LlamaForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from vla_lessons.vision.fusion import FusedBackbone, FusedProjector

#: OpenVLA's prompt (``PurePromptBuilder``); the instruction is inserted as given. The training
#: data's instructions were lower-cased, so pass lower-case text for the released model.
PROMPT_TEMPLATE = "In: What action should the robot take to {instruction}?\nOut:"
#: Label value that the cross-entropy ignores (image patches and prompt tokens).
IGNORE_INDEX = -100
#: SentencePiece's word-start marker; alone it is the "empty" token 29871 of Llama-2, which
#: follows "Out:" in every training sequence ("Out: " + action tokens).
EMPTY_TOKEN = "\u2581"

#: Normalisation of each tower, from openvla-7b's ``preprocessor_config.json`` (timm's values).
DINO_MEAN, DINO_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SIGLIP_MEAN, SIGLIP_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)

#: ``norm_stats["bridge_orig"]["action"]`` (q01, q99, mask) from openvla-7b's ``config.json``:
#: BridgeData V2 end-effector deltas; the gripper (mask False) is left in [-1, 1].
BRIDGE_ORIG_ACTION_STATS = {
    "q01": [-0.02872725307941437, -0.04170349963009357, -0.026093858778476715,
            -0.08092105075716972, -0.09288699507713317, -0.20718276381492615, 0.0],
    "q99": [0.028309678435325586, 0.040855254605412394, 0.040161586627364146,
            0.08192047759890528, 0.07792850524187081, 0.20382574498653397, 1.0],
    "mask": [True, True, True, True, True, True, False],
}

#: Figures **quoted** from the OpenVLA paper (arXiv 2406.09246) and model card, for comparison
#: only: nothing in this module returns them as its own result. Units are in the key names.
#: Table 1 of the paper lists trainable parameters of each fine-tuning strategy and the GPU
#: memory at batch size 16 (full and frozen-vision fine-tuning sharded over 2 GPUs with FSDP).
PAPER_FIGURES = {
    "total_params_B": 7.54,                      # model card: "7.54B params"
    "full_ft_trainable_params_M": 7188.1,        # Table 1
    "frozen_vision_trainable_params_M": 6760.4,  # Table 1
    "last_layer_trainable_params_M": 465.1,      # Table 1
    "sandwich_trainable_params_M": 914.2,        # Table 1
    "lora_r32_trainable_params_M": 97.6,         # Table 1
    "lora_r32_trainable_percent": 1.4,           # text: "1.4% of the parameters"
    "lora_r64_trainable_params_M": 195.2,        # Table 1
    "bf16_inference_memory_GB": 16.8,            # quantized-inference table, bfloat16 row
    "bf16_inference_memory_readme_GB": 15.0,     # README: "~15GB of GPU memory" in bfloat16
    "full_ft_memory_GB": 163.3,                  # Table 1, batch 16, 2 GPUs (FSDP)
    "lora_r32_memory_GB": 59.7,                  # Table 1, batch 16, 1 GPU
}

#: Fine-tuning strategies of the paper's Table 1 that freeze whole modules (LoRA is separate).
STRATEGIES = ("full", "frozen_vision", "last_layer", "sandwich")

GB = 1e9  # memory figures are in decimal gigabytes


# ----------------------------------------------------------------------------- configuration


class OpenVLAConfig(PretrainedConfig):
    """Every number of OpenVLA-7B's architecture in one place; the defaults are the real model.

    Introduced in lesson 07. ``OpenVLAConfig()`` is openvla-7b (``dinosiglip-vit-so-224px`` +
    ``llama2-7b-pure``); :meth:`tiny` is the same architecture with toy sizes for tests and
    CPU demos. The three ``*_config()`` methods build the transformers configurations of the
    parts. ``norm_stats`` holds the per-dataset action statistics (``{dataset: {"action":
    {"q01": [...], "q99": [...], "mask": [...]}}}``) used to un-normalise actions.
    """

    model_type = "vla_lessons_openvla"

    def __init__(
        self,
        image_size: int = 224,
        patch_size: int = 14,
        dino_hidden_size: int = 1024,
        dino_num_layers: int = 24,
        dino_num_heads: int = 16,
        dino_num_registers: int = 4,
        dino_layerscale_init: float = 1e-5,
        siglip_hidden_size: int = 1152,
        siglip_intermediate_size: int = 4304,
        siglip_num_layers: int = 27,
        siglip_num_heads: int = 16,
        vision_feature_layer: int = -2,
        text_hidden_size: int = 4096,
        text_intermediate_size: int = 11008,
        text_num_layers: int = 32,
        text_num_heads: int = 32,
        text_num_kv_heads: int = 32,
        text_rms_norm_eps: float = 1e-5,
        text_rope_theta: float = 10000.0,
        text_max_position_embeddings: int = 4096,
        base_vocab_size: int = 32000,
        pad_to_multiple_of: int = 64,
        n_action_bins: int = 256,
        norm_stats: dict | None = None,
        **kwargs,
    ):
        ints = dict(
            image_size=image_size, patch_size=patch_size, dino_hidden_size=dino_hidden_size,
            dino_num_layers=dino_num_layers, dino_num_heads=dino_num_heads,
            siglip_hidden_size=siglip_hidden_size, siglip_intermediate_size=siglip_intermediate_size,
            siglip_num_layers=siglip_num_layers, siglip_num_heads=siglip_num_heads,
            text_hidden_size=text_hidden_size, text_intermediate_size=text_intermediate_size,
            text_num_layers=text_num_layers, text_num_heads=text_num_heads,
            text_num_kv_heads=text_num_kv_heads, text_max_position_embeddings=text_max_position_embeddings,
            base_vocab_size=base_vocab_size, pad_to_multiple_of=pad_to_multiple_of,
            n_action_bins=n_action_bins,
        )
        for name, value in ints.items():
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(dino_num_registers, bool) or not isinstance(dino_num_registers, int) or dino_num_registers < 0:
            raise ValueError(f"dino_num_registers must be a non-negative integer, got {dino_num_registers!r}")
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} must be a multiple of patch_size {patch_size}")
        for hidden, heads, name in ((dino_hidden_size, dino_num_heads, "dino"),
                                    (siglip_hidden_size, siglip_num_heads, "siglip"),
                                    (text_hidden_size, text_num_heads, "text")):
            if hidden % heads:
                raise ValueError(f"{name} hidden size {hidden} is not divisible by its {heads} heads")
        if text_num_heads % text_num_kv_heads:
            raise ValueError(f"text_num_heads {text_num_heads} must be a multiple of text_num_kv_heads")
        depth = min(dino_num_layers, siglip_num_layers)
        if not isinstance(vision_feature_layer, int) or not -depth <= vision_feature_layer <= -1:
            raise ValueError(f"vision_feature_layer must be in [-{depth}, -1] (-2 = second-to-last block), "
                             f"got {vision_feature_layer!r}")
        if base_vocab_size < n_action_bins + 3:
            raise ValueError(f"base_vocab_size {base_vocab_size} leaves no room for {n_action_bins} action "
                             "tokens and the special tokens")
        for name, value in (("dino_layerscale_init", dino_layerscale_init), ("text_rms_norm_eps", text_rms_norm_eps),
                            ("text_rope_theta", text_rope_theta)):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        self.image_size, self.patch_size = int(image_size), int(patch_size)
        self.dino_hidden_size, self.dino_num_layers = int(dino_hidden_size), int(dino_num_layers)
        self.dino_num_heads, self.dino_num_registers = int(dino_num_heads), int(dino_num_registers)
        self.dino_layerscale_init = float(dino_layerscale_init)
        self.siglip_hidden_size, self.siglip_intermediate_size = int(siglip_hidden_size), int(siglip_intermediate_size)
        self.siglip_num_layers, self.siglip_num_heads = int(siglip_num_layers), int(siglip_num_heads)
        self.vision_feature_layer = int(vision_feature_layer)
        self.text_hidden_size, self.text_intermediate_size = int(text_hidden_size), int(text_intermediate_size)
        self.text_num_layers, self.text_num_heads = int(text_num_layers), int(text_num_heads)
        self.text_num_kv_heads = int(text_num_kv_heads)
        self.text_rms_norm_eps, self.text_rope_theta = float(text_rms_norm_eps), float(text_rope_theta)
        self.text_max_position_embeddings = int(text_max_position_embeddings)
        self.base_vocab_size, self.pad_to_multiple_of = int(base_vocab_size), int(pad_to_multiple_of)
        self.n_action_bins = int(n_action_bins)
        self.norm_stats = norm_stats
        super().__init__(**kwargs)

    @classmethod
    def tiny(cls, **overrides) -> "OpenVLAConfig":
        """The OpenVLA architecture at toy size (28 px, 4 patches, vocabulary 512 + padding).

        Introduced in lesson 07. Three ViT blocks per tower so that the second-to-last block
        differs from the last one; ``overrides`` replace any field.
        """
        sizes = dict(
            image_size=28, patch_size=14, dino_hidden_size=32, dino_num_layers=3, dino_num_heads=2,
            dino_num_registers=4, dino_layerscale_init=0.5, siglip_hidden_size=48,
            siglip_intermediate_size=96, siglip_num_layers=3, siglip_num_heads=2, text_hidden_size=64,
            text_intermediate_size=128, text_num_layers=2, text_num_heads=4, text_num_kv_heads=4,
            text_max_position_embeddings=256, base_vocab_size=512, pad_to_multiple_of=64,
        )
        sizes.update(overrides)
        return cls(**sizes)

    @property
    def padded_vocab_size(self) -> int:
        """Rows of the embedding matrix: base vocabulary + ``<PAD>``, rounded up (32000 -> 32064)."""
        m = self.pad_to_multiple_of
        return (self.base_vocab_size + 1 + m - 1) // m * m

    @property
    def text_pad_token_id(self) -> int:
        """Id of the ``<PAD>`` token that openvla appends to the base vocabulary (32000)."""
        return self.base_vocab_size

    @property
    def action_vocab_size(self) -> int:
        """The vocabulary size that action ids count down from (32000: bin k <-> id 32000 - k).

        openvla computes it as ``text_config.vocab_size - pad_to_multiple_of`` (32064 - 64); that
        equals the tokenizer's base vocabulary whenever it is a multiple of 64, as here.
        """
        return self.base_vocab_size

    @property
    def num_patches(self) -> int:
        """Image patches per tower: (224 / 14)^2 = 256."""
        return (self.image_size // self.patch_size) ** 2

    @property
    def vision_dim(self) -> int:
        """Width of the fused patch features: 1024 (DINOv2) + 1152 (SigLIP) = 2176."""
        return self.dino_hidden_size + self.siglip_hidden_size

    def dino_config(self) -> Dinov2WithRegistersConfig:
        """DINOv2 ViT-L/14 with 4 registers (timm ``vit_large_patch14_reg4_dinov2.lvd142m``)."""
        return Dinov2WithRegistersConfig(
            hidden_size=self.dino_hidden_size, num_hidden_layers=self.dino_num_layers,
            num_attention_heads=self.dino_num_heads, mlp_ratio=4, image_size=self.image_size,
            patch_size=self.patch_size, num_register_tokens=self.dino_num_registers,
            layerscale_value=self.dino_layerscale_init, hidden_act="gelu", layer_norm_eps=1e-6,
            qkv_bias=True,
        )

    def siglip_config(self) -> SiglipVisionConfig:
        """SigLIP So400m/14 at 224 px (timm ``vit_so400m_patch14_siglip_224``).

        ``hidden_act="gelu"``: openvla's timm tower uses the exact GELU, not the tanh
        approximation of transformers' SigLIP default.
        """
        return SiglipVisionConfig(
            hidden_size=self.siglip_hidden_size, intermediate_size=self.siglip_intermediate_size,
            num_hidden_layers=self.siglip_num_layers, num_attention_heads=self.siglip_num_heads,
            image_size=self.image_size, patch_size=self.patch_size, hidden_act="gelu",
            layer_norm_eps=1e-6, vision_use_head=True,
        )

    def llama_config(self) -> LlamaConfig:
        """Llama-2-7B with the embedding padded for ``<PAD>`` (32064 rows)."""
        return LlamaConfig(
            vocab_size=self.padded_vocab_size, hidden_size=self.text_hidden_size,
            intermediate_size=self.text_intermediate_size, num_hidden_layers=self.text_num_layers,
            num_attention_heads=self.text_num_heads, num_key_value_heads=self.text_num_kv_heads,
            rms_norm_eps=self.text_rms_norm_eps, rope_theta=self.text_rope_theta,
            max_position_embeddings=self.text_max_position_embeddings, hidden_act="silu",
            bos_token_id=1, eos_token_id=2, pad_token_id=self.text_pad_token_id, tie_word_embeddings=False,
        )


# ----------------------------------------------------------------------------- architecture


class DinoSigLIPBackbone(FusedBackbone):
    """openvla-7b's vision backbone: lesson 04's :class:`~vla_lessons.vision.fusion.FusedBackbone` at real size.

    Introduced in lesson 07 (its small twin in lesson 04). Both towers are built from the real
    configurations (``config.dino_config()``, ``config.siglip_config()``) and read at the
    second-to-last block; ``forward`` takes ``(B, 6, 224, 224)`` float pixels (DINOv2-normalised
    channels 0-2, SigLIP-normalised 3-5) and returns ``(B, 256, 2176)``: DINOv2's patch tokens
    (class and register tokens dropped) then SigLIP's. The towers are ``.dino`` and ``.siglip``
    (openvla's checkpoint calls them ``featurizer`` and ``fused_featurizer``).
    """

    def __init__(self, config: OpenVLAConfig):
        super().__init__(SiglipVisionModel(config.siglip_config()), Dinov2WithRegistersModel(config.dino_config()),
                         config.vision_feature_layer)


class OpenVLAForActionPrediction(PreTrainedModel):
    """OpenVLA-7B built from transformers-native parts: vision backbone, projector, Llama-2.

    Introduced in lesson 07. Build it on the ``meta`` device for figures
    (:func:`build_meta_openvla`), load the real weights with
    :func:`vla_lessons.model.openvla_convert.load_openvla` (GPU), or convert the course's tiny
    synthetic checkpoint on the CPU. ``forward`` inserts the projected patches after ``<s>``
    exactly as openvla does; :meth:`predict_action` turns an image and an instruction into an
    action. A :class:`OpenVLAProcessor` attached as ``model.processor`` by the loaders is used
    when none is passed.
    """

    config_class = OpenVLAConfig
    base_model_prefix = "openvla"
    main_input_name = "input_ids"
    _no_split_modules = ["LlamaDecoderLayer", "SiglipEncoderLayer", "Dinov2WithRegistersLayer"]

    def __init__(self, config: OpenVLAConfig):
        super().__init__(config)
        self.vision_backbone = DinoSigLIPBackbone(config)
        self.projector = FusedProjector(config.vision_dim, config.text_hidden_size)
        self.language_model = LlamaForCausalLM(config.llama_config())
        self.processor = None
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """The three parts initialise themselves; released weights replace everything anyway."""

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module:
        # peft's target_modules="all-linear" leaves this layer (lm_head) out, as for openvla.
        return self.language_model.get_output_embeddings()

    def forward(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                past_key_values=None, use_cache: bool | None = None):
        """Logits over the padded vocabulary for ``<s> + patches + text`` (``CausalLMOutputWithPast``).

        ``input_ids`` ``(B, T)`` long starting with ``<s>``; ``pixel_values`` ``(B, 6, H, W)``
        float or ``None`` (text only, or a cached decoding step); ``labels`` ``(B, T)`` with
        ``IGNORE_INDEX`` where no loss is wanted (patches get it automatically).
        """
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids must be (B, T), got shape {tuple(input_ids.shape)}")
        embeds = self.get_input_embeddings()(input_ids)
        if pixel_values is not None:
            if pixel_values.shape[0] != input_ids.shape[0]:
                raise ValueError(f"batch mismatch: {pixel_values.shape[0]} images for {input_ids.shape[0]} prompts")
            if not torch.isfinite(pixel_values).all():
                raise ValueError("pixel_values must be finite (no NaN/inf)")
            patches = self.projector(self.vision_backbone(pixel_values.to(embeds.dtype)))
            batch, n_patches = patches.shape[:2]
            embeds = torch.cat([embeds[:, :1], patches, embeds[:, 1:]], dim=1)
            if attention_mask is not None:
                ones = attention_mask.new_ones(batch, n_patches)
                attention_mask = torch.cat([attention_mask[:, :1], ones, attention_mask[:, 1:]], dim=1)
            if labels is not None:
                ignore = labels.new_full((batch, n_patches), IGNORE_INDEX)
                labels = torch.cat([labels[:, :1], ignore, labels[:, 1:]], dim=1)
        return self.language_model(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels,
                                   past_key_values=past_key_values, use_cache=use_cache)

    @torch.no_grad()
    def generate_action_ids(self, input_ids: torch.Tensor, pixel_values: torch.Tensor, n_tokens: int) -> torch.Tensor:
        """Greedy decoding of ``n_tokens`` ids with the KV cache: ``(B, n_tokens)`` long.

        One forward over image + prompt (prefill), then one token at a time, each step taking
        the arg-max over the whole padded vocabulary, as ``generate(do_sample=False)`` does.
        """
        if not isinstance(n_tokens, int) or n_tokens < 1:
            raise ValueError(f"n_tokens must be a positive integer, got {n_tokens!r}")
        out = self(input_ids=input_ids, pixel_values=pixel_values, use_cache=True)
        next_ids = out.logits[:, -1].argmax(dim=-1)
        generated = [next_ids]
        for _ in range(n_tokens - 1):
            out = self.language_model(input_ids=next_ids[:, None], past_key_values=out.past_key_values,
                                      use_cache=True)
            next_ids = out.logits[:, -1].argmax(dim=-1)
            generated.append(next_ids)
        return torch.stack(generated, dim=1)

    def action_stats(self, unnorm_key: str | None = "bridge_orig") -> dict:
        """The ``{"q01", "q99", "mask"}`` statistics of ``unnorm_key`` from ``config.norm_stats``.

        ``None`` is accepted when the model knows a single dataset (as in openvla).
        """
        return action_stats(self.config.norm_stats, unnorm_key)

    @torch.no_grad()
    def predict_action(self, image, instruction: str, unnorm_key: str | None = "bridge_orig",
                       processor: "OpenVLAProcessor | None" = None) -> np.ndarray:
        """One action, ``(D,)`` float64 (D = 7 for bridge_orig), from an RGB image and an instruction.

        Introduced in lesson 06. The steps of openvla's ``predict_action``: prompt
        ``In: What action should the robot take to {instruction}?\\nOut:``, the empty token
        ``"▁"`` appended (it follows "Out:" in training), greedy decoding of D tokens, bin
        centres from ``vocab_size - id``, un-normalisation with the dataset's q01/q99 where
        ``mask`` is true (the gripper stays in [-1, 1]). ``image``: PIL image or ``(H, W, 3)``
        uint8 array. In a closed loop on the CPU, call ``torch.set_num_threads(1)`` first.
        """
        processor = processor if processor is not None else self.processor
        if processor is None:
            raise ValueError("predict_action needs an OpenVLAProcessor: pass processor=... or load the model "
                             "with a loader that attaches one (model.processor)")
        stats = self.action_stats(unnorm_key)
        inputs = processor(instruction, image)
        input_ids = append_empty_token(inputs["input_ids"], processor.empty_token_id)
        device = self.get_input_embeddings().weight.device
        was_training = self.training
        self.eval()
        try:
            ids = self.generate_action_ids(input_ids.to(device), inputs["pixel_values"].to(device),
                                           n_tokens=len(stats["q01"]))
        finally:
            self.train(was_training)
        normalized = decode_action_ids(ids[0].cpu().numpy(), self.config.action_vocab_size,
                                       self.config.n_action_bins)
        return unnormalize_actions(normalized, stats)


def build_meta_openvla(config: OpenVLAConfig | None = None) -> OpenVLAForActionPrediction:
    """OpenVLA-7B (or ``config``) on the ``meta`` device: every shape, no storage, under a second.

    Introduced in lesson 07.
    """
    with torch.device("meta"):
        return OpenVLAForActionPrediction(config if config is not None else OpenVLAConfig())


# ----------------------------------------------------------------------------- actions


def action_stats(norm_stats: Mapping | None, unnorm_key: str | None) -> dict:
    """Validated action statistics ``{"q01", "q99", "mask"}`` (numpy) of one dataset.

    Introduced in lesson 06. Unknown keys raise a ValueError that lists the known ones.
    """
    if not norm_stats:
        raise ValueError("this model carries no dataset statistics (config.norm_stats is empty), so actions "
                         "cannot be un-normalised")
    known = sorted(norm_stats)
    if unnorm_key is None:
        if len(known) != 1:
            raise ValueError(f"the model was trained on {len(known)} datasets; pass unnorm_key= one of {known}")
        unnorm_key = known[0]
    if unnorm_key not in norm_stats:
        raise ValueError(f"unknown unnorm_key {unnorm_key!r}; known dataset statistics: {known}")
    entry = norm_stats[unnorm_key]
    stats = entry.get("action", entry) if isinstance(entry, Mapping) else None
    if not isinstance(stats, Mapping) or "q01" not in stats or "q99" not in stats:
        raise ValueError(f"norm_stats[{unnorm_key!r}] must hold action q01 and q99")
    q01 = np.asarray(stats["q01"], dtype=np.float64)
    q99 = np.asarray(stats["q99"], dtype=np.float64)
    mask = np.asarray(stats.get("mask", np.ones_like(q01, dtype=bool)), dtype=bool)
    if q01.ndim != 1 or q01.shape != q99.shape or mask.shape != q01.shape or q01.size == 0:
        raise ValueError(f"q01, q99 and mask of {unnorm_key!r} must be 1-D of one length, got "
                         f"{q01.shape}, {q99.shape}, {mask.shape}")
    if not (np.isfinite(q01).all() and np.isfinite(q99).all()):
        raise ValueError(f"statistics of {unnorm_key!r} must be finite")
    return {"q01": q01, "q99": q99, "mask": mask}


def append_empty_token(input_ids: torch.Tensor, empty_token_id: int) -> torch.Tensor:
    """Append the empty token ``"▁"`` (29871 in Llama-2) unless the prompt already ends with it.

    Introduced in lesson 06. Training sequences read "Out: " + action tokens, and the space
    becomes its own token before the action characters, so inference must end the same way.
    """
    if bool((input_ids[:, -1] == empty_token_id).all()):
        return input_ids
    tail = input_ids.new_full((input_ids.shape[0], 1), empty_token_id)
    return torch.cat([input_ids, tail], dim=1)


def decode_action_ids(token_ids, vocab_size: int = 32000, n_bins: int = 256) -> np.ndarray:
    """openvla's bin decoding: id -> ``vocab_size - id`` -> bin centre in [-1, 1], float64.

    Introduced in lesson 06. Lesson 02's :class:`~vla_lessons.actions.bins.ActionTokenizer` in
    OpenVLA's layout (256 edges ``np.linspace(-1, 1, 256)``, 255 centres) with ``clip=True``:
    the released model clips the bin index into range, so any id outside the 256 action ids
    saturates at an end instead of raising.
    """
    ids = np.asarray(token_ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"token ids must be integers, got dtype {ids.dtype}")
    return _bin_grid(vocab_size, n_bins).decode_normalized(ids, clip=True)


def _bin_grid(vocab_size: int, n_bins: int):
    from vla_lessons.actions.bins import ActionTokenizer

    stats = {"action": {"q01": [-1.0], "q99": [1.0]}}  # decode_normalized never reads the statistics
    return ActionTokenizer(stats, vocab_size=vocab_size, n_bins=n_bins, layout="openvla")


def unnormalize_actions(normalized, stats: Mapping) -> np.ndarray:
    """Map [-1, 1] back to the dataset's units: ``0.5 (a + 1)(q99 - q01) + q01`` where ``mask``.

    Introduced in lesson 06: lesson 02's :class:`~vla_lessons.actions.bins.QuantileNormalizer`.
    Unmasked dimensions (the gripper) are returned as they are.
    """
    from vla_lessons.actions.bins import QuantileNormalizer

    q01 = np.asarray(stats["q01"], np.float64)
    mask = np.asarray(stats.get("mask", np.ones_like(q01, dtype=bool)), dtype=bool)
    a = np.asarray(normalized, dtype=np.float64)
    if a.shape[-1:] != q01.shape:
        raise ValueError(f"actions have {a.shape[-1:]} dimensions, statistics {q01.shape}")
    if not np.isfinite(a).all():
        raise ValueError("normalized actions must be finite")
    return QuantileNormalizer(q01, stats["q99"], mask).unnormalize(a)


# ----------------------------------------------------------------------------- processor


class OpenVLAProcessor:
    """Instruction + image -> ``input_ids``, ``attention_mask``, ``pixel_values``, as openvla's processor.

    Introduced in lesson 06. The image is resized to ``image_size`` squared with bicubic
    filtering ("resize-naive", no crop), scaled to [0, 1], normalised once with DINOv2's
    mean/std and once with SigLIP's, and the two are stacked into 6 channels. ``tokenizer`` is
    a Llama-2 tokenizer (the released one, or :func:`tiny_llama_tokenizer`) that adds ``<s>``.
    """

    def __init__(self, tokenizer, image_size: int = 224, means=(DINO_MEAN, SIGLIP_MEAN), stds=(DINO_STD, SIGLIP_STD)):
        if len(means) != 2 or len(stds) != 2:
            raise ValueError("means and stds need one (r, g, b) triple per vision tower (2)")
        self.tokenizer = tokenizer
        self.image_size = int(image_size)
        self.means = torch.tensor(means, dtype=torch.float32).reshape(2, 3, 1, 1)
        self.stds = torch.tensor(stds, dtype=torch.float32).reshape(2, 3, 1, 1)
        if not (self.stds > 0).all():
            raise ValueError("stds must be positive")

    @staticmethod
    def prompt(instruction: str) -> str:
        """``In: What action should the robot take to {instruction}?\\nOut:``."""
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError(f"instruction must be a non-empty string, got {instruction!r}")
        return PROMPT_TEMPLATE.format(instruction=instruction.strip())

    @property
    def empty_token_id(self) -> int:
        """Id of the lone ``"▁"`` token (29871 in Llama-2)."""
        token_id = self.tokenizer.convert_tokens_to_ids(EMPTY_TOKEN)
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            raise ValueError("the tokenizer has no lone '\u2581' token; it is not a Llama-2 style tokenizer")
        return int(token_id)

    def pixel_values(self, image) -> torch.Tensor:
        """``(1, 6, S, S)`` float32: the image normalised for DINOv2 (0-2) and SigLIP (3-5)."""
        from PIL import Image

        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"an image array must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
            image = Image.fromarray(image)
        if not isinstance(image, Image.Image):
            raise TypeError(f"image must be a PIL image or an (H, W, 3) uint8 array, got {type(image).__name__}")
        resized = image.convert("RGB").resize((self.image_size, self.image_size), Image.Resampling.BICUBIC)
        pixels = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0).permute(2, 0, 1)
        stacked = (pixels[None] - self.means) / self.stds          # (2, 3, S, S)
        return stacked.reshape(1, 6, self.image_size, self.image_size)

    def __call__(self, instruction: str, image) -> dict[str, torch.Tensor]:
        encoded = self.tokenizer(self.prompt(instruction), return_tensors="pt")
        input_ids = encoded["input_ids"]
        bos = self.tokenizer.bos_token_id
        if bos is not None and int(input_ids[0, 0]) != bos:  # openvla inserts the patches after <s>
            input_ids = torch.cat([input_ids.new_full((1, 1), bos), input_ids], dim=1)
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
                "pixel_values": self.pixel_values(image)}


def tiny_llama_tokenizer(base_vocab_size: int = 512):
    """A character-level tokenizer laid out like Llama-2's, for the tiny synthetic OpenVLA.

    Introduced in lesson 07. Built with ``tokenizers``: ids 0-2 are ``<unk> <s> </s>``, spaces
    become ``"▁"`` (one token of its own, like Llama-2's 29871), printable ASCII and newline
    follow, placeholder tokens fill the vocabulary up to ``base_vocab_size`` (the last 256 are
    the action ids) and ``<PAD>`` is added after it, as openvla does (id ``base_vocab_size``).
    Returns a ``PreTrainedTokenizerFast``.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, processors
    from transformers import PreTrainedTokenizerFast

    tokens = ["<unk>", "<s>", "</s>", EMPTY_TOKEN] + [chr(c) for c in range(33, 127)] + ["\n"]
    if base_vocab_size < len(tokens) + 256:
        raise ValueError(f"base_vocab_size must be at least {len(tokens) + 256}, got {base_vocab_size}")
    tokens += [f"<unused{i}>" for i in range(base_vocab_size - len(tokens))]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=[], unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend(EMPTY_TOKEN), normalizers.Replace(" ", EMPTY_TOKEN)])
    tok.decoder = decoders.Sequence([decoders.Replace(EMPTY_TOKEN, " "), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.add_special_tokens({"pad_token": "<PAD>"})
    return fast


# ----------------------------------------------------------------------------- parameter figures


def _count(modules, trainable_only: bool = False) -> int:
    """Parameters of ``modules`` (a module or a list), each tensor counted once."""
    if isinstance(modules, nn.Module):
        modules = [modules]
    seen, total = set(), 0
    for module in modules:
        for p in module.parameters():
            if id(p) not in seen and (p.requires_grad or not trainable_only):
                seen.add(id(p))
                total += p.numel()
    return total


def _unused_modules(model: OpenVLAForActionPrediction) -> list[nn.Module]:
    """Modules after the feature layer: last block(s), final norms, SigLIP's head, DINOv2's mask token."""
    backbone, fl = model.vision_backbone, model.config.vision_feature_layer
    dino, siglip = backbone.dino, backbone.siglip
    unused = list(dino.encoder.layer[len(dino.encoder.layer) + fl + 1:])
    unused += list(siglip.encoder.layers[len(siglip.encoder.layers) + fl + 1:])
    return unused + [dino.layernorm, siglip.post_layernorm, siglip.head]


def parameter_counts(model: OpenVLAForActionPrediction | None = None) -> dict[str, int]:
    """Parameters of each part of OpenVLA (computed on the meta model by default).

    Introduced in lesson 07. Keys: ``dino``, ``siglip``, ``vision`` (both), ``projector``,
    ``llama`` and its ``llama_embed_tokens``, ``llama_layers``, ``llama_lm_head``, ``total``,
    and ``unused_by_actions``: parameters past the second-to-last ViT block (last blocks,
    final norms, SigLIP's pooling head, DINOv2's mask token) that never affect an action.
    """
    model = model if model is not None else build_meta_openvla()
    backbone, lm = model.vision_backbone, model.language_model
    counts = {
        "dino": _count(backbone.dino),
        "siglip": _count(backbone.siglip),
        "projector": _count(model.projector),
        "llama": _count(lm),
        "llama_embed_tokens": _count(lm.model.embed_tokens),
        "llama_layers": _count(list(lm.model.layers)),
        "llama_lm_head": _count(lm.lm_head),
    }
    counts["vision"] = counts["dino"] + counts["siglip"]
    counts["total"] = _count(model)
    mask_token = backbone.dino.embeddings.mask_token.numel()
    counts["unused_by_actions"] = _count(_unused_modules(model)) + mask_token
    return counts


def _strategy_modules(model: OpenVLAForActionPrediction, strategy: str) -> list[nn.Module]:
    lm = model.language_model
    last_layer = [lm.model.layers[-1], lm.model.norm, lm.model.embed_tokens, lm.lm_head]
    parts = {
        "full": [model],
        "frozen_vision": [model.projector, lm],
        "last_layer": last_layer,
        "sandwich": [model.vision_backbone, model.projector] + last_layer,
    }
    if strategy not in parts:
        raise ValueError(f"unknown strategy {strategy!r}; known: {list(STRATEGIES)} (LoRA: see lora_parameter_counts)")
    return parts[strategy]


def set_trainable(model: OpenVLAForActionPrediction, strategy: str) -> int:
    """Freeze everything but what ``strategy`` trains; return the number of trainable parameters.

    Introduced in lesson 07. The paper's strategies: ``full``; ``frozen_vision`` (projector +
    Llama); ``last_layer`` (the last Llama block, its final norm, the token embeddings and
    ``lm_head``); ``sandwich`` (vision backbone + projector + ``last_layer``'s set).
    """
    chosen = _strategy_modules(model, strategy)
    model.requires_grad_(False)
    for module in chosen:
        module.requires_grad_(True)
    return _count(model, trainable_only=True)


def strategy_counts(model: OpenVLAForActionPrediction | None = None) -> dict[str, int]:
    """Trainable parameters of every strategy in :data:`STRATEGIES`, without changing ``model``.

    Introduced in lesson 07.
    """
    model = model if model is not None else build_meta_openvla()
    return {name: _count(_strategy_modules(model, name)) for name in STRATEGIES}


def paper_count_reconstruction(model: OpenVLAForActionPrediction | None = None) -> dict[str, int]:
    """What the paper's Table 1 parameter counts add up from: a **SigLIP-only** Prismatic-7B.

    Introduced in lesson 07. The paper's 7,188.1M "full fine-tuning" is not OpenVLA-7B's
    7,541M. Its four module-freezing rows are reproduced to 0.1M by a model with SigLIP alone
    (427.7M, no DINOv2) and Prismatic's 2-layer ``gelu-mlp`` projector 1152 -> 4096 -> 4096
    (21.5M) in front of the same Llama-2 (6,738.9M): full = SigLIP + projector + Llama,
    frozen vision = projector + Llama, last layer = last block + final norm + embeddings +
    lm_head (465.1M), sandwich = SigLIP + projector + that set. This function builds that
    variant on the meta device from the same parts and counts it; the numbers are ours, the
    interpretation (which model the table counted) is an inference from the match.
    """
    model = model if model is not None else build_meta_openvla()
    cfg, lm = model.config, model.language_model
    with torch.device("meta"):
        projector = nn.Sequential(nn.Linear(cfg.siglip_hidden_size, cfg.text_hidden_size), nn.GELU(),
                                  nn.Linear(cfg.text_hidden_size, cfg.text_hidden_size))
    siglip, proj, llama = _count(model.vision_backbone.siglip), _count(projector), _count(lm)
    last_layer = _count([lm.model.layers[-1], lm.model.norm, lm.model.embed_tokens, lm.lm_head])
    return {
        "siglip": siglip, "projector_gelu_mlp": proj, "llama": llama,
        "full": siglip + proj + llama, "frozen_vision": proj + llama,
        "last_layer": last_layer, "sandwich": siglip + proj + last_layer,
    }


# ----------------------------------------------------------------------------- LoRA figures


def lora_config(rank: int = 32, dropout: float = 0.0):
    """openvla's ``vla-scripts/finetune.py`` LoRA settings as a peft ``LoraConfig``.

    Introduced in lesson 07: ``r=rank, lora_alpha=min(rank, 16), lora_dropout=dropout,
    target_modules="all-linear", init_lora_weights="gaussian"``.
    """
    from peft import LoraConfig

    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be a positive integer, got {rank!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    return LoraConfig(r=rank, lora_alpha=min(rank, 16), lora_dropout=dropout, target_modules="all-linear",
                      init_lora_weights="gaussian")


def _lora_size(shape, rank: int) -> int:
    """LoRA parameters for one layer: Linear (out, in) -> r(in + out); Conv2d (out, in, k, k) -> r(in k k + out)."""
    if len(shape) == 2:
        return rank * (shape[0] + shape[1])
    out_ch, in_ch, kh, kw = shape
    return rank * (in_ch * kh * kw + out_ch)


def _part_of(key: str) -> str:
    for prefix, part in (("vision_backbone.featurizer.", "dino"), ("vision_backbone.fused_featurizer.", "siglip"),
                         ("vision_backbone.dino.", "dino"), ("vision_backbone.siglip.", "siglip"),
                         ("projector.", "projector"), ("language_model.", "llama")):
        if key.startswith(prefix):
            return part
    raise ValueError(f"key {key!r} belongs to no part of OpenVLA")


def _lora_from_shapes(shapes: Mapping[str, tuple], rank: int, include_lm_head: bool, include_conv: bool) -> dict:
    """LoRA count over a checkpoint key layout: every Linear weight (2-D, not an embedding)."""
    by_part, wrapped = {"dino": 0, "siglip": 0, "projector": 0, "llama": 0}, 0
    for key, shape in shapes.items():
        if not key.endswith(".weight") or "embed_tokens" in key:
            continue
        if (key.endswith("lm_head.weight") and not include_lm_head) or (len(shape) == 4 and not include_conv):
            continue
        if len(shape) in (2, 4):
            by_part[_part_of(key)] += _lora_size(shape, rank)
            wrapped += 1
    return {"total": sum(by_part.values()), "by_part": by_part, "wrapped_layers": wrapped}


def _lora_with_peft(rank: int, config: OpenVLAConfig) -> dict:
    """Real peft on the meta model: the LoRA parameters it creates, by part."""
    from peft import get_peft_model

    with torch.device("meta"), warnings.catch_warnings():  # LoRA matrices on meta too: no memory, no init
        warnings.simplefilter("ignore", FutureWarning)  # a transformers deprecation that peft triggers
        peft_model = get_peft_model(OpenVLAForActionPrediction(config), lora_config(rank))
    by_part, wrapped = {"dino": 0, "siglip": 0, "projector": 0, "llama": 0}, 0
    for name, p in peft_model.base_model.model.named_parameters():
        if "lora_" in name and p.requires_grad:
            by_part[_part_of(name)] += p.numel()
            wrapped += name.endswith("lora_A.default.weight")
    return {"total": sum(by_part.values()), "by_part": by_part, "wrapped_layers": wrapped}


def lora_parameter_counts(rank: int = 32, config: OpenVLAConfig | None = None, use_peft: bool = True) -> dict:
    """LoRA trainable parameters of OpenVLA three ways, with the reason they differ.

    Introduced in lesson 07. Returns four counts (each ``{"total", "by_part",
    "wrapped_layers"}``) plus ``"rank"`` and ``"explanation"``:

    * ``ours_peft``: real ``peft.get_peft_model`` with :func:`lora_config` on our meta model.
      transformers' towers have separate ``q/k/v`` projections, so each block has 6 wrapped
      layers, and SigLIP's pooling head exposes only ``out_proj``, ``fc1``, ``fc2`` (its
      ``nn.MultiheadAttention`` keeps q/k/v in one raw parameter, which is not a Linear).
    * ``fused_qkv_layout``: the same rule on openvla's own (timm) layout, where each block has
      one fused ``qkv`` (d -> 3d) plus ``proj``, ``fc1``, ``fc2``: r(d + 3d) instead of
      3 r(d + d) per block, and the pooling head has ``q``, ``kv``, ``proj``, ``fc1``, ``fc2``.
      This is what finetune.py trains on openvla-7b with today's peft (lm_head excluded).
      These and the next two are computed from the key layout, without peft; ``use_peft=False``
      skips ``ours_peft`` (1-2 s).
    * ``fused_qkv_layout_old_peft``: the same layout under older peft versions whose
      "all-linear" collected module *base names* (``qkv``, ``proj``, ``lm_head`` ...) and then
      removed the output layer by its full name ``language_model.lm_head``, which never
      matched: ``lm_head`` stayed in, and the name ``proj`` also caught the patch-embedding
      convolutions ``patch_embed.proj``.
    * ``paper_reconstruction``: the paper's 97.6M is reproduced by the SigLIP-only model of
      :func:`paper_count_reconstruction` (timm layout, 2-layer projector) under that old-peft
      rule. An inference from the match, like the counts of the frozen-module rows.
    """
    from vla_lessons.model.openvla_convert import checkpoint_shapes

    config = config if config is not None else OpenVLAConfig()
    counts = {"rank": rank}
    if use_peft:
        counts["ours_peft"] = _lora_with_peft(rank, config)
    shapes = checkpoint_shapes(config)
    fused = _lora_from_shapes(shapes, rank, include_lm_head=False, include_conv=False)
    siglip_only = {k: v for k, v in shapes.items() if not k.startswith(("vision_backbone.featurizer.", "projector."))}
    siglip_only["projector.fc1.weight"] = (config.text_hidden_size, config.siglip_hidden_size)
    siglip_only["projector.fc2.weight"] = (config.text_hidden_size, config.text_hidden_size)
    paper = _lora_from_shapes(siglip_only, rank, include_lm_head=True, include_conv=True)
    old_peft = _lora_from_shapes(shapes, rank, include_lm_head=True, include_conv=True)
    return counts | {
        "fused_qkv_layout": fused,
        "fused_qkv_layout_old_peft": old_peft,
        "paper_reconstruction": paper,
        "explanation": (
            "ours_peft > fused_qkv_layout because transformers splits each ViT block's qkv into three "
            "Linear layers (3 r (d + d) instead of r (d + 3d) LoRA parameters per block) and SigLIP's "
            "pooling head differs (out_proj + MLP vs q, kv, proj + MLP). Neither is the paper's figure, "
            "nor is openvla-7b under old peft (fused_qkv_layout_old_peft); the paper's matches a "
            "SigLIP-only model with lm_head and the patch-embedding conv also wrapped."
        ),
    }


# ----------------------------------------------------------------------------- memory model

#: Bytes stored for backward per token and per block, as coefficients of (hidden, mlp width),
#: bf16 autocast with SDPA attention (no seq^2 term). Llama block: two RMSNorms computed in
#: fp32 (fp32 input + fp32 normalised + bf16 output, 10 h bytes each), q/k/v/out kept by
#: attention (8 h), gate, SiLU, up and their product (8 i): 28 h + 8 i. ViT block: two
#: LayerNorms (6 h each), q/k/v/out (8 h), two LayerScale inputs (4 h), fc1 and GELU outputs
#: (4 i): 24 h + 4 i. Estimates of what autograd keeps, not measurements.
LLAMA_ACTIVATION_COEFFS = (28, 8)
VIT_ACTIVATION_COEFFS = (24, 4)
#: Bytes per logit kept for the loss: bf16 logits, their fp32 copy and fp32 log-softmax.
LOGIT_BYTES = 10


def _activation_bytes(config: OpenVLAConfig, batch_size: int, text_tokens: int, checkpointing: bool) -> dict:
    """Activation memory of one training step, per part, in bytes."""
    seq = config.num_patches + text_tokens
    parts = {  # (tokens per sample, blocks, hidden, mlp width, coefficients)
        "llama": (seq, config.text_num_layers, config.text_hidden_size, config.text_intermediate_size,
                  LLAMA_ACTIVATION_COEFFS),
        "dino": (config.num_patches + 1 + config.dino_num_registers, config.dino_num_layers,
                 config.dino_hidden_size, 4 * config.dino_hidden_size, VIT_ACTIVATION_COEFFS),
        "siglip": (config.num_patches, config.siglip_num_layers, config.siglip_hidden_size,
                   config.siglip_intermediate_size, VIT_ACTIVATION_COEFFS),
    }
    out = {}
    for name, (tokens, blocks, h, i, (ch, ci)) in parts.items():
        per_block = (ch * h + ci * i) * tokens * batch_size
        # with checkpointing only each block's bf16 input is kept, plus one block being recomputed
        out[name] = (blocks * 2 * h * tokens * batch_size + per_block) if checkpointing else blocks * per_block
    vd = config.vision_dim
    out["projector"] = 2 * config.num_patches * batch_size * (vd + 2 * 4 * vd + 2 * config.text_hidden_size)
    out["logits"] = LOGIT_BYTES * seq * config.padded_vocab_size * batch_size
    return out


def estimate_memory(regime: str, config: OpenVLAConfig | None = None, *, batch_size: int | None = None,
                    text_tokens: int = 30, weight_bytes: float = 2.0, trainable_param_bytes: float = 4.0,
                    grad_bytes: float = 4.0, optimizer_bytes: float = 8.0, lora_rank: int = 32,
                    activation_checkpointing: bool = False, total_params: int | None = None,
                    trainable_params: int | None = None) -> dict:
    """GPU memory of OpenVLA in GB (1e9 bytes), as a breakdown whose assumptions are the arguments.

    Introduced in lesson 07. ``regime``:

    * ``"inference"``: every weight at ``weight_bytes`` (2 = bf16), the KV cache of one
      prompt (256 patches + ``text_tokens``) for ``batch_size`` (default 1), and the largest
      transient (the prefill's fp32 logits of the last position are negligible).
    * ``"full_finetune"``: every parameter trainable (or ``trainable_params`` of them, the
      rest frozen at ``weight_bytes``: frozen vision, sandwich ...), stored as fp32 master weights
      (``trainable_param_bytes``) + fp32 gradients (``grad_bytes``) + AdamW's two fp32 moments
      (``optimizer_bytes``) = 16 bytes/parameter, the FSDP mixed-precision layout of openvla's
      training (bf16 copies are gathered one block at a time and not counted), plus
      activations for ``batch_size`` (default 16) sequences.
    * ``"lora_finetune"``: frozen weights at ``weight_bytes``, the LoRA matrices (openvla's
      fused-qkv layout at ``lora_rank``, or ``trainable_params``) at 4 + 4 + 8 bytes, and
      the same activations as full fine-tuning (the gradient still flows through every block).

    Not modelled: the CUDA context, the caching allocator's slack and fragmentation, and
    kernel workspaces, which add roughly 1-10 GB on a real GPU. Returns the parts, ``total_gb``
    and ``assumptions``.
    """
    regimes = ("inference", "full_finetune", "lora_finetune")
    if regime not in regimes:
        raise ValueError(f"unknown regime {regime!r}; known: {list(regimes)}")
    config = config if config is not None else OpenVLAConfig()
    batch_size = batch_size if batch_size is not None else (1 if regime == "inference" else 16)
    for name, value in (("batch_size", batch_size), ("text_tokens", text_tokens)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    for name, value in (("weight_bytes", weight_bytes), ("trainable_param_bytes", trainable_param_bytes),
                        ("grad_bytes", grad_bytes), ("optimizer_bytes", optimizer_bytes)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a non-negative number of bytes, got {value!r}")
    total = total_params if total_params is not None else parameter_counts(build_meta_openvla(config))["total"]
    seq = config.num_patches + text_tokens
    parts: dict[str, float] = {}
    if regime == "inference":
        head_dim = config.text_hidden_size // config.text_num_heads
        kv = 2 * config.text_num_layers * seq * config.text_num_kv_heads * head_dim * weight_bytes * batch_size
        widest = max(config.text_intermediate_size, 4 * config.vision_dim)
        # the prefill's largest live tensors: an MLP's gate, up, activation and product
        parts = {"weights": total * weight_bytes, "kv_cache": kv,
                 "activations_peak": 4 * seq * widest * weight_bytes * batch_size}
    else:
        acts = _activation_bytes(config, batch_size, text_tokens, activation_checkpointing)
        state_bytes = trainable_param_bytes + grad_bytes + optimizer_bytes
        if regime == "full_finetune":
            trainable = total if trainable_params is None else trainable_params
            parts = {"frozen_weights": (total - trainable) * weight_bytes, "trainable_states": trainable * state_bytes}
        else:
            trainable = trainable_params if trainable_params is not None else \
                lora_parameter_counts(lora_rank, config, use_peft=False)["fused_qkv_layout"]["total"]
            parts = {"frozen_weights": total * weight_bytes, "trainable_states": trainable * state_bytes}
        parts.update({f"activations_{k}": v for k, v in acts.items()})
    breakdown = {f"{k}_gb": v / GB for k, v in parts.items()}
    breakdown["total_gb"] = sum(parts.values()) / GB
    breakdown["assumptions"] = dict(
        regime=regime, batch_size=batch_size, sequence_tokens=seq, total_params=total,
        weight_bytes=weight_bytes, trainable_param_bytes=trainable_param_bytes, grad_bytes=grad_bytes,
        optimizer_bytes=optimizer_bytes, activation_checkpointing=activation_checkpointing,
        lora_rank=lora_rank if regime == "lora_finetune" else None,
    )
    return breakdown


def figures_table(config: OpenVLAConfig | None = None) -> list[dict]:
    """Every computed figure next to the paper's: rows ``{"figure", "computed", "paper", "unit", "note"}``.

    Introduced in lesson 07. ``computed`` comes from this module (meta device, peft, the memory
    model); ``paper`` from :data:`PAPER_FIGURES` (``None`` where the paper has no number).
    Takes 1-3 s (peft wraps ~500 meta layers).
    """
    config = config if config is not None else OpenVLAConfig()
    model = build_meta_openvla(config)
    counts, strategies = parameter_counts(model), strategy_counts(model)
    paper_like = paper_count_reconstruction(model)
    lora32, lora64 = lora_parameter_counts(32, config), lora_parameter_counts(64, config, use_peft=False)
    mem_inf = estimate_memory("inference", config, total_params=counts["total"])
    mem_full = estimate_memory("full_finetune", config, total_params=counts["total"])
    mem_lora = estimate_memory("lora_finetune", config, total_params=counts["total"],
                               trainable_params=lora32["fused_qkv_layout"]["total"])
    P, M = PAPER_FIGURES, 1e6
    rows = [
        ("total parameters", counts["total"] / 1e9, P["total_params_B"], "B", "DINOv2 + SigLIP + projector + Llama-2"),
        ("full fine-tuning, trainable", strategies["full"] / M, P["full_ft_trainable_params_M"], "M", "OpenVLA-7B"),
        ("full fine-tuning, SigLIP-only reconstruction", paper_like["full"] / M,
         P["full_ft_trainable_params_M"], "M", "paper_count_reconstruction"),
        ("frozen vision, trainable", strategies["frozen_vision"] / M, P["frozen_vision_trainable_params_M"], "M",
         "OpenVLA-7B"),
        ("frozen vision, SigLIP-only reconstruction", paper_like["frozen_vision"] / M,
         P["frozen_vision_trainable_params_M"], "M", "paper_count_reconstruction"),
        ("last layer only, trainable", strategies["last_layer"] / M, P["last_layer_trainable_params_M"], "M",
         "same Llama in both"),
        ("sandwich, trainable", strategies["sandwich"] / M, P["sandwich_trainable_params_M"], "M", "OpenVLA-7B"),
        ("sandwich, SigLIP-only reconstruction", paper_like["sandwich"] / M, P["sandwich_trainable_params_M"], "M",
         "paper_count_reconstruction"),
        ("LoRA r=32, ours (peft, separate q/k/v)", lora32["ours_peft"]["total"] / M,
         P["lora_r32_trainable_params_M"], "M", "transformers layout"),
        ("LoRA r=32, openvla's fused-qkv layout", lora32["fused_qkv_layout"]["total"] / M,
         P["lora_r32_trainable_params_M"], "M", "what finetune.py trains with today's peft"),
        ("LoRA r=32, openvla's layout under old peft", lora32["fused_qkv_layout_old_peft"]["total"] / M,
         P["lora_r32_trainable_params_M"], "M", "lm_head + patch convs also wrapped"),
        ("LoRA r=32, paper reconstruction", lora32["paper_reconstruction"]["total"] / M,
         P["lora_r32_trainable_params_M"], "M", "SigLIP-only, lm_head + patch conv wrapped"),
        ("LoRA r=32, fused layout, % of total", 100 * lora32["fused_qkv_layout"]["total"] / counts["total"],
         P["lora_r32_trainable_percent"], "%", ""),
        ("LoRA r=64, paper reconstruction", lora64["paper_reconstruction"]["total"] / M,
         P["lora_r64_trainable_params_M"], "M", ""),
        ("bf16 inference memory", mem_inf["total_gb"], P["bf16_inference_memory_GB"], "GB",
         "weights + KV cache; no CUDA context"),
        ("full fine-tuning memory, batch 16", mem_full["total_gb"], P["full_ft_memory_GB"], "GB",
         "16 B/param + activations"),
        ("LoRA r=32 fine-tuning memory, batch 16", mem_lora["total_gb"], P["lora_r32_memory_GB"], "GB",
         "bf16 weights + LoRA states + activations"),
    ]
    return [{"figure": f, "computed": c, "paper": p, "unit": u, "note": n} for f, c, p, u, n in rows]


# ----------------------------------------------------------------------------- fine-tuning set-up


def bnb_4bit_config():
    """The 4-bit (QLoRA) quantization of openvla's finetune.py: NF4 weights, bf16 compute.

    Introduced in lesson 07. Building the config needs no GPU; loading a model with it needs
    CUDA and bitsandbytes (:func:`require_bitsandbytes`).
    """
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)


def finetune_setup(rank: int = 32, use_quantization: bool = False) -> dict:
    """The configs openvla's finetune.py fine-tunes with: LoRA, optional 4-bit, bf16 weights.

    Introduced in lesson 07. Returns ``{"lora": LoraConfig, "quantization": BitsAndBytesConfig
    or None, "torch_dtype": torch.bfloat16}``; testable without a GPU.
    """
    return {"lora": lora_config(rank), "quantization": bnb_4bit_config() if use_quantization else None,
            "torch_dtype": torch.bfloat16}


def require_bitsandbytes():
    """Import bitsandbytes, or explain that 4-bit training needs it and a CUDA GPU.

    Introduced in lesson 07.
    """
    try:
        import bitsandbytes
    except ImportError:
        raise ImportError(
            "4-bit (QLoRA) fine-tuning of OpenVLA needs bitsandbytes and a CUDA GPU; neither is part of the "
            "course's CPU environment. On a GPU machine: pip install bitsandbytes (see environment-openvla.yml)."
        ) from None
    return bitsandbytes
