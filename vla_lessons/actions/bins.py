"""Action bins: RT-2's uniform bins as text, and OpenVLA's quantile-normalised bins on vocabulary ids.

Introduced in lesson 02.

A robot action here is a 7-vector ``(dx, dy, dz, droll, dpitch, dyaw, gripper)`` with the
gripper in ``[0, 1]`` (1 = open). A language model can only emit tokens, so each number is
cut into one of 256 bins and each bin becomes a token:

* **RT-2** writes the bin numbers as text, ``"128 91 255 ..."``, and lets the language
  model's own tokenizer handle the digits (:class:`UniformBinTokenizer`).
* **OpenVLA** first maps every dimension from its dataset's ``[q01, q99]`` onto ``[-1, 1]``
  (:class:`QuantileNormalizer`, OpenVLA's ``BOUNDS_Q99``), bins that, and writes bin ``k``
  (1-based) as the vocabulary id ``vocab_size - k``: the last 256 ids of a BPE vocabulary are
  its least used tokens, so overwriting them costs the least language (:class:`ActionTokenizer`).

Two bin layouts over ``[-1, 1]`` are implemented (``LAYOUTS``):

* ``"openvla"`` reproduces OpenVLA's ``prismatic/vla/action_tokenizer.py`` exactly: 256 bin
  *edges* ``np.linspace(-1, 1, 256)``, hence 255 intervals and 255 centres; ``np.digitize``
  returns 1..256 and the decoder clips ``k - 1`` to ``0..254``, so the two ids of ``k = 255``
  and ``k = 256`` decode to the same value. Use it to read the output of a released OpenVLA
  checkpoint, which was trained with it.
* ``"centers256"`` (the default) is the clean version: 256 equal bins of width ``2/256`` that
  tile ``[-1, 1]``, every id decoding to its own centre, a round-trip error of at most half a
  bin (``1/256``). The course's own models are trained with it. One property to know: with an
  even number of bins, 0 is a bin edge, not a centre, so a normalised 0 decodes to ``+1/256``
  (OpenVLA's odd number of intervals has a centre at exactly 0).

:func:`roundtrip_error` measures both on given data, so the lesson can show what the layouts
cost. Everything is vectorised numpy over any batch shape ``(..., D)``; torch tensors are
accepted and returned as tensors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

#: Names of the seven action dimensions used throughout the course.
ACTION_DIM_NAMES = ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")
#: The bin layouts over [-1, 1]; see the module docstring.
LAYOUTS = ("centers256", "openvla")
#: Number of bins per dimension in RT-2 and OpenVLA.
DEFAULT_N_BINS = 256

_INT_TOKEN = re.compile(r"[0-9]+")


# --------------------------------------------------------------------------- array plumbing


def _is_torch(x) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _float_array(x, name: str) -> np.ndarray:
    """``x`` (array-like or torch tensor) as a finite float64 numpy array, or a ValueError."""
    if _is_torch(x):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as err:  # ragged nested lists
        raise ValueError(f"{name} must be a rectangular array of numbers: {err}") from None
    if arr.dtype == bool or arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        bad = int(np.size(arr) - np.isfinite(arr).sum())
        raise ValueError(f"{name} must be finite, got {bad} NaN/inf value(s)")
    return arr


def _int_array(x, name: str) -> np.ndarray:
    """``x`` (array-like or torch tensor of integers) as an int64 numpy array, or a TypeError."""
    if _is_torch(x):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a rectangular array of integers: {err}") from None
    if arr.size == 0 and arr.dtype == np.float64:  # [] is float64 to numpy
        return arr.astype(np.int64)
    if arr.dtype == bool or arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integers (token ids or bin numbers), got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _check_dim(arr: np.ndarray, dim: int, name: str) -> None:
    if arr.ndim == 0 or arr.shape[-1] != dim:
        raise ValueError(f"{name} must have shape (..., {dim}), got shape {arr.shape}")


def _like(result: np.ndarray, template, dtype: str):
    """Return ``result`` as a torch tensor on ``template``'s device when ``template`` was one."""
    if not _is_torch(template):
        return result
    import torch

    tdtype = {"long": torch.long, "float": torch.float32, "bool": torch.bool}[dtype]
    return torch.from_numpy(np.ascontiguousarray(result)).to(device=template.device, dtype=tdtype)


