"""Read a dataset folder back: its metadata, a ``datasets.Dataset`` of frames, or episodes.

Introduced in lesson 01.

Every file is checked as it is read. A missing folder or file raises
:class:`~vla_lessons.data.layout.DatasetNotFoundError`; a file that cannot be parsed or that
disagrees with ``meta/info.json`` raises :class:`~vla_lessons.data.layout.CorruptDatasetError`.
Both name the file and the command that builds the course's datasets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vla_lessons.data.episode import Episode
from vla_lessons.data.images import decode_png
from vla_lessons.data.layout import (ACTION_KEY, CODEBASE_VERSION, EPISODE_KEYS, EPISODES_PATH, IMAGE_KEY,
                                     INFO_PATH, JOINTS_KEY, STATE_KEY, STATS_PATH, TASKS_PATH,
                                     WRIST_IMAGE_KEY, CorruptDatasetError, DatasetNotFoundError)
from vla_lessons.data.schema import hf_features
from vla_lessons.data.stats import stats_from_json

_INFO_KEYS = ("codebase_version", "fps", "features", "total_episodes", "total_frames", "data_path")


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise DatasetNotFoundError(path)
    return path.read_text(encoding="utf-8")


def _load_json(path: Path):
    try:
        return json.loads(_read_text(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptDatasetError(path, f"not valid JSON ({err})") from err


def _load_jsonl(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(_read_text(path).splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise CorruptDatasetError(path, f"line {n} is not valid JSON ({err})") from err
    return rows


@dataclass
class DatasetMeta:
    """The ``meta/`` folder of a dataset, checked for consistency.

    Introduced in lesson 01.

    Attributes:
        root: the dataset folder.
        info: ``meta/info.json`` (fps, features, counts, splits, recording).
        stats: ``{feature: {"min", "max", "mean", "std", "q01", "q99": (D,) float64, "count"}}``.
        tasks: rows of ``meta/tasks.jsonl``: ``{"task_index", "task", "family"}``.
        episodes: rows of ``meta/episodes.jsonl``: ``{"episode_index", "tasks", "length",
            "task_index", "family", "success", "seed", ...}``.
    """

    root: Path
    info: dict
    stats: dict
    tasks: list[dict]
    episodes: list[dict]

    @property
    def fps(self) -> int:
        """Control rate in Hz."""
        return int(self.info["fps"])

    @property
    def features(self) -> dict:
        """Column descriptions ``{name: {"dtype", "shape", "names"}}``."""
        return self.info["features"]

    @property
    def total_frames(self) -> int:
        """Number of rows (control steps) over all episodes."""
        return int(self.info["total_frames"])

    @property
    def total_episodes(self) -> int:
        """Number of episodes."""
        return int(self.info["total_episodes"])

    def instruction(self, task_index: int) -> str:
        """The instruction text of a task index."""
        return self.tasks[task_index]["task"]

    def episode_file(self, episode_index: int) -> Path:
        """Absolute path of one episode's parquet file."""
        chunk = episode_index // int(self.info.get("chunks_size", 1000))
        return self.root / self.info["data_path"].format(episode_chunk=chunk, episode_index=episode_index)


def _check_info(path: Path, info) -> None:
    if not isinstance(info, dict) or any(k not in info for k in _INFO_KEYS):
        raise CorruptDatasetError(path, f"expected a JSON object with the keys {list(_INFO_KEYS)}")
    if info["codebase_version"] != CODEBASE_VERSION:
        raise CorruptDatasetError(path, f"format {info['codebase_version']!r}; this reader reads "
                                        f"LeRobot {CODEBASE_VERSION!r} layouts")
    try:
        hf_features(info["features"])
    except (ValueError, TypeError, AttributeError) as err:
        raise CorruptDatasetError(path, f"bad features: {err}") from err


def _check_tables(root: Path, info: dict, tasks: list[dict], episodes: list[dict]) -> None:
    if [t.get("task_index") for t in tasks] != list(range(len(tasks))):
        raise CorruptDatasetError(root / TASKS_PATH, "task_index must run 0, 1, 2... in order")
    if [e.get("episode_index") for e in episodes] != list(range(info["total_episodes"])):
        raise CorruptDatasetError(root / EPISODES_PATH, f"expected episodes 0..{info['total_episodes'] - 1} "
                                                        "in order, as counted in meta/info.json")
    if sum(int(e.get("length", 0)) for e in episodes) != info["total_frames"]:
        raise CorruptDatasetError(root / EPISODES_PATH, "episode lengths do not add up to "
                                                        f"total_frames={info['total_frames']}")


