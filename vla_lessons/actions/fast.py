"""FAST action tokens: a DCT of each action chunk, scaled and rounded, compressed with BPE.

Introduced in lesson 03.

FAST (Pertsch et al., 2025, "FAST: Efficient Action Tokenization for Vision-Language-Action
Models") tokenizes a whole chunk of ``T`` actions ``(T, D)`` at once:

1. normalise every dimension with the dataset's quantiles (:class:`~vla_lessons.actions.bins.QuantileNormalizer`);
2. take the DCT-II along time with orthonormal scaling: smooth motion puts almost all of its
   energy in the first few coefficients (:func:`energy_compaction`);
3. multiply by ``scale`` (default 10) and round to integers: most high-frequency coefficients
   become 0; the rounding error is at most ``0.5 / scale`` per coefficient;
4. flatten lowest frequencies first across dimensions (coefficient-major: every dimension's DC
   term, then every dimension's first harmonic, ...), so a truncated sequence loses the
   finest detail, not whole dimensions;
5. write each integer as one character and compress the strings with a byte-level BPE trained
   by the ``tokenizers`` library on chunks of a dataset (vocabulary 1024 by default).

Two choices differ from the reference implementation (``physical-intelligence/fast``), each
for a reason stated where it is made: integers become characters by a zig-zag map
(:func:`int_to_char`) rather than an offset by the training minimum, which the reference clips
to silently; and the byte-level pre-tokenizer runs without GPT-2's word-splitting regex, which
was written for text, so merges may span any coefficients.

Decoding is strict by default: an unknown id, a sequence cut inside a character, or the wrong
number of coefficients is a ``ValueError``. ``strict=False`` is the relaxed mode LeRobot's
port uses in closed loop: coefficients are truncated or zero-padded to the chunk shape.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import scipy.fft
from scipy.interpolate import CubicSpline
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from vla_lessons.actions.bins import QuantileNormalizer, _float_array, _int_array, _is_torch, default_mask

DEFAULT_SCALE = 10.0
DEFAULT_VOCAB_SIZE = 1024
#: Zig-zag codes must stay below the UTF-16 surrogates (U+D800) to be valid characters.
MAX_CODE = 0xD7FF
_FORMAT = "vla_lessons.fast"
_FORMAT_VERSION = 1
_REPLACEMENT = "\ufffd"  # what a byte-level decoder yields for bytes that are no character


# --------------------------------------------------------------------------- the transform


def dct_coefficients(chunks):
    """Orthonormal DCT-II along time: ``(..., T, D)`` -> float64 ``(..., T, D)``; row k = frequency k.

    Introduced in lesson 03. Orthonormal means energy is preserved (Parseval):
    ``(coeffs**2).sum() == (chunks**2).sum()``.
    """
    x = _float_array(chunks, "chunks")
    if x.ndim < 2:
        raise ValueError(f"chunks must have shape (..., T, D), got shape {x.shape}")
    return scipy.fft.dct(x, type=2, axis=-2, norm="ortho")


def inverse_dct(coeffs):
    """The inverse of :func:`dct_coefficients`: ``(..., T, D)`` coefficients -> chunks, float64.

    Introduced in lesson 03.
    """
    c = _float_array(coeffs, "coefficients")
    if c.ndim < 2:
        raise ValueError(f"coefficients must have shape (..., T, D), got shape {c.shape}")
    return scipy.fft.idct(c, type=2, axis=-2, norm="ortho")


def energy_compaction(chunks, k: int | None = None):
    """Fraction of the DCT energy in the first ``k`` coefficients, over all chunks and dimensions.

    Introduced in lesson 03. ``chunks`` is ``(..., T, D)`` (normalise first: energy is in the
    units given). Returns a float for one ``k`` in ``1..T``, or with ``k=None`` the ``(T,)``
    float64 array whose entry ``k-1`` is the fraction for ``k``. An all-zero input has no energy
    to compact and is a ValueError.
    """
    c = dct_coefficients(chunks)
    T = c.shape[-2]
    per_freq = np.moveaxis(c**2, -2, 0).reshape(T, -1).sum(axis=1)
    total = per_freq.sum()
    if total <= 0:
        raise ValueError("the chunks are all zeros: they have no energy to compact")
    curve = np.cumsum(per_freq) / total
    if k is None:
        return curve
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= T:
        raise ValueError(f"k must be an integer in 1..{T}, got {k!r}")
    return float(curve[k - 1])


def naive_token_count(chunk_shape: Sequence[int]) -> int:
    """Tokens one chunk costs with one token per value (RT-2/OpenVLA bins): ``T * D``.

    Introduced in lesson 03.
    """
    T, D = _chunk_shape(chunk_shape)
    return T * D


def error_bound(scale: float, horizon: int) -> float:
    """Worst-case L2 error, per dimension in normalised units, of scale-and-round: ``0.5/scale*sqrt(T)``.

    Introduced in lesson 03. Each of the ``T`` rounded coefficients is off by at most
    ``0.5/scale``, and the orthonormal inverse DCT preserves L2 norms.
    """
    _check_scale(scale)
    return 0.5 / float(scale) * float(np.sqrt(horizon))


def quantize(normalized_chunks, scale: float = DEFAULT_SCALE) -> np.ndarray:
    """Normalised chunks ``(..., T, D)`` -> integer DCT coefficients ``(..., T, D)`` (int64).

    Introduced in lesson 03. ``round(scale * DCT(chunk))`` with numpy's round-half-to-even.
    """
    _check_scale(scale)
    return np.rint(dct_coefficients(normalized_chunks) * float(scale)).astype(np.int64)


def dequantize(coeffs, scale: float = DEFAULT_SCALE) -> np.ndarray:
    """Integer coefficients ``(..., T, D)`` -> normalised chunks ``(..., T, D)`` float64.

    Introduced in lesson 03. The inverse of :func:`quantize` up to its rounding.
    """
    _check_scale(scale)
    return inverse_dct(_float_array(coeffs, "coefficients") / float(scale))


def reconstruction_error_vs_scale(normalized_chunks, scales: Sequence[float]) -> dict[float, dict]:
    """Scale-and-round error on normalised chunks ``(N, T, D)`` for each scale (BPE is lossless).

    Introduced in lesson 03. Returns ``{scale: {"rmse", "max_abs", "max_l2", "nonzero_fraction",
    "bound"}}``: the root-mean-square and worst absolute error in normalised units, the worst
    L2 norm over time of one dimension's error in one chunk (the quantity :func:`error_bound`
    bounds), the fraction of coefficients that stay non-zero after rounding (what BPE has to
    encode) and :func:`error_bound` for the chunk length.
    """
    x = _float_array(normalized_chunks, "chunks")
    if x.ndim != 3:
        raise ValueError(f"chunks must have shape (N, T, D), got shape {x.shape}")
    out = {}
    for scale in scales:
        q = quantize(x, scale)
        err = dequantize(q, scale) - x
        out[float(scale)] = {"rmse": float(np.sqrt(np.mean(err**2))),
                             "max_abs": float(np.abs(err).max()),
                             "max_l2": float(np.sqrt((err**2).sum(axis=1)).max()),
                             "nonzero_fraction": float(np.mean(q != 0)),
                             "bound": error_bound(scale, x.shape[1])}
    return out


# --------------------------------------------------------------------------- integers <-> characters


def int_to_char(values) -> str:
    """Integers -> one character each, by zig-zag: 0, -1, 1, -2, 2, ... -> code points 0, 1, 2, 3, 4, ...

    Introduced in lesson 03. Small magnitudes (the common case after rounding) get the smallest
    code points, which UTF-8 stores in one byte (``|n| < 64``). Unlike the reference's offset by
    the training minimum (values below it are clipped there without notice), every integer with
    ``|n| <= 27647`` has a character; beyond that is a ValueError (lower ``scale``).
    """
    n = _int_array(values, "coefficients").ravel()
    codes = np.where(n >= 0, 2 * n, -2 * n - 1)
    if codes.size and codes.max() > MAX_CODE:
        raise ValueError(f"a coefficient of magnitude {int(np.abs(n).max())} is too large to encode "
                         f"(|n| <= {MAX_CODE // 2}); lower the scale or check the statistics")
    return "".join(map(chr, codes.tolist()))


def char_to_int(text: str) -> np.ndarray:
    """The inverse of :func:`int_to_char`: a string -> int64 ``(len(text),)``. Introduced in lesson 03."""
    codes = np.fromiter(map(ord, text), dtype=np.int64, count=len(text))
    return np.where(codes % 2 == 0, codes // 2, -(codes + 1) // 2)


# --------------------------------------------------------------------------- chunks


def make_chunks(actions, horizon: int, stride: int = 1) -> np.ndarray:
    """Cut one episode's actions ``(L, D)`` into overlapping chunks ``(N, horizon, D)`` float64.

    Introduced in lesson 03. Chunk ``i`` starts at step ``i * stride``; only whole chunks are
    returned (``N = (L - horizon) // stride + 1``); an episode shorter than ``horizon`` is a
    ValueError.
    """
    a = _float_array(actions, "actions")
    if a.ndim != 2:
        raise ValueError(f"actions must have shape (L, D), got shape {a.shape}")
    for name, v in (("horizon", horizon), ("stride", stride)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if a.shape[0] < horizon:
        raise ValueError(f"an episode of {a.shape[0]} steps is shorter than the horizon {horizon}")
    starts = np.arange(0, a.shape[0] - horizon + 1, stride)
    return a[starts[:, None] + np.arange(horizon)[None, :]]


def resample_actions(actions, from_hz: float, to_hz: float, *, delta_mask=None) -> np.ndarray:
    """One episode's actions ``(L, D)`` recorded at ``from_hz`` -> the same motion at ``to_hz``, float64.

    Introduced in lesson 03. Where ``delta_mask`` is True (default: every dimension but the
    last, as in :func:`~vla_lessons.actions.bins.default_mask`) an action is a per-step change
    of the commanded pose: those dimensions are summed into the pose path, the path is
    interpolated with a cubic spline (``scipy.interpolate.CubicSpline``) through every recorded
    pose, and differenced at the new step. Downsampling by an integer factor is then exact (the
    new deltas are sums of the old ones) and upsampling adds no new motion, only samples. The
    other dimensions (the gripper command) are held: each new step takes the command in force
    at its start. The episode lasts ``L / from_hz`` seconds; the result has
    ``floor(L * to_hz / from_hz)`` whole steps (ValueError if that is 0).
    """
    a = _float_array(actions, "actions")
    if a.ndim != 2 or a.shape[0] < 1:
        raise ValueError(f"actions must have shape (L, D) with L >= 1, got shape {a.shape}")
    for name, v in (("from_hz", from_hz), ("to_hz", to_hz)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not np.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be a positive finite rate in Hz, got {v!r}")
    L, D = a.shape
    mask = default_mask(D) if delta_mask is None else np.asarray(delta_mask)
    if mask.dtype != bool or mask.shape != (D,):
        raise ValueError(f"delta_mask must be {D} booleans (True = a per-step delta), got {delta_mask!r}")
    ratio = float(from_hz) / float(to_hz)  # old steps per new step
    n_new = int(np.floor(L / ratio + 1e-9))
    if n_new < 1:
        raise ValueError(f"{L} steps at {from_hz} Hz last less than one step at {to_hz} Hz")
    old_step = np.arange(n_new + 1) * ratio  # new step boundaries, in units of old steps
    out = np.empty((n_new, D))
    if mask.any():
        pose = np.vstack([np.zeros((1, int(mask.sum()))), np.cumsum(a[:, mask], axis=0)])  # (L+1, d)
        if L == 1:  # two knots: the spline is the straight line between them
            path = pose[0] + old_step[:, None] * (pose[1] - pose[0])
        else:
            path = CubicSpline(np.arange(L + 1), pose, axis=0)(old_step)
        out[:, mask] = np.diff(path, axis=0)
    held = np.minimum(np.floor(old_step[:-1] + 1e-9).astype(np.int64), L - 1)
    out[:, ~mask] = a[held][:, ~mask]
    return out


def chunks_at_rate(episodes, fps: float, rate_hz: float, seconds: float = 1.0, stride: int = 1,
                   *, delta_mask=None) -> np.ndarray:
    """Episodes recorded at ``fps`` -> ``seconds``-long chunks at ``rate_hz``: ``(N, T, D)`` float64.

    Introduced in lesson 03. ``episodes`` is a list of ``(L_i, D)`` action arrays; each is
    resampled with :func:`resample_actions` (unless ``rate_hz == fps``) and cut with
    :func:`make_chunks` into chunks of ``T = round(rate_hz * seconds)`` steps. Episodes shorter
    than one chunk are skipped; if every episode is, that is a ValueError.
    """
    if not (np.isfinite(rate_hz) and np.isfinite(seconds)) or round(float(rate_hz) * float(seconds)) < 1:
        raise ValueError(f"rate_hz * seconds must give at least one step, got {rate_hz} Hz x {seconds} s")
    T = int(round(float(rate_hz) * float(seconds)))
    out = []
    for actions in episodes:
        a = _float_array(actions, "episode actions")
        if float(rate_hz) != float(fps):
            a = resample_actions(a, fps, rate_hz, delta_mask=delta_mask)
        if a.shape[0] >= T:
            out.append(make_chunks(a, T, stride))
    if not out:
        raise ValueError(f"no episode lasts {seconds} s (T={T} steps at {rate_hz} Hz): nothing to chunk")
    return np.concatenate(out)


def smooth_action_chunks(n_chunks: int, rate_hz: float, seconds: float = 1.0, *, seed: int = 0,
                         noise_std: float = 0.0) -> np.ndarray:
    """Synthetic, seeded 7-D action chunks ``(n_chunks, T, 7)`` float64, ``T = round(rate_hz * seconds)``.

    Introduced in lesson 03 (the lesson itself uses the course dataset, through
    :func:`chunks_at_rate`; these chunks serve the tests and the benchmark's throughput and
    ``--data synthetic`` figures, where any number of chunks is needed). Each chunk samples
    the same kind of continuous motion at ``rate_hz``: translations and rotations are sums of
    three sinusoids of 0.2-2 Hz (translations about 0.02, rotations about 0.1 in size); the
    gripper is 0 or 1 and switches once inside 30 % of the chunks (a step, the hardest case for
    a DCT). So the information per chunk is the same at every rate, and only the sampling
    changes. ``noise_std`` adds white noise to the six arm dimensions.
    """
    if not isinstance(n_chunks, (int, np.integer)) or n_chunks < 1:
        raise ValueError(f"n_chunks must be a positive integer, got {n_chunks!r}")
    T = int(round(rate_hz * seconds))
    if not (np.isfinite(rate_hz) and np.isfinite(seconds)) or T < 1:
        raise ValueError(f"rate_hz * seconds must give at least one step, got {rate_hz} Hz x {seconds} s")
    rng = np.random.default_rng(seed)
    t = np.arange(T) / float(rate_hz)  # (T,)
    freq = rng.uniform(0.2, 2.0, size=(n_chunks, 1, 6, 3))
    phase = rng.uniform(0, 2 * np.pi, size=(n_chunks, 1, 6, 3))
    amp = rng.uniform(0.3, 1.0, size=(n_chunks, 1, 6, 3)) / 3.0
    arm = (amp * np.sin(2 * np.pi * freq * t[None, :, None, None] + phase)).sum(axis=-1)
    arm = arm * np.array([0.02, 0.02, 0.02, 0.1, 0.1, 0.1])
    if noise_std > 0:
        arm = arm + rng.normal(0.0, noise_std, size=arm.shape)
    start = rng.integers(0, 2, size=(n_chunks, 1)).astype(np.float64)
    switches = rng.random(size=(n_chunks, 1)) < 0.3
    switch_time = rng.uniform(0, seconds, size=(n_chunks, 1))
    flipped = switches & (t[None, :] >= switch_time)
    gripper = np.where(flipped, 1.0 - start, start)
    return np.concatenate([arm, gripper[..., None]], axis=-1)


# --------------------------------------------------------------------------- the tokenizer


def _check_scale(scale) -> None:
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)) \
            or not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")


def _chunk_shape(chunk_shape) -> tuple[int, int]:
    try:
        T, D = (int(v) for v in chunk_shape)
    except (TypeError, ValueError):
        raise ValueError(f"chunk_shape must be (T, D), got {chunk_shape!r}") from None
    if T < 1 or D < 1:
        raise ValueError(f"chunk_shape must be (T, D) with T, D >= 1, got {chunk_shape!r}")
    return T, D


def _new_bpe() -> Tokenizer:
    bpe = Tokenizer(models.BPE())
    # One "word" per chunk: GPT-2's regex splits text at spaces and letter/digit boundaries,
    # which for these characters would be arbitrary cuts between coefficients.
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    bpe.decoder = decoders.ByteLevel()
    return bpe


def _chunk_list(chunks, dim: int | None) -> list[np.ndarray]:
    """Chunks as a list of finite ``(T, D)`` float64 arrays (an ``(N, T, D)`` array or a list)."""
    if isinstance(chunks, np.ndarray) or _is_torch(chunks):
        arr = _float_array(chunks, "chunks")
        if arr.ndim != 3:
            raise ValueError(f"chunks must have shape (N, T, D), got shape {arr.shape}")
        out = list(arr)
    else:
        out = [_float_array(c, f"chunk {i}") for i, c in enumerate(chunks)]
    if not out:
        raise ValueError("no chunks were given")
    D = dim if dim is not None else out[0].shape[-1]
    for i, c in enumerate(out):
        if c.ndim != 2 or c.shape[1] != D or c.shape[0] < 1:
            raise ValueError(f"chunk {i} must have shape (T, {D}), got shape {c.shape}")
    return out


class FASTTokenizer:
    """FAST: action chunks ``(T, D)`` <-> short lists of BPE token ids.

    Introduced in lesson 03.

    Args:
        stats: LeRobot statistics ``{"action": {"q01", "q99", ...}}`` used to normalise; when
            None, :meth:`fit` computes them from its chunks.
        scale: multiplier before rounding the DCT coefficients (10 in the paper): larger means
            finer actions and more tokens.
        vocab_size: BPE vocabulary size (1024 in the paper); at least 256, the byte alphabet.
        mask: normalisation mask (default: every dimension but the last, the gripper).

    ``fit`` trains the BPE; ``encode``/``decode`` then map chunks to ids and back, and
    ``save``/``load`` keep everything in one JSON file. Token ids are ``0 .. vocab_size-1``;
    :meth:`to_lm_ids` places them on the last ids of a language model's vocabulary.
    """

    def __init__(self, stats=None, *, scale: float = DEFAULT_SCALE, vocab_size: int = DEFAULT_VOCAB_SIZE,
                 mask=None):
        _check_scale(scale)
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) or vocab_size < 256:
            raise ValueError(f"vocab_size must be an integer >= 256 (the byte alphabet), got {vocab_size!r}")
        self.scale = float(scale)
        self.target_vocab_size = int(vocab_size)
        self._mask = mask
        self.normalizer = QuantileNormalizer.from_stats(stats, mask) if stats is not None else None
        self.bpe: Tokenizer | None = None

    # ---- training
    def fit(self, chunks) -> "FASTTokenizer":
        """Train the BPE on chunks (an ``(N, T, D)`` array or a list of ``(T_i, D)`` arrays).

        Introduced in lesson 03. Without statistics from the constructor, ``q01``/``q99`` are
        computed from these chunks first. Returns ``self``. The same chunks give the same
        vocabulary in every process.
        """
        chunk_list = _chunk_list(chunks, self.normalizer.dim if self.normalizer else None)
        if self.normalizer is None:  # numpy's linear quantiles, as vla_lessons.data.stats computes them
            q01, q99 = np.quantile(np.concatenate(chunk_list, axis=0), [0.01, 0.99], axis=0)
            self.normalizer = QuantileNormalizer(q01, q99, self._mask)
        texts = [self._text(c) for c in chunk_list]
        trainer = trainers.BpeTrainer(vocab_size=self.target_vocab_size, min_frequency=2, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
        bpe = _new_bpe()
        bpe.train_from_iterator(texts, trainer=trainer)
        self.bpe = bpe
        return self

    @property
    def vocab_size(self) -> int:
        """Number of BPE ids (at most the requested ``vocab_size``; less if the data allowed fewer merges)."""
        return self._fitted().get_vocab_size()

    @property
    def dim(self) -> int:
        """Action dimension D the tokenizer was fitted for."""
        self._fitted()
        return self.normalizer.dim

    def _fitted(self) -> Tokenizer:
        if self.bpe is None or self.normalizer is None:
            raise RuntimeError("this FASTTokenizer is not trained: call fit(chunks) or FASTTokenizer.load(path)")
        return self.bpe

    # ---- chunks -> coefficients -> ids
    def coefficients(self, chunk) -> np.ndarray:
        """One chunk ``(T, D)`` (or a batch ``(B, T, D)``) -> int64 coefficients ``(T*D,)`` (``(B, T*D)``).

        Introduced in lesson 03. Normalised, DCT, scaled, rounded and flattened lowest
        frequency first (coefficient-major).
        """
        if self.normalizer is None:
            raise RuntimeError("this FASTTokenizer has no statistics yet: call fit(chunks) or load(path)")
        x = _float_array(chunk, "chunk")
        D = self.normalizer.dim
        if x.ndim not in (2, 3) or x.shape[-1] != D or x.shape[-2] < 1:
            raise ValueError(f"chunk must have shape (T, {D}) or (B, T, {D}), got shape {x.shape}")
        q = quantize(self.normalizer.normalize(x), self.scale)
        return q.reshape(*q.shape[:-2], -1)

    def _text(self, chunk: np.ndarray) -> str:
        return int_to_char(self.coefficients(chunk))

    def encode(self, chunk) -> list[int] | list[list[int]]:
        """A chunk ``(T, D)`` -> ``list[int]`` token ids; a batch ``(B, T, D)`` -> one list per chunk.

        Introduced in lesson 03. Torch tensors are accepted. Non-finite values or the wrong
        action dimension are a ValueError.
        """
        bpe = self._fitted()
        x = _float_array(chunk, "chunk")
        if x.ndim not in (2, 3) or x.shape[-1] != self.dim or x.shape[-2] < 1:
            raise ValueError(f"chunk must have shape (T, {self.dim}) or (B, T, {self.dim}), got shape {x.shape}")
        if x.ndim == 2:
            return bpe.encode(self._text(x)).ids
        return [e.ids for e in bpe.encode_batch([int_to_char(row) for row in self.coefficients(x)])]

    # ---- ids -> coefficients -> chunks
    def decode_coefficients(self, ids, n_coefficients: int, *, strict: bool = True) -> np.ndarray:
        """Token ids -> int64 coefficients ``(n_coefficients,)``, checked (strict) or repaired.

        Introduced in lesson 03. Strict: an id outside ``0..vocab_size-1``, bytes that are not
        whole characters (a sequence cut inside one) or a count other than ``n_coefficients``
        raise ValueError. Relaxed (``strict=False``): unknown ids are dropped, broken bytes
        become 0, and the coefficients are truncated or zero-padded at the high-frequency end.
        """
        bpe = self._fitted()
        i = _int_array(ids, "ids")
        if i.ndim != 1:
            raise ValueError(f"ids must be one sequence (a 1-D list of ints), got shape {i.shape}")
        unknown = (i < 0) | (i >= bpe.get_vocab_size())
        if unknown.any():
            if strict:
                raise ValueError(f"unknown FAST token ids {np.unique(i[unknown])[:8].tolist()} "
                                 f"(valid 0..{bpe.get_vocab_size() - 1})")
            i = i[~unknown]
        text = bpe.decode(i.tolist(), skip_special_tokens=False)
        broken = text.count(_REPLACEMENT)
        if broken and strict:
            raise ValueError(f"the token sequence does not decode to whole coefficients ({broken} broken "
                             "character(s)); it was probably cut inside a multi-byte character")
        coeffs = char_to_int(text.replace(_REPLACEMENT, "\x00"))
        if coeffs.size != n_coefficients:
            if strict:
                raise ValueError(f"the tokens decode to {coeffs.size} coefficients, expected {n_coefficients} "
                                 "(T * D); the sequence is truncated or too long")
            coeffs = np.pad(coeffs[:n_coefficients], (0, max(n_coefficients - coeffs.size, 0)))
        return coeffs

    def decode(self, ids, chunk_shape: Sequence[int], *, strict: bool = True) -> np.ndarray:
        """Token ids -> a chunk ``(T, D)`` float64 in action units; a list of id lists -> ``(B, T, D)``.

        Introduced in lesson 03. ``chunk_shape`` is ``(T, D)``. Strict mode raises ValueError for
        an invalid or truncated sequence (see :meth:`decode_coefficients`) and never returns
        zeros in place of an action; ``strict=False`` repairs it to the right shape (closed-loop
        use, as LeRobot does).
        """
        T, D = _chunk_shape(chunk_shape)
        if D != self.dim:
            raise ValueError(f"chunk_shape must be (T, {self.dim}) for this tokenizer, got {tuple(chunk_shape)}")
        if _is_batch(ids):
            return np.stack([self.decode(seq, (T, D), strict=strict) for seq in ids])
        coeffs = self.decode_coefficients(ids, T * D, strict=strict).reshape(T, D)
        return self.normalizer.unnormalize(dequantize(coeffs, self.scale))

    # ---- measuring
    def token_counts(self, chunks) -> np.ndarray:
        """Number of FAST tokens of each chunk: int64 ``(N,)``. Introduced in lesson 03."""
        return np.array([len(self.encode(c)) for c in _chunk_list(chunks, self.dim)], dtype=np.int64)

    def compression_ratio(self, chunks) -> float:
        """Naive tokens (``T*D`` per chunk) over FAST tokens, summed over ``chunks``. Lesson 03."""
        chunk_list = _chunk_list(chunks, self.dim)
        naive = sum(naive_token_count(c.shape) for c in chunk_list)
        return naive / float(self.token_counts(chunk_list).sum())

    # ---- the language model's vocabulary
    def to_lm_ids(self, ids, lm_vocab_size: int, skip_tokens: int = 0) -> list[int]:
        """FAST ids -> ids on the end of an LM vocabulary: ``lm_vocab_size - 1 - skip_tokens - id``.

        Introduced in lesson 03. pi0-FAST uses ``skip_tokens=128`` to keep PaliGemma's last
        128 special tokens; the ids must fit below them (ValueError otherwise).
        """
        i = _int_array(ids, "ids")
        top = self._lm_top(lm_vocab_size, skip_tokens)
        bad = (i < 0) | (i >= self.vocab_size)
        if bad.any():
            raise ValueError(f"unknown FAST token ids {np.unique(i[bad])[:8].tolist()} "
                             f"(valid 0..{self.vocab_size - 1})")
        return (top - i).tolist()

    def from_lm_ids(self, lm_ids, lm_vocab_size: int, skip_tokens: int = 0) -> list[int]:
        """The inverse of :meth:`to_lm_ids`; an LM id outside the FAST range is a ValueError."""
        i = _int_array(lm_ids, "lm_ids")
        top = self._lm_top(lm_vocab_size, skip_tokens)
        fast = top - i
        bad = (fast < 0) | (fast >= self.vocab_size)
        if bad.any():
            raise ValueError(f"language-model ids {np.unique(i[bad])[:8].tolist()} are not FAST tokens "
                             f"(valid {top - self.vocab_size + 1}..{top})")
        return fast.tolist()

    def _lm_top(self, lm_vocab_size: int, skip_tokens: int) -> int:
        top = int(lm_vocab_size) - 1 - int(skip_tokens)
        if skip_tokens < 0 or top - self.vocab_size + 1 < 0:
            raise ValueError(f"a vocabulary of {lm_vocab_size} ids with {skip_tokens} skipped cannot hold "
                             f"{self.vocab_size} FAST tokens")
        return top

    # ---- persistence
    def to_dict(self) -> dict:
        """Everything needed to rebuild the tokenizer, as plain JSON types."""
        bpe = self._fitted()
        return {"format": _FORMAT, "version": _FORMAT_VERSION, "scale": self.scale,
                "vocab_size": self.target_vocab_size, "normalizer": self.normalizer.to_dict(),
                "bpe": json.loads(bpe.to_str())}

    def save(self, path: str | Path) -> Path:
        """Write one JSON file (``.json``) holding the scale, the statistics and the BPE. Lesson 03."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), sort_keys=True))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "FASTTokenizer":
        """Read a file written by :meth:`save`; it encodes to the same ids, without retraining."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not a FAST tokenizer file (invalid JSON: {err})") from None
        if not isinstance(raw, dict) or raw.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a FAST tokenizer file (no format {_FORMAT!r})")
        if raw.get("version") != _FORMAT_VERSION:
            raise ValueError(f"{path} has format version {raw.get('version')!r}; this code reads {_FORMAT_VERSION}")
        try:
            norm = raw["normalizer"]
            tok = cls(scale=raw["scale"], vocab_size=raw["vocab_size"])
            tok.normalizer = QuantileNormalizer(norm["q01"], norm["q99"], np.asarray(norm["mask"], dtype=bool))
            tok.bpe = Tokenizer.from_str(json.dumps(raw["bpe"]))
        except Exception as err:  # missing keys, wrong types, or the BPE JSON rejected by tokenizers
            raise ValueError(f"{path} is a damaged FAST tokenizer file: {err!r}") from None
        return tok


def _is_batch(ids) -> bool:
    """True for a list of id sequences or a 2-D array, False for one sequence."""
    if _is_torch(ids) or isinstance(ids, np.ndarray):
        return ids.ndim == 2
    return isinstance(ids, (list, tuple)) and len(ids) > 0 and not np.isscalar(ids[0]) \
        and not (isinstance(ids[0], np.ndarray) and ids[0].ndim == 0)


def measure_fast(tokenizer: FASTTokenizer, chunks) -> dict:
    """Token counts and round-trip error of a fitted tokenizer on chunks ``(N, T, D)``.

    Introduced in lesson 03. Returns ``{"horizon", "naive_tokens", "fast_tokens",
    "compression", "rmse", "rmse_per_dim", "max_abs"}``: ``T``, the ``T*D`` tokens of one
    token per value, the mean FAST tokens per chunk, their ratio, and the errors of
    decode(encode(chunk)) in normalised units (``rmse_per_dim`` is ``(D,)``).
    """
    x = _float_array(chunks, "chunks")
    if x.ndim != 3:
        raise ValueError(f"chunks must have shape (N, T, D), got shape {x.shape}")
    T, D = x.shape[1:]
    ids = tokenizer.encode(x)
    err = tokenizer.normalizer.normalize(tokenizer.decode(ids, (T, D))) - tokenizer.normalizer.normalize(x)
    fast_tokens = float(np.mean([len(s) for s in ids]))
    return {"horizon": int(T), "naive_tokens": int(T * D), "fast_tokens": fast_tokens,
            "compression": T * D / fast_tokens, "rmse": float(np.sqrt(np.mean(err**2))),
            "rmse_per_dim": np.sqrt(np.mean(err**2, axis=(0, 1))), "max_abs": float(np.abs(err).max())}


def fit_per_rate(data_fn: Callable[..., np.ndarray], rates_hz: Sequence[float], *, n_fit: int, n_eval: int,
                 seconds: float = 1.0, scale: float = DEFAULT_SCALE, vocab_size: int = DEFAULT_VOCAB_SIZE,
                 seed: int = 0) -> dict[float, dict]:
    """Compression and error of FAST at several control rates, on data from ``data_fn``.

    Introduced in lesson 03. ``data_fn(n_chunks, rate_hz, seconds, seed=...)`` returns chunks
    ``(n_chunks, T, D)`` (default in the lesson: :func:`smooth_action_chunks`; the course
    dataset plugs in here). For each rate a tokenizer is fitted on ``n_fit`` chunks and
    measured on ``n_eval`` other chunks. Returns ``{rate: {"horizon", "naive_tokens",
    "fast_tokens", "compression", "rmse", "rmse_per_dim", "max_abs", "tokenizer"}}`` where the
    errors are in normalised units (decoded vs. normalised input; ``rmse_per_dim`` is ``(D,)``).
    """
    out = {}
    for rate in rates_hz:
        fit_chunks = data_fn(n_fit, rate, seconds, seed=seed)
        eval_chunks = data_fn(n_eval, rate, seconds, seed=seed + 1)
        tok = FASTTokenizer(scale=scale, vocab_size=vocab_size).fit(fit_chunks)
        out[float(rate)] = {**measure_fast(tok, eval_chunks), "tokenizer": tok}
    return out
