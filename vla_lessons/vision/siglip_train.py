"""Pretraining a small SigLIP on (sim image, caption) pairs with the sigmoid loss.

Introduced in lesson 04.

CLIP asks "which of the B captions belongs to this image?" (a softmax over the batch). SigLIP asks
B x B independent yes/no questions "do this image and this caption belong together?":

    logits_ij = t * <x_i, y_j> + b,    loss = -1/B * sum_ij log sigmoid(z_ij * logits_ij)

with x, y the L2-normalised image and text embeddings, z_ij = +1 for a matching pair and -1
otherwise, t = exp(t') a learned temperature and b a learned bias, initialised to t' = log 10 and
b = -10 (most pairs are negatives, so the loss starts near its minimum instead of exploding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from transformers import SiglipConfig, SiglipModel

from .augment import siglip_view
from .captions import EOS, PAD, build_caption_tokenizer, encode_captions
from .encoders import build_siglip, small_siglip_config
from .pixels import normalize, preprocess, to_float_images


def sigmoid_loss(image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor,
                 logit_bias: torch.Tensor, positives: torch.Tensor | None = None) -> torch.Tensor:
    """SigLIP's pairwise sigmoid loss for a batch of B images and B texts (scalar float32).

    Introduced in lesson 04.

    Args:
        image_embeds, text_embeds: (B, D); L2-normalised here.
        logit_scale: t' (the temperature is t = exp(t')); logit_bias: b.
        positives: optional (B, B) bool, True where image i and text j match; the default is
            the diagonal (pair i with text i only), as in the paper.
    """
    if image_embeds.ndim != 2 or image_embeds.shape != text_embeds.shape:
        raise ValueError(f"image_embeds and text_embeds must both be (B, D), got {tuple(image_embeds.shape)} "
                         f"and {tuple(text_embeds.shape)}")
    b = image_embeds.shape[0]
    x = F.normalize(image_embeds, dim=-1)
    y = F.normalize(text_embeds, dim=-1)
    logits = x @ y.T * logit_scale.exp() + logit_bias
    if positives is None:
        positives = torch.eye(b, dtype=torch.bool)
    if positives.shape != (b, b):
        raise ValueError(f"positives must be ({b}, {b}), got {tuple(positives.shape)}")
    signs = positives.to(logits.dtype) * 2 - 1
    return -F.logsigmoid(signs * logits).sum() / b


@dataclass
class SiglipRecipe:
    """Training settings for :func:`pretrain_siglip` (AdamW, linear warmup then cosine decay).

    Introduced in lesson 04.
    """

    batch_size: int = 64
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_fraction: float = 0.1
    weight_decay: float = 0.1
    clip_grad: float = 1.0
    #: learning-rate multiplier for t' and b. SigLIP trains them like any weight over ~10^5
    #: steps; in a few hundred steps they would barely move from t = 10, b = -10, which caps a
    #: matching pair's logit at t + b = 0 (probability 0.5).
    logit_lr_scale: float = 10.0
    augment: bool = True
    #: treat two scenes with the same caption as a positive pair (a small caption language makes
    #: exact duplicates common; calling them negatives would contradict the data).
    duplicate_captions_are_positives: bool = True


def cosine_lr(step: int, steps: int, lr: float, min_lr: float, warmup_fraction: float) -> float:
    """Learning rate at ``step``: linear warmup to ``lr``, then cosine decay to ``min_lr``.

    Introduced in lesson 04.
    """
    warmup = max(1, int(round(warmup_fraction * steps)))
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))


def epoch_batches(n: int, batch_size: int, generator: torch.Generator):
    """Endless index batches (LongTensor (batch_size,)): shuffled epochs without replacement.

    Introduced in lesson 04. The last partial batch of each epoch is dropped.
    """
    if batch_size > n:
        raise ValueError(f"batch_size {batch_size} is larger than the dataset ({n} images)")
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start:start + batch_size]


def adamw_for(model: torch.nn.Module, lr: float, weight_decay: float,
              lr_scales: dict[str, float] | None = None) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases, norms, t' or b).

    Introduced in lesson 04. ``lr_scales`` maps parameter names to a learning-rate multiplier
    (kept in each group's ``"lr_scale"``; :func:`set_lr` applies it).
    """
    lr_scales = lr_scales or {}
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in named if p.ndim >= 2 and n not in lr_scales],
               "weight_decay": weight_decay, "lr_scale": 1.0},
              {"params": [p for n, p in named if p.ndim < 2 and n not in lr_scales],
               "weight_decay": 0.0, "lr_scale": 1.0}]
    for name, scale in lr_scales.items():
        groups.append({"params": [p for n, p in named if n == name], "weight_decay": 0.0, "lr_scale": scale})
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate to ``lr`` times its ``"lr_scale"``.

    Introduced in lesson 04.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def _check_inputs(images, captions) -> None:
    if len(images) != len(captions):
        raise ValueError(f"got {len(images)} images but {len(captions)} captions")
    to_float_images(images[:1])  # dtype and shape errors before any training


