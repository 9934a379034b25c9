"""Write episodes to disk as a LeRobot-style dataset (parquet via ``datasets``, JSON metadata).

Introduced in lesson 01.

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
from vla_lessons.data.layout import (ACTION_KEY, CHUNKS_SIZE, CODEBASE_VERSION, DATA_PATH,
                                     EPISODES_PATH, EPISODES_STATS_PATH, IMAGE_KEY, INFO_PATH,
                                     JOINTS_KEY, STATE_KEY, STATS_PATH, TASKS_PATH,
                                     WRIST_IMAGE_KEY, episode_path)
from vla_lessons.data.schema import frame_features, hf_features
from vla_lessons.data.stats import compute_stats, stats_to_json

#: Rows per parquet row group: larger than any episode, so one episode is one row group.
ROW_GROUP_SIZE = 10_000
#: Keys of ``meta/episodes.jsonl`` that an episode's ``metadata`` may not override.
_EPISODE_KEYS = ("episode_index", "tasks", "length", "task_index", "family", "success", "seed")


@contextlib.contextmanager
def _quiet_progress_bars():
    """Silence ``datasets``' progress bars for a moment, then restore the caller's setting."""
    was_disabled = datasets.utils.tqdm.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def _check_episodes(episodes) -> list[Episode]:
    episodes = list(episodes)
    if not episodes:
        raise ValueError("write_dataset needs at least one episode")
    for i, ep in enumerate(episodes):
        if not isinstance(ep, Episode):
            raise TypeError(f"episodes[{i}] must be a vla_lessons.data.Episode, got {type(ep).__name__}")
    first = episodes[0]
    want = (first.images.shape[1:], first.states.shape[1], first.joints.shape[1], first.actions.shape[1])
    for i, ep in enumerate(episodes[1:], start=1):
        got = (ep.images.shape[1:], ep.states.shape[1], ep.joints.shape[1], ep.actions.shape[1])
        if got != want:
            raise ValueError(f"episodes[{i}] has (image shape, state, joint, action dims) {got}, "
                             f"expected {want} like episodes[0]: one dataset has one frame layout")
    for i, ep in enumerate(episodes):
        bad = [k for k in ep.metadata if k in _EPISODE_KEYS]
        if bad:
            raise ValueError(f"episodes[{i}].metadata may not set the reserved keys {bad}")
        _check_json(ep.metadata, f"episodes[{i}].metadata")
    return episodes


def _check_json(obj, name: str) -> None:
    try:
        json.dumps(obj, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must hold JSON values (finite numbers, strings, lists, dicts): "
                         f"{err}") from err


def task_table(episodes: list[Episode]) -> list[dict]:
    """The tasks of ``meta/tasks.jsonl``: one row per distinct instruction, in first-seen order.

    Introduced in lesson 01. Each row is ``{"task_index", "task", "family"}``; an instruction
    used by two families is an error (the task index would be ambiguous).
    """
    rows, family_of = [], {}
    for ep in episodes:
        if ep.instruction not in family_of:
            family_of[ep.instruction] = ep.family
            rows.append({"task_index": len(rows), "task": ep.instruction, "family": ep.family})
        elif family_of[ep.instruction] != ep.family:
            raise ValueError(f"instruction {ep.instruction!r} appears in families "
                             f"{family_of[ep.instruction]!r} and {ep.family!r}")
    return rows


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


def _write_all(tmp: Path, episodes: list[Episode], fps: int, robot_type: str,
               names: dict | None, recording: dict) -> None:
    """Write every file of the dataset into the folder ``tmp``."""
    first = episodes[0]
    features = frame_features(first.image_size, first.states.shape[1], first.joints.shape[1],
                              first.actions.shape[1], names)
    schema = hf_features(features)
    tasks = task_table(episodes)
    task_index = {row["task"]: row["task_index"] for row in tasks}
    episode_rows, episode_stats, n_frames = [], [], 0
    with _quiet_progress_bars():
        for i, ep in enumerate(episodes):
            columns = _episode_columns(ep, i, n_frames, task_index[ep.instruction], fps)
            table = datasets.Dataset.from_dict(columns, features=schema)
            path = tmp / episode_path(i)
            path.parent.mkdir(parents=True, exist_ok=True)
            table.to_parquet(path, batch_size=ROW_GROUP_SIZE)
            n_frames += len(ep)
            episode_rows.append({"episode_index": i, "tasks": [ep.instruction], "length": len(ep),
                                 "task_index": task_index[ep.instruction], "family": ep.family,
                                 "success": ep.success, "seed": ep.seed, **ep.metadata})
            episode_stats.append({"episode_index": i, "stats": stats_to_json(_vector_stats([ep]))})
    per_family: dict[str, int] = {}
    for ep in episodes:
        per_family[ep.family] = per_family.get(ep.family, 0) + 1
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": len(episodes),
        "total_frames": n_frames,
        "total_tasks": len(tasks),
        "total_videos": 0,
        "total_chunks": math.ceil(len(episodes) / CHUNKS_SIZE),
        "chunks_size": CHUNKS_SIZE,
        "fps": fps,
        "splits": {"train": f"0:{len(episodes)}"},
        "data_path": DATA_PATH,
        "video_path": None,
        "features": features,
        "episodes_per_family": per_family,
        "recording": recording,
    }
    _write_json(tmp / INFO_PATH, info)
    _write_json(tmp / STATS_PATH, stats_to_json(_vector_stats(episodes)))
    _write_jsonl(tmp / TASKS_PATH, tasks)
    _write_jsonl(tmp / EPISODES_PATH, episode_rows)
    _write_jsonl(tmp / EPISODES_STATS_PATH, episode_stats)


def write_dataset(root: str | Path, episodes, *, fps: int = 10, robot_type: str = "vla_lessons_tabletop",
                  names: dict[str, list[str]] | None = None, recording: dict | None = None,
                  overwrite: bool = False) -> Path:
    """Write ``episodes`` (a list of :class:`Episode`) as a dataset folder at ``root``.

    Introduced in lesson 01.

    Args:
        root: the dataset folder to create (see :mod:`vla_lessons.data.layout`).
        episodes: the episodes, written in this order as episodes 0, 1, 2...
        fps: control rate in Hz; ``timestamp = frame_index / fps``.
        robot_type: free text stored in ``info.json``.
        names: optional dimension names per vector key (``"observation.state"``, ...).
        recording: JSON-able facts about how the episodes were made (seeds, attempts,
            discarded episodes), stored as ``info.json["recording"]``.
        overwrite: replace an existing dataset at ``root``.

    Returns the path of the dataset. Raises ``ValueError`` for inconsistent episodes.
    """
    if isinstance(fps, bool) or not isinstance(fps, (int, np.integer)) or fps <= 0:
        raise ValueError(f"fps must be a positive int, got {fps!r}")
    episodes = _check_episodes(episodes)
    _check_json(recording or {}, "recording")
    root = Path(root)
    tmp = _prepare_target(root, overwrite)
    try:
        _write_all(tmp, episodes, int(fps), robot_type, names, recording or {})
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if root.exists():
        shutil.rmtree(root)
    tmp.rename(root)
    return root
