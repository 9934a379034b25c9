"""One recorded episode as plain arrays: what the robot saw, felt and did at each control step.

Introduced in lesson 01.

Row ``t`` pairs the observation at step ``t`` with the action the expert took after seeing it,
LeRobot's convention: ``actions[t]`` moves the scene from ``images[t]`` to ``images[t + 1]``, and
``successes[t]`` is the task's success flag *after* that action (LeRobot's ``next.success``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vla_lessons.data.images import check_image


def _stack_frames(name: str, frames) -> np.ndarray:
    """Stack a list of per-step arrays, naming the first step whose shape differs (ragged input)."""
    if isinstance(frames, np.ndarray):
        if frames.ndim == 0 or len(frames) == 0:
            raise ValueError(f"{name} is empty: an episode needs at least one step, got shape {frames.shape}")
        return frames
    if not isinstance(frames, (list, tuple)):
        raise TypeError(f"{name} must be a numpy array or a list of per-step arrays, "
                        f"got {type(frames).__name__}")
    if len(frames) == 0:
        raise ValueError(f"{name} is empty: an episode needs at least one step")
    arrays = [np.asarray(f) for f in frames]
    for t, a in enumerate(arrays):
        if a.shape != arrays[0].shape:
            raise ValueError(f"{name} is ragged: step {t} has shape {a.shape}, "
                             f"expected {arrays[0].shape} like step 0")
    return np.stack(arrays)


def _images(name: str, frames) -> np.ndarray:
    images = _stack_frames(name, frames)
    if images.ndim != 4:
        raise ValueError(f"{name} must have shape (T, H, W, 3) and dtype uint8, got shape {images.shape}")
    check_image(images[0], f"{name}[0]")
    return np.ascontiguousarray(images)


def _vectors(name: str, frames, dim: int | None = None) -> np.ndarray:
    values = _stack_frames(name, frames)
    if values.dtype.kind not in "fiu":
        raise ValueError(f"{name} must hold real numbers, got dtype {values.dtype}")
    if values.ndim != 2 or (dim is not None and values.shape[1] != dim):
        want = f"(T, {dim})" if dim is not None else "(T, D)"
        raise ValueError(f"{name} must have shape {want}, got {values.shape}")
    out = values.astype(np.float32)
    bad = ~np.isfinite(out)
    if bad.any():
        t, d = np.argwhere(bad)[0]
        raise ValueError(f"{name} must be finite, but step {t} dimension {d} is {values[t, d]!r} "
                         "(NaN/inf, or too large for float32)")
    return out


def _flags(name: str, values, length: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},), got {arr.shape}")
    if arr.dtype != np.bool_:
        if arr.dtype.kind not in "iu" or not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name} must be booleans, got dtype {arr.dtype}")
        arr = arr.astype(bool)
    return arr


@dataclass
class Episode:
    """The arrays of one episode of ``T`` control steps, checked on construction.

    Introduced in lesson 01.

    Attributes:
        images: ``(T, H, W, 3)`` ``uint8``, the scene camera.
        wrist_images: ``(T, H, W, 3)`` ``uint8``, the wrist camera (same size as ``images``).
        states: ``(T, S)`` ``float32``, the proprioceptive state (``S = 8`` in the course sim).
        joints: ``(T, J)`` ``float32``, the arm's joint positions (``J = 6``).
        actions: ``(T, A)`` ``float32``, the commands (``A = 7``: dx, dy, dz, droll, dpitch,
            dyaw, gripper with 1 = open).
        instruction: the language instruction, e.g. ``"pick up the red cube"``.
        family: the task family, e.g. ``"pick"``, ``"place"``, ``"push"``.
        successes: ``(T,)`` ``bool``, task success after each step; when omitted, ``False``
            everywhere except the last step, which takes ``success``.
        rewards: ``(T,)`` ``float32`` reward after each step; zeros when omitted.
        success: whether the episode ended in success (must equal ``successes[-1]``).
        seed: the simulator seed that produced the episode (``None`` for real robots).
        metadata: extra per-episode fields (JSON values) written to ``meta/episodes.jsonl``.

    Lists of per-step arrays are accepted and stacked; ragged lists, wrong shapes or dtypes,
    NaN or inf values raise ``ValueError`` saying what was expected.
    """

    images: np.ndarray
    wrist_images: np.ndarray
    states: np.ndarray
    joints: np.ndarray
    actions: np.ndarray
    instruction: str
    family: str
    success: bool | None = None
    successes: np.ndarray | None = None
    rewards: np.ndarray | None = None
    seed: int | None = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        self.images = _images("images", self.images)
        self.wrist_images = _images("wrist_images", self.wrist_images)
        self.states = _vectors("states", self.states)
        self.joints = _vectors("joints", self.joints)
        self.actions = _vectors("actions", self.actions)
        T = len(self.images)
        for name in ("wrist_images", "states", "joints", "actions"):
            if len(getattr(self, name)) != T:
                raise ValueError(f"{name} has {len(getattr(self, name))} steps but images has {T}: "
                                 "every array of an episode needs one row per step")
        if self.wrist_images.shape[1:] != self.images.shape[1:]:
            raise ValueError(f"wrist_images must have the same (H, W, 3) as images "
                             f"{self.images.shape[1:]}, got {self.wrist_images.shape[1:]}")
        for name in ("instruction", "family"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")
        self._check_outcome(T)
        if self.seed is not None:
            if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool):
                raise ValueError(f"seed must be an int or None, got {self.seed!r}")
            self.seed = int(self.seed)
        if not isinstance(self.metadata, dict) or not all(isinstance(k, str) for k in self.metadata):
            raise ValueError(f"metadata must be a dict with string keys, got {self.metadata!r}")

    def _check_outcome(self, T: int) -> None:
        if self.successes is None:
            if self.success is None:
                raise ValueError("give success=True/False or the per-step successes array")
            self.successes = np.zeros(T, dtype=bool)
            self.successes[-1] = bool(self.success)
        else:
            self.successes = _flags("successes", self.successes, T)
            if self.success is not None and bool(self.success) != bool(self.successes[-1]):
                raise ValueError(f"success={self.success} disagrees with successes[-1]="
                                 f"{bool(self.successes[-1])}: the episode's outcome is its last step's")
        self.success = bool(self.successes[-1])
        if self.rewards is None:
            self.rewards = np.zeros(T, dtype=np.float32)
        else:
            self.rewards = _vectors("rewards", np.asarray(self.rewards).reshape(-1, 1))[:, 0]
            if len(self.rewards) != T:
                raise ValueError(f"rewards must have shape ({T},), got {len(self.rewards)} values")

    def __len__(self) -> int:
        """Number of control steps ``T``."""
        return len(self.actions)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of both cameras."""
        return tuple(self.images.shape[1:3])


