"""PyTorch-ready samples: a ``torch.utils.data.Dataset`` over a dataset folder.

Introduced in lesson 01.

Shaped after LeRobot's ``LeRobotDataset``: ``ds[i]`` is a dict of tensors for frame ``i``, with
the instruction text under ``"task"``; ``ds.meta``, ``ds.stats``, ``ds.tasks`` and
``ds.hf_dataset`` give the metadata and the underlying ``datasets.Dataset``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vla_lessons.data.images import decode_png
from vla_lessons.data.layout import (ACTION_KEY, IMAGE_KEYS, JOINTS_KEY, STATE_KEY,
                                     CorruptDatasetError)
from vla_lessons.data.reader import (select_episodes, image_column, load_dataset_dir, load_meta,
                                     vector_column)

_SCALAR_KEYS = ("timestamp", "frame_index", "episode_index", "index", "task_index",
                "next.reward", "next.done", "next.success")


class LeRobotStyleDataset(torch.utils.data.Dataset):
    """Frames of a dataset folder as dicts of tensors, ready for a ``DataLoader``.

    Introduced in lesson 01.

    Args:
        root: the dataset folder (e.g. ``env.DATA_DIR / "datasets" / "tabletop_lessons"``).
        episodes: optional list of episode indices to keep (e.g. a train/validation split).
        image_dtype: ``"float32"`` (default, LeRobot's convention: values in ``[0, 1]``) or
            ``"uint8"`` (values 0..255, four times less memory).
        action_horizon: ``None`` (default) gives ``"action"`` as ``(A,)``; an int ``H`` gives the
            chunk of the next ``H`` actions ``(H, A)`` plus ``"action_is_pad"`` ``(H,)`` ``bool``,
            True where the chunk ran past the episode's end and the last action was repeated.

    ``ds[i]`` holds ``"observation.images.image"`` and ``"observation.images.wrist_image"``
    ``(3, H, W)``, ``"observation.state"`` ``(S,)`` float32, ``"observation.joints"`` ``(J,)``
    float32, ``"action"``, the scalar bookkeeping columns (``"timestamp"`` float32,
    ``"frame_index"``, ``"episode_index"``, ``"index"``, ``"task_index"`` int64,
    ``"next.reward"`` float32, ``"next.done"``, ``"next.success"`` bool) and ``"task"``, the
    instruction string. ``stats`` hold numpy float64 arrays (see :mod:`vla_lessons.data.stats`).
    """

    def __init__(self, root: str | Path, *, episodes=None, image_dtype: str = "float32",
                 action_horizon: int | None = None):
        if image_dtype not in ("float32", "uint8"):
            raise ValueError(f"image_dtype must be 'float32' or 'uint8', got {image_dtype!r}")
        if action_horizon is not None and (isinstance(action_horizon, bool)
                                           or not isinstance(action_horizon, int) or action_horizon < 1):
            raise ValueError(f"action_horizon must be None or a positive int, got {action_horizon!r}")
        self.meta = load_meta(root)
        self.episodes = select_episodes(self.meta, episodes)
        self.hf_dataset = load_dataset_dir(root, self.episodes)
        self.image_dtype = image_dtype
        self.action_horizon = action_horizon
        table = self.hf_dataset.with_format("arrow")[:]
        self._images = {key: image_column(table, key) for key in IMAGE_KEYS}
        self._vectors = {key: vector_column(table, key) for key in (STATE_KEY, JOINTS_KEY, ACTION_KEY)}
        self._scalars = {key: vector_column(table, key) for key in _SCALAR_KEYS}
        self.episode_data_index = self._episode_bounds()

    def _episode_bounds(self) -> dict[str, np.ndarray]:
        """``{"from": (E,), "to": (E,)}`` row ranges of the kept episodes (LeRobot's name)."""
        lengths = np.array([self.meta.episodes[e]["length"] for e in self.episodes], dtype=np.int64)
        ends = np.cumsum(lengths)
        return {"from": ends - lengths, "to": ends}

    @property
    def stats(self) -> dict:
        """Normalisation statistics of the whole dataset (``meta/stats.json``)."""
        return self.meta.stats

    @property
    def tasks(self) -> list[dict]:
        """Rows of ``meta/tasks.jsonl``: ``{"task_index", "task", "family"}``."""
        return self.meta.tasks

    @property
    def fps(self) -> int:
        """Control rate in Hz."""
        return self.meta.fps

    @property
    def num_episodes(self) -> int:
        """Number of episodes kept."""
        return len(self.episodes)

    def __len__(self) -> int:
        return len(self.hf_dataset)

    def _image(self, key: str, row: int) -> torch.Tensor:
        try:
            array = decode_png(self._images[key][row].as_py())
        except ValueError as err:
            episode = int(self._scalars["episode_index"][row])
            raise CorruptDatasetError(self.meta.episode_file(episode), f"{key} of row {row}: {err}") from err
        image = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
        return image.float().div_(255.0) if self.image_dtype == "float32" else image

    def _action(self, row: int) -> dict[str, torch.Tensor]:
        actions = self._vectors[ACTION_KEY]
        if self.action_horizon is None:
            return {ACTION_KEY: torch.from_numpy(actions[row].copy())}
        k = int(np.searchsorted(self.episode_data_index["to"], row, side="right"))
        last = int(self.episode_data_index["to"][k]) - 1
        rows = np.arange(row, row + self.action_horizon)
        return {ACTION_KEY: torch.from_numpy(actions[np.minimum(rows, last)].copy()),
                "action_is_pad": torch.from_numpy(rows > last)}

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a dataset of {len(self)} frames")
        row = int(i) % len(self)
        item = {key: self._image(key, row) for key in IMAGE_KEYS}
        item[STATE_KEY] = torch.from_numpy(self._vectors[STATE_KEY][row].copy())
        item[JOINTS_KEY] = torch.from_numpy(self._vectors[JOINTS_KEY][row].copy())
        item.update(self._action(row))
        for key in _SCALAR_KEYS:
            item[key] = torch.tensor(self._scalars[key][row])
        item["task"] = self.meta.instruction(int(self._scalars["task_index"][row]))
        return item