def load_meta(root: str | Path) -> DatasetMeta:
    """Read and check the ``meta/`` folder of the dataset at ``root``.

    Introduced in lesson 01.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(root, "dataset folder")
    info = _load_json(root / INFO_PATH)
    _check_info(root / INFO_PATH, info)
    try:
        stats = stats_from_json(_load_json(root / STATS_PATH))
    except ValueError as err:
        if isinstance(err, CorruptDatasetError):
            raise
        raise CorruptDatasetError(root / STATS_PATH, str(err)) from err
    tasks = _load_jsonl(root / TASKS_PATH)
    episodes = _load_jsonl(root / EPISODES_PATH)
    _check_tables(root, info, tasks, episodes)
    return DatasetMeta(root=root, info=info, stats=stats, tasks=tasks, episodes=episodes)


def read_episode_table(meta: DatasetMeta, episode_index: int) -> pa.Table:
    """The rows of one episode as a ``pyarrow.Table``, checked against ``meta``.

    Introduced in lesson 01.
    """
    if not 0 <= episode_index < meta.total_episodes:
        raise ValueError(f"episode_index must be in [0, {meta.total_episodes}), got {episode_index}")
    path = meta.episode_file(episode_index)
    if not path.is_file():
        raise DatasetNotFoundError(path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise CorruptDatasetError(path, f"not a readable parquet file ({err})") from err
    want = hf_features(meta.features).arrow_schema
    if not table.schema.remove_metadata().equals(want.remove_metadata()):
        raise CorruptDatasetError(path, f"columns {table.schema.names} do not match the features "
                                        "of meta/info.json")
    length = int(meta.episodes[episode_index]["length"])
    index = pc.min_max(table.column("episode_index")).as_py()
    if table.num_rows != length or index != {"min": episode_index, "max": episode_index}:
        raise CorruptDatasetError(path, f"expected {length} rows of episode {episode_index}, "
                                        f"got {table.num_rows} rows")
    return table.replace_schema_metadata(want.metadata)


def select_episodes(meta: DatasetMeta, episodes=None) -> list[int]:
    """Check a list of episode indices against ``meta`` (``None`` means all of them).

    Introduced in lesson 01.
    """
    if episodes is None:
        return list(range(meta.total_episodes))
    chosen = [int(e) for e in episodes]
    bad = [e for e in chosen if not 0 <= e < meta.total_episodes]
    if bad or not chosen:
        raise ValueError(f"episodes must be a non-empty list of indices in [0, {meta.total_episodes}), "
                         f"got {list(episodes)!r}")
    return chosen


def load_dataset_dir(root: str | Path, episodes=None) -> datasets.Dataset:
    """All frames of the dataset at ``root`` (or of the listed ``episodes``) as a ``datasets.Dataset``.

    Introduced in lesson 01.

    One row per control step, in episode order. Camera columns decode to ``PIL.Image``
    (``(H, W, 3)`` ``uint8`` via ``np.asarray``); vectors are lists of float32. The table is
    read into memory with ``pyarrow`` (no cache folder is written).
    """
    meta = load_meta(root)
    tables = [read_episode_table(meta, i) for i in select_episodes(meta, episodes)]
    return datasets.Dataset(pa.concat_tables(tables))


def vector_column(table: pa.Table, key: str) -> np.ndarray:
    """A fixed-length list column as an ``(N, D)`` array, or a scalar column as ``(N,)``.

    Introduced in lesson 01.
    """
    column = table.column(key).combine_chunks()
    if pa.types.is_fixed_size_list(column.type):
        return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), column.type.list_size)
    return column.to_numpy(zero_copy_only=False)


def image_column(table: pa.Table, key: str) -> pa.BinaryArray:
    """The PNG bytes of a camera column (decode one with :func:`~vla_lessons.data.images.decode_png`).

    Introduced in lesson 01.
    """
    return table.column(key).combine_chunks().field("bytes")


def read_episodes(root: str | Path, episodes=None) -> list[Episode]:
    """Read episodes back into :class:`Episode` arrays (frames decoded from PNG).

    Introduced in lesson 01. ``read_episodes(write_dataset(path, eps))`` equals ``eps``.
    """
    meta = load_meta(root)
    out = []
    for i in select_episodes(meta, episodes):
        table = read_episode_table(meta, i)
        row = meta.episodes[i]
        meta_extra = {k: v for k, v in row.items() if k not in EPISODE_KEYS}
        out.append(Episode(
            images=np.stack([decode_png(b.as_py()) for b in image_column(table, IMAGE_KEY)]),
            wrist_images=np.stack([decode_png(b.as_py()) for b in image_column(table, WRIST_IMAGE_KEY)]),
            states=vector_column(table, STATE_KEY), joints=vector_column(table, JOINTS_KEY),
            actions=vector_column(table, ACTION_KEY), instruction=row["tasks"][0], family=row["family"],
            successes=vector_column(table, "next.success"), rewards=vector_column(table, "next.reward"),
            seed=row.get("seed"), metadata=meta_extra))
    return out