def synthetic_episode(length: int = 20, image_size: int = 32, seed: int = 0,
                      instruction: str = "pick up the red cube", family: str = "pick") -> Episode:
    """A stand-in episode of smooth random data, for tests and benchmarks without the simulator.

    Introduced in lesson 01. Deterministic in ``seed``. Images are smooth gradients with a moving
    square, so PNG compresses them about as well as rendered frames.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(length, dtype=np.float32)[:, None]
    yy, xx = np.mgrid[0:image_size, 0:image_size]
    base = np.stack([xx * 255 // image_size, yy * 255 // image_size,
                     np.full_like(xx, int(rng.integers(0, 256)))], axis=-1).astype(np.uint8)
    images = np.repeat(base[None], length, axis=0)
    for k in range(length):  # a 6-px "cube" that slides across the scene
        x = (k * 2 + int(rng.integers(0, 4))) % max(image_size - 6, 1)
        images[k, 4:10, x:x + 6] = (200, 30, 30)
    wrist = np.ascontiguousarray(images[:, ::-1])
    phase = rng.uniform(0, np.pi, size=(1, 14)).astype(np.float32)
    states = np.sin(0.2 * t + phase[:, :8]).astype(np.float32)
    joints = np.cos(0.1 * t + phase[:, 8:]).astype(np.float32)
    actions = np.concatenate([0.05 * np.sin(0.3 * t + phase[:, :6]),
                              (t < length // 2).astype(np.float32)], axis=1).astype(np.float32)
    rewards = np.zeros(length, dtype=np.float32)
    rewards[-1] = 1.0
    return Episode(images=images, wrist_images=wrist, states=states, joints=joints, actions=actions,
                   instruction=instruction, family=family, success=True, rewards=rewards, seed=seed)