# --------------------------------------------------------------------------- normalisation


def _action_block(stats: Mapping) -> Mapping:
    """The ``action`` statistics of a LeRobot ``stats.json`` dict, or ``stats`` if already that."""
    if not isinstance(stats, Mapping):
        raise TypeError(f"statistics must be a dict, got {type(stats).__name__}")
    if "q01" in stats or "q99" in stats:
        return stats
    if "action" in stats and isinstance(stats["action"], Mapping):
        return stats["action"]
    raise ValueError(
        "statistics must be LeRobot's form {'action': {'q01': [D], 'q99': [D], ...}, ...} "
        f"or the action block itself; got keys {sorted(map(str, stats))}")


def default_mask(dim: int) -> np.ndarray:
    """OpenVLA's default normalisation mask: every dimension but the last (the gripper).

    Introduced in lesson 02. ``mask[i]`` True means dimension ``i`` is normalised; the
    gripper, already in ``[0, 1]``, is binned as it is (OpenVLA's Open-X configs set
    ``action_normalization_mask = [True] * 6 + [False]``).
    """
    if not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    mask = np.ones(int(dim), dtype=bool)
    mask[-1] = False
    return mask


class QuantileNormalizer:
    """OpenVLA's ``BOUNDS_Q99`` normalisation of actions ``(..., D)`` onto ``[-1, 1]``.

    Introduced in lesson 02.

    For every dimension ``i`` with ``mask[i]`` True::

        y = clip(2 * (x - q01) / (q99 - q01) - 1, -1, 1)       (y = 0 where q01 == q99)

    and ``x`` passes through unchanged (and unclipped) where ``mask[i]`` is False. OpenVLA adds
    ``1e-8`` to the denominator and zeroes dimensions with ``min == max``; here constant
    dimensions are detected directly (``q01 == q99``, which ``min == max`` implies), so no
    epsilon is needed, and only normalised dimensions are zeroed (OpenVLA would also zero a
    constant gripper, which then decodes as 0 = closed).

    Args:
        q01, q99: ``(D,)`` finite per-dimension 1st and 99th percentiles, ``q99 >= q01``.
        mask: ``(D,)`` booleans, True = normalise; default :func:`default_mask` (all but the
            last dimension).
    """

    def __init__(self, q01, q99, mask=None):
        q01 = _float_array(q01, "statistics 'q01'")
        q99 = _float_array(q99, "statistics 'q99'")
        if q01.ndim != 1 or q01.size == 0:
            raise ValueError(f"statistics 'q01' must have shape (D,), got shape {q01.shape}")
        dim = q01.shape[0]
        if q99.shape != (dim,):
            raise ValueError(f"statistics 'q99' must have shape ({dim},) like 'q01', got {q99.shape}")
        if (q99 < q01).any():
            bad = np.flatnonzero(q99 < q01).tolist()
            raise ValueError(f"statistics need q99 >= q01 in every dimension; not in dimensions {bad}")
        if mask is None:
            mask = default_mask(dim)
        mask = np.asarray(mask)
        if mask.dtype != bool:
            raise TypeError(f"mask must be booleans (True = normalise), got dtype {mask.dtype}")
        if mask.shape != (dim,):
            raise ValueError(f"mask must have shape ({dim},), got shape {mask.shape}")
        self.q01, self.q99, self.mask = q01, q99, mask.copy()
        self.constant = mask & (q99 == q01)  # normalised dims without range -> 0
        self._range = np.where(q99 > q01, q99 - q01, 1.0)

    @classmethod
    def from_stats(cls, stats: Mapping, mask=None) -> "QuantileNormalizer":
        """Build from LeRobot statistics ``{"action": {"q01": [D], "q99": [D], ...}}``.

        Introduced in lesson 02. The action block itself is accepted too. When ``mask`` is None
        the block's own ``"mask"`` is used if it has one (OpenVLA stores it there), else
        :func:`default_mask`.
        """
        block = _action_block(stats)
        missing = [k for k in ("q01", "q99") if k not in block]
        if missing:
            raise ValueError(f"statistics lack {missing}; they need 'q01' and 'q99' of shape (D,)")
        if mask is None and "mask" in block:
            mask = np.asarray(block["mask"], dtype=bool)
        return cls(block["q01"], block["q99"], mask)

    @property
    def dim(self) -> int:
        """Number of action dimensions D."""
        return int(self.q01.shape[0])

    def to_dict(self) -> dict:
        """Plain-JSON form ``{"q01": [D], "q99": [D], "mask": [D]}`` (floats round-trip exactly)."""
        return {"q01": self.q01.tolist(), "q99": self.q99.tolist(), "mask": self.mask.tolist()}

    def _normalize(self, x: np.ndarray) -> np.ndarray:
        y = np.clip(2.0 * (x - self.q01) / self._range - 1.0, -1.0, 1.0)
        if not self.mask.all():
            y = np.where(self.mask, y, x)
        if self.constant.any():
            y = np.where(self.constant, 0.0, y)
        return y

    def _unnormalize(self, y: np.ndarray) -> np.ndarray:
        x = 0.5 * (y + 1.0) * (self.q99 - self.q01) + self.q01
        return x if self.mask.all() else np.where(self.mask, x, y)

    def normalize(self, actions):
        """Actions ``(..., D)`` -> normalised values ``(..., D)`` float64 (tensor in, tensor out)."""
        x = _float_array(actions, "actions")
        _check_dim(x, self.dim, "actions")
        return _like(self._normalize(x), actions, "float")

    def unnormalize(self, normalized):
        """Normalised values ``(..., D)`` -> actions ``(..., D)`` float64: ``0.5*(y+1)*(q99-q01)+q01``.

        Introduced in lesson 02. Masked-out dimensions pass through unchanged, as in OpenVLA's
        ``predict_action``; a constant dimension comes back as its ``q01``.
        """
        y = _float_array(normalized, "normalized actions")
        _check_dim(y, self.dim, "normalized actions")
        return _like(self._unnormalize(y), normalized, "float")

    def saturated(self, actions):
        """Boolean ``(..., D)``: True where normalisation loses the value.

        Introduced in lesson 02. That is outside ``[q01, q99]`` on a normalised dimension (the
        value is clipped to the nearest bound), different from the constant of a dimension with
        ``q01 == q99`` (it becomes 0), or outside ``[-1, 1]`` on a dimension left as it is
        (the bins clip it).
        """
        x = _float_array(actions, "actions")
        _check_dim(x, self.dim, "actions")
        out_of_bounds = (x < self.q01) | (x > self.q99)
        sat = np.where(self.mask, out_of_bounds, np.abs(x) > 1.0)
        if self.constant.any():
            sat = np.where(self.constant, x != self.q01, sat)
        return _like(sat, actions, "bool")


