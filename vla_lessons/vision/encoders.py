"""The two vision encoders, built from the real ``transformers`` classes at a size a CPU can train.

Introduced in lesson 04.

* SigLIP: :class:`transformers.SiglipModel` (an image tower ``SiglipVisionModel`` with its
  attention-pooling "MAP" head, and a text tower ``SiglipTextModel``), the pair trained with the
  sigmoid loss.
* DINOv2: :class:`transformers.Dinov2Model`, or :class:`transformers.Dinov2WithRegistersModel`
  when it has register tokens (openvla-7b's DINOv2 has 4), trained by self-distillation.

The mini configurations keep the real patch size (14 px) and shrink everything else: a 112 px
image gives an 8 x 8 grid of 64 patches (openvla-7b: 224 px, 16 x 16 = 256 patches).

:func:`patch_tokens` is how the fused backbone reads an encoder: the patch tokens of one layer
(by default the second-to-last, as OpenVLA does), without the CLS and register tokens.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

import torch
from tokenizers import Tokenizer
from transformers import (
    Dinov2Config,
    Dinov2Model,
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersModel,
    SiglipConfig,
    SiglipModel,
    SiglipTextConfig,
    SiglipVisionConfig,
    SiglipVisionModel,
)

#: SigLIP's initial log-temperature t' = log 10 (so t = exp(t') = 10) and bias b = -10
#: (Zhai et al. 2023, "Sigmoid Loss for Language Image Pre-Training", section 3).
SIGLIP_INIT_LOGIT_SCALE = math.log(10.0)
SIGLIP_INIT_LOGIT_BIAS = -10.0

TOKENIZER_FILE = "caption_tokenizer.json"

DinoModel = Dinov2Model | Dinov2WithRegistersModel


def small_siglip_config(vocab_size: int, image_size: int = 112, patch_size: int = 14,
                        hidden_size: int = 128, num_layers: int = 4, num_heads: int = 4,
                        text_hidden_size: int = 128, text_layers: int = 2, max_length: int = 32,
                        pad_token_id: int = 0, eos_token_id: int = 2) -> SiglipConfig:
    """A small SigLIP: a ViT image tower and a text tower over the caption vocabulary.

    Introduced in lesson 04. The text tower's output is projected to the image tower's
    width (``projection_size = hidden_size``) so the two embeddings can be compared.
    ``pad_token_id`` and ``eos_token_id`` follow :func:`~vla_lessons.vision.captions.build_caption_tokenizer`.
    """
    if image_size % patch_size:
        raise ValueError(f"image_size {image_size} must be a multiple of patch_size {patch_size}")
    vision = SiglipVisionConfig(hidden_size=hidden_size, intermediate_size=4 * hidden_size,
                                num_hidden_layers=num_layers, num_attention_heads=num_heads,
                                image_size=image_size, patch_size=patch_size, vision_use_head=True)
    text = SiglipTextConfig(vocab_size=vocab_size, hidden_size=text_hidden_size,
                            intermediate_size=4 * text_hidden_size, num_hidden_layers=text_layers,
                            num_attention_heads=num_heads, max_position_embeddings=max_length,
                            pad_token_id=pad_token_id, bos_token_id=None, eos_token_id=eos_token_id,
                            projection_size=hidden_size)
    return SiglipConfig(text_config=text, vision_config=vision)


def build_siglip(config: SiglipConfig, seed: int = 0) -> SiglipModel:
    """A freshly initialised ``SiglipModel`` with SigLIP's t' = log 10 and b = -10.

    Introduced in lesson 04. (transformers initialises both to 0; the paper's values start the
    loss near its minimum for a batch that is almost all negative pairs.)
    """
    if config.text_config.projection_size != config.vision_config.hidden_size:
        raise ValueError("text projection_size must equal the image tower's hidden_size "
                         f"({config.text_config.projection_size} != {config.vision_config.hidden_size})")
    torch.manual_seed(seed)
    model = SiglipModel(config)
    with torch.no_grad():
        model.logit_scale.fill_(SIGLIP_INIT_LOGIT_SCALE)
        model.logit_bias.fill_(SIGLIP_INIT_LOGIT_BIAS)
    return model


def small_dino_config(image_size: int = 112, patch_size: int = 14, hidden_size: int = 128,
                      num_layers: int = 4, num_heads: int = 4,
                      num_register_tokens: int = 4) -> Dinov2Config | Dinov2WithRegistersConfig:
    """A small DINOv2 ViT; with ``num_register_tokens > 0`` the registers variant.

    Introduced in lesson 04.
    """
    if image_size % patch_size:
        raise ValueError(f"image_size {image_size} must be a multiple of patch_size {patch_size}")
    common = dict(hidden_size=hidden_size, num_hidden_layers=num_layers, num_attention_heads=num_heads,
                  mlp_ratio=4, image_size=image_size, patch_size=patch_size, layerscale_value=1.0)
    if num_register_tokens > 0:
        return Dinov2WithRegistersConfig(num_register_tokens=num_register_tokens, **common)
    return Dinov2Config(**common)


def build_dino(config: Dinov2Config | Dinov2WithRegistersConfig, seed: int = 0) -> DinoModel:
    """A freshly initialised DINOv2 backbone for ``config`` (registers variant if it has them).

    Introduced in lesson 04.
    """
    torch.manual_seed(seed)
    if isinstance(config, Dinov2WithRegistersConfig):
        return Dinov2WithRegistersModel(config)
    if isinstance(config, Dinov2Config):
        return Dinov2Model(config)
    raise TypeError(f"config must be a Dinov2Config or Dinov2WithRegistersConfig, got {type(config).__name__}")


def vision_tower(model) -> SiglipVisionModel | DinoModel:
    """The image encoder inside ``model``: a SigLIP image tower or a DINOv2 backbone.

    Introduced in lesson 04. A full ``SiglipModel`` gives its ``vision_model``.
    """
    if isinstance(model, SiglipModel):
        return model.vision_model
    if isinstance(model, (SiglipVisionModel, Dinov2Model, Dinov2WithRegistersModel)):
        return model
    raise TypeError("expected a SiglipModel, SiglipVisionModel, Dinov2Model or Dinov2WithRegistersModel, "
                    f"got {type(model).__name__}")


def num_prefix_tokens(model) -> int:
    """Tokens before the patch tokens: 0 for SigLIP, 1 (CLS) + registers for DINOv2.

    Introduced in lesson 04.
    """
    tower = vision_tower(model)
    if isinstance(tower, SiglipVisionModel):
        return 0
    return 1 + int(getattr(tower.config, "num_register_tokens", 0))


def grid_size(model) -> int:
    """Patches per side of the encoder's input image (image_size // patch_size).

    Introduced in lesson 04.
    """
    config = vision_tower(model).config
    return int(config.image_size) // int(config.patch_size)


def check_pixel_values(pixel_values, image_size: int, channels: int = 3) -> None:
    """Raise a ``ValueError`` unless ``pixel_values`` is finite float32 (B, channels, S, S).

    Introduced in lesson 04.
    """
    if not isinstance(pixel_values, torch.Tensor):
        raise TypeError(f"pixel_values must be a torch.Tensor, got {type(pixel_values).__name__}")
    expected = f"(B, {channels}, {image_size}, {image_size})"
    if pixel_values.dtype != torch.float32:
        raise ValueError(f"pixel_values must be float32 {expected} (see preprocess), got {pixel_values.dtype}")
    if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != (channels, image_size, image_size):
        raise ValueError(f"pixel_values must have shape {expected}, got {tuple(pixel_values.shape)}")
    if pixel_values.device.type != "meta" and not torch.isfinite(pixel_values).all():
        raise ValueError("pixel_values contain NaN or inf")


def patch_tokens(model, pixel_values: torch.Tensor, feature_layer: int = -2) -> torch.Tensor:
    """Patch features of one layer of an encoder: float32 (B, N, D), N = grid_size(model) ** 2.

    Introduced in lesson 04.

    ``feature_layer`` indexes the encoder's ``hidden_states`` tuple: 0 is the patch embedding,
    ``i`` the output of block ``i``; ``-1`` is the last block and ``-2`` (the default) the
    second-to-last, which is what OpenVLA feeds its projector (Prismatic calls timm's
    ``get_intermediate_layers(n={len(blocks) - 2})``: no final LayerNorm). CLS and register
    tokens are dropped.
    """
    tower = vision_tower(model)
    check_pixel_values(pixel_values, int(tower.config.image_size))
    depth = tower.config.num_hidden_layers
    if not -(depth + 1) <= feature_layer <= depth:
        raise ValueError(f"feature_layer must be in [-{depth + 1}, {depth}] for a {depth}-layer encoder, "
                         f"got {feature_layer}")
    out = tower(pixel_values=pixel_values, output_hidden_states=True)
    return out.hidden_states[feature_layer][:, num_prefix_tokens(tower):]


@contextmanager
def quiet_transformers():
    """Silence transformers' warnings and progress bars inside a ``with`` block, then restore them.

    Introduced in lesson 04. (Saving or loading any SigLIP builds transformers' default text
    config, whose own token ids trip a harmless "bos_token_id must be ..." warning.)
    """
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def save_siglip(model: SiglipModel, tokenizer: Tokenizer, path) -> Path:
    """Save a SigLIP and its caption tokenizer: safetensors weights, config.json, tokenizer json.

    Introduced in lesson 04.
    """
    path = Path(path)
    with quiet_transformers():
        model.save_pretrained(path)
    tokenizer.save(str(path / TOKENIZER_FILE))
    return path


def load_siglip(path) -> tuple[SiglipModel, Tokenizer]:
    """Load what :func:`save_siglip` saved: ``(model, tokenizer)``, the model in eval mode.

    Introduced in lesson 04.
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ValueError(f"no saved SigLIP at {path} (config.json missing)")
    with quiet_transformers():
        model = SiglipModel.from_pretrained(path).eval()
    return model, Tokenizer.from_file(str(path / TOKENIZER_FILE))


def save_dino(model: DinoModel, path) -> Path:
    """Save a DINOv2 backbone with ``save_pretrained`` (safetensors + config.json).

    Introduced in lesson 04.
    """
    path = Path(path)
    with quiet_transformers():
        vision_tower(model).save_pretrained(path)
    return path


def load_dino(path) -> DinoModel:
    """Load what :func:`save_dino` saved, with the class named in its config, in eval mode.

    Introduced in lesson 04.
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ValueError(f"no saved DINOv2 at {path} (config.json missing)")
    from transformers import AutoConfig

    with quiet_transformers():
        config = AutoConfig.from_pretrained(path)
        cls = Dinov2WithRegistersModel if isinstance(config, Dinov2WithRegistersConfig) else Dinov2Model
        return cls.from_pretrained(path).eval()
