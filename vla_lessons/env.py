"""The course's environment in one place: paths, seeds, device, fast/full mode, headless GL.

Introduced in lesson 00.

Every notebook starts with ``from vla_lessons import env`` and ``env.seed_everything()``.
The one switch between the default fast settings and the full ones is the environment
variable ``VLA_FULL``: unset or ``0`` means fast (what CI and a laptop run), ``1`` means the
settings the build script uses for the committed artifacts.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np

#: Repository root (the folder that holds ``vla_lessons/``, ``data/`` and ``notebooks/``).
REPO_ROOT = Path(__file__).resolve().parent.parent
#: Committed, small artifacts: datasets, trained mini models, reference outputs.
DATA_DIR = Path(os.environ.get("VLA_DATA_DIR", REPO_ROOT / "data"))
#: Everything a run produces and git ignores: executed notebooks, figures, big datasets.
BUILD_DIR = Path(os.environ.get("VLA_BUILD_DIR", REPO_ROOT / "build"))

#: The name of the single fast/full switch.
FULL_ENV_VAR = "VLA_FULL"

DEFAULT_SEED = 0


def full_mode() -> bool:
    """True when ``VLA_FULL=1``: full settings (longer training, more episodes).

    Introduced in lesson 00. Any other value than ``0``/``1``/unset is an error, so a typo
    never silently selects the wrong mode.
    """
    raw = os.environ.get(FULL_ENV_VAR, "0").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise ValueError(f"{FULL_ENV_VAR} must be 0 or 1 (fast or full mode), got {raw!r}")


def pick(fast, full):
    """Return ``fast`` in the default mode and ``full`` when ``VLA_FULL=1``.

    Introduced in lesson 00. Example: ``n_episodes = env.pick(fast=20, full=200)``.
    """
    return full if full_mode() else fast


def seed_everything(seed: int = DEFAULT_SEED) -> int:
    """Seed Python, NumPy and PyTorch (and make torch deterministic where it can be).

    Introduced in lesson 00. Returns the seed so a cell can print it.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import torch
    except ImportError:  # the package works without torch for the sim and data parts
        return seed
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return seed


def device(prefer: str | None = None) -> "torch.device":  # noqa: F821
    """The best available torch device: CUDA, then Apple MPS, then CPU.

    Introduced in lesson 00. ``prefer="cpu"`` forces the CPU; the environment variable
    ``VLA_DEVICE`` does the same for a whole run.
    """
    import torch

    choice = prefer or os.environ.get("VLA_DEVICE")
    if choice:
        if choice not in ("cpu", "cuda", "mps"):
            raise ValueError(f"device must be one of 'cpu', 'cuda', 'mps', got {choice!r}")
        if choice == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for, but torch sees no CUDA GPU")
        if choice == "mps" and not torch.backends.mps.is_available():
            raise ValueError("device 'mps' was asked for, but torch sees no Apple MPS device")
        return torch.device(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def has_gpu() -> bool:
    """True when a CUDA GPU is present: cells that need one check this and skip otherwise.

    Introduced in lesson 00.
    """
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def setup_headless_gl() -> str:
    """Choose MuJoCo's OpenGL backend before ``mujoco`` is imported, and return it.

    Introduced in lesson 01. On a machine without a display (CI, a server) MuJoCo needs
    ``MUJOCO_GL=egl`` (or ``osmesa``) to render offscreen; on a laptop with a display the
    default works and an existing ``MUJOCO_GL`` is left alone.
    """
    if "MUJOCO_GL" not in os.environ:
        on_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
        if not on_display and os.name == "posix" and not _is_macos():
            os.environ["MUJOCO_GL"] = "egl"
    if os.environ.get("MUJOCO_GL") == "osmesa":
        os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
    if os.environ.get("MUJOCO_GL") == "egl":
        os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    return os.environ.get("MUJOCO_GL", "default")


def _is_macos() -> bool:
    import sys

    return sys.platform == "darwin"


def versions() -> dict[str, str]:
    """Versions of the libraries the course relies on (``"missing"`` when not installed).

    Introduced in lesson 00.
    """
    from importlib import metadata

    names = ["torch", "transformers", "peft", "datasets", "tokenizers", "mujoco", "scipy",
             "numpy", "matplotlib", "ipywidgets", "nbval"]
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def read_results(path, what: str, target: str) -> dict:
    """The JSON a build target wrote at ``path``; a missing file is a ``FileNotFoundError`` naming the target.

    ``what`` names the results in the message (``"strategy results"``), ``target`` the
    ``python -m vla_lessons.build`` target that writes them.
    """
    import json

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}; build them with "
                                f"`python -m vla_lessons.build {target}` (VLA_FULL=1 for the full run)")
    return json.loads(path.read_text())
