"""Closed-loop evaluation: run a policy in the simulator from fixed seeds and count successes.

Introduced in lesson 06 (lesson 10 adds error bars and the generalization axes).

A *policy* here is any function ``policy(images, instructions) -> actions``: uint8 camera images
(B, H, W, 3) and B instruction strings in, float (B, 7) actions out -- a batch, because a small
VLA answers 8 images at once for little more than the price of one. :func:`rollout_batch` runs
B environments in lockstep (each from its own seed), :func:`evaluate_policy` covers the task
families with ``episodes`` seeded episodes each. Seeds start at
:data:`~vla_lessons.data.recipes.EVAL_SEED_START`, which no training dataset uses, and episode
``i`` of a family always gets the same seed: two policies are compared on the very same scenes.
A policy that also reads the robot's state (a VLA with proprioception) says so with the
attribute ``policy.needs_state = True`` and is called ``policy(images, instructions, states)``
with the raw states (B, 8) of ``obs["state"]``; one that also reads the wrist camera says
``policy.needs_wrist = True`` and gets ``wrist_images=`` (B, H, W, 3) of ``obs["wrist_image"]``.
A policy that predicts *action chunks* says ``policy.chunk_size = K`` and returns (B, K, 7): each
episode executes its chunk's K actions open loop and only then asks the policy again (action
chunking, as ACT, pi0 and OpenVLA-OFT do).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from vla_lessons.data.recipes import EVAL_SEED_START, FAMILIES

Policy = Callable[[np.ndarray, list], np.ndarray]


@dataclass
class EpisodeResult:
    """One closed-loop episode: its family, seed, outcome and length (and frames if kept).

    Introduced in lesson 06. ``frames`` is uint8 (T, H, W, 3) when ``keep_frames`` was set.
    What went wrong, from the simulator's privileged state after every step: ``reach_cm``, the
    closest the gripper's tool point came to the task's object in the table plane (cm);
    ``other_cm``, the closest it came to any other object (inf when there is none); ``grasped``,
    whether both fingers touched the task's object at some step. :func:`failure_table` sums them.
    """

    family: str
    seed: int
    instruction: str
    success: bool
    steps: int
    frames: np.ndarray | None = field(default=None, repr=False)
    reach_cm: float = float("inf")
    other_cm: float = float("inf")
    grasped: bool = False


def _track(env, result: EpisodeResult) -> None:
    """Update ``result``'s reach and grasp figures from ``env``'s state now."""
    tool = env.gripper_pose().position[:2]
    for obj in env.scene_objects():
        if obj.kind != "object":
            continue
        d = 100.0 * float(np.linalg.norm(obj.position[:2] - tool))
        if obj.is_target:
            result.reach_cm = min(result.reach_cm, d)
            result.grasped = result.grasped or obj.held
        else:
            result.other_cm = min(result.other_cm, d)


def _check_actions(actions, batch: int, chunk: int = 1) -> np.ndarray:
    """The policy's answer as float64 (batch, chunk, 7); a wrong shape or NaN is a ValueError."""
    a = np.asarray(actions, dtype=np.float64)
    want = (batch, 7) if chunk == 1 else (batch, chunk, 7)
    if a.shape != want:
        raise ValueError(f"the policy must return actions of shape {want}"
                         + (f" (chunk_size {chunk})" if chunk > 1 else "") + f", got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("the policy returned NaN or inf actions")
    return a.reshape(batch, chunk, 7)


def _chunk_size(policy) -> int:
    chunk = getattr(policy, "chunk_size", 1)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"policy.chunk_size must be a positive int, got {chunk!r}")
    return chunk


