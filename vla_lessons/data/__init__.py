"""Robot data: episodes, the LeRobot-style dataset on disk, and normalisation statistics.

Introduced in lesson 01.

* :mod:`~vla_lessons.data.episode` — :class:`Episode`, one episode as checked arrays.
* :mod:`~vla_lessons.data.record` — :class:`ExpertRecording`, the scripted expert in the sim.
* :mod:`~vla_lessons.data.writer` — :class:`DatasetWriter` / :func:`write_dataset`,
  deterministic parquet + JSON.
* :mod:`~vla_lessons.data.reader` — :func:`load_dataset_dir` (a ``datasets.Dataset``),
  :func:`load_meta`, :func:`read_episodes`.
* :mod:`~vla_lessons.data.torch_dataset` — :class:`LeRobotStyleDataset`, tensors for PyTorch.
* :mod:`~vla_lessons.data.stats` — :func:`compute_stats` (min/max/mean/std/q01/q99).
* :mod:`~vla_lessons.data.recipes` — the course's datasets, built by
  ``python -m vla_lessons.build data``.
* :mod:`~vla_lessons.data.layout` — file layout (LeRobot v2.1) and the errors of a reader.
"""

from vla_lessons.data.episode import Episode, synthetic_episode
from vla_lessons.data.images import decode_png, encode_png
from vla_lessons.data.layout import (BUILD_COMMAND, CODEBASE_VERSION, CorruptDatasetError,
                                     DatasetNotFoundError)
from vla_lessons.data.reader import DatasetMeta, load_dataset_dir, load_meta, read_episodes
from vla_lessons.data.recipes import (DatasetRecipe, build_dataset, course_dataset_path,
                                      course_recipes)
from vla_lessons.data.record import (ExpertRecording, episode_seed, record_episode,
                                     record_expert_episodes)
from vla_lessons.data.stats import STAT_NAMES, compute_stats
from vla_lessons.data.torch_dataset import LeRobotStyleDataset
from vla_lessons.data.writer import DatasetWriter, write_dataset

__all__ = [
    "BUILD_COMMAND", "CODEBASE_VERSION", "CorruptDatasetError", "DatasetMeta", "DatasetNotFoundError",
    "DatasetRecipe", "DatasetWriter", "Episode", "ExpertRecording", "LeRobotStyleDataset",
    "STAT_NAMES", "build_dataset", "compute_stats", "course_dataset_path", "course_recipes",
    "decode_png", "encode_png", "episode_seed", "load_dataset_dir", "load_meta", "read_episodes",
    "record_episode", "record_expert_episodes", "synthetic_episode", "write_dataset",
]
