"""Image augmentations written in torch: random resized crop, flips, colour jitter, grayscale.

Introduced in lesson 04.

torchvision is not available here (its only build for torch 2.13 needs CUDA), and the idea fits
in a few lines anyway. Every function works on a batch of float images in [0, 1], shape
(B, 3, H, W), draws its randomness from an explicit ``torch.Generator`` (same seed, same crops)
and returns float32.

A crop is an affine map from output pixels to input pixels, so a whole batch of crops with
different boxes (and optional mirror flips) is one ``F.affine_grid`` + ``F.grid_sample`` call.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def random_resized_crop(pixels: torch.Tensor, out_size: int, scale: tuple[float, float],
                        generator: torch.Generator, ratio: tuple[float, float] = (3 / 4, 4 / 3),
                        flip_p: float = 0.0) -> torch.Tensor:
    """Crop a random box of each image and resize it to (out_size, out_size); maybe mirror it.

    Introduced in lesson 04. The box covers a fraction of the image area drawn uniformly from
    ``scale`` with an aspect ratio drawn log-uniformly from ``ratio`` (as torchvision's
    ``RandomResizedCrop``; a box that would not fit is shrunk to fit). Each image is mirrored
    left-right with probability ``flip_p``. Input (B, 3, H, W) in [0, 1] -> (B, 3, S, S).
    """
    if not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {scale}")
    b = pixels.shape[0]
    area = _uniform(b, scale[0], scale[1], generator)
    log_ratio = _uniform(b, math.log(ratio[0]), math.log(ratio[1]), generator)
    aspect = torch.exp(log_ratio)
    w = torch.sqrt(area * aspect).clamp(max=1.0)  # box width and height as fractions of the image
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = w / 2 + (1 - w) * torch.rand(b, generator=generator)  # box centre, in [w/2, 1 - w/2]
    cy = h / 2 + (1 - h) * torch.rand(b, generator=generator)
    flip = torch.rand(b, generator=generator) < flip_p
    sx = torch.where(flip, -w, w)
    zeros = torch.zeros(b)
    theta = torch.stack([torch.stack([sx, zeros, 2 * cx - 1], dim=1),
                         torch.stack([zeros, h, 2 * cy - 1], dim=1)], dim=1)
    grid = F.affine_grid(theta, [b, pixels.shape[1], out_size, out_size], align_corners=False)
    return F.grid_sample(pixels, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _luminance(pixels: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=pixels.dtype).view(1, 3, 1, 1)
    return (pixels * weights).sum(dim=1, keepdim=True)


def _rotate_hue(pixels: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate the chroma of each image by ``angle`` radians in YIQ colour space."""
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    to_rgb = torch.linalg.inv(to_yiq)
    yiq = torch.einsum("ij,bjhw->bihw", to_yiq, pixels)
    cos, sin = torch.cos(angle).view(-1, 1, 1), torch.sin(angle).view(-1, 1, 1)
    i, q = yiq[:, 1], yiq[:, 2]
    yiq = torch.stack([yiq[:, 0], cos * i - sin * q, sin * i + cos * q], dim=1)
    return torch.einsum("ij,bjhw->bihw", to_rgb, yiq)


def color_jitter(pixels: torch.Tensor, generator: torch.Generator, brightness: float = 0.4,
                 contrast: float = 0.4, saturation: float = 0.2, hue: float = 0.1,
                 p: float = 0.8) -> torch.Tensor:
    """Random brightness, contrast, saturation and hue, applied to each image with probability p.

    Introduced in lesson 04. Defaults are DINO's (0.4, 0.4, 0.2, 0.1 with p = 0.8), applied in
    that fixed order. ``hue`` is a fraction of a full turn of the colour wheel.
    """
    b = pixels.shape[0]
    apply = (torch.rand(b, generator=generator) < p).view(-1, 1, 1, 1)
    out = pixels * _uniform(b, 1 - brightness, 1 + brightness, generator).view(-1, 1, 1, 1)
    mean = _luminance(out).mean(dim=(2, 3), keepdim=True)
    out = (out - mean) * _uniform(b, 1 - contrast, 1 + contrast, generator).view(-1, 1, 1, 1) + mean
    gray = _luminance(out)
    out = (out - gray) * _uniform(b, 1 - saturation, 1 + saturation, generator).view(-1, 1, 1, 1) + gray
    out = _rotate_hue(out, _uniform(b, -hue, hue, generator) * 2 * math.pi)
    return torch.where(apply, out.clamp(0.0, 1.0), pixels)


def random_grayscale(pixels: torch.Tensor, generator: torch.Generator, p: float = 0.2) -> torch.Tensor:
    """Replace each image by its luminance (on all 3 channels) with probability p (DINO: 0.2).

    Introduced in lesson 04.
    """
    apply = (torch.rand(pixels.shape[0], generator=generator) < p).view(-1, 1, 1, 1)
    return torch.where(apply, _luminance(pixels).expand_as(pixels), pixels)


def dino_view(pixels: torch.Tensor, out_size: int, scale: tuple[float, float],
              generator: torch.Generator) -> torch.Tensor:
    """One DINO view of each image: random resized crop, flip, colour jitter, grayscale.

    Introduced in lesson 04. (DINO also blurs and solarizes; at 112 px these mostly erase the
    small objects, so they are left out.) (B, 3, H, W) in [0, 1] -> (B, 3, S, S).
    """
    view = random_resized_crop(pixels, out_size, scale, generator, flip_p=0.5)
    return random_grayscale(color_jitter(view, generator), generator)


def siglip_view(pixels: torch.Tensor, out_size: int, generator: torch.Generator,
                scale: tuple[float, float] = (0.8, 1.0)) -> torch.Tensor:
    """A gentle augmentation for image-text pairs: a mild crop and brightness change only.

    Introduced in lesson 04. The caption names colours and says "left of", so flips and hue
    changes would make it false; a crop that keeps most of the image keeps it true.
    """
    view = random_resized_crop(pixels, out_size, scale, generator, ratio=(0.9, 1.1))
    return color_jitter(view, generator, brightness=0.2, contrast=0.2, saturation=0.0, hue=0.0, p=0.5)
