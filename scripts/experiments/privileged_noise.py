"""README experiment: how exact must the VLA's grounding be? The privileged ceiling, with its inputs spoiled.

Trains the privileged MLP of lesson 06 (OpenVLA-OFT's read-out: L1, chunks of 4) on the VLA's
budget -- 3,000 steps of batch 32, the steps and batch of one VLA stage -- and rolls it out on the
build's 50 evaluation seeds per family, with: every feature; no yaw; and Gaussian noise of 1 and
2 cm on the object's and receptacle's positions (one draw per training episode, a fresh draw
every time the policy is asked in closed loop). Also 1,000 steps, for the budget's sake. About
8 minutes on one thread. Example::

    VLA_FULL=1 python scripts/experiments/privileged_noise.py
"""

import argparse
import time

import numpy as np

from vla_lessons.data.recipes import course_recipes
from vla_lessons.deploy.evaluate import evaluate_policy, success_table
from vla_lessons.train.build_vla import split_episodes
from vla_lessons.train.finetune import load_action_frames
from vla_lessons.train.privileged import PrivilegedConfig, episode_features, privileged_policy, train_privileged

POSITIONS, YAW = slice(0, 4), slice(4, 6)  # privileged_features: object xy, receptacle xy, sin/cos of 4 yaw


def spoil(features, rng, noise: float, drop_yaw: bool) -> np.ndarray:
    """Features (B, 16) with the yaw zeroed and ``noise`` metres of noise on the positions that exist."""
    out = np.array(features, dtype=np.float64)
    if drop_yaw:
        out[:, YAW] = 0.0
    if noise:
        present = np.abs(out[:, POSITIONS]).reshape(len(out), 2, 2).sum(-1, keepdims=True) > 0
        out[:, POSITIONS] += (rng.normal(0.0, noise, (len(out), 2, 2)) * present).reshape(len(out), 4)
    return out.astype(np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("episodes", nargs="?", type=int, default=50, help="closed-loop episodes per family")
    args = parser.parse_args()
    recipe = course_recipes(True)["tabletop_train"]
    frames, _ = split_episodes(load_action_frames(recipe.root, wrist=False))
    features = episode_features(recipe.root)
    rows = [("every feature", 3000, 0.0, False), ("every feature, 1,000 steps", 1000, 0.0, False),
            ("no yaw", 3000, 0.0, True), ("positions +- 1 cm", 3000, 0.01, False),
            ("positions +- 2 cm", 3000, 0.02, False), ("no yaw, positions +- 1 cm", 3000, 0.01, True)]
    for name, steps, noise, drop_yaw in rows:
        t0 = time.perf_counter()
        config = PrivilegedConfig("regression", loss="l1", chunk_size=4, steps=steps, batch_size=32)
        model, history = train_privileged(frames, spoil(features, np.random.default_rng(0), noise, drop_yaw), config)
        inner, rng = privileged_policy(model), np.random.default_rng(1)

        def policy(images, instructions, states=None, *, privileged=None):
            return inner(images, instructions, states, privileged=spoil(privileged, rng, noise, drop_yaw))

        policy.chunk_size, policy.needs_state, policy.needs_privileged = model.chunk_size, True, True
        table = success_table(evaluate_policy(policy, episodes=args.episodes))
        print(f"{name:<28} final L1 {history[-1]['loss']:.4f}  "
              + "  ".join(f"{f} {v['success']}" for f, v in table.items())
              + f"  ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