def rollout_batch(policy: Policy, families: Sequence[str], seeds: Sequence[int], *, image_size: int = 96,
                  split: str = "train", keep_frames: bool = False, threads: int | None = 1) -> list[EpisodeResult]:
    """Run ``len(seeds)`` episodes side by side, one env each, until every one has ended.

    Introduced in lesson 06. ``families[i]`` and ``seeds[i]`` set episode ``i``; the policy sees the
    scene camera at ``image_size`` px (the training data's size). A policy whose ``needs_state``,
    ``needs_wrist`` or ``needs_privileged`` is set also gets the robot states, ``wrist_images=`` or
    ``privileged=`` (:func:`~vla_lessons.train.privileged.privileged_features`, read at reset); one
    whose ``needs_grounding`` is set is asked ``policy.ground(images, instructions[, states])`` once, at
    reset, and gets the answer back as ``grounding=`` at every step (a grounding VLA, lesson 06). A
    policy with ``chunk_size = K > 1`` returns (B, K, 7) and is asked again only once an episode
    has executed its chunk. Torch runs on ``threads`` threads during the rollout (1: fastest for
    small batches on a shared machine).
    """
    from vla_lessons.sim import TabletopEnv

    if len(families) != len(seeds) or not len(seeds):
        raise ValueError(f"need one family per seed, got {len(families)} families and {len(seeds)} seeds")
    chunk = _chunk_size(policy)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    envs = [TabletopEnv(image_size=image_size, split=split) for _ in seeds]
    try:
        obs = [env.reset(seed=int(s), options={"task": f})[0] for env, f, s in zip(envs, families, seeds)]
        results = [EpisodeResult(f, int(s), o["instruction"], False, 0) for f, s, o in zip(families, seeds, obs)]
        privileged = None
        if getattr(policy, "needs_privileged", False):  # lesson 06's privileged ceiling: ground truth at reset
            from vla_lessons.train.privileged import privileged_features

            privileged = [privileged_features(env) for env in envs]
        grounding = None
        if getattr(policy, "needs_grounding", False):  # a grounding VLA says where, once, from the first image
            first = [np.stack([o["image"] for o in obs]), [o["instruction"] for o in obs]]
            if getattr(policy, "needs_state", False):
                first.append(np.stack([o["state"] for o in obs]))
            wrist = ({"wrist_images": np.stack([o["wrist_image"] for o in obs])}
                     if getattr(policy, "needs_wrist", False) else {})
            grounding = np.asarray(policy.ground(*first, **wrist))
            if grounding.ndim != 2 or len(grounding) != len(obs) or not np.isfinite(grounding).all():
                raise ValueError(f"policy.ground must return finite (B, G) groundings for B = {len(obs)} episodes, "
                                 f"got shape {grounding.shape}")
        frames = [[o["image"]] for o in obs] if keep_frames else None
        plans = [[] for _ in envs]  # each episode's actions still to execute
        active = list(range(len(envs)))
        while active:
            ask = [i for i in active if not plans[i]]
            if ask:
                inputs = [np.stack([obs[i]["image"] for i in ask]), [obs[i]["instruction"] for i in ask]]
                if getattr(policy, "needs_state", False):
                    inputs.append(np.stack([obs[i]["state"] for i in ask]))
                extra = {}
                if getattr(policy, "needs_wrist", False):
                    extra["wrist_images"] = np.stack([obs[i]["wrist_image"] for i in ask])
                if privileged is not None:
                    extra["privileged"] = np.stack([privileged[i] for i in ask])
                if grounding is not None:
                    extra["grounding"] = grounding[ask]
                for i, planned in zip(ask, _check_actions(policy(*inputs, **extra), len(ask), chunk)):
                    plans[i] = list(planned)
            still = []
            for i in active:
                a = plans[i].pop(0)
                obs[i], _, terminated, truncated, info = envs[i].step(a.astype(np.float32))
                results[i].steps += 1
                _track(envs[i], results[i])
                if keep_frames:
                    frames[i].append(obs[i]["image"])
                if terminated or truncated:
                    results[i].success = bool(info["success"])
                else:
                    still.append(i)
            active = still
    finally:
        for env in envs:
            env.close()
        torch.set_num_threads(before)
    if keep_frames:
        for r, f in zip(results, frames):
            r.frames = np.stack(f)
    return results