# --------------------------------------------------------------------------- bins on [low, high]


class _BinGrid:
    """Bins over ``[low, high]`` in one of ``LAYOUTS``: values -> bin numbers 0..n-1 -> values."""

    def __init__(self, n_bins: int, layout: str, low: float = -1.0, high: float = 1.0):
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        if not isinstance(n_bins, (int, np.integer)) or n_bins < 2:
            raise ValueError(f"n_bins must be an integer >= 2, got {n_bins!r}")
        if not (np.isfinite(low) and np.isfinite(high) and high > low):
            raise ValueError(f"the bin range needs finite low < high, got [{low}, {high}]")
        self.n_bins, self.layout, self.low, self.high = int(n_bins), layout, float(low), float(high)
        if layout == "openvla":
            self.edges = np.linspace(low, high, self.n_bins)
            centers = (self.edges[:-1] + self.edges[1:]) / 2.0  # n - 1 centres
            self.values = centers[np.minimum(np.arange(self.n_bins), self.n_bins - 2)]
            self.width = (high - low) / (self.n_bins - 1)
        else:
            self.width = (high - low) / self.n_bins
            self.edges = low + self.width * np.arange(self.n_bins + 1)
            self.values = low + self.width * (np.arange(self.n_bins) + 0.5)

    def to_bins(self, y: np.ndarray) -> np.ndarray:
        """Values (clipped to [low, high] here) -> int64 bin numbers 0..n_bins-1."""
        y = np.clip(y, self.low, self.high)
        b = np.floor((y - self.low) / self.width).astype(np.int64)
        np.clip(b, 0, self.n_bins - 1, out=b)
        if self.layout == "openvla":
            # np.digitize(y, edges) - 1, i.e. the last edge <= y, computed arithmetically and then
            # corrected by one step where rounding put y on the wrong side of an edge (about
            # 10x faster than the binary search, identical results).
            b -= y < self.edges[b]
            b += (b < self.n_bins - 1) & (y >= self.edges[np.minimum(b + 1, self.n_bins - 1)])
        return b

    def check_bins(self, bins: np.ndarray, clip: bool, what: str) -> np.ndarray:
        if clip:
            return np.clip(bins, 0, self.n_bins - 1)
        bad = (bins < 0) | (bins >= self.n_bins)
        if bad.any():
            raise ValueError(f"{what} out of range: {np.unique(bins[bad])[:8].tolist()}")
        return bins


