"""The course's datasets: what each holds, where it lives, and how to record it from seeds.

Introduced in lesson 01.

* ``tabletop_lessons`` — small, committed in ``data/datasets/`` for the notebooks.
* ``tabletop_train`` — bigger, for training the mini VLAs; written under ``build/datasets/``
  (git-ignored), its size set by the fast/full switch (``VLA_FULL``).

Both are made by ``python -m vla_lessons.build data``. Their seeds do not overlap (see
:func:`~vla_lessons.data.record.episode_seed`); evaluation rollouts use seeds from
``EVAL_SEED_START`` on, which no dataset uses.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vla_lessons import env
from vla_lessons.data.layout import DatasetNotFoundError
from vla_lessons.data.record import ExpertRecording
from vla_lessons.data.writer import DatasetWriter

#: The task families of the course's simulator, in dataset order.
FAMILIES = ("pick", "place", "push")
#: First seed reserved for evaluation rollouts (lesson 10): no dataset records from it on.
EVAL_SEED_START = 10_000_000


@dataclass(frozen=True)
class DatasetRecipe:
    """How to record one dataset: families, episodes, image size, seeds, and where it goes.

    Introduced in lesson 01.
    """

    name: str
    episodes_per_family: int
    image_size: int = 96
    families: tuple[str, ...] = FAMILIES
    base_seed: int = 0
    max_steps: int = 300
    committed: bool = False
    #: DART noise (m) on the executed position deltas (:func:`~vla_lessons.data.record.record_episode`).
    perturb: float = 0.0

    @property
    def root(self) -> Path:
        """``data/datasets/<name>`` when committed, else ``build/datasets/<name>``."""
        return (env.DATA_DIR if self.committed else env.BUILD_DIR) / "datasets" / self.name


def course_recipes(full: bool | None = None) -> dict[str, DatasetRecipe]:
    """The course's datasets by name (the training set's size follows ``full``, default ``VLA_FULL``).

    Introduced in lesson 01.
    """
    full = env.full_mode() if full is None else full
    recipes = [
        DatasetRecipe("tabletop_lessons", episodes_per_family=10, base_seed=0, committed=True),
        DatasetRecipe("tabletop_train", episodes_per_family=300 if full else 50,
                      base_seed=1_000_000),
    ]
    return {r.name: r for r in recipes}


def course_dataset_path(name: str = "tabletop_lessons") -> Path:
    """The folder of one of the course's datasets; raises if it has not been built.

    Introduced in lesson 01.
    """
    recipes = course_recipes()
    if name not in recipes:
        raise ValueError(f"unknown dataset {name!r}; the course's datasets are {sorted(recipes)}")
    root = recipes[name].root
    if not root.is_dir():
        raise DatasetNotFoundError(root, f"dataset {name!r}")
    return root


#: Names of the sim's ``obs["state"]`` entries (documented in ``vla_lessons.sim.env``; the last
#: one pads to BridgeData's 8 entries).
STATE_NAMES = ("ee_x", "ee_y", "ee_z", "ee_roll", "ee_pitch", "ee_yaw", "gripper_opening", "pad")


def _sim_env_factory(image_size: int):
    from vla_lessons.sim import CONTROL_HZ, SceneConfig, ScriptedExpert, TabletopEnv

    return TabletopEnv(SceneConfig(image_size=image_size)), ScriptedExpert, CONTROL_HZ


def _dimension_names() -> dict[str, list[str]]:
    from vla_lessons.sim import JOINT_NAMES

    return {"observation.state": list(STATE_NAMES), "observation.joints": list(JOINT_NAMES)}


def build_dataset(recipe: DatasetRecipe, root: str | Path | None = None,
                  make_env: Callable | None = None) -> dict:
    """Record ``recipe`` with the scripted expert and write it (replacing an older copy).

    Introduced in lesson 01.

    ``make_env(image_size) -> (env, make_expert, fps)`` defaults to the course simulator.
    Returns a summary: path, episodes, frames, bytes on disk, seconds and the recording facts.
    """
    start = time.perf_counter()
    sim, make_expert, fps = (make_env or _sim_env_factory)(recipe.image_size)
    names = _dimension_names() if make_env is None else None
    recording = ExpertRecording(sim, make_expert, families=recipe.families,
                                episodes_per_family=recipe.episodes_per_family,
                                base_seed=recipe.base_seed, max_steps=recipe.max_steps, perturb=recipe.perturb)
    try:
        with DatasetWriter(root or recipe.root, fps=int(fps), names=names, overwrite=True) as writer:
            frames = 0
            for episode in recording:
                writer.add_episode(episode)
                frames += len(episode)
            summary = {**recording.summary, "image_size": recipe.image_size}
            if dataclasses.is_dataclass(getattr(sim, "config", None)):
                summary["scene_config"] = dataclasses.asdict(sim.config)
            path = writer.finish(summary)
    finally:
        sim.close()
    return {"name": recipe.name, "path": str(path), "episodes": sum(recording.kept.values()),
            "frames": frames,
            "bytes": sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()),
            "seconds": time.perf_counter() - start, "recording": summary}