def pretrain_siglip(images, captions, config: SiglipConfig | None = None, steps: int = 300, *,
                    tokenizer: Tokenizer | None = None, recipe: SiglipRecipe | None = None,
                    seed: int = 0) -> tuple[SiglipModel, Tokenizer, dict[str, list[float]]]:
    """Train a SigLIP from scratch on (image, caption) pairs; return ``(model, tokenizer, history)``.

    Introduced in lesson 04.

    Args:
        images: uint8 (N, H, W, 3), numpy or torch; resized to the config's image size.
        captions: N strings.
        config: a ``SiglipConfig``; default :func:`small_siglip_config` sized to the tokenizer.
        steps: optimizer steps.
        tokenizer: the caption tokenizer; default built from ``captions``. It is returned
            because the text tower only understands its ids.
        recipe: training settings (:class:`SiglipRecipe`).
        seed: seeds the initialisation, the batches and the augmentations.

    ``history`` has one entry per step: ``loss``, ``temperature`` (t = exp(t')), ``bias`` (b)
    and ``batch_accuracy`` (fraction of images whose best-scoring caption in the batch is their
    own). fp32 on the CPU; the model is returned in eval mode.
    """
    recipe = recipe or SiglipRecipe()
    _check_inputs(images, captions)
    tokenizer = tokenizer or build_caption_tokenizer(captions)
    if config is None:
        max_length = tokenizer.padding["length"] if tokenizer.padding else 32
        config = small_siglip_config(tokenizer.get_vocab_size(), max_length=max_length,
                                     pad_token_id=tokenizer.token_to_id(PAD), eos_token_id=tokenizer.token_to_id(EOS))
    if config.text_config.vocab_size < tokenizer.get_vocab_size():
        raise ValueError(f"config vocab_size {config.text_config.vocab_size} is smaller than the tokenizer's "
                         f"{tokenizer.get_vocab_size()} words")
    input_ids = encode_captions(tokenizer, captions)
    if input_ids.shape[1] > config.text_config.max_position_embeddings:
        raise ValueError(f"captions are padded to {input_ids.shape[1]} tokens but the text tower has "
                         f"{config.text_config.max_position_embeddings} positions")
    _, caption_id = np.unique(np.asarray(captions, dtype=object).astype(str), return_inverse=True)
    caption_id = torch.from_numpy(caption_id.astype(np.int64))

    model = build_siglip(config, seed=seed).train()
    optimizer = adamw_for(model, recipe.lr, recipe.weight_decay,
                          {"logit_scale": recipe.logit_lr_scale, "logit_bias": recipe.logit_lr_scale})
    generator = torch.Generator().manual_seed(seed)
    batches = epoch_batches(len(images), recipe.batch_size, generator)
    size = int(config.vision_config.image_size)
    history = {"loss": [], "temperature": [], "bias": [], "batch_accuracy": []}
    for step in range(steps):
        idx = next(batches)
        pixels = to_float_images(images[idx.numpy()] if isinstance(images, np.ndarray) else images[idx])
        if recipe.augment:
            pixels = siglip_view(pixels, size, generator)
        else:
            pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", antialias=True)
        out = model(input_ids=input_ids[idx], pixel_values=normalize(pixels, "siglip"))
        positives = None
        if recipe.duplicate_captions_are_positives:
            positives = caption_id[idx, None] == caption_id[None, idx]
        loss = sigmoid_loss(out.image_embeds, out.text_embeds, model.logit_scale, model.logit_bias, positives)
        set_lr(optimizer, cosine_lr(step, steps, recipe.lr, recipe.min_lr, recipe.warmup_fraction))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_grad)
        optimizer.step()
        with torch.no_grad():
            best = out.logits_per_image.argmax(dim=1)
            correct = caption_id[idx][best] == caption_id[idx]
        history["loss"].append(float(loss.detach()))
        history["temperature"].append(float(model.logit_scale.detach().exp()))
        history["bias"].append(float(model.logit_bias.detach()))
        history["batch_accuracy"].append(float(correct.float().mean()))
    return model.eval(), tokenizer, history


@torch.no_grad()
def caption_probabilities(model: SiglipModel, tokenizer: Tokenizer, images, captions) -> torch.Tensor:
    """sigmoid(t <x_i, y_j> + b): how sure the model is that image i matches caption j.

    Introduced in lesson 04. ``images`` uint8 (B, H, W, 3), ``captions`` C strings ->
    float32 (B, C). Each entry is an independent probability (rows need not sum to 1).
    """
    model.eval()
    pixel_values = preprocess(images, int(model.config.vision_config.image_size), "siglip")
    out = model(input_ids=encode_captions(tokenizer, captions), pixel_values=pixel_values)
    return torch.sigmoid(out.logits_per_image)


@torch.no_grad()
def retrieval_accuracy(model: SiglipModel, tokenizer: Tokenizer, images, captions,
                       batch_size: int = 128) -> float:
    """Image -> caption retrieval among the distinct captions of the set: top-1 accuracy.

    Introduced in lesson 04. For each image, the caption with the highest score among all
    distinct captions of ``captions`` must be its own.
    """
    distinct = sorted(set(captions))
    model.eval()
    text = model.get_text_features(input_ids=encode_captions(tokenizer, distinct)).pooler_output
    text = F.normalize(text, dim=-1)
    size = int(model.config.vision_config.image_size)
    correct = 0
    for start in range(0, len(captions), batch_size):
        pixel_values = preprocess(images[start:start + batch_size], size, "siglip")
        image = F.normalize(model.get_image_features(pixel_values=pixel_values).pooler_output, dim=-1)
        best = (image @ text.T).argmax(dim=1).tolist()
        correct += sum(distinct[j] == c for j, c in zip(best, captions[start:start + batch_size]))
    return correct / len(captions)