# --------------------------------------------------------------------------- RT-2: bins as text


class UniformBinTokenizer:
    """RT-2's action tokens: every normalised dimension cut into uniform bins, written as text.

    Introduced in lesson 02.

    A value ``y`` in ``[low, high]`` (default ``[-1, 1]``) becomes the bin number
    ``floor((y - low) / width)`` in ``0 .. n_bins-1`` (width ``(high - low) / n_bins``), and a
    bin decodes to its centre, so a round trip is off by at most half a bin. Values outside
    ``[low, high]`` are clipped (see :meth:`saturated`). :meth:`to_text` writes an action as
    ``"128 91 255 ..."``, the string an RT-2 model is trained to generate.
    """

    def __init__(self, n_bins: int = DEFAULT_N_BINS, low: float = -1.0, high: float = 1.0):
        self._grid = _BinGrid(n_bins, "centers256", low, high)

    @property
    def n_bins(self) -> int:
        return self._grid.n_bins

    @property
    def bin_width(self) -> float:
        """Width of one bin (the round-trip error is at most half of it)."""
        return self._grid.width

    @property
    def bin_centers(self) -> np.ndarray:
        """``(n_bins,)`` float64: the value each bin number decodes to."""
        return self._grid.values.copy()

    def encode(self, values):
        """Values ``(..., D)`` -> int64 bin numbers ``(..., D)`` in ``0 .. n_bins-1``."""
        y = _float_array(values, "values")
        if y.ndim == 0:
            raise ValueError(f"values must have shape (..., D), got a scalar {y!r}")
        return _like(self._grid.to_bins(y), values, "long")

    def decode(self, bins):
        """Bin numbers ``(..., D)`` -> bin centres ``(..., D)`` float64; out-of-range is a ValueError."""
        b = self._grid.check_bins(_int_array(bins, "bins"), False, f"bin numbers (valid 0..{self.n_bins - 1})")
        return _like(self._grid.values[b], bins, "float")

    def saturated(self, values):
        """Boolean ``(..., D)``: True where a value lies outside ``[low, high]`` and gets clipped."""
        y = _float_array(values, "values")
        return _like((y < self._grid.low) | (y > self._grid.high), values, "bool")

    def to_text(self, bins) -> str | list[str]:
        """Bin numbers ``(D,)`` -> ``"b0 b1 ..."``; ``(N, D)`` -> a list of N such strings."""
        b = _int_array(bins, "bins")
        if b.ndim not in (1, 2) or b.shape[-1] == 0:
            raise ValueError(f"bins must have shape (D,) or (N, D), got shape {b.shape}")
        self._grid.check_bins(b, False, f"bin numbers (valid 0..{self.n_bins - 1})")
        if b.ndim == 1:
            return " ".join(map(str, b.tolist()))
        return [" ".join(map(str, row)) for row in b.tolist()]

    def from_text(self, text: str, dim: int | None = None) -> np.ndarray:
        """Parse ``"b0 b1 ..."`` back to int64 bin numbers ``(D,)``.

        Introduced in lesson 02. Malformed text is a ValueError that names the problem: an
        empty string, a word that is not a non-negative integer, a bin number ``>= n_bins``,
        or (when ``dim`` is given) the wrong count of numbers.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        words = text.split()
        if not words:
            raise ValueError("text holds no bin numbers; expected e.g. '128 91 255'")
        for i, word in enumerate(words):
            if not _INT_TOKEN.fullmatch(word):
                raise ValueError(f"word {i} of the text, {word!r}, is not a bin number (0..{self.n_bins - 1})")
        bins = np.array([int(w) for w in words], dtype=np.int64)
        if (bins >= self.n_bins).any():
            i = int(np.flatnonzero(bins >= self.n_bins)[0])
            raise ValueError(f"word {i} of the text, {words[i]!r}, is not a bin number (0..{self.n_bins - 1})")
        if dim is not None and bins.size != dim:
            raise ValueError(f"text holds {bins.size} bin numbers, expected {dim}: {text!r}")
        return bins


# --------------------------------------------------------------------------- OpenVLA: bins as ids


def _named_stats(norm_stats) -> dict:
    """``{name: statistics}`` from OpenVLA's ``norm_stats`` or one LeRobot stats dict ("default")."""
    if not isinstance(norm_stats, Mapping) or not norm_stats:
        raise ValueError("norm_stats must be a non-empty dict: {dataset_name: {'action': {...}}} "
                         "or one LeRobot stats dict {'action': {'q01': ..., 'q99': ...}}")
    action = norm_stats.get("action")
    if isinstance(action, Mapping) and "q01" in action:
        return {"default": norm_stats}
    return dict(norm_stats)


