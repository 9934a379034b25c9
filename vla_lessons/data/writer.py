"""Write episodes to disk as a LeRobot-style dataset (parquet via ``datasets``, JSON metadata).

Introduced in lesson 01.

:class:`DatasetWriter` takes one episode at a time (LeRobot's ``create`` / ``save_episode``
pattern), so a recording of any length never holds more than one episode's frames in memory;
:func:`write_dataset` writes a list of episodes in one call.

The writer is deterministic: the same episodes give byte-identical files, in any process. It
writes no wall-clock time or absolute path, orders everything by episode index, encodes frames
with fixed PNG settings and writes each episode's parquet in a single row group with the
settings of the pinned ``datasets`` version. It writes into a temporary sibling folder and
moves it into place at the end, so an interrupted run never leaves a half-written dataset.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
from pathlib import Path

import datasets
import numpy as np

from vla_lessons.data.episode import Episode
from vla_lessons.data.images import encode_png
from vla_lessons.data.layout import (ACTION_KEY, CHUNKS_SIZE, CODEBASE_VERSION, DATA_PATH, EPISODE_KEYS,
                                     EPISODES_PATH, EPISODES_STATS_PATH, IMAGE_KEY, INFO_PATH,
                                     JOINTS_KEY, STATE_KEY, STATS_PATH, TASKS_PATH,
                                     WRIST_IMAGE_KEY, episode_path)
from vla_lessons.data.schema import frame_features, hf_features
from vla_lessons.data.stats import compute_stats, stats_to_json

#: Rows per parquet row group: larger than any episode, so one episode is one row group.
ROW_GROUP_SIZE = 10_000


@contextlib.contextmanager
def _quiet_progress_bars():
    """Silence ``datasets``' progress bars for a moment, then restore the caller's setting."""
    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def _episode_columns(ep: Episode, episode_index: int, first_index: int, task_index: int,
                     fps: int) -> dict:
    T = len(ep)
    frame_index = np.arange(T, dtype=np.int64)
    return {
        IMAGE_KEY: [{"bytes": encode_png(img), "path": None} for img in ep.images],
        WRIST_IMAGE_KEY: [{"bytes": encode_png(img), "path": None} for img in ep.wrist_images],
        STATE_KEY: ep.states,
        JOINTS_KEY: ep.joints,
        ACTION_KEY: ep.actions,
        "timestamp": (frame_index / fps).astype(np.float32),
        "frame_index": frame_index,
        "episode_index": np.full(T, episode_index, dtype=np.int64),
        "index": first_index + frame_index,
        "task_index": np.full(T, task_index, dtype=np.int64),
        "next.reward": ep.rewards,
        "next.done": frame_index == T - 1,
        "next.success": ep.successes,
    }

def _vector_stats(episodes: list[Episode]) -> dict:
    return {
        STATE_KEY: compute_stats(np.concatenate([ep.states for ep in episodes])),
        JOINTS_KEY: compute_stats(np.concatenate([ep.joints for ep in episodes])),
        ACTION_KEY: compute_stats(np.concatenate([ep.actions for ep in episodes])),
    }


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=4, ensure_ascii=False, allow_nan=False) + "\n",
                    encoding="utf-8")


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(row, ensure_ascii=False, allow_nan=False) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _prepare_target(root: Path, overwrite: bool) -> Path:
    if root.exists():
        if not overwrite:
            raise FileExistsError(f"{root} exists; pass overwrite=True to replace it")
        if not root.is_dir() or (any(root.iterdir()) and not (root / INFO_PATH).is_file()):
            raise ValueError(f"refusing to replace {root}: it is not a dataset folder "
                             f"(no {INFO_PATH} in it)")
    tmp = root.with_name(f".{root.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def _check_json(obj, name: str) -> None:
    try:
        json.dumps(obj, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must hold JSON values (finite numbers, strings, lists, dicts): "
                         f"{err}") from err


def _frame_layout(ep: Episode) -> tuple:
    return ep.images.shape[1:], ep.states.shape[1], ep.joints.shape[1], ep.actions.shape[1]


class DatasetWriter:
    """Write a dataset folder one episode at a time; nothing appears at ``root`` until ``finish``.

    Introduced in lesson 01.

        with DatasetWriter(root, fps=10) as writer:
            for episode in episodes:
                writer.add_episode(episode)
            writer.finish(recording={...})

    Args:
        root: the dataset folder to create (see :mod:`vla_lessons.data.layout`).
        fps: control rate in Hz; ``timestamp = frame_index / fps``.
        robot_type: free text stored in ``info.json``.
        names: optional dimension names per vector key (``"observation.state"``, ...).
        overwrite: replace an existing dataset at ``root`` (never a folder that is not one).

    Episodes are numbered 0, 1, 2... in the order they are added. Leaving the ``with`` block
    without ``finish`` (or with an exception) deletes the partial files.
    """

    def __init__(self, root: str | Path, *, fps: int = 10, robot_type: str = "vla_lessons_tabletop",
                 names: dict[str, list[str]] | None = None, overwrite: bool = False):
        if isinstance(fps, bool) or not isinstance(fps, (int, np.integer)) or fps <= 0:
            raise ValueError(f"fps must be a positive int, got {fps!r}")
        self.root, self.fps, self.robot_type, self.names = Path(root), int(fps), robot_type, names
        self._tmp = _prepare_target(self.root, overwrite)
        self._layout, self._features = None, None
        self._tasks: list[dict] = []
        self._episodes: list[dict] = []
        self._episode_stats: list[dict] = []
        self._vectors = {STATE_KEY: [], JOINTS_KEY: [], ACTION_KEY: []}
        self._n_frames = 0
        self._finished = False

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, *exc) -> None:
        if not self._finished:
            self.abort()

    def abort(self) -> None:
        """Delete the partial files; the writer cannot be used afterwards."""
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._finished = True

    def _check(self, ep: Episode) -> None:
        i = len(self._episodes)
        if self._finished:
            raise RuntimeError("this DatasetWriter is finished; make a new one")
        if not isinstance(ep, Episode):
            raise TypeError(f"episode {i} must be a vla_lessons.data.Episode, got {type(ep).__name__}")
        if self._layout is not None and _frame_layout(ep) != self._layout:
            raise ValueError(f"episode {i} has (image shape, state, joint, action dims) {_frame_layout(ep)}, "
                             f"expected {self._layout} like episode 0: one dataset has one frame layout")
        bad = [k for k in ep.metadata if k in EPISODE_KEYS]
        if bad:
            raise ValueError(f"episode {i}: metadata may not set the reserved keys {bad}")
        _check_json(ep.metadata, f"episode {i} metadata")
        for row in self._tasks:
            if row["task"] == ep.instruction and row["family"] != ep.family:
                raise ValueError(f"instruction {ep.instruction!r} appears in families "
                                 f"{row['family']!r} and {ep.family!r}")

    def _task_index(self, ep: Episode) -> int:
        """Index of the episode's instruction in ``tasks.jsonl`` (new ones append, first-seen order)."""
        for row in self._tasks:
            if row["task"] == ep.instruction:
                return row["task_index"]
        self._tasks.append({"task_index": len(self._tasks), "task": ep.instruction, "family": ep.family})
        return len(self._tasks) - 1

    def add_episode(self, ep: Episode) -> int:
        """Encode and write one episode's parquet file; return its episode index."""
        self._check(ep)
        if self._layout is None:
            self._layout = _frame_layout(ep)
            self._features = frame_features(ep.image_size, *self._layout[1:], self.names)
        i, task_index = len(self._episodes), self._task_index(ep)
        path = self._tmp / episode_path(i)
        path.parent.mkdir(parents=True, exist_ok=True)
        with _quiet_progress_bars():
            datasets.Dataset.from_dict(_episode_columns(ep, i, self._n_frames, task_index, self.fps),
                                       features=hf_features(self._features)).to_parquet(
                path, batch_size=ROW_GROUP_SIZE)
        self._n_frames += len(ep)
        self._episodes.append({"episode_index": i, "tasks": [ep.instruction], "length": len(ep),
                               "task_index": task_index, "family": ep.family, "success": ep.success,
                               "seed": ep.seed, **ep.metadata})
        self._episode_stats.append({"episode_index": i, "stats": stats_to_json(_vector_stats([ep]))})
        for key, values in ((STATE_KEY, ep.states), (JOINTS_KEY, ep.joints), (ACTION_KEY, ep.actions)):
            self._vectors[key].append(values)
        return i

    def _info(self, recording: dict) -> dict:
        """The content of ``meta/info.json`` (LeRobot v2.1 keys, then the course's additions)."""
        per_family: dict[str, int] = {}
        for row in self._episodes:
            per_family[row["family"]] = per_family.get(row["family"], 0) + 1
        n = len(self._episodes)
        return {
            "codebase_version": CODEBASE_VERSION, "robot_type": self.robot_type,
            "total_episodes": n, "total_frames": self._n_frames, "total_tasks": len(self._tasks),
            "total_videos": 0, "total_chunks": math.ceil(n / CHUNKS_SIZE), "chunks_size": CHUNKS_SIZE,
            "fps": self.fps, "splits": {"train": f"0:{n}"}, "data_path": DATA_PATH, "video_path": None,
            "features": self._features, "episodes_per_family": per_family, "recording": recording,
        }

    def finish(self, recording: dict | None = None) -> Path:
        """Write ``meta/``, move the dataset into place at ``root`` and return ``root``.

        ``recording``: JSON-able facts about how the episodes were made (seeds, attempts,
        discarded episodes), stored as ``info.json["recording"]``.
        """
        if self._finished:
            raise RuntimeError("this DatasetWriter is finished; make a new one")
        if not self._episodes:
            raise ValueError("a dataset needs at least one episode")
        _check_json(recording or {}, "recording")
        stats = {key: compute_stats(np.concatenate(chunks)) for key, chunks in self._vectors.items()}
        _write_json(self._tmp / INFO_PATH, self._info(recording or {}))
        _write_json(self._tmp / STATS_PATH, stats_to_json(stats))
        _write_jsonl(self._tmp / TASKS_PATH, self._tasks)
        _write_jsonl(self._tmp / EPISODES_PATH, self._episodes)
        _write_jsonl(self._tmp / EPISODES_STATS_PATH, self._episode_stats)
        if self.root.exists():
            shutil.rmtree(self.root)
        self._tmp.rename(self.root)
        self._finished = True
        return self.root


def write_dataset(root: str | Path, episodes, *, fps: int = 10, robot_type: str = "vla_lessons_tabletop",
                  names: dict[str, list[str]] | None = None, recording: dict | None = None,
                  overwrite: bool = False) -> Path:
    """Write ``episodes`` (an iterable of :class:`Episode`) as a dataset folder at ``root``.

    Introduced in lesson 01. The arguments are those of :class:`DatasetWriter` and its
    ``finish``. Returns ``root``. Raises ``ValueError`` for inconsistent episodes, leaving nothing
    behind.
    """
    _check_json(recording or {}, "recording")
    with DatasetWriter(root, fps=fps, robot_type=robot_type, names=names, overwrite=overwrite) as writer:
        for ep in episodes:
            writer.add_episode(ep)
        return writer.finish(recording)
