"""Vision data from the course's simulated tabletop: N seeded scenes -> images, captions, records.

Introduced in lesson 04.

Each scene is one ``TabletopEnv.reset(seed=...)``: a table look, the task's object, 1-2
distractor objects and two receptacles, seen by the third-person camera (the arm is in the
picture too). Captions are written from ``env.scene_objects()`` with
:func:`~vla_lessons.vision.captions.caption_scene`, with "left of" and "behind" taken in the
camera's view: the directions of the camera's image-right and viewing axes projected on the
table.

The objects' sizes barely vary in the training distribution (x0.9-1.1 of nominal), so captions
carry no size word.
"""

from __future__ import annotations

import numpy as np

from vla_lessons import env as course_env

from .captions import ObjectRecord, caption_scene
from .data import VisionData


def camera_axes() -> tuple[tuple[float, float], tuple[float, float]]:
    """``(right_axis, forward_axis)`` of the third-person camera, unit vectors in the table plane.

    Introduced in lesson 04. ``forward_axis`` points away from the camera (what "behind"
    means in a caption), ``right_axis`` to the image's right.
    """
    from vla_lessons.sim.scene import THIRD_PERSON_POS, THIRD_PERSON_TARGET

    d = np.asarray(THIRD_PERSON_TARGET[:2], dtype=float) - np.asarray(THIRD_PERSON_POS[:2], dtype=float)
    d /= np.linalg.norm(d)
    return (float(d[1]), float(-d[0])), (float(d[0]), float(d[1]))


def records_of(scene_objects) -> list[ObjectRecord]:
    """The simulator's ``SceneObject`` records as :class:`ObjectRecord` (no size word).

    Introduced in lesson 04.
    """
    return [ObjectRecord(o.name, o.colour, o.shape, None, (float(o.position[0]), float(o.position[1])), o.kind)
            for o in scene_objects]


def sim_dataset(n: int, seed: int = 0, image_size: int = 128, split: str = "train") -> VisionData:
    """``n`` tabletop scenes (reset seeds ``seed .. seed + n - 1``) with captions and records.

    Introduced in lesson 04. ``image_size`` is the render size (96-224); ``split`` the
    scene distribution (``"train"`` or ``"heldout"``, see ``vla_lessons.sim.config``). Same
    arguments, same data. About 0.04 s per scene on 2 CPU cores (2,500 scenes in 102 s).
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    course_env.setup_headless_gl()
    from vla_lessons.sim.config import COLOURS, SHAPES, SceneConfig
    from vla_lessons.sim.env import TabletopEnv

    right, forward = camera_axes()
    sim = TabletopEnv(SceneConfig(image_size=image_size, split=split))
    images, objects = [], []
    try:
        for i in range(n):
            obs, _ = sim.reset(seed=seed + i)
            images.append(obs["image"])
            objects.append(records_of(sim.scene_objects()))
    finally:
        sim.close()
    captions = [caption_scene(objs, right_axis=right, forward_axis=forward) for objs in objects]
    return VisionData(np.stack(images), captions, objects, sorted(COLOURS), sorted(SHAPES))
