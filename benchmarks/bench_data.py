"""Benchmark of vla_lessons.data: dataset write and read rates, in rows (frames) per second.

    .venv/bin/python benchmarks/bench_data.py                 # the committed lesson dataset
    .venv/bin/python benchmarks/bench_data.py --synthetic 30  # 30 synthetic 96 px episodes

Measures, on one CPU thread:
* write   — ``write_dataset``: PNG-encode both cameras, parquet via ``datasets``, metadata;
* read, datasets path — ``load_dataset_dir`` then every row through ``datasets`` (PIL decode);
* read, torch path — ``LeRobotStyleDataset`` through a ``DataLoader`` (batch 32, no workers).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vla_lessons.data import (LeRobotStyleDataset, load_dataset_dir, read_episodes,
                              synthetic_episode, write_dataset)
from vla_lessons.data.recipes import course_recipes


def _source_episodes(n_synthetic: int | None):
    if n_synthetic:
        return [synthetic_episode(length=60, image_size=96, seed=s) for s in range(n_synthetic)], "synthetic"
    root = course_recipes()["tabletop_lessons"].root
    return read_episodes(root), str(root)


def _rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:10.0f} rows/s  ({rows} rows in {seconds:.2f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--synthetic", type=int, metavar="N", help="use N synthetic episodes instead")
    args = parser.parse_args()
    torch.set_num_threads(1)
    episodes, source = _source_episodes(args.synthetic)
    rows = sum(len(ep) for ep in episodes)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        root = write_dataset(Path(tmp) / "bench", episodes)
        write_s = time.perf_counter() - start
        size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())

        start = time.perf_counter()
        ds = load_dataset_dir(root)
        for row in ds:
            np.asarray(row["observation.images.image"]), np.asarray(row["observation.images.wrist_image"])
        hf_s = time.perf_counter() - start

        start = time.perf_counter()
        loader = torch.utils.data.DataLoader(LeRobotStyleDataset(root), batch_size=32)
        n = sum(len(batch["action"]) for batch in loader)
        torch_s = time.perf_counter() - start
        assert n == rows == len(ds)
    h, w = episodes[0].image_size
    print(f"source: {source}: {len(episodes)} episodes, {rows} rows, {h}x{w} px, "
          f"{size / 1e6:.2f} MB on disk ({size / rows / 1e3:.1f} kB/row)")
    print(f"write                 {_rate(rows, write_s)}")
    print(f"read, datasets path   {_rate(rows, hf_s)}")
    print(f"read, torch path      {_rate(rows, torch_s)}")


if __name__ == "__main__":
    main()
