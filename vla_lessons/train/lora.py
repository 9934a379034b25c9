"""LoRA: a trainable low-rank update beside a frozen ``nn.Linear`` -- by hand, then with ``peft``.

Introduced in lesson 07.

A linear layer computes ``y = W x + b`` with ``W`` of shape (out, in). LoRA (Hu et al., 2021)
freezes ``W`` and learns the *change* as a product of two thin matrices::

    y = W x + b + (alpha / r) * B (A x),     A: (r, in),  B: (out, r),  r << min(in, out)

``A`` starts random and ``B`` starts at zero, so at step 0 the wrapped model *is* the base
model; the update ``(alpha / r) B A`` has rank at most ``r`` and ``r (in + out)`` parameters
instead of ``in * out``. After training it folds back into one matrix,
``W' = W + (alpha / r) B A`` (:meth:`LoRALinear.merge`): no extra cost at inference.

:class:`LoRALinear` is that layer written out; :func:`compare_with_peft` checks it against
``peft``'s ``lora.Linear`` on the same weights. :func:`lora_vla` is the route OpenVLA's
``vla-scripts/finetune.py`` takes: ``peft.get_peft_model`` with
:func:`vla_lessons.model.openvla.lora_config` (``r=32, lora_alpha=min(r, 16), lora_dropout=0,
target_modules="all-linear", init_lora_weights="gaussian"``). ``"all-linear"`` means every
``nn.Linear`` of the model except its output layer (``get_output_embeddings()``, the Llama's
``lm_head``); :func:`lora_summary` lists what was wrapped and what was not.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections import OrderedDict
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

#: Top-level parts of the mini VLA, by module-name prefix.
PARTS = (("vision_backbone.siglip.", "siglip"), ("vision_backbone.dino.", "dino"),
         ("projector.", "projector"), ("language_model.", "llama"))


def _check_rank_alpha(r, alpha, dropout) -> None:
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"the LoRA rank r must be a positive integer, got {r!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"lora alpha must be a positive finite number, got {alpha!r}")
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable rank-``r`` update: ``base(x) + (alpha / r) B A dropout(x)``.

    Introduced in lesson 07.

    Args:
        base: the layer to adapt, weight (out, in); it is frozen (``requires_grad=False``) and
            kept as ``self.base``.
        r: the rank; ``lora_A`` is float32 (r, in), ``lora_B`` is (out, r).
        alpha: the scale numerator; the update is multiplied by ``scale = alpha / r``.
        dropout: dropout on the input of the LoRA branch only (0 in OpenVLA's recipe).

    ``lora_A`` starts as N(0, 1/r^2) (peft's ``init_lora_weights="gaussian"``, OpenVLA's choice),
    ``lora_B`` at zero: the layer first computes exactly ``base(x)``. Input (..., in), output
    (..., out), in the base's dtype.
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        _check_rank_alpha(r, alpha, dropout)
        self.base = base.requires_grad_(False)
        self.r, self.alpha = int(r), float(alpha)
        self.scale = self.alpha / self.r
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, dtype=w.dtype, device=w.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, dtype=w.dtype, device=w.device))
        nn.init.normal_(self.lora_A, std=1.0 / r)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    @property
    def weight(self) -> torch.Tensor:
        """The frozen base weight (out, in), for code that reads ``.weight`` directly.

        ``nn.MultiheadAttention`` (SigLIP's pooling head) uses ``out_proj.weight`` without calling
        the module, so a LoRA update there is ignored -- as with peft, which does the same.
        """
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        """The frozen base bias (out,) or None."""
        return self.base.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B) * self.scale

    def delta_weight(self) -> torch.Tensor:
        """The update ``(alpha / r) B A`` as a dense (out, in) matrix (rank <= r)."""
        return (self.lora_B @ self.lora_A) * self.scale

    @torch.no_grad()
    def merge(self) -> nn.Linear:
        """A plain ``nn.Linear`` with weight ``W + (alpha / r) B A`` and the base's bias: same outputs (eval)."""
        merged = copy.deepcopy(self.base)
        merged.weight.copy_(self.base.weight + self.delta_weight())
        return merged.requires_grad_(True)

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha:g}, scale={self.scale:g}"


