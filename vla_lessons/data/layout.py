"""Where things live in a dataset folder, and the errors a reader raises about it.

Introduced in lesson 01.

The layout mirrors LeRobot's dataset format **v2.1** (``codebase_version: "v2.1"``), with the
images stored inside the parquet files (LeRobot's ``"dtype": "image"`` features) instead of
as mp4 videos, so that frames are lossless and every rebuild is byte-identical::

    <root>/
      data/chunk-000/episode_000000.parquet   one row per control step (frame)
      data/chunk-000/episode_000001.parquet
      ...
      meta/info.json                          fps, features (dtype/shape/names), counts, splits
      meta/stats.json                         min/max/mean/std/q01/q99 per dimension
      meta/tasks.jsonl                        task_index -> instruction (and task family)
      meta/episodes.jsonl                     episode_index -> length, task, success, seed
      meta/episodes_stats.jsonl               the same statistics, per episode

Additions to LeRobot v2.1, all of which a LeRobot reader ignores: ``stats.json`` carries
``q01``/``q99`` (LeRobot added quantiles in v3.0; OpenVLA normalises actions with them);
``info.json`` has ``"episodes_per_family"`` and a ``"recording"`` section (seeds, how many expert
episodes were tried and how many failed ones were discarded); ``tasks.jsonl`` rows carry the task
``"family"``; the frames have an ``observation.joints`` column next to ``observation.state``.
"""

from __future__ import annotations

from pathlib import Path

#: The LeRobot format version this layout mirrors.
CODEBASE_VERSION = "v2.1"
#: Episodes per ``data/chunk-XXX/`` folder (LeRobot's default).
CHUNKS_SIZE = 1000

INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.jsonl"
EPISODES_PATH = "meta/episodes.jsonl"
EPISODES_STATS_PATH = "meta/episodes_stats.jsonl"
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"

#: Column names of the two cameras (LeRobot's ``observation.images.<camera>`` convention).
IMAGE_KEY = "observation.images.image"
WRIST_IMAGE_KEY = "observation.images.wrist_image"
IMAGE_KEYS = (IMAGE_KEY, WRIST_IMAGE_KEY)
STATE_KEY = "observation.state"
JOINTS_KEY = "observation.joints"
ACTION_KEY = "action"
#: Per-dimension vectors that get normalisation statistics.
VECTOR_KEYS = (STATE_KEY, JOINTS_KEY, ACTION_KEY)

#: The keys of a ``meta/episodes.jsonl`` row that the writer sets; other keys are episode metadata.
EPISODE_KEYS = ("episode_index", "tasks", "length", "task_index", "family", "success", "seed")

#: The shell command that (re)builds the course's datasets; every error message names it.
BUILD_COMMAND = "python -m vla_lessons.build data"


def episode_path(episode_index: int, chunks_size: int = CHUNKS_SIZE) -> str:
    """Relative path of one episode's parquet file, e.g. ``data/chunk-000/episode_000007.parquet``.

    Introduced in lesson 01.
    """
    if not isinstance(episode_index, int) or episode_index < 0:
        raise ValueError(f"episode_index must be a non-negative int, got {episode_index!r}")
    return DATA_PATH.format(episode_chunk=episode_index // chunks_size, episode_index=episode_index)


class DatasetNotFoundError(FileNotFoundError):
    """A dataset folder, or a file that should be in it, does not exist.

    Introduced in lesson 01. The message names the missing file and the build command.
    """

    def __init__(self, path: Path | str, what: str = "dataset file"):
        self.path = Path(path)
        super().__init__(
            f"missing {what}: {self.path}. Build the course datasets with `{BUILD_COMMAND}` "
            "(or write this one again with vla_lessons.data.write_dataset).")


class CorruptDatasetError(ValueError):
    """A dataset file exists but cannot be read or disagrees with ``meta/info.json``.

    Introduced in lesson 01. The message names the file and the build command.
    """

    def __init__(self, path: Path | str, problem: str):
        self.path = Path(path)
        super().__init__(
            f"corrupt dataset file {self.path}: {problem}. Rebuild it with `{BUILD_COMMAND}` "
            "(or write this dataset again with vla_lessons.data.write_dataset).")
