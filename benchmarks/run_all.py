"""Run every benchmark of the course in one process, one after the other, and print their tables.

    .venv/bin/python benchmarks/run_all.py          # quick settings (about 2 minutes)
    .venv/bin/python benchmarks/run_all.py --full   # each script's own defaults (longer)

Each script can also run alone (see its docstring). Figures are measured side by side in one
run, so ratios between them are meaningful even on a noisy shared machine; absolute numbers vary.
"""

from __future__ import annotations

import argparse
import runpy
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUICK = {
    "bench_sim.py": ["--episodes", "20", "--speed-episodes", "10"],
    "bench_data.py": [],
    "bench_actions.py": ["--values", "2000000"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="use each script's own (longer) defaults")
    args = parser.parse_args()
    for script, quick_args in QUICK.items():
        print(f"\n=== {script} {'(full)' if args.full else ' '.join(quick_args)}", flush=True)
        sys.argv = [script] + ([] if args.full else quick_args)
        start = time.perf_counter()
        runpy.run_path(str(HERE / script), run_name="__main__")
        print(f"({script}: {time.perf_counter() - start:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