# ----------------------------------------------------------------------------- wrapping by name


def linear_names(model: nn.Module, *, exclude_output: bool = True) -> list[str]:
    """Names of every ``nn.Linear`` in ``model``, as peft's ``target_modules="all-linear"`` picks them.

    Introduced in lesson 07. With ``exclude_output`` the model's output layer
    (``model.get_output_embeddings()``, the ``lm_head``) is left out, as peft does for a
    ``PreTrainedModel``.
    """
    output = model.get_output_embeddings() if exclude_output and hasattr(model, "get_output_embeddings") else None
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear) and m is not output]


def add_lora(model: nn.Module, names, r: int, alpha: float, dropout: float = 0.0) -> list[str]:
    """Freeze ``model`` and replace each ``nn.Linear`` named in ``names`` by a :class:`LoRALinear`, in place.

    Introduced in lesson 07. ``names``: module names (``model.named_modules()``), e.g.
    :func:`linear_names`. Afterwards only the ``lora_A`` / ``lora_B`` matrices require grad.
    Returns the wrapped names; an unknown or non-Linear name is a ``ValueError``.
    """
    _check_rank_alpha(r, alpha, dropout)
    names = list(names)
    modules = dict(model.named_modules())
    bad = [n for n in names if not isinstance(modules.get(n), nn.Linear)]
    if bad or not names:
        raise ValueError(f"add_lora needs names of nn.Linear modules of the model; not Linear or unknown: {bad[:5]}"
                         if bad else "add_lora got no module names")
    model.requires_grad_(False)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(modules[name], r, alpha, dropout))
    return names


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every :class:`LoRALinear` in ``model`` by its merged ``nn.Linear``, in place; returns ``model``.

    Introduced in lesson 07 (peft's ``merge_and_unload``, by hand).
    """
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.merge())
    return model


# ----------------------------------------------------------------------------- peft


@contextmanager
def _quiet_peft():
    """Silence a transformers deprecation warning that peft triggers (stderr noise only)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def compare_with_peft(base: nn.Linear, r: int = 8, alpha: float = 16.0, *, batch: int = 4,
                      seed: int = 0) -> dict[str, float]:
    """Max |difference| between :class:`LoRALinear` and peft's ``lora.Linear`` on the same weights.

    Introduced in lesson 07. Both wrap a copy of ``base``; ``lora_B`` is set to random values (so
    the update is not zero), and peft's ``lora_A`` / ``lora_B`` get the hand-made matrices copied in.
    A random input (batch, in) goes through both; a sum of the outputs is back-propagated.
    Returns ``{"output", "grad_A", "grad_B"}``, each a max abs difference (float32: ~1e-7 or 0).
    """
    from peft import LoraConfig, get_peft_model

    if not isinstance(base, nn.Linear):
        raise TypeError(f"compare_with_peft takes an nn.Linear, got {type(base).__name__}")
    gen = torch.Generator().manual_seed(seed)
    hand = LoRALinear(copy.deepcopy(base), r, alpha)
    with torch.no_grad():
        hand.lora_A.copy_(torch.randn(hand.lora_A.shape, generator=gen) / r)
        hand.lora_B.copy_(torch.randn(hand.lora_B.shape, generator=gen))
    holder = nn.Sequential(OrderedDict(layer=copy.deepcopy(base)))
    with _quiet_peft():
        peft_model = get_peft_model(holder, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0,
                                                       target_modules=["layer"]))
    layer = peft_model.base_model.model.layer
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(hand.lora_A)
        layer.lora_B["default"].weight.copy_(hand.lora_B)
    x = torch.randn(batch, base.in_features, generator=gen)
    y_hand, y_peft = hand(x), peft_model(x)
    y_hand.sum().backward()
    y_peft.sum().backward()

    def diff(a, b) -> float:
        return float((a - b).detach().abs().max())

    return {"output": diff(y_hand, y_peft),
            "grad_A": diff(hand.lora_A.grad, layer.lora_A["default"].weight.grad),
            "grad_B": diff(hand.lora_B.grad, layer.lora_B["default"].weight.grad)}


