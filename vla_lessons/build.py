"""The build command: makes the course's artifacts from seeds, reproducibly.

Introduced in lesson 01.

Usage::

    python -m vla_lessons.build data                           # every dataset
    python -m vla_lessons.build data --only tabletop_lessons   # one of them
    python -m vla_lessons.build all                            # every target, in order
    python -m vla_lessons.build --list

Targets are a small registry: a module adds one with the :func:`target` decorator. A target
function takes ``only`` (``None`` or a list of artifact names) and returns one summary dict per
artifact it built; the command prints them. ``VLA_FULL=1`` selects the full sizes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """One buildable target: a name, a one-line help, and the function that builds it.

    Introduced in lesson 01.
    """

    name: str
    help: str
    build: Callable[[list[str] | None], list[dict]]


#: Registered targets, in the order ``all`` builds them.
TARGETS: dict[str, Target] = {}


def target(name: str, help: str):
    """Register ``fn(only) -> list[dict]`` as the build target ``name``.

    Introduced in lesson 01.
    """
    def register(fn):
        if name in TARGETS or name == "all":
            raise ValueError(f"build target {name!r} is already registered")
        TARGETS[name] = Target(name, help, fn)
        return fn
    return register


@target("data", "record the course's datasets with the scripted expert (data/ and build/)")
def build_data(only: list[str] | None = None) -> list[dict]:
    """Build the course's datasets (all of them, or the names in ``only``).

    Introduced in lesson 01. See :mod:`vla_lessons.data.recipes`.
    """
    from vla_lessons.data.recipes import build_dataset, course_recipes

    recipes = course_recipes()
    unknown = sorted(set(only or []) - set(recipes))
    if unknown:
        raise ValueError(f"unknown dataset(s) {unknown}; choose from {sorted(recipes)}")
    summaries = []
    for name, recipe in recipes.items():
        if only is None or name in only:
            print(f"[data] recording {name}: {recipe.episodes_per_family} episodes x "
                  f"{len(recipe.families)} families at {recipe.image_size} px -> {recipe.root}", flush=True)
            summaries.append(build_dataset(recipe))
    return summaries


@target("vision", "pretrain the small SigLIP and DINOv2 encoders on sim renders (data/models/siglip, dino)")
def build_vision_target(only: list[str] | None = None) -> list[dict]:
    """Pretrain both small encoders (or those in ``only``: "siglip", "dino").

    Introduced in lesson 04. See :func:`vla_lessons.vision.build.build_vision`.
    """
    from vla_lessons.vision.build import build_vision

    return build_vision(only=only)


@target("vlm", "pretrain the mini Prismatic VLM on scene captions and questions (data/models/vlm/)")
def build_vlm_target(only: list[str] | None = None) -> list[dict]:
    """Pretrain the course's VLM and save it to ``data/models/vlm/``.

    Introduced in lesson 05. See :func:`vla_lessons.model.train_vlm.build_course_vlm`; it uses
    lesson 04's encoders when the ``vision`` target has built them (random towers otherwise).
    """
    if only is not None and "vlm" not in only:  # ``--only`` named other targets' artifacts
        return []
    from vla_lessons.model.train_vlm import build_course_vlm

    return [build_course_vlm()]


@target("vla", "fine-tune the VLM into the course's VLA and roll it out in the sim (data/models/vla/)")
def build_vla_target(only: list[str] | None = None) -> list[dict]:
    """Fine-tune, evaluate in closed loop and save the course's VLA.

    Introduced in lesson 06. See :func:`vla_lessons.train.build_vla.build_course_vla`; it records
    ``tabletop_train`` first when it is missing.
    """
    if only is not None and "vla" not in only:
        return []
    from vla_lessons.train.build_vla import build_course_vla

    summary = build_course_vla()
    return [{k: v for k, v in summary.items() if k not in ("history",)}]


@target("cofinetune", "co-fine-tuning: action accuracy and VQA retention at several ratios (data/results/)")
def build_cofinetune_target(only: list[str] | None = None) -> list[dict]:
    """RT-2's co-fine-tuning table for lesson 06. See :func:`vla_lessons.train.cofinetune.build_cofinetune`."""
    if only is not None and "cofinetune" not in only:
        return []
    from vla_lessons.train.cofinetune import build_cofinetune

    summary = build_cofinetune()
    return [{"name": "cofinetune", "seconds": summary["seconds"]["total"]}]


@target("privileged", "the privileged ceiling: an MLP handed the ground truth, per action head (data/results/)")
def build_privileged_target(only: list[str] | None = None) -> list[dict]:
    """Lesson 06's ceiling with perfect perception. See :func:`vla_lessons.train.privileged.build_privileged`."""
    if only is not None and "privileged" not in only:
        return []
    from vla_lessons.train.privileged import build_privileged

    summary = build_privileged()
    return [{"name": "privileged", "seconds": summary["seconds"]}]


@target("strategies", "the OpenVLA fine-tuning strategies on the mini VLA (data/results/)")
def build_strategies_target(only: list[str] | None = None) -> list[dict]:
    """The strategy table of lesson 07. See :func:`vla_lessons.train.strategies.build_strategies`."""
    if only is not None and "strategies" not in only:
        return []
    from vla_lessons.train.strategies import build_strategies

    build_strategies()
    return [{"name": "strategies"}]


def _summary_line(summary: dict) -> str:
    short = {k: v for k, v in summary.items() if not isinstance(v, dict)}
    if isinstance(short.get("seconds"), float):
        short["seconds"] = round(short["seconds"], 1)
    return json.dumps(short)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, build the targets asked for, print one summary line per artifact.

    Introduced in lesson 01.
    """
    parser = argparse.ArgumentParser(prog="python -m vla_lessons.build", description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="*", help=f"targets to build: {', '.join(TARGETS)} or all")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="build only this artifact of the target (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    args = parser.parse_args(argv)
    if args.list or not args.targets:
        for t in TARGETS.values():
            print(f"{t.name:<10} {t.help}")
        return 0
    names = list(TARGETS) if args.targets == ["all"] else args.targets
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {unknown}; choose from {list(TARGETS)} or all")
    for name in names:
        for summary in TARGETS[name].build(args.only):
            print(f"[{name}] built {_summary_line(summary)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
