"""Benchmark of the simulated tabletop (`vla_lessons.sim`): speed, and the expert's success.

Plain script, one run prints one table:

    .venv/bin/python benchmarks/bench_sim.py                     # speed + 200 train episodes/family
    .venv/bin/python benchmarks/bench_sim.py --episodes 20       # quicker
    .venv/bin/python benchmarks/bench_sim.py --splits train,heldout,visual,motion,physical,language,semantic

Speed rows: physics steps/s (``mj_step`` alone), camera renders/s and two-camera observations/s
at the image size, ``reset`` time, expert episodes/s with and without images, and control
steps/s of a closed loop with images. Timings on a shared 2-core machine vary up to 2x.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from vla_lessons.sim import GENERALIZATION_AXES, SceneConfig, ScriptedExpert, TabletopEnv
from vla_lessons.sim.config import SUBSTEPS
from vla_lessons.sim.env import CAMERAS

FAMILIES = ("pick", "place", "push")


def _timed(fn, repeat: int) -> float:
    """Seconds per call of ``fn`` over ``repeat`` calls."""
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def run_episode(env, expert, seed: int, family: str) -> tuple:
    """One expert episode; returns (success, control steps)."""
    obs, _ = env.reset(seed=seed, options={"task": family})
    done, info, terminated = False, {}, False
    while not done:
        obs, _, terminated, truncated, info = env.step(expert.act(obs))
        done = terminated or truncated
    return bool(terminated), info["step"]


def speed_rows(image_size: int, n_episodes: int) -> list:
    import mujoco

    rows = []
    env = TabletopEnv(SceneConfig(image_size=image_size))
    env.reset(seed=0, options={"task": "pick"})
    n = 5000
    dt = _timed(lambda: mujoco.mj_step(env.model, env.data), n)
    rows.append(("physics steps/s (mj_step, 1 scene)", f"{1 / dt:,.0f}"))
    rows.append((f"  -> control steps/s, physics only ({SUBSTEPS} substeps)", f"{1 / (dt * SUBSTEPS):,.0f}"))
    renderer = env._renderer
    dt = _timed(lambda: renderer.render(env.data, CAMERAS["image"]), 300)
    rows.append((f"camera renders/s at {image_size} px", f"{1 / dt:,.0f}"))
    dt = _timed(lambda: [renderer.render(env.data, c) for c in CAMERAS.values()], 200)
    rows.append((f"observations/s, two cameras at {image_size} px", f"{1 / dt:,.0f}"))
    seeds = iter(range(10_000))
    dt = _timed(lambda: env.reset(seed=next(seeds)), 30)
    rows.append(("reset with cameras (compile + layout), ms", f"{1e3 * dt:.1f}"))

    expert = ScriptedExpert(env)
    steps = 0
    start = time.perf_counter()
    for i in range(n_episodes):
        steps += run_episode(env, expert, i, FAMILIES[i % 3])[1]
    elapsed = time.perf_counter() - start
    rows.append((f"expert episodes/s with images ({image_size} px)", f"{n_episodes / elapsed:.2f}"))
    rows.append(("closed-loop control steps/s with images", f"{steps / elapsed:.0f}"))
    env.close()

    fast = TabletopEnv(SceneConfig(render_images=False))
    dt = _timed(lambda: fast.reset(seed=next(seeds)), 30)
    rows.append(("reset without cameras, ms", f"{1e3 * dt:.1f}"))
    expert = ScriptedExpert(fast)
    steps = 0
    start = time.perf_counter()
    for i in range(n_episodes):
        steps += run_episode(fast, expert, i, FAMILIES[i % 3])[1]
    elapsed = time.perf_counter() - start
    rows.append(("expert episodes/s without images", f"{n_episodes / elapsed:.2f}"))
    rows.append(("control steps/s without images", f"{steps / elapsed:.0f}"))
    fast.close()
    return rows


def success_rows(splits, episodes: int) -> list:
    rows = []
    for split in splits:
        if split == "train":
            config = SceneConfig(render_images=False)
        elif split == "heldout":
            config = SceneConfig(render_images=False, split="heldout")
        else:
            config = SceneConfig(render_images=False, heldout=(split,))
        env = TabletopEnv(config)
        expert = ScriptedExpert(env)
        for family in FAMILIES:
            results = [run_episode(env, expert, seed, family) for seed in range(episodes)]
            wins = sum(r[0] for r in results)
            mean_len = np.mean([r[1] for r in results])
            rows.append((f"expert success {split:>9} {family:<5}",
                         f"{wins}/{episodes} = {100 * wins / episodes:.1f}%  "
                         f"(mean length {mean_len:.1f} steps)"))
        env.close()
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--speed-episodes", type=int, default=30, help="expert episodes timed per setting")
    parser.add_argument("--episodes", type=int, default=200, help="expert episodes per family and split")
    parser.add_argument("--splits", default="train",
                        help=f"comma-separated: train, heldout, or axes {GENERALIZATION_AXES}")
    args = parser.parse_args()
    splits = [s for s in args.splits.split(",") if s]
    for s in splits:
        if s not in ("train", "heldout", *GENERALIZATION_AXES):
            parser.error(f"unknown split {s!r}")

    rows = speed_rows(args.image_size, args.speed_episodes)
    if args.episodes > 0:
        rows += success_rows(splits, args.episodes)
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  value")
    print("-" * (width + 40))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
