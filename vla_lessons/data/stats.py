"""Normalisation statistics: min, max, mean, std and the 1st/99th percentiles per dimension.

Introduced in lesson 01.

OpenVLA maps each action dimension from ``[q01, q99]`` onto ``[-1, 1]`` before binning it
(lesson 02): the percentiles ignore the rare outliers that would stretch a min/max range. The
numbers are LeRobot's ``meta/stats.json`` shape::

    {"action": {"min": [..7], "max": [..7], "mean": [..7], "std": [..7],
                "q01": [..7], "q99": [..7], "count": [N]},
     "observation.state": {...}}

Everything is computed in float64 with numpy's defaults (population ``std``, ``ddof=0``;
linear-interpolation quantiles), so ``np.percentile(x, 1, axis=0)`` gives ``q01`` exactly.
"""

from __future__ import annotations

import numpy as np

#: The statistics stored per dimension, in file order.
STAT_NAMES = ("min", "max", "mean", "std", "q01", "q99")


def compute_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Per-dimension statistics of an ``(N, D)`` array of N samples.

    Introduced in lesson 01.

    Returns a dict with ``min``, ``max``, ``mean``, ``std``, ``q01``, ``q99`` (each ``(D,)``
    float64) and ``count`` (``(1,)`` int64, LeRobot's field). Raises ``ValueError`` for an
    empty, non-2-D or non-finite input.
    """
    x = np.asarray(values)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"statistics need an (N, D) array with N, D >= 1, got shape {x.shape}")
    if x.dtype.kind not in "fiu":
        raise ValueError(f"statistics need real numbers, got dtype {x.dtype}")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError("statistics need finite values, got NaN or inf")
    q01, q99 = np.quantile(x, [0.01, 0.99], axis=0)
    return {"min": x.min(axis=0), "max": x.max(axis=0), "mean": x.mean(axis=0),
            "std": x.std(axis=0), "q01": q01, "q99": q99,
            "count": np.array([x.shape[0]], dtype=np.int64)}


def stats_to_json(stats: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, list]]:
    """``{feature: {stat: array}}`` -> the same with plain lists (floats round-trip exactly).

    Introduced in lesson 01.
    """
    return {key: {name: np.asarray(value).tolist() for name, value in per_feature.items()}
            for key, per_feature in stats.items()}


def stats_from_json(raw: dict) -> dict[str, dict[str, np.ndarray]]:
    """The inverse of :func:`stats_to_json`: lists back to float64 arrays (``count`` int64).

    Introduced in lesson 01. Raises ``ValueError`` when a statistic is missing or ragged.
    """
    if not isinstance(raw, dict):
        raise ValueError(f"statistics must be a JSON object, got {type(raw).__name__}")
    out = {}
    for key, per_feature in raw.items():
        missing = [n for n in (*STAT_NAMES, "count") if n not in per_feature]
        if missing:
            raise ValueError(f"statistics of {key!r} lack {missing}")
        dims = {len(per_feature[n]) for n in STAT_NAMES}
        if len(dims) != 1:
            raise ValueError(f"statistics of {key!r} have different lengths {sorted(dims)}")
        out[key] = {n: np.asarray(per_feature[n], dtype=np.float64) for n in STAT_NAMES}
        out[key]["count"] = np.asarray(per_feature["count"], dtype=np.int64)
    return out