class ActionTokenizer:
    """OpenVLA's action tokenizer: quantile-normalised bins on the last ids of a vocabulary.

    Introduced in lesson 02.

    ``encode`` maps actions ``(..., D)`` to token ids ``(..., D)``: normalise with the named
    dataset's statistics (:class:`QuantileNormalizer`), clip to ``[-1, 1]``, take the bin
    ``k`` in ``1..n_bins`` and emit ``vocab_size - k``. ``decode`` inverts it through the bin
    values and un-normalises. The action ids are ``vocab_size - n_bins .. vocab_size - 1``;
    ``vocab_size`` is the language tokenizer's ``vocab_size`` (Llama-2: 32000, not the model's
    padded embedding count 32064).

    **Decoding an id outside that range is a ValueError.** OpenVLA clips silently instead:
    ``k = vocab_size - id`` is clipped into ``1..256``, so any ordinary text token (an id far
    below the action range, ``k`` far above 256) decodes to bin 256: a full-scale action at the
    ``q99`` of every dimension, sent to the robot when the model emitted a word by mistake.
    ``clip=True`` reproduces OpenVLA's behaviour for callers that want it.

    Args:
        norm_stats: ``{dataset_name: LeRobot stats}`` (OpenVLA's ``norm_stats``), or one
            LeRobot stats dict ``{"action": {...}}``, which gets the name ``"default"``.
        vocab_size: size of the language model's vocabulary the action ids are taken from.
        n_bins: bins per dimension (256).
        layout: ``"centers256"`` (default) or ``"openvla"``; see the module docstring.
        mask: normalisation mask for every dataset, overriding each one's ``"mask"``/default.
    """

    def __init__(self, norm_stats, *, vocab_size: int, n_bins: int = DEFAULT_N_BINS,
                 layout: str = "centers256", mask=None):
        self._grid = _BinGrid(n_bins, layout)
        if not isinstance(vocab_size, (int, np.integer)) or vocab_size < self._grid.n_bins:
            raise ValueError(f"vocab_size must be an integer >= n_bins={n_bins}, got {vocab_size!r}")
        self.vocab_size = int(vocab_size)
        self.normalizers = {str(name): QuantileNormalizer.from_stats(stats, mask)
                            for name, stats in _named_stats(norm_stats).items()}

    # ---- facts about the layout
    @property
    def n_bins(self) -> int:
        return self._grid.n_bins

    @property
    def layout(self) -> str:
        return self._grid.layout

    @property
    def bin_width(self) -> float:
        """Bin width in normalised units: ``2/256`` (centers256) or ``2/255`` (openvla)."""
        return self._grid.width

    @property
    def bin_values(self) -> np.ndarray:
        """``(n_bins,)`` float64: the normalised value decoded for bin ``k = 1..n_bins`` (index k-1).

        In the ``"openvla"`` layout the last two entries are equal.
        """
        return self._grid.values.copy()

    @property
    def first_action_id(self) -> int:
        """The lowest action id, ``vocab_size - n_bins`` (OpenVLA's begin index is one below)."""
        return self.vocab_size - self.n_bins

    @property
    def unnorm_keys(self) -> list[str]:
        """Names of the datasets whose statistics this tokenizer knows."""
        return list(self.normalizers)

    def is_action_id(self, ids):
        """Boolean mask of ids inside ``[vocab_size - n_bins, vocab_size)``."""
        i = _int_array(ids, "ids")
        return _like((i >= self.first_action_id) & (i < self.vocab_size), ids, "bool")

    def resolve_unnorm_key(self, unnorm_key: str | None = None) -> str:
        """The dataset name to use; ValueError listing the known names when it is ambiguous/unknown."""
        known = self.unnorm_keys
        if unnorm_key is None:
            if len(known) != 1:
                raise ValueError(f"statistics of several datasets are known; pass unnorm_key, one of {known}")
            return known[0]
        if unnorm_key not in self.normalizers:
            raise ValueError(f"unknown unnorm_key {unnorm_key!r}; known datasets: {known}")
        return unnorm_key

    def normalizer(self, unnorm_key: str | None = None) -> QuantileNormalizer:
        """The :class:`QuantileNormalizer` of one dataset."""
        return self.normalizers[self.resolve_unnorm_key(unnorm_key)]

    # ---- bins <-> ids
    def bins_to_ids(self, bins):
        """0-based bin numbers ``(..., D)`` -> ids ``vocab_size - 1 - bin`` (int64)."""
        b = self._grid.check_bins(_int_array(bins, "bins"), False, f"bin numbers (valid 0..{self.n_bins - 1})")
        return _like(self.vocab_size - 1 - b, bins, "long")

    def ids_to_bins(self, ids, *, clip: bool = False):
        """Ids ``(..., D)`` -> 0-based bin numbers (int64); a non-action id is a ValueError unless ``clip``."""
        i = _int_array(ids, "ids")
        if not clip:
            bad = (i < self.first_action_id) | (i >= self.vocab_size)
            if bad.any():
                raise ValueError(f"token ids outside the action range [{self.first_action_id}, "
                                 f"{self.vocab_size - 1}]: {np.unique(i[bad])[:8].tolist()}")
        b = self._grid.check_bins(self.vocab_size - 1 - i, True, "bin numbers")
        return _like(b, ids, "long")

    # ---- actions <-> ids
    def encode(self, actions, unnorm_key: str | None = None, *, return_saturated: bool = False):
        """Actions ``(..., D)`` -> int64 token ids ``(..., D)`` (tensor in, ``torch.long`` out).

        Introduced in lesson 02. With ``return_saturated=True`` also returns the boolean mask of
        values that were clipped (see :meth:`QuantileNormalizer.saturated`).
        """
        norm = self.normalizer(unnorm_key)
        x = _float_array(actions, "actions")
        _check_dim(x, norm.dim, "actions")
        ids = self.vocab_size - 1 - self._grid.to_bins(norm._normalize(x))
        ids = _like(ids, actions, "long")
        return (ids, norm.saturated(actions)) if return_saturated else ids

    def saturated(self, actions, unnorm_key: str | None = None):
        """Boolean ``(..., D)``: which values :meth:`encode` clips. Introduced in lesson 02."""
        return self.normalizer(unnorm_key).saturated(actions)

    def decode_normalized(self, ids, *, clip: bool = False):
        """Token ids ``(..., D)`` -> normalised bin values in ``[-1, 1]``, float64."""
        b = self.ids_to_bins(_int_array(ids, "ids"), clip=clip)
        return _like(self._grid.values[b], ids, "float")

    def decode(self, ids, unnorm_key: str | None = None, *, clip: bool = False):
        """Token ids ``(..., D)`` -> actions ``(..., D)`` float64 (tensor in, float32 tensor out).

        Introduced in lesson 02. An id outside the action range raises ValueError (see the class
        docstring for why); ``clip=True`` clips it into the range as OpenVLA does.
        """
        norm = self.normalizer(unnorm_key)
        i = _int_array(ids, "ids")
        _check_dim(i, norm.dim, "ids")
        return _like(norm._unnormalize(self.decode_normalized(i, clip=clip)), ids, "float")


