"""README experiment: the build's third stage with action chunks.

Resumes ``build_course_vla`` after the two image stages (a VLA saved at their end, e.g. by a
build with ``checkpoint_dir``) and runs the third stage -- the robot-state token joins -- with
the VLA answering the next ``--chunk`` actions (7 tokens each, or with ``--head l1`` OpenVLA-OFT's
continuous head), then the build's closed-loop
evaluation, which executes each chunk before asking again; ``--loc-batch`` adds the localisation
objective of ``localise_stage.py``. About 70 minutes on one thread (90 with localisation).
Example::

    python scripts/experiments/chunk_stage.py build/vla_stage2 build/vla_chunk4 --chunk 4
"""

import argparse
import json
from dataclasses import replace

from vla_lessons.train.build_vla import COURSE_FINETUNE, LocaliseConfig, build_course_vla


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stage2", help="the VLA saved after the build's first two stages")
    parser.add_argument("out", help="where to save the VLA and its metrics.json")
    parser.add_argument("--chunk", type=int, default=4, help="actions per answer")
    parser.add_argument("--steps", type=int, default=3000, help="steps of the third stage")
    parser.add_argument("--label-sigma", type=float, default=0.0, help="soft bin targets, in bins (0: one-hot)")
    parser.add_argument("--head", choices=("tokens", "l1"), default="tokens",
                        help="action tokens (OpenVLA) or the continuous L1 head with parallel decoding (OpenVLA-OFT)")
    parser.add_argument("--loc-batch", type=int, default=0,
                        help="where-questions added to each action step (0: no localisation objective)")
    parser.add_argument("--warmup", type=int, default=1500, help="localisation-only steps first (with --loc-batch)")
    parser.add_argument("--shift", type=int, default=4, help="random image shift in training, pixels (the build's: 4)")
    args = parser.parse_args()
    stages = list(COURSE_FINETUNE["full"])
    stages[2] = replace(stages[2], steps=args.steps, label_sigma=args.label_sigma, loc_batch=args.loc_batch,
                        shift=args.shift)
    localise = LocaliseConfig(from_stage=2, warmup_steps=args.warmup) if args.loc_batch else None
    summary = build_course_vla(args.out, full=True, stages=tuple(stages), start_from=(2, args.stage2),
                               chunk=(2, args.chunk), action_head=args.head, localise=localise)
    print(json.dumps(summary["heldout_teacher_forced"], indent=1))
    print(json.dumps(summary["closed_loop"]["vla"], indent=1))


if __name__ == "__main__":
    main()
