"""Pretraining a small DINOv2 by self-distillation, without labels or captions.

Introduced in lesson 04.

A student network learns to give, for any crop of an image, the same output distribution as a
teacher gives for a large crop of that image. The teacher is not trained: it is an exponential
moving average (EMA) of the student. Three things keep the pair from collapsing to a constant:

* **centring**: the teacher's logits have a running mean subtracted (momentum 0.9), so no
  single prototype can win for every image;
* **sharpening**: the teacher's softmax has a low temperature (0.04, warmed up to 0.07 in
  DINOv2) and the student's a higher one (0.1), so the targets are confident;
* **multi-crop**: 2 global crops (teacher and student) and several small local crops (student
  only) push "local-to-global" correspondence.

Outputs go through a DINO head: an MLP, L2 normalisation, then cosine similarity with K
weight-normalised prototypes. DINOv2 adds a patch-level loss (iBOT): the student sees global
crops with some patches masked and must predict the teacher's output for those patches; it is
what gives DINOv2 its dense, spatial features (``ibot_weight`` here; 0 gives plain DINO).

Defaults follow DINO (Caron et al. 2021, ``main_dino.py``) and DINOv2 (``ssl_default_config.yaml``):
student temperature 0.1, teacher 0.04 -> 0.07 over the first 30 % of training, centre momentum 0.9,
crops (0.32, 1) and (0.05, 0.32), iBOT masking of half the global crops with 10-50 % of their
patches, and a teacher momentum rising to 1 on a cosine schedule -- from 0.99 here, where the
papers start at 0.996 (DINO) or 0.992 (DINOv2): they train for ~10^5 steps, this course for ~10^3,
and at 0.996 the teacher's memory (a half-life of ~170 steps) would span much of the run.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import Dinov2Config, Dinov2WithRegistersConfig

from .augment import dino_view
from .encoders import DinoModel, build_dino, num_prefix_tokens, small_dino_config
from .pixels import normalize, to_float_images
from .siglip_train import adamw_for, cosine_lr, epoch_batches, set_lr


class DINOHead(nn.Module):
    """MLP -> L2 normalise -> cosine similarity with K unit-norm prototypes: (..., d) -> (..., K).

    Introduced in lesson 04. The last layer is DINO's weight-normalised linear layer with its
    norm fixed to 1 (``norm_last_layer=True``): each prototype is a unit vector and a logit is a
    cosine similarity in [-1, 1], divided later by a temperature.
    """

    def __init__(self, in_dim: int, out_dim: int = 1024, hidden_dim: int = 512, bottleneck_dim: int = 64,
                 nlayers: int = 3):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (nlayers - 1)
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.GELU()]
        layers.append(nn.Linear(dims[-1], bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        self.prototypes = nn.Parameter(torch.empty(out_dim, bottleneck_dim))
        for module in self.mlp:
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.prototypes, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = F.normalize(self.mlp(x), dim=-1)
        return z @ F.normalize(self.prototypes, dim=-1).T


@dataclass
class DinoRecipe:
    """Training settings for :func:`pretrain_dino` (see the module docstring for the sources).

    Introduced in lesson 04.
    """

    batch_size: int = 32
    lr: float = 5e-4
    min_lr: float = 1e-6
    warmup_fraction: float = 0.1
    weight_decay: float = 0.04
    clip_grad: float = 3.0
    global_scale: tuple[float, float] = (0.32, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.32)
    n_local_crops: int = 4
    local_size: int = 56
    student_temp: float = 0.1
    warmup_teacher_temp: float = 0.04
    teacher_temp: float = 0.07
    teacher_temp_warmup_fraction: float = 0.3
    teacher_momentum: float = 0.99
    center_momentum: float = 0.9
    out_dim: int = 1024
    head_hidden_dim: int = 512
    head_bottleneck_dim: int = 64
    freeze_prototypes_fraction: float = 0.05
    ibot_weight: float = 1.0
    mask_probability: float = 0.5
    mask_ratio: tuple[float, float] = (0.1, 0.5)


def teacher_temperature(step: int, steps: int, recipe: DinoRecipe) -> float:
    """Teacher softmax temperature: linear warmup from 0.04 to 0.07, then constant.

    Introduced in lesson 04.
    """
    warmup = max(1, int(round(recipe.teacher_temp_warmup_fraction * steps)))
    if step >= warmup:
        return recipe.teacher_temp
    return recipe.warmup_teacher_temp + (recipe.teacher_temp - recipe.warmup_teacher_temp) * step / warmup


def teacher_momentum(step: int, steps: int, base: float = 0.99) -> float:
    """EMA momentum of the teacher: ``base`` rising to 1 on a cosine schedule (DINO: 0.996).

    Introduced in lesson 04.
    """
    return 1.0 - (1.0 - base) * (math.cos(math.pi * step / max(1, steps - 1)) + 1) / 2


def dino_loss(student_logits: list[torch.Tensor], teacher_logits: list[torch.Tensor], center: torch.Tensor,
              student_temp: float, teacher_temp: float) -> torch.Tensor:
    """DINO's cross-entropy between teacher and student over pairs of different views.

    Introduced in lesson 04.

    ``teacher_logits``: one (B, K) tensor per global view; ``student_logits``: one (B, K) per
    view, the global views first in the same order. The teacher is centred (``center``, (K,))
    and sharpened (``teacher_temp``); pairs where student and teacher see the same view are
    skipped. Returns the mean over pairs of the batch-mean cross-entropy.
    """
    targets = [F.softmax((t - center) / teacher_temp, dim=-1).detach() for t in teacher_logits]
    total, terms = 0.0, 0
    for i, q in enumerate(targets):
        for v, s in enumerate(student_logits):
            if v == i:
                continue
            total = total + torch.sum(-q * F.log_softmax(s / student_temp, dim=-1), dim=-1).mean()
            terms += 1
    return total / terms


def ibot_loss(student_patch_logits: torch.Tensor, teacher_patch_logits: torch.Tensor, center: torch.Tensor,
              student_temp: float, teacher_temp: float) -> torch.Tensor:
    """iBOT's masked-patch loss: cross-entropy on the masked patches, (M, K) each -> scalar.

    Introduced in lesson 04. The teacher saw the unmasked crop; the student the masked one.
    """
    q = F.softmax((teacher_patch_logits - center) / teacher_temp, dim=-1).detach()
    return torch.sum(-q * F.log_softmax(student_patch_logits / student_temp, dim=-1), dim=-1).mean()


def random_patch_masks(batch: int, num_patches: int, recipe: DinoRecipe, generator: torch.Generator) -> torch.Tensor:
    """Bool (batch, num_patches): for a ``mask_probability`` share of the images, a random
    ``mask_ratio`` share of the patches is True (masked); the other images have no mask.

    Introduced in lesson 04.
    """
    masked_image = torch.rand(batch, generator=generator) < recipe.mask_probability
    low, high = recipe.mask_ratio
    ratio = low + (high - low) * torch.rand(batch, generator=generator)
    counts = torch.where(masked_image, (ratio * num_patches).round().long().clamp(min=1), 0)
    ranks = torch.rand(batch, num_patches, generator=generator).argsort(dim=1).argsort(dim=1)
    return ranks < counts[:, None]


class _Network(nn.Module):
    """Backbone + DINO head, returning CLS logits and patch logits."""

    def __init__(self, backbone: DinoModel, head: DINOHead):
        super().__init__()
        self.backbone, self.head = backbone, head
        self.prefix = num_prefix_tokens(backbone)

    def forward(self, pixels, masks=None):
        tokens = self.backbone(pixel_values=pixels, bool_masked_pos=masks).last_hidden_state
        return tokens[:, 0], tokens[:, self.prefix:]


def _entropy(logits: torch.Tensor, center: torch.Tensor, temp: float) -> float:
    p = F.softmax((logits - center) / temp, dim=-1)
    return float(-(p * torch.log(p.clamp_min(1e-12))).sum(dim=-1).mean())


def pretrain_dino(images, config: Dinov2Config | Dinov2WithRegistersConfig | None = None, steps: int = 300, *,
                  recipe: DinoRecipe | None = None, seed: int = 0) -> tuple[DinoModel, dict[str, list[float]]]:
    """Train a DINOv2 backbone by self-distillation on unlabelled images; return ``(teacher, history)``.

    Introduced in lesson 04.

    Args:
        images: uint8 (N, H, W, 3), numpy or torch.
        config: the backbone's config; default :func:`small_dino_config`.
        steps: optimizer steps; recipe: :class:`DinoRecipe`; seed: seeds everything.

    Returns the EMA teacher's backbone (what DINO evaluates and keeps), in eval mode, and a
    per-step ``history`` with ``loss``, ``dino_loss``, ``ibot_loss`` and ``teacher_entropy``
    (mean entropy in nats of the teacher's centred, sharpened distribution: near 0 or near
    log K would mean collapse). fp32 on the CPU.
    """
    recipe = recipe or DinoRecipe()
    config = config or small_dino_config()
    to_float_images(images[:1])  # dtype and shape errors before any training
    student = _Network(build_dino(config, seed=seed),
                       DINOHead(config.hidden_size, recipe.out_dim, recipe.head_hidden_dim, recipe.head_bottleneck_dim))
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    student.train()
    teacher.eval()
    optimizer = adamw_for(student, recipe.lr, recipe.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    batches = epoch_batches(len(images), recipe.batch_size, generator)
    size = int(config.image_size)
    num_patches = (size // int(config.patch_size)) ** 2
    center = torch.zeros(recipe.out_dim)
    patch_center = torch.zeros(recipe.out_dim)
    freeze_steps = int(round(recipe.freeze_prototypes_fraction * steps))
    history = {"loss": [], "dino_loss": [], "ibot_loss": [], "teacher_entropy": []}
    for step in range(steps):
        idx = next(batches)
        pixels = to_float_images(images[idx.numpy()] if isinstance(images, np.ndarray) else images[idx])
        b = pixels.shape[0]
        global_views = torch.cat([normalize(dino_view(pixels, size, recipe.global_scale, generator), "dino")
                                  for _ in range(2)])
        local_views = [normalize(dino_view(pixels, recipe.local_size, recipe.local_scale, generator), "dino")
                       for _ in range(recipe.n_local_crops)]
        masks = random_patch_masks(2 * b, num_patches, recipe, generator) if recipe.ibot_weight > 0 else None
        t_temp = teacher_temperature(step, steps, recipe)

        with torch.no_grad():
            t_cls, t_patches = teacher(global_views)
            t_logits = teacher.head(t_cls)
        s_cls, s_patches = student(global_views, masks)
        student_logits = list(student.head(s_cls).chunk(2))
        if local_views:
            l_cls, _ = student(torch.cat(local_views))
            student_logits += list(student.head(l_cls).chunk(recipe.n_local_crops))
        loss_dino = dino_loss(student_logits, list(t_logits.chunk(2)), center, recipe.student_temp, t_temp)
        loss = loss_dino
        loss_ibot = torch.zeros(())
        if masks is not None and masks.any():
            with torch.no_grad():
                t_patch_logits = teacher.head(t_patches[masks])
            loss_ibot = ibot_loss(student.head(s_patches[masks]), t_patch_logits, patch_center,
                                  recipe.student_temp, t_temp)
            loss = loss + recipe.ibot_weight * loss_ibot

        set_lr(optimizer, cosine_lr(step, steps, recipe.lr, recipe.min_lr, recipe.warmup_fraction))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), recipe.clip_grad)
        if step < freeze_steps:  # DINO keeps the prototypes fixed at first
            student.head.prototypes.grad = None
        optimizer.step()

        with torch.no_grad():
            m = teacher_momentum(step, steps, recipe.teacher_momentum)
            for p_s, p_t in zip(student.parameters(), teacher.parameters()):
                p_t.mul_(m).add_(p_s.detach(), alpha=1 - m)
            history["teacher_entropy"].append(_entropy(t_logits, center, t_temp))
            center.mul_(recipe.center_momentum).add_(t_logits.mean(dim=0), alpha=1 - recipe.center_momentum)
            if masks is not None and masks.any():
                patch_center.mul_(recipe.center_momentum).add_(t_patch_logits.mean(dim=0),
                                                               alpha=1 - recipe.center_momentum)
        history["loss"].append(float(loss.detach()))
        history["dino_loss"].append(float(loss_dino.detach()))
        history["ibot_loss"].append(float(loss_ibot.detach()))
    backbone = teacher.backbone.eval()
    for p in backbone.parameters():
        p.requires_grad_(True)
    return backbone, history