def lora_vla(model: nn.Module, rank: int = 32, dropout: float = 0.0, *, modules_to_save: list[str] | None = None):
    """OpenVLA's LoRA on a VLA: ``peft.get_peft_model(model, openvla.lora_config(rank))``.

    Introduced in lesson 07. ``model`` (a :class:`~vla_lessons.model.vla.PrismaticVLA`) is changed
    in place (its Linear layers become peft ``lora.Linear``) and wrapped in a ``PeftModel``, whose
    attributes (``predict_action``, ``tokenizer`` ...) fall through to the VLA. Only the LoRA
    matrices are trainable. ``modules_to_save`` (e.g. ``["lm_head"]``, not in OpenVLA's recipe)
    makes peft train a full copy of those modules as well. Undo with ``merge_and_unload()``
    (merged) or ``unload()`` (discarded).
    """
    from peft import get_peft_model

    from vla_lessons.model.openvla import lora_config

    config = lora_config(rank, dropout)
    if modules_to_save:
        config.modules_to_save = list(modules_to_save)
    with _quiet_peft():
        return get_peft_model(model, config)


def part_of(name: str) -> str:
    """The mini VLA part a module name belongs to: ``siglip``, ``dino``, ``projector`` or ``llama``.

    Introduced in lesson 07. peft's ``base_model.model.`` prefix is ignored.
    """
    name = name.removeprefix("base_model.model.")
    for prefix, part in PARTS:
        if name.startswith(prefix):
            return part
    raise ValueError(f"module {name!r} belongs to no part of the mini VLA ({[p for _, p in PARTS]})")


def lora_summary(peft_model) -> dict:
    """What peft wrapped in a VLA: wrapped layers and LoRA parameters by part, and the Linear layers left out.

    Introduced in lesson 07. Returns ``{"wrapped": {part: layers}, "lora_params": {part: n},
    "left_out": [names of nn.Linear not wrapped], "modules_to_save": [names of modules trained in
    full], "trainable", "total"}`` (parameters counted
    on the ``PeftModel``; ``total`` includes the LoRA matrices, as peft's
    ``print_trainable_parameters``).
    """
    from peft.tuners.lora import LoraLayer
    from peft.utils import ModulesToSaveWrapper

    inner = peft_model.base_model.model
    wrapped, params, left_out, saved = {}, {}, [], []
    for name, module in inner.named_modules():
        if isinstance(module, LoraLayer):
            part = part_of(name)
            wrapped[part] = wrapped.get(part, 0) + 1
            params[part] = params.get(part, 0) + sum(p.numel() for n, p in module.named_parameters()
                                                     if "lora_" in n)
        elif isinstance(module, ModulesToSaveWrapper):
            saved.append(name)
        elif isinstance(module, nn.Linear) and not _inside_peft(name):
            left_out.append(name)
    return {"wrapped": wrapped, "lora_params": params, "left_out": left_out, "modules_to_save": saved,
            "trainable": sum(p.numel() for p in peft_model.parameters() if p.requires_grad),
            "total": sum(p.numel() for p in peft_model.parameters())}


def _inside_peft(name: str) -> bool:
    """True when the Linear ``name`` is a piece of a peft layer (base layer, LoRA matrix, saved copy)."""
    return any(part in ("base_layer", "lora_A", "lora_B", "original_module", "modules_to_save")
               for part in name.split("."))