def evaluate_policy(policy: Policy, *, families: Sequence[str] = FAMILIES, episodes: int = 50,
                    seed_start: int = EVAL_SEED_START, batch: int = 10, image_size: int = 96,
                    split: str = "train", progress: bool = False) -> list[EpisodeResult]:
    """``episodes`` seeded closed-loop episodes per family; the results in family order.

    Introduced in lesson 06. Episode ``i`` of every family uses seed ``seed_start + i``.
    """
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown task families {unknown}; choose from {FAMILIES}")
    if episodes < 1 or batch < 1:
        raise ValueError(f"episodes and batch must be >= 1, got {episodes} and {batch}")
    jobs = [(f, seed_start + i) for f in families for i in range(episodes)]
    results, start = [], time.perf_counter()
    for k in range(0, len(jobs), batch):
        chunk = jobs[k:k + batch]
        results += rollout_batch(policy, [f for f, _ in chunk], [s for _, s in chunk],
                                 image_size=image_size, split=split)
        if progress:
            done = {f: [r.success for r in results if r.family == f] for f in families}
            print(f"  {len(results)}/{len(jobs)} episodes, {time.perf_counter() - start:.0f} s: "
                  + ", ".join(f"{f} {sum(v)}/{len(v)}" for f, v in done.items() if v), flush=True)
    return results


def success_table(results: Sequence[EpisodeResult]) -> dict[str, dict]:
    """``{family: {"success": k, "episodes": n, "rate": k/n, "mean_steps": ...}}`` plus ``"all"``.

    Introduced in lesson 06.
    """
    out = {}
    for name in [*dict.fromkeys(r.family for r in results), "all"]:
        rows = [r for r in results if name in ("all", r.family)]
        k = sum(r.success for r in rows)
        out[name] = {"success": k, "episodes": len(rows), "rate": k / len(rows),
                     "mean_steps": float(np.mean([r.steps for r in rows]))}
    return out


def failure_table(results: Sequence[EpisodeResult], near_cm: float = 2.0) -> dict[str, dict]:
    """Where closed-loop episodes fail: ``{family: {...}}`` plus ``"all"``, shares of episodes.

    Introduced in lesson 06. ``reached``: the gripper came within ``near_cm`` of the task's
    object (in the table plane); ``nearer_other``: it came closer to another object than to the
    task's (a sign of the wrong object); ``grasped``: both fingers touched the task's object;
    ``success``: the episode succeeded. Each is a share of the family's episodes.
    """
    if not results:
        raise ValueError("failure_table needs at least one EpisodeResult")
    if not near_cm > 0:
        raise ValueError(f"near_cm must be a positive distance in cm, got {near_cm!r}")
    out = {}
    for name in [*dict.fromkeys(r.family for r in results), "all"]:
        rows = [r for r in results if name in ("all", r.family)]
        out[name] = {"episodes": len(rows),
                     "reached": float(np.mean([r.reach_cm < near_cm for r in rows])),
                     "nearer_other": float(np.mean([r.other_cm < r.reach_cm for r in rows])),
                     "grasped": float(np.mean([r.grasped for r in rows])),
                     "success": float(np.mean([r.success for r in rows]))}
    return out


def evaluate_expert(*, families: Sequence[str] = FAMILIES, episodes: int = 50,
                    seed_start: int = EVAL_SEED_START, image_size: int = 96) -> list[EpisodeResult]:
    """The scripted expert on the same seeds as :func:`evaluate_policy` (its privileged ceiling).

    Introduced in lesson 06.
    """
    from vla_lessons.sim import ScriptedExpert, TabletopEnv

    results = []
    env = TabletopEnv(image_size=image_size, render_images=False)
    try:
        expert = ScriptedExpert(env)
        for f in families:
            for i in range(episodes):
                obs, _ = env.reset(seed=seed_start + i, options={"task": f})
                result, done = EpisodeResult(f, seed_start + i, obs["instruction"], False, 0), False
                while not done:
                    obs, _, terminated, truncated, info = env.step(expert.act(obs))
                    result.steps += 1
                    _track(env, result)
                    done = terminated or truncated
                result.success = bool(info["success"])
                results.append(result)
    finally:
        env.close()
    return results
