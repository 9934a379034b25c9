"""OpenVLA's fused vision backbone and the projectors into the language model's width.

Introduced in lesson 04 (the backbone) and lesson 05 (the projector).

OpenVLA (Prismatic's "dinosiglip-vit-so-224px") runs DINOv2 (spatial "where") and SigLIP
(semantic "what") on the same 224 px image. Both have patch 14, so both see the same 16 x 16 grid,
and the two feature vectors of each patch are concatenated channel-wise:
(B, 256, 1024 + 1152) = (B, 256, 2176). openvla-7b's order is **DINOv2 first, then SigLIP**
(its ``featurizer`` is DINOv2, its ``fused_featurizer`` SigLIP, and its input stacks the two
normalised copies of the image the same way: (B, 6, 224, 224), DINOv2's in channels 0-2).

The projector maps each fused patch vector to one "visual token" of the LLM. Prismatic has two
MLPs (``prismatic/util/nn_utils.py``; openvla-7b's remote code names its layers fc1, fc2, fc3):

* :class:`FusedProjector` -- ``FusedMLPProjector``, what openvla-7b uses with the fused backbone:
  d -> 4d -> D -> D with GELU after the first two layers (2176 -> 8704 -> 4096 -> 4096, 71.4M).
* :class:`MLPProjector` -- ``MLPProjector`` ("gelu-mlp"), the 2-layer d -> D -> D of LLaVA-1.5,
  which explainers often draw for OpenVLA; Prismatic uses it with a single vision encoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import (
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersModel,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from .encoders import check_pixel_values, grid_size, patch_tokens, vision_tower
from .pixels import preprocess_fused


class FusedBackbone(nn.Module):
    """DINOv2 + SigLIP on the same image, patch features concatenated: (B, N, d_dino + d_siglip).

    Introduced in lesson 04.

    Args:
        siglip: a ``SiglipVisionModel`` (or a ``SiglipModel``, whose image tower is used).
        dino: a ``Dinov2Model`` or ``Dinov2WithRegistersModel``.
        feature_layer: which layer's patch tokens to read (see
            :func:`~vla_lessons.vision.encoders.patch_tokens`); -2, the second-to-last block,
            as OpenVLA.

    Both encoders must have the same image size and patch size, hence the same patch grid;
    otherwise the patches could not be paired and the constructor raises ``ValueError``.
    ``forward`` takes the channel-stacked (B, 6, S, S) float32 input of :meth:`preprocess`
    (DINOv2 normalisation in channels 0-2, SigLIP in 3-5) and returns float32 (B, N, d) with
    the DINOv2 features in ``[..., :dino_dim]`` and SigLIP's after them, as openvla-7b.
    """

    def __init__(self, siglip, dino, feature_layer: int = -2):
        super().__init__()
        self.siglip = vision_tower(siglip)
        self.dino = vision_tower(dino)
        if not isinstance(self.siglip, SiglipVisionModel):
            raise TypeError(f"siglip must be a SigLIP model, got {type(siglip).__name__}")
        if isinstance(self.dino, SiglipVisionModel):
            raise TypeError(f"dino must be a DINOv2 model, got {type(dino).__name__}")
        s_cfg, d_cfg = self.siglip.config, self.dino.config
        if (s_cfg.image_size, s_cfg.patch_size) != (d_cfg.image_size, d_cfg.patch_size):
            raise ValueError(
                "patch grids do not align: SigLIP sees a "
                f"{grid_size(self.siglip)}x{grid_size(self.siglip)} grid ({s_cfg.image_size} px / patch "
                f"{s_cfg.patch_size}), DINOv2 a {grid_size(self.dino)}x{grid_size(self.dino)} grid "
                f"({d_cfg.image_size} px / patch {d_cfg.patch_size}); both need the same image and patch size")
        self.feature_layer = feature_layer
        self.image_size = int(s_cfg.image_size)
        self.num_patches = grid_size(self.siglip) ** 2
        self.dino_dim = int(d_cfg.hidden_size)
        self.siglip_dim = int(s_cfg.hidden_size)
        self.embed_dim = self.dino_dim + self.siglip_dim

    def preprocess(self, images) -> torch.Tensor:
        """uint8 images (B, H, W, 3) -> the stacked (B, 6, S, S) float32 input of ``forward``."""
        return preprocess_fused(images, self.image_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        check_pixel_values(pixel_values, self.image_size, channels=6)
        dino_pixels, siglip_pixels = torch.split(pixel_values, [3, 3], dim=1)
        dino = patch_tokens(self.dino, dino_pixels, self.feature_layer)
        siglip = patch_tokens(self.siglip, siglip_pixels, self.feature_layer)
        return torch.cat([dino, siglip], dim=2)

    def split(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused features (..., d) -> (DINOv2 part, SigLIP part)."""
        if features.shape[-1] != self.embed_dim:
            raise ValueError(f"features must have last dimension {self.embed_dim}, got {tuple(features.shape)}")
        return features[..., : self.dino_dim], features[..., self.dino_dim:]


