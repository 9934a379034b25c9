"""From camera images (uint8) to the normalised pixel tensors each encoder expects.

Introduced in lesson 04.

The two encoders of the fused backbone were pretrained with different normalisations:
SigLIP maps pixels to [-1, 1] (mean = std = 0.5), DINOv2 uses the ImageNet mean and std.
OpenVLA resizes the camera image to the encoder size ("resize-naive", no crop) and stacks the two
normalised copies channel-wise, DINOv2 first: (B, 6, S, S). :func:`preprocess` does one copy,
:func:`preprocess_fused` the stacked pair.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

#: SigLIP's pixel normalisation (maps [0, 1] to [-1, 1]).
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)
#: DINOv2's pixel normalisation: the ImageNet statistics.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

NORMALIZATION = {"siglip": (SIGLIP_MEAN, SIGLIP_STD), "dino": (IMAGENET_MEAN, IMAGENET_STD)}


def to_float_images(images) -> torch.Tensor:
    """Check camera images and return them as float32 in [0, 1], channels first: (B, 3, H, W).

    Introduced in lesson 04. ``images`` is uint8, numpy or torch, shaped (B, H, W, 3) or one
    image (H, W, 3). Anything else (float pixels, channels first, 4 channels, an empty batch)
    is a ``ValueError`` that says what was expected.
    """
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (0..255) camera images, got numpy dtype {images.dtype}")
        tensor = torch.from_numpy(np.ascontiguousarray(images))
    elif isinstance(images, torch.Tensor):
        if images.dtype != torch.uint8:
            raise ValueError(f"images must be uint8 (0..255) camera images, got torch dtype {images.dtype}")
        tensor = images
    else:
        raise TypeError(f"images must be a numpy array or torch tensor of uint8, got {type(images).__name__}")
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 4 or tensor.shape[-1] != 3:
        raise ValueError(
            f"images must have shape (B, H, W, 3) or (H, W, 3) with 3 colour channels last, got {tuple(tensor.shape)}")
    if tensor.shape[0] == 0 or tensor.shape[1] == 0 or tensor.shape[2] == 0:
        raise ValueError(f"images must be a non-empty batch of non-empty images, got {tuple(tensor.shape)}")
    return tensor.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)


def resize(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """Resize float images (B, 3, H, W) to (B, 3, size, size): bilinear with antialiasing.

    Introduced in lesson 04. Non-square images are squashed, like OpenVLA's "resize-naive".
    """
    if pixels.shape[-2:] == (size, size):
        return pixels
    return F.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def normalize(pixels: torch.Tensor, encoder: str) -> torch.Tensor:
    """Normalise float images in [0, 1] (B, 3, S, S) with ``encoder``'s mean and std.

    Introduced in lesson 04. ``encoder`` is ``"siglip"`` or ``"dino"``.
    """
    if encoder not in NORMALIZATION:
        raise ValueError(f"encoder must be one of {sorted(NORMALIZATION)}, got {encoder!r}")
    mean, std = (torch.tensor(v, dtype=pixels.dtype).view(1, 3, 1, 1) for v in NORMALIZATION[encoder])
    return (pixels - mean) / std


def preprocess(images, image_size: int, encoder: str = "siglip") -> torch.Tensor:
    """uint8 camera images (B, H, W, 3) -> float32 pixel values (B, 3, S, S) for one encoder.

    Introduced in lesson 04. Resizes to ``image_size`` (S) and normalises for ``encoder``
    (``"siglip"``: mean = std = 0.5; ``"dino"``: ImageNet mean and std).
    """
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    return normalize(resize(to_float_images(images), image_size), encoder)


def preprocess_fused(images, image_size: int) -> torch.Tensor:
    """uint8 images (B, H, W, 3) -> (B, 6, S, S): DINOv2's copy in channels 0-2, SigLIP's in 3-5.

    Introduced in lesson 04. This is the channel-stacked input of openvla-7b's fused backbone.
    """
    pixels = resize(to_float_images(images), image_size)
    return torch.cat([normalize(pixels, "dino"), normalize(pixels, "siglip")], dim=1)
