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


#: Box colours of :func:`token_strip`, by kind of position.
TOKEN_COLOURS = {"special": "#d9d9d9", "image": "#cfe2f3", "text": "#fff2cc", "action": "#f4cccc",
                 "pad": "#ffffff"}


def token_strip(texts: Sequence[str], labels: Sequence[int], kinds: Sequence[str], *, patches=None,
                per_row: int = 24, title: str | None = None, ignore_index: int = -100):
    """Draw a token sequence as a row of boxes, wrapped every ``per_row``, each label underneath.

    Introduced in lesson 06 (the VLA's ``<s> [visual tokens] prompt a1..a7`` and its label mask).
    ``texts``: what to write in each box (a token string); ``labels``: one int per position,
    ``ignore_index`` (-100) drawn in grey as "no loss"; ``kinds``: one of :data:`TOKEN_COLOURS` per
    position; ``patches``: optional sequence with a uint8 (h, w, 3) image or None per position,
    drawn inside the box (a visual token's image patch). Returns the figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    n = len(texts)
    if n == 0 or len(labels) != n or len(kinds) != n or (patches is not None and len(patches) != n):
        raise ValueError(f"texts, labels, kinds (and patches) need one entry per position; got {n} texts, "
                         f"{len(labels)} labels, {len(kinds)} kinds"
                         + ("" if patches is None else f", {len(patches)} patches"))
    unknown = sorted({k for k in kinds if k not in TOKEN_COLOURS})
    if unknown:
        raise ValueError(f"unknown kinds {unknown}; use {list(TOKEN_COLOURS)}")
    if not isinstance(per_row, (int, np.integer)) or per_row < 1:
        raise ValueError(f"per_row must be a positive int, got {per_row!r}")
    rows = -(-n // per_row)
    fig = plt.figure(figsize=(9, 1.45 * rows + (0.3 if title else 0)), dpi=70)
    ax = fig.add_axes([0, 0, 1, 1 if not title else 1 - 0.3 / fig.get_figheight()])
    ax.set_xlim(-0.1, per_row + 0.1), ax.set_ylim(-2.75 * rows + 0.2, 0.1), ax.axis("off")
    for i, (text, label, kind) in enumerate(zip(texts, labels, kinds)):
        x, y = i % per_row, -2.75 * (i // per_row)
        ax.add_patch(Rectangle((x + 0.04, y - 1.6), 0.92, 1.6, fc=TOKEN_COLOURS[kind], ec="#666666", lw=0.6))
        patch = None if patches is None else patches[i]
        if patch is not None:
            ax.imshow(_check_image(patch, f"patches[{i}]"), extent=(x + 0.1, x + 0.9, y - 1.45, y - 0.15),
                      zorder=2, aspect="auto")
        if text:
            ax.text(x + 0.5, y - (0.2 if patch is not None else 0.8), str(text).replace("\n", "\\n"),
                    rotation=90, ha="center", va="top" if patch is not None else "center",
                    fontsize=6.5 if patch is not None else 7.5, clip_on=True)
        ignored = int(label) == ignore_index
        ax.text(x + 0.5, y - 1.7, str(int(label)), rotation=90, ha="center", va="top",
                fontsize=6.5, color="#999999" if ignored else "#a00000", weight="normal" if ignored else "bold")
    ax.set_xlim(-0.1, per_row + 0.1), ax.set_ylim(-2.75 * rows + 0.2, 0.1)  # imshow moves them
    if title:
        fig.suptitle(title, fontsize=10, y=0.995)
    return fig


def episode_animation(frames: Sequence, *, every: int = 1, max_frames: int = 30, title: str | None = None,
                      size: float = 2.6):
    """A matplotlib ``FuncAnimation`` of an episode's camera frames (call ``.to_jshtml()`` to embed).

    Introduced in lesson 06. ``frames``: uint8 (H, W, 3) images; every ``every``-th one is shown,
    and at most ``max_frames`` of them (evenly spaced, the last frame always included), so an
    embedded animation stays small. The figure is closed; the animation keeps it.
    """
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation

    if len(frames) == 0:
        raise ValueError("episode_animation needs at least one frame")
    if every < 1 or max_frames < 1:
        raise ValueError(f"every and max_frames must be >= 1, got {every} and {max_frames}")
    picks = list(range(0, len(frames), every))
    if picks[-1] != len(frames) - 1:
        picks.append(len(frames) - 1)
    if len(picks) > max_frames:
        picks = [picks[int(round(j))] for j in np.linspace(0, len(picks) - 1, max_frames)]
    images = [_check_image(frames[i], f"frames[{i}]") for i in picks]
    fig, ax = plt.subplots(figsize=(size, size), dpi=70)
    shown = ax.imshow(images[0])
    ax.axis("off")
    label = ax.set_title("", fontsize=8)

    def update(j):
        shown.set_data(images[j])
        label.set_text(f"{title + ': ' if title else ''}step {picks[j]}")
        return shown, label

    update(0)
    anim = FuncAnimation(fig, update, frames=len(images), interval=200, blit=False)
    plt.close(fig)
    anim.steps = picks
    return anim