# --------------------------------------------------------------------------- measuring the layouts


def roundtrip_error(actions, stats, *, layouts: Sequence[str] = LAYOUTS, n_bins: int = DEFAULT_N_BINS,
                    mask=None) -> dict[str, dict]:
    """Measure what binning costs on ``actions`` ``(..., D)``, for each layout.

    Introduced in lesson 02. ``stats`` is one LeRobot stats dict. Returns
    ``{layout: report}`` where ``report`` holds:

    * ``bin_width``: in normalised units;
    * ``max_abs_error`` / ``mean_abs_error``: of the in-range (not saturated) values, in
      normalised units (the bound is half a bin width); constant dimensions (``q01 == q99``,
      decoded exactly as their constant) are left out, their normalised 0 being a convention;
    * ``max_abs_error_per_dim`` / ``mean_abs_error_per_dim``: ``(D,)`` arrays, in action units,
      in-range values only;
    * ``saturated_fraction``: the fraction of values clipped by the normalisation;
    * ``distinct_values``: how many different values the ``n_bins`` ids decode to.
    """
    norm = QuantileNormalizer.from_stats(stats, mask)
    x = _float_array(actions, "actions")
    _check_dim(x, norm.dim, "actions")
    x = x.reshape(-1, norm.dim)
    y = norm.normalize(x)
    inside = ~norm.saturated(x)
    inside_norm = inside & ~norm.constant  # a constant dimension decodes exactly
    reports = {}
    for layout in layouts:
        grid = _BinGrid(n_bins, layout)
        y_hat = grid.values[grid.to_bins(y)]
        err_norm = np.where(inside_norm, np.abs(y_hat - y), 0.0)
        err = np.where(inside, np.abs(norm.unnormalize(y_hat) - x), 0.0)
        count = np.maximum(inside.sum(axis=0), 1)
        reports[layout] = {
            "bin_width": float(grid.width),
            "max_abs_error": float(err_norm.max()) if x.size else 0.0,
            "mean_abs_error": float(err_norm.sum() / max(int(inside_norm.sum()), 1)),
            "max_abs_error_per_dim": err.max(axis=0) if x.size else np.zeros(norm.dim),
            "mean_abs_error_per_dim": err.sum(axis=0) / count,
            "saturated_fraction": float(1.0 - inside.mean()) if x.size else 0.0,
            "distinct_values": int(np.unique(grid.values).size),
        }
    return reports
