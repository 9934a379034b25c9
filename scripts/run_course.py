"""Run the whole course headless: execute every lesson notebook top to bottom.

    python scripts/run_course.py            # every lesson in notebooks/
    python scripts/run_course.py 00 01      # only these lessons

Executed copies go to ``build/notebooks/``, their figures (PNG) to ``build/figures/``, and a
table of minutes per lesson is printed at the end. ``VLA_FULL=1`` selects the full settings.
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from vla_lessons import env, notebooks as nbt  # noqa: E402


def save_figures(nb, stem: str, folder: Path) -> int:
    n = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            png = out.get("data", {}).get("image/png")
            if png:
                n += 1
                (folder / f"{stem}_fig{n:02d}.png").write_bytes(base64.b64decode(png))
    return n


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lessons", nargs="*", help="lesson numbers to run (default: all)")
    args = parser.parse_args(argv)
    lessons = nbt.lesson_files(ROOT / "notebooks")
    if args.lessons:
        known = {p.name[:2]: p for p in lessons}
        unknown = [n for n in args.lessons if n not in known]
        if unknown:
            parser.error(f"unknown lesson(s) {unknown}; known: {sorted(known)}")
        lessons = [known[n] for n in args.lessons]
    out_nb, out_fig = env.BUILD_DIR / "notebooks", env.BUILD_DIR / "figures"
    out_nb.mkdir(parents=True, exist_ok=True)
    out_fig.mkdir(parents=True, exist_ok=True)
    mode = "full" if env.full_mode() else "fast"
    print(f"Running {len(lessons)} lessons in {mode} mode; output in {env.BUILD_DIR}", flush=True)
    rows, failed = [], []
    for path in lessons:
        nb = nbt.read(path)
        print(f"  {path.name} ...", end=" ", flush=True)
        try:
            seconds = nbt.execute(nb, cwd=path.parent)
        except Exception as exc:  # report every failing lesson, then fail
            print("FAILED")
            failed.append((path.name, str(exc).splitlines()[-1] if str(exc) else repr(exc)))
            continue
        (out_nb / path.name).write_text(nbt.dumps(nb))
        n_fig = save_figures(nb, path.stem, out_fig)
        rows.append((path.name, seconds, n_fig))
        print(f"{seconds / 60:.1f} min, {n_fig} figures", flush=True)
    total = sum(r[1] for r in rows)
    print(f"\n{'lesson':<32}{'minutes':>8}{'figures':>9}")
    for name, seconds, n_fig in rows:
        print(f"{name:<32}{seconds / 60:>8.1f}{n_fig:>9}")
    print(f"{'total':<32}{total / 60:>8.1f}")
    for name, why in failed:
        print(f"FAILED {name}: {why}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
