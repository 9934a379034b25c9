"""Figures the lessons share: the VLA loop diagram and strips of camera frames.

Introduced in lesson 00.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _check_image(image, name: str = "image") -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"{name} must be a uint8 (H, W, 3) array, got {arr.dtype} {arr.shape}")
    return arr


def draw_vla_loop(image, instruction: str, action: Sequence[float], names: Sequence[str] | None = None):
    """Draw the VLA loop: camera image + instruction -> VLA -> 7 numbers -> robot -> camera.

    Introduced in lesson 00. ``image`` is uint8 (H, W, 3); ``action`` a 7-vector. Returns the figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    image = _check_image(image)
    action = np.asarray(action, dtype=float)
    if action.shape != (7,) or not np.isfinite(action).all():
        raise ValueError(f"action must be 7 finite numbers, got shape {action.shape}")
    names = names or ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")

    fig = plt.figure(figsize=(9, 3.2), dpi=70)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, 9), ax.set_ylim(0, 3.2), ax.axis("off")
    ax.imshow(image, extent=(0.2, 2.2, 0.9, 2.9))
    ax.text(1.2, 0.55, f"“{instruction}”", ha="center", fontsize=9, style="italic", wrap=True)
    ax.text(1.2, 3.0, "camera image + instruction", ha="center", fontsize=9)
    box = FancyBboxPatch((3.2, 1.3), 1.6, 1.0, boxstyle="round,pad=0.1", fc="#dbe9f6", ec="#1f4e79")
    ax.add_patch(box)
    ax.text(4.0, 1.8, "VLA\npolicy", ha="center", va="center", fontsize=12, weight="bold")
    lines = "\n".join(f"{n:<8}{v:+.3f}" for n, v in zip(names, action))
    ax.text(6.0, 1.8, lines, ha="left", va="center", fontsize=8.5, family="monospace",
            bbox=dict(boxstyle="round", fc="#fff4d6", ec="#b8860b"))
    ax.text(6.6, 3.0, "action: 7 numbers", ha="center", fontsize=9)
    ax.text(8.5, 1.8, "robot\nmoves", ha="center", va="center", fontsize=10)
    arrow = dict(arrowstyle="-|>", mutation_scale=14, lw=1.5, color="#333333")
    for start, end in (((2.4, 1.8), (3.1, 1.8)), ((4.95, 1.8), (5.9, 1.8)), ((7.75, 1.8), (8.1, 1.8))):
        ax.add_patch(FancyArrowPatch(start, end, **arrow))
    ax.add_patch(FancyArrowPatch((8.5, 1.3), (0.3, 0.3), connectionstyle="arc3,rad=-0.12",
                                 linestyle="--", **arrow))
    ax.text(5.0, 0.02, "the world changes; the camera sees it; repeat at the control rate",
            ha="center", fontsize=8.5, color="#555555")
    return fig


def frame_strip(frames: Sequence, n: int = 6, title: str | None = None):
    """Show ``n`` evenly spaced frames of an episode in one row. Returns the figure.

    Introduced in lesson 00. ``frames`` is a sequence of uint8 (H, W, 3) images (at least one).
    """
    import matplotlib.pyplot as plt

    if len(frames) == 0:
        raise ValueError("frame_strip needs at least one frame")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    picks = np.unique(np.linspace(0, len(frames) - 1, min(n, len(frames))).round().astype(int))
    fig, axes = plt.subplots(1, len(picks), figsize=(1.6 * len(picks), 1.9), dpi=70, squeeze=False)
    for ax, i in zip(axes[0], picks):
        ax.imshow(_check_image(frames[i], f"frames[{i}]"))
        ax.set_title(f"step {i}", fontsize=8)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
