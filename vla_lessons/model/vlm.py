"""The mini Prismatic VLM: fused SigLIP + DINOv2 patches -> MLP projector -> a small Llama.

Introduced in lesson 05 (and fine-tuned into a VLA in lesson 06).

OpenVLA is a Prismatic VLM: the camera image goes through DINOv2 and SigLIP, their patch
features are concatenated (:class:`~vla_lessons.vision.fusion.FusedBackbone`), a 3-layer GELU MLP
(:class:`~vla_lessons.vision.fusion.FusedProjector`) maps each patch to one "visual token" of the
language model's width, and Llama-2 reads ``<s>`` + visual tokens + the prompt through
``inputs_embeds``::

    image (B, 6, 112, 112) -> FusedBackbone -> (B, 64, 128 + 128) -> FusedProjector -> (B, 64, 192)
    input_ids  <s> In: what colour is the cube?\\nOut:
    embeds     <s> [64 visual tokens] In: what colour is the cube?\\nOut:   -> LlamaForCausalLM -> " red</s>"

Here every part is a real ``transformers`` class at a size a CPU trains in minutes, and the
whole model is a ``PreTrainedModel``: ``save_pretrained`` / ``from_pretrained`` with safetensors,
its configuration :class:`PrismaticVLMConfig` holding the three sub-configurations.

Prompts follow Prismatic's "pure" prompt builder, which OpenVLA kept::

    <s> In: {question}\\nOut: {answer}</s>

Only the answer and ``</s>`` are trained on (labels ``-100`` elsewhere, the visual tokens included).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import (
    AutoConfig,
    Dinov2Config,
    Dinov2Model,
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersModel,
    LlamaForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
    SiglipVisionModel,
)
from transformers.configuration_utils import SubConfigSpec
from transformers.modeling_outputs import CausalLMOutputWithPast

from vla_lessons.vision.fusion import FusedBackbone, FusedProjector, MLPProjector

#: Label value that the cross-entropy ignores (visual tokens, prompt, padding).
IGNORE_INDEX = -100
#: Prismatic's "pure" prompt (OpenVLA's is "In: What action should the robot take to {instruction}?\nOut:").
PROMPT_TEMPLATE = "In: {question}\nOut:"
#: Projector names as in Prismatic: the fused 3-layer MLP (OpenVLA) or LLaVA-1.5's 2-layer MLP.
PROJECTORS = {"fused-gelu-mlp": FusedProjector, "gelu-mlp": MLPProjector}

#: How the visual tokens learn where they are: ``"none"`` (the patch features and the Llama's 1-D
#: RoPE index only, as Prismatic/OpenVLA) or ``"learned-2d"`` (a learned row and a learned column
#: vector added to every projected patch, see :class:`PatchPosition2D`).
VISUAL_POSITIONS = ("none", "learned-2d")

#: The course's small towers (lesson 04's sizes: 112 px, patch 14 -> 8 x 8 = 64 patches).
SMALL_SIGLIP = dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                    image_size=112, patch_size=14, vision_use_head=True)
SMALL_DINO = dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, mlp_ratio=4, image_size=112,
                  patch_size=14, num_register_tokens=4, layerscale_value=1.0)
#: The course's small Llama: 3 layers of width 192, a 1024-id vocabulary (768 text + 256 reserved).
SMALL_LLAMA = dict(vocab_size=1024, hidden_size=192, intermediate_size=512, num_hidden_layers=3,
                   num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                   rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=3, tie_word_embeddings=False)


class PrismaticVLMConfig(PretrainedConfig):
    """Configuration of :class:`PrismaticVLM`: three sub-configurations and how they are joined.

    Introduced in lesson 05.

    Attributes:
        siglip_config: a ``SiglipVisionConfig`` (or its dict); default :data:`SMALL_SIGLIP`.
        dino_config: a ``Dinov2WithRegistersConfig`` or ``Dinov2Config``; default :data:`SMALL_DINO`.
        text_config: a ``LlamaConfig``; default :data:`SMALL_LLAMA`. Its ``bos/eos/pad_token_id``
            are the tokenizer's (:mod:`vla_lessons.model.text_tokenizer`).
        vision_feature_layer: which block's patch tokens the projector reads (-2, as OpenVLA).
        projector_type: ``"fused-gelu-mlp"`` (OpenVLA's d -> 4d -> D -> D) or ``"gelu-mlp"``.
        n_reserved_tokens: size of the reserved id block at the end of the vocabulary (lesson 06's
            action tokens).
        visual_position: ``"none"`` (Prismatic's) or ``"learned-2d"``: add a learned (row, column)
            embedding to each visual token after the projector (:class:`PatchPosition2D`).
    """

    model_type = "vla_lessons_prismatic_vlm"
    sub_configs_defaults = {
        "siglip_config": SubConfigSpec(AutoConfig, model_type="siglip_vision_model", init_kwargs=SMALL_SIGLIP),
        "dino_config": SubConfigSpec(AutoConfig, model_type="dinov2_with_registers", init_kwargs=SMALL_DINO),
        "text_config": SubConfigSpec(AutoConfig, model_type="llama", init_kwargs=SMALL_LLAMA),
    }

    siglip_config: dict | PretrainedConfig | None = None
    dino_config: dict | PretrainedConfig | None = None
    text_config: dict | PretrainedConfig | None = None
    vision_feature_layer: int = -2
    projector_type: str = "fused-gelu-mlp"
    n_reserved_tokens: int = 256
    tie_word_embeddings: bool = False
    visual_position: str = "none"

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        s, d, t = self.siglip_config, self.dino_config, self.text_config
        if s.model_type != "siglip_vision_model":
            raise ValueError(f"siglip_config must be a SiglipVisionConfig, got {type(s).__name__}")
        if not isinstance(d, (Dinov2Config, Dinov2WithRegistersConfig)):
            raise ValueError(f"dino_config must be a Dinov2Config or Dinov2WithRegistersConfig, got {type(d).__name__}")
        if t.model_type != "llama":
            raise ValueError(f"text_config must be a LlamaConfig, got {type(t).__name__}")
        if (s.image_size, s.patch_size) != (d.image_size, d.patch_size):
            raise ValueError(f"SigLIP ({s.image_size} px / {s.patch_size}) and DINOv2 ({d.image_size} px / "
                             f"{d.patch_size}) must see the same patch grid")
        if self.visual_position not in VISUAL_POSITIONS:
            raise ValueError(f"visual_position must be one of {VISUAL_POSITIONS}, got {self.visual_position!r}")
        if self.projector_type not in PROJECTORS:
            raise ValueError(f"projector_type must be one of {tuple(PROJECTORS)}, got {self.projector_type!r}")
        depth = min(s.num_hidden_layers, d.num_hidden_layers)
        if not isinstance(self.vision_feature_layer, int) or not -(depth + 1) <= self.vision_feature_layer <= depth:
            raise ValueError(f"vision_feature_layer must be in [-{depth + 1}, {depth}], got {self.vision_feature_layer!r}")
        ids = {"bos": t.bos_token_id, "eos": t.eos_token_id, "pad": t.pad_token_id}
        if any(not isinstance(v, int) or not 0 <= v < t.vocab_size for v in ids.values()):
            raise ValueError(f"text_config needs bos/eos/pad token ids inside its vocabulary, got {ids}")
        if not 0 <= self.n_reserved_tokens < t.vocab_size - max(ids.values()):
            raise ValueError(f"n_reserved_tokens={self.n_reserved_tokens} does not fit a vocabulary of {t.vocab_size}")

    @classmethod
    def small(cls, vocab_size: int = 1024, *, siglip_config=None, dino_config=None, **llama_overrides) -> "PrismaticVLMConfig":
        """The course's small VLM; ``vocab_size = len(tokenizer)``; ``llama_overrides`` change the Llama.

        Introduced in lesson 05. ``siglip_config`` / ``dino_config`` default to the small towers
        of lesson 04 (pass the configs of trained towers to match them).
        """
        text = {**SMALL_LLAMA, "vocab_size": vocab_size, **llama_overrides}
        return cls(siglip_config=siglip_config, dino_config=dino_config, text_config=text)

    @property
    def num_patches(self) -> int:
        """Visual tokens per image: (image_size / patch_size) ** 2 (64 for 112 px, patch 14)."""
        return (self.siglip_config.image_size // self.siglip_config.patch_size) ** 2

    @property
    def image_size(self) -> int:
        """Side of the square input image in pixels."""
        return int(self.siglip_config.image_size)


class PatchPosition2D(nn.Module):
    """A learned row vector plus a learned column vector for each patch of a ``grid x grid`` image.

    Introduced in lesson 05. ``forward()`` returns float32 (grid * grid, hidden) in the row-major
    patch order of the vision towers, to be *added* to the projected patches. Why: the Llama's
    RoPE only tells attention how far apart two tokens are in the sequence; nothing in a visual
    token's *value* says where it sits in the image except what the towers' features kept. The
    action of a robot ("move left by 3 cm") has to read exactly that. Both tables start at zero,
    so adding this module to a trained model changes nothing until it is trained.
    """

    def __init__(self, grid: int, hidden: int):
        super().__init__()
        self.grid = int(grid)
        self.rows = nn.Parameter(torch.zeros(self.grid, hidden))
        self.cols = nn.Parameter(torch.zeros(self.grid, hidden))

    def forward(self) -> torch.Tensor:
        return (self.rows[:, None, :] + self.cols[None, :, :]).reshape(self.grid * self.grid, -1)


class PrismaticVLM(PreTrainedModel):
    """A Prismatic VLM: ``vision_backbone`` (DINOv2 + SigLIP), ``projector``, ``language_model`` (Llama).

    Introduced in lesson 05.

    ``forward(input_ids, pixel_values, attention_mask, labels)`` inserts the projected patches
    right after ``<s>`` (as OpenVLA does) and returns the Llama's ``CausalLMOutputWithPast``
    over the whole sequence ``1 + num_patches + (T - 1)`` positions long. :meth:`generate`
    decodes greedily with the KV cache. Saves and loads with ``save_pretrained`` /
    ``from_pretrained`` (safetensors).
    """

    config_class = PrismaticVLMConfig
    base_model_prefix = "prismatic"
    main_input_name = "input_ids"
    _no_split_modules = ["LlamaDecoderLayer", "SiglipEncoderLayer", "Dinov2WithRegistersLayer", "Dinov2Layer"]

    def __init__(self, config: PrismaticVLMConfig):
        super().__init__(config)
        siglip = SiglipVisionModel(config.siglip_config)
        dino_cls = Dinov2WithRegistersModel if isinstance(config.dino_config, Dinov2WithRegistersConfig) else Dinov2Model
        self.vision_backbone = FusedBackbone(siglip, dino_cls(config.dino_config), config.vision_feature_layer)
        self.projector = PROJECTORS[config.projector_type](self.vision_backbone.embed_dim, config.text_config.hidden_size)
        self.language_model = LlamaForCausalLM(config.text_config)
        self.patch_position = None
        if config.visual_position == "learned-2d":
            grid = config.siglip_config.image_size // config.siglip_config.patch_size
            self.patch_position = PatchPosition2D(grid, config.text_config.hidden_size)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """The towers and the Llama initialise themselves; the projector keeps PyTorch's default."""
        if isinstance(module, PatchPosition2D):  # start at zero: a no-op until trained
            nn.init.zeros_(module.rows)
            nn.init.zeros_(module.cols)

    # ---------------------------------------------------------------- parts

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    @property
    def num_patches(self) -> int:
        """Visual tokens per image (64)."""
        return self.vision_backbone.num_patches

    @property
    def vocab_size(self) -> int:
        """Rows of the embedding matrix = ``len(tokenizer)``."""
        return int(self.config.text_config.vocab_size)

    def preprocess(self, images) -> torch.Tensor:
        """uint8 camera images (B, H, W, 3) -> float32 pixel values (B, 6, S, S), DINOv2's copy first."""
        return self.vision_backbone.preprocess(images)

    def check_pixel_values(self, pixel_values) -> None:
        """Raise ``ValueError``/``TypeError`` unless ``pixel_values`` is finite float32 (B, 6, S, S)."""
        s = self.config.image_size
        if not isinstance(pixel_values, torch.Tensor):
            raise TypeError(f"pixel_values must be a torch.Tensor (B, 6, {s}, {s}), got {type(pixel_values).__name__}")
        if pixel_values.dtype != torch.float32 or pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != (6, s, s):
            raise ValueError(f"pixel_values must be float32 (B, 6, {s}, {s}) -- make them from uint8 images with "
                             f"model.preprocess(images) -- got {pixel_values.dtype} {tuple(pixel_values.shape)}")
        if not torch.isfinite(pixel_values).all():
            raise ValueError("pixel_values contain NaN or inf")

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Fused patch features of the vision backbone: float32 (B, num_patches, d_dino + d_siglip)."""
        self.check_pixel_values(pixel_values)
        return self.vision_backbone(pixel_values)

    def visual_tokens(self, pixel_values: torch.Tensor | None = None,
                      vision_features: torch.Tensor | None = None) -> torch.Tensor:
        """Projected patches, float32 (B, num_patches, hidden): from pixels, or from cached backbone features."""
        if (pixel_values is None) == (vision_features is None):
            raise ValueError("give exactly one of pixel_values and vision_features")
        if vision_features is None:
            vision_features = self.image_features(pixel_values)
        expected = (self.num_patches, self.vision_backbone.embed_dim)
        if vision_features.ndim != 3 or tuple(vision_features.shape[1:]) != expected:
            raise ValueError(f"vision_features must be (B, {expected[0]}, {expected[1]}), "
                             f"got {tuple(vision_features.shape)}")
        tokens = self.projector(vision_features)
        if self.patch_position is not None:
            tokens = tokens + self.patch_position()
        return tokens

    # ---------------------------------------------------------------- forward

    def _check_ids(self, input_ids) -> None:
        if not isinstance(input_ids, torch.Tensor) or input_ids.dtype not in (torch.long, torch.int32, torch.int64):
            raise ValueError(f"input_ids must be an integer torch.Tensor (B, T), got "
                             f"{getattr(input_ids, 'dtype', type(input_ids).__name__)}")
        if input_ids.ndim != 2 or input_ids.shape[1] == 0 or input_ids.shape[0] == 0:
            raise ValueError(f"input_ids must be a non-empty (B, T) tensor, got shape {tuple(input_ids.shape)}")
        low, high = int(input_ids.min()), int(input_ids.max())
        if low < 0 or high >= self.vocab_size:
            raise ValueError(f"token ids must be in [0, {self.vocab_size - 1}] (the vocabulary), got [{low}, {high}]")

    def forward(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None, *,
                vision_features: torch.Tensor | None = None, past_key_values=None, use_cache: bool | None = None,
                logits_to_keep: int = 0) -> CausalLMOutputWithPast:
        """Llama's output for ``<s> + visual tokens + text`` (or for text alone).

        Args:
            input_ids: long (B, T). With an image, each row's first attended token must be ``<s>``.
            pixel_values: float32 (B, 6, S, S) from :meth:`preprocess`, or None (text only, or a
                decoding step that continues from ``past_key_values``).
            attention_mask: (B, T) of 0/1; left or right padding. Patches are always attended.
            labels: long (B, T) aligned with ``input_ids``, ``-100`` where no loss is wanted; the
                visual tokens get ``-100`` here.
            vision_features: instead of ``pixel_values``, cached ``image_features`` (B, N, d)
                (training with a frozen backbone).
            past_key_values, use_cache: the KV cache, as in ``LlamaForCausalLM``.
            logits_to_keep: compute logits for the last ``k`` positions only (0 = all).

        Returns ``CausalLMOutputWithPast``: ``logits`` (B, T + N, V) with an image, ``loss`` when
        ``labels`` are given (mean over the labelled tokens).
        """
        embeds, attention_mask, labels = self.prepare_inputs_embeds(
            input_ids, pixel_values, attention_mask, labels, vision_features=vision_features,
            past_key_values=past_key_values)
        return self._run_llm(embeds, attention_mask, labels=labels, past_key_values=past_key_values,
                             use_cache=use_cache, logits_to_keep=logits_to_keep)

    def prepare_inputs_embeds(self, input_ids, pixel_values=None, attention_mask=None, labels=None, *,
                              vision_features=None, past_key_values=None, extra_tokens=None):
        """``(inputs_embeds, attention_mask, labels)`` with the visual tokens inserted after ``<s>``.

        Introduced in lesson 05. Shapes (B, T + N, D), (B, T + N), (B, T + N) with an image,
        the inputs' own otherwise. ``extra_tokens`` (B, K, D) go right after the N visual tokens
        (lesson 06's wrist-camera tokens and proprioception token). Checks every input and raises
        ``ValueError`` on bad ones.
        """
        self._check_ids(input_ids)
        batch, length = input_ids.shape
        for name, tensor in (("attention_mask", attention_mask), ("labels", labels)):
            if tensor is not None and tuple(tensor.shape) != (batch, length):
                raise ValueError(f"{name} must have the shape of input_ids {(batch, length)}, got {tuple(tensor.shape)}")
        embeds = self.get_input_embeddings()(input_ids)
        if pixel_values is not None or vision_features is not None:
            if past_key_values is not None and past_key_values.get_seq_length() > 0:
                raise ValueError("an image can only be given with the first forward, not with a filled KV cache")
            tokens = self.visual_tokens(pixel_values, vision_features)
            if tokens.shape[0] != batch:
                raise ValueError(f"batch mismatch: {tokens.shape[0]} images for {batch} prompts")
            if extra_tokens is not None:
                tokens = torch.cat([tokens, extra_tokens.to(tokens.dtype)], dim=1)
            embeds, attention_mask, labels = self._insert_patches(input_ids, embeds, tokens, attention_mask, labels)
        return embeds, attention_mask, labels

    def _run_llm(self, embeds, attention_mask, labels=None, past_key_values=None, use_cache=None, logits_to_keep=0):
        """The Llama on prepared embeddings; positions count attended tokens (left padding works)."""
        position_ids = None
        if attention_mask is not None:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -embeds.shape[1]:]
        return self.language_model(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids,
                                   labels=labels, past_key_values=past_key_values, use_cache=use_cache,
                                   logits_to_keep=logits_to_keep)

    def _insert_patches(self, input_ids, embeds, tokens, attention_mask, labels):
        """Put the N visual tokens right after each row's ``<s>`` (its first attended position)."""
        batch, n = tokens.shape[:2]
        if attention_mask is None:
            first = torch.zeros(batch, dtype=torch.long)
        else:
            if not bool((attention_mask.sum(-1) > 0).all()):
                raise ValueError("every row of attention_mask needs at least one attended token (<s>)")
            first = attention_mask.long().argmax(-1)
        bos = self.config.text_config.bos_token_id
        starts = input_ids[torch.arange(batch), first]
        if not bool((starts == bos).all()):
            raise ValueError(f"with an image, each prompt must start with <s> (id {bos}); got first ids "
                             f"{starts.tolist()[:8]} -- encode prompts with add_special_tokens=True")
        ones = torch.ones(batch, n, dtype=torch.long)
        ignore = torch.full((batch, n), IGNORE_INDEX, dtype=torch.long)
        if bool((first == first[0]).all()):  # the usual case: <s> at the same index in every row
            cut = int(first[0]) + 1
            embeds = torch.cat([embeds[:, :cut], tokens, embeds[:, cut:]], dim=1)
            if attention_mask is not None:
                attention_mask = torch.cat([attention_mask[:, :cut], ones.to(attention_mask), attention_mask[:, cut:]], 1)
            if labels is not None:
                labels = torch.cat([labels[:, :cut], ignore.to(labels), labels[:, cut:]], dim=1)
            return embeds, attention_mask, labels
        rows_e, rows_m, rows_l = [], [], []
        for i in range(batch):
            cut = int(first[i]) + 1
            rows_e.append(torch.cat([embeds[i, :cut], tokens[i], embeds[i, cut:]]))
            rows_m.append(torch.cat([attention_mask[i, :cut], ones[i].to(attention_mask), attention_mask[i, cut:]]))
            if labels is not None:
                rows_l.append(torch.cat([labels[i, :cut], ignore[i].to(labels), labels[i, cut:]]))
        return torch.stack(rows_e), torch.stack(rows_m), (torch.stack(rows_l) if labels is not None else None)

    # ---------------------------------------------------------------- decoding

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, *, max_new_tokens: int = 16,
                 use_cache: bool = True, stop_at_eos: bool = True,
                 vision_features: torch.Tensor | None = None) -> torch.Tensor:
        """Greedy decoding: the ``(B, <= max_new_tokens)`` long tensor of *new* token ids.

        Introduced in lesson 05. ``use_cache=True`` runs one forward over image + prompt (the
        prefill) and then one token at a time against the KV cache; ``use_cache=False``
        re-reads the whole sequence for every token (same tokens, more work: lesson 09 times
        both). Prompts of different lengths must be **left**-padded (see :func:`encode_prompts`).
        With ``stop_at_eos`` decoding ends once every row has produced ``</s>``; a finished row
        is filled with ``<pad>``.
        """
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
        self._check_ids(input_ids)
        if attention_mask is not None and bool((attention_mask[:, -1] == 0).any()):
            raise ValueError("prompts must be left-padded for generation (the last position of every row attended)")
        eos, pad = self.config.text_config.eos_token_id, self.config.text_config.pad_token_id
        was_training = self.training
        self.eval()
        try:
            embeds, mask, _ = self.prepare_inputs_embeds(input_ids, pixel_values, attention_mask,
                                                         vision_features=vision_features)
            out = self._run_llm(embeds, mask, use_cache=use_cache, logits_to_keep=1)
            done = torch.zeros(input_ids.shape[0], dtype=torch.bool)
            new = []
            for step in range(max_new_tokens):
                next_ids = out.logits[:, -1].argmax(-1)
                next_ids = torch.where(done, torch.full_like(next_ids, pad), next_ids)
                new.append(next_ids)
                done |= next_ids == eos
                if (stop_at_eos and bool(done.all())) or step == max_new_tokens - 1:
                    break
                step_embeds = self.get_input_embeddings()(next_ids[:, None])
                if mask is not None:
                    mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
                if use_cache:  # one new position against the cached keys and values
                    out = self._run_llm(step_embeds, mask, past_key_values=out.past_key_values, use_cache=True,
                                        logits_to_keep=1)
                else:  # the whole sequence again (the vision towers are not re-run)
                    embeds = torch.cat([embeds, step_embeds], dim=1)
                    out = self._run_llm(embeds, mask, use_cache=False, logits_to_keep=1)
        finally:
            self.train(was_training)
        return torch.stack(new, dim=1)


# ----------------------------------------------------------------------------- prompts


def build_prompt(question: str) -> str:
    """``"In: {question}\\nOut:"`` with the question stripped and lower-cased (as OpenVLA's instructions).

    Introduced in lesson 05. An empty question is a ``ValueError``.
    """
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"a prompt needs a non-empty question, got {question!r}")
    return PROMPT_TEMPLATE.format(question=question.strip().lower())


def encode_prompts(tokenizer, questions: list[str]) -> dict[str, torch.Tensor]:
    """Prompts for generation: ``input_ids`` and ``attention_mask`` (B, T), **left**-padded, with ``<s>``.

    Introduced in lesson 05.
    """
    if isinstance(questions, str) or not questions:
        raise ValueError("questions must be a non-empty list of strings")
    rows = [tokenizer(build_prompt(q))["input_ids"] for q in questions]
    return _pad(rows, [[1] * len(r) for r in rows], None, tokenizer.pad_token_id, left=True)


def encode_examples(tokenizer, questions: list[str], answers: list[str]) -> dict[str, torch.Tensor]:
    """Training examples ``<s> In: q\nOut: a</s>``: ``input_ids``, ``attention_mask``, ``labels`` (B, T).

    Introduced in lesson 05. Right-padded. ``labels`` are the ids on the answer and ``</s>`` and
    ``-100`` on ``<s>``, the prompt and the padding: the loss is on answer tokens only.
    """
    if isinstance(questions, str) or isinstance(answers, str) or len(questions) != len(answers) or not questions:
        raise ValueError("questions and answers must be non-empty lists of the same length")
    return encode_conversations(tokenizer, [[(q, a)] for q, a in zip(questions, answers)])


def encode_conversations(tokenizer, conversations: list[list[tuple[str, str]]]) -> dict[str, torch.Tensor]:
    """Multi-turn examples ``<s> In: q1\nOut: a1</s>In: q2\nOut: a2</s>...``, one per image.

    Introduced in lesson 05. LLaVA and Prismatic train on conversations: several questions about
    one image share one sequence, so the image's visual tokens are computed once for all of
    them. Returns right-padded ``input_ids``, ``attention_mask`` and ``labels`` (B, T), with labels
    on every answer and its ``</s>`` only.
    """
    if isinstance(conversations, (str, tuple)) or not conversations:
        raise ValueError("conversations must be a non-empty list of lists of (question, answer) pairs")
    ids, labels = [], []
    for turns in conversations:
        if not turns:
            raise ValueError("every conversation needs at least one (question, answer) turn")
        row, lab = [tokenizer.bos_token_id], [IGNORE_INDEX]
        for q, a in turns:
            if not isinstance(a, str) or not a.strip():
                raise ValueError(f"an answer must be a non-empty string, got {a!r}")
            prompt = tokenizer(build_prompt(q), add_special_tokens=False)["input_ids"]
            answer = tokenizer(" " + a.strip(), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            row += prompt + answer
            lab += [IGNORE_INDEX] * len(prompt) + answer
        ids.append(row)
        labels.append(lab)
    return _pad(ids, [[1] * len(r) for r in ids], labels, tokenizer.pad_token_id, left=False)


def _pad(ids, masks, labels, pad_id: int, left: bool) -> dict[str, torch.Tensor]:
    width = max(len(r) for r in ids)

    def fill(rows, value):
        return torch.tensor([[value] * (width - len(r)) + r if left else r + [value] * (width - len(r))
                             for r in rows], dtype=torch.long)

    out = {"input_ids": fill(ids, pad_id), "attention_mask": fill(masks, 0)}
    if labels is not None:
        out["labels"] = fill(labels, IGNORE_INDEX)
    return out


def decode_answers(tokenizer, new_ids: torch.Tensor) -> list[str]:
    """Generated ids (B, K) -> answer strings, cut at ``</s>``, stripped. Introduced in lesson 05."""
    out = []
    for row in new_ids.tolist():
        if tokenizer.eos_token_id in row:
            row = row[: row.index(tokenizer.eos_token_id)]
        out.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return out


# ----------------------------------------------------------------------------- building


def build_vlm(tokenizer=None, *, siglip=None, dino=None, siglip_config: dict | None = None,
              dino_config: dict | None = None, seed: int = 0, projector_type: str = "fused-gelu-mlp",
              visual_position: str = "none", **llama_overrides) -> PrismaticVLM:
    """A fresh :class:`PrismaticVLM` sized for ``tokenizer``, optionally with pretrained towers.

    Introduced in lesson 05.

    Args:
        tokenizer: the course tokenizer (sets the vocabulary size and bos/eos/pad ids); None
            keeps :data:`SMALL_LLAMA`'s.
        siglip: a trained SigLIP (``SiglipModel`` or ``SiglipVisionModel``, lesson 04) whose image
            tower is copied in; None builds a randomly initialised tower.
        dino: a trained ``Dinov2Model`` / ``Dinov2WithRegistersModel``, likewise.
        siglip_config, dino_config: changes to :data:`SMALL_SIGLIP` / :data:`SMALL_DINO` for
            untrained towers (tests use 28 px towers).
        seed: seeds the random initialisation (Llama, projector, any untrained tower).
        visual_position: ``"none"`` or ``"learned-2d"`` (:class:`PatchPosition2D`).
        llama_overrides: changes to :data:`SMALL_LLAMA` (e.g. ``num_hidden_layers=2``).
    """
    from vla_lessons.vision.encoders import vision_tower

    if tokenizer is not None:
        from .text_tokenizer import check_layout

        check_layout(tokenizer)
        llama_overrides = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
                           "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id,
                           **llama_overrides}
    siglip_tower = vision_tower(siglip) if siglip is not None else None
    dino_tower = vision_tower(dino) if dino is not None else None
    if siglip_tower is not None and siglip_config:
        raise ValueError("give either a trained siglip or siglip_config overrides, not both")
    if dino_tower is not None and dino_config:
        raise ValueError("give either a trained dino or dino_config overrides, not both")
    s_cfg = siglip_tower.config.to_dict() if siglip_tower is not None else {**SMALL_SIGLIP, **(siglip_config or {})}
    d_cfg = dino_tower.config.to_dict() if dino_tower is not None else {**SMALL_DINO, **(dino_config or {})}
    config = PrismaticVLMConfig(siglip_config=s_cfg, dino_config=d_cfg, text_config={**SMALL_LLAMA, **llama_overrides},
                                projector_type=projector_type, visual_position=visual_position)
    torch.manual_seed(seed)
    model = PrismaticVLM(config)
    if siglip_tower is not None:
        model.vision_backbone.siglip.load_state_dict(siglip_tower.state_dict())
    if dino_tower is not None:
        model.vision_backbone.dino.load_state_dict(dino_tower.state_dict())
    return model.eval()


def save_vlm(model: PrismaticVLM, tokenizer, path, dtype: torch.dtype = torch.float16):
    """Save model and tokenizer into one folder: ``model.safetensors``, ``config.json``, ``tokenizer.json``.

    Introduced in lesson 05. The weights are *stored* in ``dtype`` (float16 halves the file:
    the course's VLM is ~8 MB instead of ~17 MB) and :func:`load_vlm` turns them back into
    float32, the only precision that is fast on a CPU. ``dtype=torch.float32`` stores them as is.
    """
    from pathlib import Path

    from .text_tokenizer import save_text_tokenizer

    if dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise ValueError(f"dtype must be float16, bfloat16 or float32, got {dtype}")
    path = Path(path)
    from vla_lessons.vision.encoders import quiet_transformers

    stored = model if dtype == torch.float32 else _copy_as(model, dtype)
    with quiet_transformers():
        stored.save_pretrained(path)
        model.config.save_pretrained(path)  # config.json says float32: from_pretrained upcasts on load
    save_text_tokenizer(tokenizer, path)
    return path


def _copy_as(model: PrismaticVLM, dtype: torch.dtype) -> PrismaticVLM:
    import copy

    return copy.deepcopy(model).to(dtype)


def load_vlm(path) -> tuple[PrismaticVLM, object]:
    """Load what :func:`save_vlm` saved: ``(model in float32 and eval mode, tokenizer)``.

    Introduced in lesson 05.
    """
    from pathlib import Path

    from .text_tokenizer import load_text_tokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise ValueError(f"no saved VLM at {path} (config.json missing); build it with "
                         "`python -m vla_lessons.build vlm`")
    from vla_lessons.vision.encoders import quiet_transformers

    with quiet_transformers():
        model = PrismaticVLM.from_pretrained(path, dtype=torch.float32).eval()
    return model, load_text_tokenizer(path)


def parameter_counts(model: PrismaticVLM) -> dict[str, int]:
    """Parameters per part: siglip, dino, projector, llm (of which embeddings and lm_head), total.

    Introduced in lesson 05.
    """
    def count(module):
        return sum(p.numel() for p in module.parameters())

    lm = model.language_model
    out = {
        "siglip": count(model.vision_backbone.siglip),
        "dino": count(model.vision_backbone.dino),
        "projector": count(model.projector),
        "llm": count(lm),
        "llm_embeddings": count(lm.get_input_embeddings()),
        "llm_lm_head": count(lm.get_output_embeddings()),
    }
    out["total"] = out["siglip"] + out["dino"] + out["projector"] + out["llm"]
    return out


@torch.no_grad()
def time_inference(model: PrismaticVLM, tokenizer, question: str = "what colour is the cube?", *,
                   n_tokens: int = 7, repeats: int = 10, threads: int = 1) -> dict[str, float]:
    """Milliseconds (median of ``repeats``) for one image and one prompt, on ``threads`` CPU threads.

    Introduced in lesson 05 (lesson 09 returns to it). Keys: ``vision`` (backbone + projector),
    ``prefill`` (one forward over image + prompt), ``greedy_cached`` (``n_tokens`` tokens with the
    KV cache, prefill included) and ``greedy_uncached`` (the same tokens, re-reading the whole
    sequence each time), plus ``prompt_tokens`` and ``sequence_tokens``. Timings are noisy on a
    shared machine; treat them as orders of magnitude.
    """
    import statistics
    import time

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    model.eval()
    image = torch.zeros(1, model.config.image_size, model.config.image_size, 3, dtype=torch.uint8)
    pixels = model.preprocess(image.numpy())
    enc = encode_prompts(tokenizer, [question])

    def clock(fn):
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return 1000 * statistics.median(times)

    try:
        out = {
            "vision": clock(lambda: model.visual_tokens(pixels)),
            "prefill": clock(lambda: model(enc["input_ids"], pixels, logits_to_keep=1)),
            "greedy_cached": clock(lambda: model.generate(enc["input_ids"], pixels, max_new_tokens=n_tokens,
                                                          stop_at_eos=False)),
            "greedy_uncached": clock(lambda: model.generate(enc["input_ids"], pixels, max_new_tokens=n_tokens,
                                                            stop_at_eos=False, use_cache=False)),
        }
    finally:
        torch.set_num_threads(before)
    out["prompt_tokens"] = int(enc["input_ids"].shape[1])
    out["sequence_tokens"] = out["prompt_tokens"] + model.num_patches
    return out
