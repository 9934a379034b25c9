"""The columns of a frame: their dtype, shape and names, for ``info.json`` and for ``datasets``.

Introduced in lesson 01.

``info.json`` describes each column the LeRobot way (``{"dtype", "shape", "names"}``);
:func:`hf_features` turns that description into the ``datasets.Features`` of the parquet files
(``Image()`` for cameras, fixed-length ``List`` for vectors, ``Value`` for scalars).
"""

from __future__ import annotations

import datasets

from vla_lessons.data.layout import (ACTION_KEY, IMAGE_KEY, JOINTS_KEY, STATE_KEY,
                                     WRIST_IMAGE_KEY)

#: Names of the course's 7 action dimensions (end-effector deltas and the gripper, 1 = open).
ACTION_NAMES = ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")

#: Per-frame bookkeeping columns, LeRobot's ``DEFAULT_FEATURES`` plus the ``next.*`` outcomes.
SCALAR_FEATURES = {
    "timestamp": "float32",
    "frame_index": "int64",
    "episode_index": "int64",
    "index": "int64",
    "task_index": "int64",
    "next.reward": "float32",
    "next.done": "bool",
    "next.success": "bool",
}


def _names(key: str, dim: int, given: dict | None, prefix: str) -> list[str]:
    names = (given or {}).get(key)
    if names is None:
        if key == ACTION_KEY and dim == len(ACTION_NAMES):
            return list(ACTION_NAMES)
        return [f"{prefix}_{i}" for i in range(dim)]
    names = list(names)
    if len(names) != dim or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"names of {key!r} must be {dim} non-empty strings, got {names!r}")
    return names


def frame_features(image_hw: tuple[int, int], state_dim: int, joint_dim: int, action_dim: int,
                   names: dict[str, list[str]] | None = None) -> dict[str, dict]:
    """The ``features`` section of ``info.json`` for frames of this size, in column order.

    Introduced in lesson 01. ``names`` may give dimension names per key (``"observation.state"``,
    ``"observation.joints"``, ``"action"``); the defaults are ``state_0``... and the action names.
    """
    h, w = (int(v) for v in image_hw)
    image = {"dtype": "image", "shape": [h, w, 3], "names": ["height", "width", "channel"]}
    features = {
        IMAGE_KEY: dict(image),
        WRIST_IMAGE_KEY: dict(image),
        STATE_KEY: {"dtype": "float32", "shape": [state_dim],
                    "names": _names(STATE_KEY, state_dim, names, "state")},
        JOINTS_KEY: {"dtype": "float32", "shape": [joint_dim],
                     "names": _names(JOINTS_KEY, joint_dim, names, "joint")},
        ACTION_KEY: {"dtype": "float32", "shape": [action_dim],
                     "names": _names(ACTION_KEY, action_dim, names, "action")},
    }
    for key, dtype in SCALAR_FEATURES.items():
        features[key] = {"dtype": dtype, "shape": [1], "names": None}
    return features


def hf_features(features: dict[str, dict]) -> datasets.Features:
    """``info.json`` features -> ``datasets.Features`` (the parquet schema).

    Introduced in lesson 01. Raises ``ValueError`` for a description it does not know.
    """
    out = {}
    for key, ft in features.items():
        dtype, shape = ft.get("dtype"), list(ft.get("shape") or [])
        if dtype == "image":
            out[key] = datasets.Image()
        elif shape == [1]:
            out[key] = datasets.Value(dtype)
        elif len(shape) == 1:
            out[key] = datasets.List(datasets.Value(dtype), length=shape[0])
        else:
            raise ValueError(f"feature {key!r} has an unsupported description {ft!r}")
    return datasets.Features(out)
