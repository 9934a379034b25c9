"""README experiment: the build's third stage with grounding -- the VLA says where, then acts.

Resumes ``build_course_vla`` after the two image stages (a VLA saved at their end) and runs the
third stage with the robot-state token, OpenVLA-OFT's continuous head (chunks of ``--chunk``) and
grounding (:mod:`vla_lessons.model.grounding`): ``--ground-batch`` first-steps added to each
batch, the where token fed the truth plus ``--noise`` metres of noise. ``--warmup N`` first trains
the towers on the localisation objective for N steps (:mod:`vla_lessons.train.localise`). Then the
build's closed-loop evaluation: the VLA grounds once per episode, from its first image, and on the
same episodes it is handed the simulator's true grounding instead, which separates grounding from acting.
About 80 minutes on one thread. Example::

    python scripts/experiments/ground_stage.py build/vla_stage2 build/vla_ground
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
    parser.add_argument("--ground-batch", type=int, default=8, help="first steps of episodes added to each batch")
    parser.add_argument("--noise", type=float, default=0.01, help="noise on the true grounding in training (m)")
    parser.add_argument("--warmup", type=int, default=0, help="localisation-only steps first (0: none)")
    parser.add_argument("--shift", type=int, default=4, help="random image shift in training, pixels (the build's: 4)")
    args = parser.parse_args()
    stages = list(COURSE_FINETUNE["full"])
    stages[2] = replace(stages[2], steps=args.steps, ground_batch=args.ground_batch, ground_noise=args.noise,
                        shift=args.shift)
    localise = LocaliseConfig(from_stage=2, warmup_steps=args.warmup) if args.warmup else None
    summary = build_course_vla(args.out, full=True, stages=tuple(stages), start_from=(2, args.stage2),
                               chunk=(2, args.chunk), action_head="l1", ground_from=2, localise=localise)
    print(json.dumps(summary["heldout_teacher_forced"], indent=1))
    print(json.dumps(summary["closed_loop"]["vla"], indent=1))
    print("with the true grounding:", json.dumps(summary["closed_loop"]["vla_true_grounding"], indent=1))


if __name__ == "__main__":
    main()
