"""Notebook tools for course authors.

    python scripts/nb.py execute notebooks/01_robot_data.ipynb   # run in place, then clean
    python scripts/nb.py clean [FILES...]                         # clean (default: every notebook)
    python scripts/nb.py exercises                                # solutions/ -> exercises/
    python scripts/nb.py check                                    # fail if anything is unclean/out of sync

Write a lesson, run ``execute`` on it so the stored outputs are fresh, then commit. For
solutions, run ``execute`` and then ``exercises``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from vla_lessons import notebooks as nbt  # noqa: E402

def execute(path: Path) -> float:
    """Run a notebook top to bottom in place (in its own folder), clean it, return the seconds."""
    nb = nbt.read(path)
    elapsed = nbt.execute(nb, cwd=path.parent)
    path.write_text(nbt.dumps(nbt.clean(nb)))
    return elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_exec = sub.add_parser("execute", help="run notebooks in place and clean them")
    p_exec.add_argument("files", nargs="+", type=Path)
    p_clean = sub.add_parser("clean", help="clean notebooks in place")
    p_clean.add_argument("files", nargs="*", type=Path)
    sub.add_parser("exercises", help="make exercises/ from solutions/")
    sub.add_parser("check", help="fail if a notebook is unclean or exercises are out of sync")
    args = parser.parse_args(argv)

    if args.cmd == "execute":
        for f in args.files:
            print(f"{f}: {execute(f):.1f} s", flush=True)
    elif args.cmd == "clean":
        for f in args.files or nbt.all_notebooks(ROOT):
            if nbt.clean_file(f):
                print(f"cleaned {f}")
    elif args.cmd == "exercises":
        for f in nbt.write_exercises(ROOT):
            print(f"wrote {f.relative_to(ROOT)}")
    elif args.cmd == "check":
        problems = nbt.check(ROOT)
        for p in problems:
            print(p)
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
