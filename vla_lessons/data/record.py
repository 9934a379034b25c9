"""Record episodes of the scripted expert in the simulator, keeping the successful ones.

Introduced in lesson 01.

The recorder only needs the Gymnasium-style interface of ``vla_lessons.sim.TabletopEnv``:
``env.reset(seed=s, options={"task": family}) -> (obs, info)`` and
``env.step(action) -> (obs, reward, terminated, truncated, info)``, with ``obs`` holding
``"image"``, ``"wrist_image"`` (``(H, W, 3)`` ``uint8``), ``"state"`` ``(8,)``, ``"joints"``
``(6,)`` and ``"instruction"``, and ``info["success"]``. Seeds follow a fixed rule
(:func:`episode_seed`), so a recording is the same on every machine and every run.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import numpy as np

from vla_lessons.data.episode import Episode

#: Seeds of one family's attempts are ``base_seed + FAMILY_SEED_STRIDE * family_index + attempt``.
FAMILY_SEED_STRIDE = 100_000
#: Per-episode counters of the env's last ``info`` copied into ``meta/episodes.jsonl``.
RECORDED_INFO_KEYS = ("n_clipped", "n_workspace_clipped")
#: Second seed word of the DART noise, so it is independent of the env's draws for the same seed.
DART_STREAM = 0xDA27
#: A recording gives up when a family needs more than this many attempts per kept episode.
MAX_ATTEMPTS_PER_EPISODE = 5


def episode_seed(base_seed: int, family_index: int, attempt: int) -> int:
    """The simulator seed of attempt ``attempt`` of the family at ``family_index``.

    Introduced in lesson 01.
    """
    if attempt >= FAMILY_SEED_STRIDE or min(base_seed, family_index, attempt) < 0:
        raise ValueError(f"need base_seed, family_index >= 0 and 0 <= attempt < {FAMILY_SEED_STRIDE}, "
                         f"got {base_seed}, {family_index}, {attempt}")
    return base_seed + FAMILY_SEED_STRIDE * family_index + attempt


def record_episode(env, expert, *, seed: int, family: str, max_steps: int = 300, perturb: float = 0.0) -> Episode:
    """Run ``expert`` in ``env`` from ``reset(seed=seed)`` until the episode ends; return it.

    Introduced in lesson 01.

    ``perturb`` > 0 records the way DART does (Laskey et al. 2017): the env executes the expert's
    action plus Gaussian noise of that std (m) on the position deltas (dx, dy, dz), drawn from
    ``seed``, while the dataset keeps the expert's *clean* action as the label. The states then
    leave the expert's own path and every label says how to get back, so the robot state no
    longer tells a policy where the expert was heading (the "copycat" shortcut of lesson 06).

    One row per step: the observation, then the action the expert took from it, the reward and
    ``info["success"]`` after the step. The episode ends when the env says ``terminated`` or
    ``truncated``, or after ``max_steps`` steps. ``episode.success`` is the last step's success.
    ``metadata`` holds the env's last ``info["n_clipped"]`` and ``info["n_workspace_clipped"]``
    (clipped action components over the episode) when it reports them.
    """
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if isinstance(perturb, bool) or not isinstance(perturb, numbers.Real) or not 0.0 <= perturb <= 0.03:
        raise ValueError(f"perturb must be a number in [0, 0.03] m, got {perturb!r}")
    rng = np.random.default_rng([seed, DART_STREAM])  # not the env's own stream for this seed
    obs, info = env.reset(seed=seed, options={"task": family})
    instruction = obs["instruction"]
    steps = {k: [] for k in ("images", "wrist_images", "states", "joints", "actions", "rewards", "successes")}
    for _ in range(max_steps):
        action = np.asarray(expert.act(obs), dtype=np.float32)
        steps["images"].append(obs["image"])
        steps["wrist_images"].append(obs["wrist_image"])
        steps["states"].append(obs["state"])
        steps["joints"].append(obs["joints"])
        steps["actions"].append(action)
        executed = action
        if perturb > 0:
            executed = action.copy()
            executed[:3] += rng.normal(0.0, perturb, 3).astype(np.float32)
            executed = np.clip(executed, env.action_space.low, env.action_space.high).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(executed)
        steps["rewards"].append(float(reward))
        steps["successes"].append(bool(info["success"]))
        if terminated or truncated:
            break
    metadata = {k: int(info[k]) for k in RECORDED_INFO_KEYS if k in info}
    return Episode(instruction=instruction, family=family, seed=seed, metadata=metadata,
                   **{k: v for k, v in steps.items() if k not in ("rewards", "successes")},
                   rewards=np.asarray(steps["rewards"], dtype=np.float32),
                   successes=np.asarray(steps["successes"], dtype=bool))


class ExpertRecording:
    """Expert episodes of several task families, recorded one at a time as you iterate.

    Introduced in lesson 01.

    Args:
        env: a ``TabletopEnv`` (or anything with its interface).
        make_expert: ``make_expert(env)`` returns a fresh expert for each episode
            (e.g. ``vla_lessons.sim.ScriptedExpert``).
        families: task families in order, e.g. ``("pick", "place", "push")``.
        episodes_per_family: episodes to keep per family.
        base_seed: first seed (see :func:`episode_seed`).
        max_steps: cap on the steps of one episode.
        keep_failed: keep failed episodes too (they still count as attempts).
        perturb: DART noise (m) on the executed position deltas (see :func:`record_episode`).

    Iterating yields the kept episodes round-robin over the families (pick, place, push, pick,
    ...), so any prefix of a dataset is balanced; failed attempts are skipped (the next seed of
    the family is tried). ``summary`` (seeds, attempts and discarded episodes per family, for
    ``info.json["recording"]``) is complete once the iteration ends. Raises ``RuntimeError``
    when the expert fails too often to fill a family.
    """

    def __init__(self, env, make_expert: Callable, *, families, episodes_per_family: int,
                 base_seed: int = 0, max_steps: int = 300, keep_failed: bool = False, perturb: float = 0.0):
        families = list(families)
        if not families or len(set(families)) != len(families):
            raise ValueError(f"families must be a non-empty list without repeats, got {families!r}")
        if episodes_per_family < 1:
            raise ValueError(f"episodes_per_family must be >= 1, got {episodes_per_family}")
        self.env, self.make_expert, self.families = env, make_expert, families
        self.episodes_per_family, self.base_seed = episodes_per_family, base_seed
        self.max_steps, self.keep_failed, self.perturb = max_steps, keep_failed, perturb
        self.attempted = {f: 0 for f in families}
        self.kept = {f: 0 for f in families}

    def _next_episode(self, f: int, family: str) -> Episode:
        """Try the family's next seeds until an episode is kept."""
        while self.attempted[family] < MAX_ATTEMPTS_PER_EPISODE * self.episodes_per_family:
            seed = episode_seed(self.base_seed, f, self.attempted[family])
            episode = record_episode(self.env, self.make_expert(self.env), seed=seed, family=family,
                                     max_steps=self.max_steps, perturb=self.perturb)
            self.attempted[family] += 1
            if episode.success or self.keep_failed:
                self.kept[family] += 1
                return episode
        raise RuntimeError(f"the expert succeeded in only {self.kept[family]} of {self.attempted[family]} "
                           f"{family!r} episodes: check the simulator and the expert")

    def __iter__(self):
        for _ in range(self.episodes_per_family):
            for f, family in enumerate(self.families):
                yield self._next_episode(f, family)

    @property
    def summary(self) -> dict:
        """JSON-able facts about the recording so far."""
        discarded = {f: self.attempted[f] - self.kept[f] for f in self.families}
        return {
            "policy": getattr(self.make_expert, "__name__", type(self.make_expert).__name__),
            "families": self.families,
            "episodes_per_family": self.episodes_per_family,
            "base_seed": self.base_seed,
            "seed_rule": f"seed = base_seed + {FAMILY_SEED_STRIDE} * family_index + attempt",
            "max_steps": self.max_steps,
            "kept_only_successful": not self.keep_failed,
            "perturb": self.perturb,
            "attempted": dict(self.attempted),
            "discarded": discarded,
            "total_attempted": sum(self.attempted.values()),
            "total_discarded": sum(discarded.values()),
        }


def record_expert_episodes(env, make_expert: Callable, **options) -> tuple[list[Episode], dict]:
    """Record a whole :class:`ExpertRecording` in memory: returns ``(episodes, summary)``.

    Introduced in lesson 01. ``options`` are those of :class:`ExpertRecording`.
    """
    recording = ExpertRecording(env, make_expert, **options)
    episodes = list(recording)
    return episodes, recording.summary