def _check_features(x, vision_dim: int, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} expects a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 2 or x.shape[-1] != vision_dim:
        raise ValueError(f"{name} expects patch features (..., {vision_dim}), got {tuple(x.shape)}")


class FusedProjector(nn.Module):
    """openvla-7b's projector for fused backbones: fc1 d->4d, GELU, fc2 4d->D, GELU, fc3 D->D.

    Introduced in lesson 05. Prismatic's ``FusedMLPProjector``; for openvla-7b
    d = 2176, D = 4096: 71,385,600 parameters. Maps (B, N, d) -> (B, N, D).
    """

    def __init__(self, vision_dim: int, llm_dim: int):
        super().__init__()
        self.vision_dim, self.llm_dim = vision_dim, llm_dim
        self.fc1 = nn.Linear(vision_dim, 4 * vision_dim)
        self.act_fn1 = nn.GELU()
        self.fc2 = nn.Linear(4 * vision_dim, llm_dim)
        self.act_fn2 = nn.GELU()
        self.fc3 = nn.Linear(llm_dim, llm_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        _check_features(features, self.vision_dim, "FusedProjector")
        return self.fc3(self.act_fn2(self.fc2(self.act_fn1(self.fc1(features)))))


class MLPProjector(nn.Module):
    """The 2-layer GELU MLP d -> D -> D (LLaVA-1.5; Prismatic's ``gelu-mlp``), single encoders.

    Introduced in lesson 05. Not what openvla-7b uses with its fused backbone (that is
    :class:`FusedProjector`), but the projector most explainers draw. Maps (B, N, d) -> (B, N, D).
    """

    def __init__(self, vision_dim: int, llm_dim: int):
        super().__init__()
        self.vision_dim, self.llm_dim = vision_dim, llm_dim
        self.fc1 = nn.Linear(vision_dim, llm_dim)
        self.act_fn1 = nn.GELU()
        self.fc2 = nn.Linear(llm_dim, llm_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        _check_features(features, self.vision_dim, "MLPProjector")
        return self.fc2(self.act_fn1(self.fc1(features)))


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of ``module`` (works on the meta device).

    Introduced in lesson 04.
    """
    return sum(p.numel() for p in module.parameters())


#: openvla-7b's SigLIP: timm ``vit_so400m_patch14_siglip_224`` (So400m/14 at 224 px). timm builds it
#: with the exact GELU (transformers' SigLIP default is the tanh approximation).
REAL_SIGLIP = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                   image_size=224, patch_size=14, vision_use_head=True, hidden_act="gelu")
#: openvla-7b's DINOv2: timm ``vit_large_patch14_reg4_dinov2.lvd142m`` (ViT-L/14, 4 registers) at 224 px.
REAL_DINO = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, mlp_ratio=4,
                 image_size=224, patch_size=14, num_register_tokens=4, layerscale_value=1e-5)
#: openvla-7b's LLM width (Llama-2-7B).
REAL_LLM_DIM = 4096


@dataclass
class RealVisionParts:
    """openvla-7b's vision side built on the meta device: modules and parameter counts.

    Introduced in lesson 04. ``params`` holds: ``siglip`` (with its attention-pool head),
    ``siglip_map_head``, ``dino``, ``projector``, ``total``, and ``unused`` -- the parameters
    that exist in the checkpoint but never touch a feature OpenVLA uses (with features from the
    second-to-last block: each encoder's last block and final LayerNorm, SigLIP's MAP head,
    DINOv2's mask token).
    """

    siglip: SiglipVisionModel
    dino: Dinov2WithRegistersModel
    backbone: FusedBackbone
    projector: FusedProjector
    params: dict[str, int]


def from_real_configs(llm_dim: int = REAL_LLM_DIM) -> RealVisionParts:
    """Build openvla-7b's SigLIP, DINOv2 and fused projector at full size, without weights.

    Introduced in lesson 04. Everything lives on ``torch.device("meta")``: shapes and
    parameter counts, no memory, no download. Counts (transformers 5.23 classes):
    SigLIP 427,680,704 (of which the MAP head 15,238,352), DINOv2 303,233,024,
    projector 71,385,600.
    """
    with torch.device("meta"):
        siglip = SiglipVisionModel(SiglipVisionConfig(**REAL_SIGLIP))
        dino = Dinov2WithRegistersModel(Dinov2WithRegistersConfig(**REAL_DINO))
        backbone = FusedBackbone(siglip, dino)
        projector = FusedProjector(backbone.embed_dim, llm_dim)
    unused = (count_parameters(siglip.encoder.layers[-1]) + count_parameters(siglip.post_layernorm)
              + count_parameters(siglip.head) + count_parameters(dino.encoder.layer[-1])
              + count_parameters(dino.layernorm) + dino.embeddings.mask_token.numel())
    params = {
        "siglip": count_parameters(siglip),
        "siglip_map_head": count_parameters(siglip.head),
        "dino": count_parameters(dino),
        "projector": count_parameters(projector),
    }
    params["total"] = params["siglip"] + params["dino"] + params["projector"]
    params["unused"] = unused
    return RealVisionParts(siglip, dino, backbone, projector, params)
