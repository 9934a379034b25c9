"""Benchmark of the action tokenizers (lessons 02 and 03), measured in one run.

    .venv/bin/python benchmarks/bench_actions.py [--values 10500000] [--chunks 2000] [--data course|synthetic]

Prints, for the bins (RT-2/OpenVLA): encode and decode throughput in values/s for both
layouts (target >= 10M values/s); for FAST: encode and decode throughput in chunks/s, and
compression (naive tokens T*D / FAST tokens) with the reconstruction error at 5, 15 and 50 Hz
control.

The throughputs use smooth synthetic 1-second chunks (``smooth_action_chunks``: as many as
asked for). The compression table uses, by default (``--data course``), the course dataset's
expert trajectories (recorded at 10 Hz), resampled to each rate with
:func:`~vla_lessons.actions.fast.resample_actions` as lesson 03 does: tokenizers are fitted on
four episodes in five and measured on the fifth (held out). ``--data synthetic`` measures the
table on synthetic chunks instead (2000 to fit, 500 to measure).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from vla_lessons.actions import ActionTokenizer, FASTTokenizer, smooth_action_chunks
from vla_lessons.actions.fast import chunks_at_rate, fit_per_rate, measure_fast

RATES_HZ = (5, 15, 50)


def _best_time(fn: Callable[[], object], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_bins(data_fn: Callable[..., np.ndarray], n_values: int) -> list[tuple[str, str]]:
    """Encode/decode values per second of :class:`ActionTokenizer` for each layout."""
    base = data_fn(2000, 50, 1.0, seed=0).reshape(-1, 7)
    q01, q99 = np.quantile(base, [0.01, 0.99], axis=0)
    stats = {"action": {"q01": q01, "q99": q99}}
    actions = np.resize(base, (max(n_values // 7, 1), 7))
    rows = []
    for layout in ("centers256", "openvla"):
        tok = ActionTokenizer(stats, vocab_size=32000, layout=layout)
        ids = tok.encode(actions)
        t_enc = _best_time(lambda: tok.encode(actions))
        t_dec = _best_time(lambda: tok.decode(ids))
        rows.append((f"bins {layout}: encode", f"{actions.size / t_enc / 1e6:6.1f} M values/s"))
        rows.append((f"bins {layout}: decode", f"{actions.size / t_dec / 1e6:6.1f} M values/s"))
    rows.append(("bins: values per call", f"{actions.size:,}"))
    return rows


def bench_fast_speed(data_fn: Callable[..., np.ndarray], n_chunks: int, rate_hz: float = 15) -> list[tuple[str, str]]:
    """Chunks per second through FAST encode (batched and one by one) and decode."""
    fit = data_fn(2000, rate_hz, 1.0, seed=0)
    chunks = data_fn(n_chunks, rate_hz, 1.0, seed=1)
    start = time.perf_counter()
    tok = FASTTokenizer().fit(fit)
    t_fit = time.perf_counter() - start
    ids = tok.encode(chunks)
    shape = chunks.shape[1:]
    t_batch = _best_time(lambda: tok.encode(chunks))
    t_single = _best_time(lambda: [tok.encode(c) for c in chunks])
    t_dec = _best_time(lambda: [tok.decode(s, shape) for s in ids])
    label = f"FAST @ {rate_hz:g} Hz (T={shape[0]})"
    return [(f"{label}: fit on 2000 chunks", f"{t_fit:6.2f} s"),
            (f"{label}: encode, batched", f"{n_chunks / t_batch:8.0f} chunks/s"),
            (f"{label}: encode, one chunk per call", f"{n_chunks / t_single:8.0f} chunks/s"),
            (f"{label}: decode, one chunk per call", f"{n_chunks / t_dec:8.0f} chunks/s")]


def _rate_row(rate: float, r: dict, source: str) -> tuple[str, str]:
    return (f"FAST @ {rate:g} Hz (T={r['horizon']}), {source}",
            f"{r['naive_tokens']:4d} naive -> {r['fast_tokens']:5.1f} FAST tokens, "
            f"x{r['compression']:4.1f}; rmse arm {r['rmse_per_dim'][:-1].mean():.4f}, "
            f"gripper {r['rmse_per_dim'][-1]:.4f}, max {r['max_abs']:.3f} (normalised)")


def bench_fast_rates(data_fn: Callable[..., np.ndarray]) -> list[tuple[str, str]]:
    """Compression and reconstruction error against control rate (1-second synthetic chunks)."""
    return [_rate_row(rate, r, "synthetic")
            for rate, r in fit_per_rate(data_fn, RATES_HZ, n_fit=2000, n_eval=500).items()]


def course_episodes(name: str = "tabletop_lessons") -> tuple[list[np.ndarray], float]:
    """The actions of every episode of a course dataset, ``[(L_i, 7)]`` float64, and its fps."""
    from vla_lessons.data import course_dataset_path, load_dataset_dir, load_meta

    root = course_dataset_path(name)
    meta = load_meta(root)
    frames = load_dataset_dir(root).select_columns(["episode_index", "action"])
    actions = np.asarray(frames["action"], dtype=np.float64)
    episode = np.asarray(frames["episode_index"])
    return [actions[episode == i] for i in range(meta.total_episodes)], float(meta.fps)


def bench_fast_rates_course(name: str = "tabletop_lessons") -> list[tuple[str, str]]:
    """Compression and error against control rate on the course's trajectories (held-out episodes).

    Every fifth episode is held out (as in lesson 03); the others fit one tokenizer per rate.
    """
    episodes, fps = course_episodes(name)
    fit_eps = [e for i, e in enumerate(episodes) if i % 5 != 4]
    held_eps = [e for i, e in enumerate(episodes) if i % 5 == 4]
    rows = []
    for rate in RATES_HZ:
        fit_chunks = chunks_at_rate(fit_eps, fps, rate)
        held_chunks = chunks_at_rate(held_eps, fps, rate)
        tok = FASTTokenizer().fit(fit_chunks)
        rows.append(_rate_row(rate, measure_fast(tok, held_chunks),
                              f"{name} ({len(fit_chunks)} fit / {len(held_chunks)} held-out chunks)"))
    return rows


def run(data_fn: Callable[..., np.ndarray] = smooth_action_chunks, n_values: int = 10_500_000,
        n_chunks: int = 2000, rates_data: str = "course") -> list[tuple[str, str]]:
    """All measurements as ``(what, figure)`` rows; ``rates_data`` is ``"course"`` or ``"synthetic"``."""
    if rates_data not in ("course", "synthetic"):
        raise ValueError(f"rates_data must be 'course' or 'synthetic', got {rates_data!r}")
    rates = bench_fast_rates_course() if rates_data == "course" else bench_fast_rates(data_fn)
    return bench_bins(data_fn, n_values) + bench_fast_speed(data_fn, n_chunks) + rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=10_500_000, help="values per bins call")
    parser.add_argument("--chunks", type=int, default=2000, help="chunks for the FAST speed test")
    parser.add_argument("--data", choices=("course", "synthetic"), default="course",
                        help="data of the compression table: the course dataset (default) or synthetic chunks")
    args = parser.parse_args()
    rows = run(n_values=args.values, n_chunks=args.chunks, rates_data=args.data)
    width = max(len(what) for what, _ in rows)
    print(f"{'measurement':<{width}}  figure")
    print("-" * (width + 60))
    for what, figure in rows:
        print(f"{what:<{width}}  {figure}")


if __name__ == "__main__":
    main()
