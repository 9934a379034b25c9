"""README experiment: the build's third stage with the localisation objective.

Resumes ``build_course_vla`` after the two image stages (a VLA saved at their end, e.g. by a
build with ``checkpoint_dir``) and runs the third stage with learned 2-D patch positions, a
localisation warm-up of ``--warmup`` steps, ``--loc-batch`` where-questions in every action step
and soft bin targets (``--label-sigma``), then the build's closed-loop evaluation. About 70-90
minutes on one thread. Example::

    python scripts/experiments/localise_stage.py build/vla_stage2 build/vla_loc --warmup 1500
"""

import argparse
import json
from dataclasses import replace

from vla_lessons.train.build_vla import COURSE_FINETUNE, LocaliseConfig, build_course_vla


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stage2", help="the VLA saved after the build's first two stages")
    parser.add_argument("out", help="where to save the VLA and its metrics.json")
    parser.add_argument("--warmup", type=int, default=1500, help="localisation-only steps before the action steps")
    parser.add_argument("--loc-batch", type=int, default=16, help="where-questions added to each action step")
    parser.add_argument("--label-sigma", type=float, default=3.0, help="soft bin targets, in bins (0: one-hot)")
    args = parser.parse_args()
    stages = list(COURSE_FINETUNE["full"])
    stages[2] = replace(stages[2], loc_batch=args.loc_batch, label_sigma=args.label_sigma)
    summary = build_course_vla(args.out, full=True, stages=tuple(stages), start_from=(2, args.stage2),
                               localise=LocaliseConfig(from_stage=2, warmup_steps=args.warmup))
    print(json.dumps({k: summary[k] for k in ("heldout_teacher_forced", "localise")}, indent=1))
    print(json.dumps(summary["closed_loop"]["vla"], indent=1))


if __name__ == "__main__":
    main()
