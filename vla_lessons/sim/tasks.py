"""Language tasks on the tabletop: families, instruction templates and their success tests.

Introduced in lesson 01.

Three task families, each with instruction templates split into train and held-out phrasings
(the *semantic* generalization axis):

* ``pick``  -- "pick up the red cube": success when the object's lowest point is at least
  ``PICK_HEIGHT`` above the table while both fingers touch it (lifted and held);
* ``place`` -- "put the green ball in the bowl": success when the object rests on/in the
  receptacle (centre inside its rim, bottom near its floor, slower than ``REST_SPEED``) and the
  gripper has let go;
* ``push``  -- "push the blue cylinder left": success when the object has moved at least
  ``PUSH_DISTANCE`` along the direction and was not lifted. Directions are the robot's:
  forward = +x (away from the robot), backward = -x, left = +y, right = -y.

A success test must hold for ``SUCCESS_HOLD_STEPS`` consecutive control steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vla_lessons.sim.config import COLOURS, SHAPES, SceneConfig
from vla_lessons.sim.scene import DIRECTIONS, RECEPTACLES

#: Family name -> the episode length limit (control steps at CONTROL_HZ) and its templates.
MAX_STEPS = {"pick": 60, "place": 100, "push": 70}

PICK_HEIGHT = 0.05
PUSH_DISTANCE = 0.06
REST_SPEED = 0.05
SUCCESS_HOLD_STEPS = 2

#: ``{object}`` is "<colour> <shape>"; ``{prep}`` "on"/"in"; ``{target}`` a receptacle;
#: ``{direction}`` a direction phrase from DIRECTION_WORDS.
TEMPLATES = {
    "pick": {
        "train": ("pick up the {object}", "grab the {object}", "lift the {object}",
                  "pick the {object} up"),
        "heldout": ("take hold of the {object} and raise it", "could you lift up the {object}"),
    },
    "place": {
        "train": ("put the {object} {prep} the {target}", "place the {object} {prep} the {target}",
                  "move the {object} {prep} the {target}"),
        "heldout": ("set the {object} down {prep} the {target}",
                    "the {object} goes {prep} the {target}"),
    },
    "push": {
        "train": ("push the {object} {direction}", "slide the {object} {direction}",
                  "shove the {object} {direction}"),
        "heldout": ("nudge the {object} {direction}", "give the {object} a push {direction}"),
    },
}
#: Direction phrases: train words and unseen (held-out) ones.
DIRECTION_WORDS = {
    "train": {"left": "left", "right": "right", "forward": "forward", "backward": "backward"},
    "heldout": {"left": "to the left", "right": "to the right", "forward": "away from the robot",
                "backward": "toward the robot"},
}
FAMILIES = tuple(TEMPLATES)


@dataclass(frozen=True)
class TaskSpec:
    """A fully specified task: which family, which object, where to, and its instruction.

    Introduced in lesson 01. ``target`` is a receptacle (``place`` only), ``direction`` one of
    left/right/forward/backward (``push`` only). With ``instruction=None`` the first train
    template of the family is used.
    """

    family: str
    colour: str
    shape: str
    target: str | None = None
    direction: str | None = None
    instruction: str | None = None

    def __post_init__(self):
        check_family(self.family)
        if self.colour not in COLOURS:
            raise ValueError(f"unknown colour {self.colour!r}; known: {tuple(COLOURS)}")
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; known: {SHAPES}")
        if (self.family == "place") != (self.target is not None):
            raise ValueError(f"target (a receptacle from {tuple(RECEPTACLES)}) is required for "
                             f"place tasks and only for them, got target={self.target!r}")
        if self.target is not None and self.target not in RECEPTACLES:
            raise ValueError(f"unknown receptacle {self.target!r}; known: {tuple(RECEPTACLES)}")
        if (self.family == "push") != (self.direction is not None):
            raise ValueError(f"direction (one of {tuple(DIRECTIONS)}) is required for push tasks "
                             f"and only for them, got direction={self.direction!r}")
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {self.direction!r}; known: {tuple(DIRECTIONS)}")
        if self.instruction is None:
            first = TEMPLATES[self.family]["train"][0]
            object.__setattr__(self, "instruction", render_instruction(self, first))
        elif not isinstance(self.instruction, str) or not self.instruction.strip():
            raise ValueError(f"instruction must be a non-empty string, got {self.instruction!r}")

    @property
    def object_phrase(self) -> str:
        """The object as the instructions name it, e.g. ``"red cube"``."""
        return f"{self.colour} {self.shape}"


def check_family(family) -> str:
    """Return ``family`` if it is a known task family, else raise a ValueError listing them.

    Introduced in lesson 01.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown task family {family!r}; known: {FAMILIES}")
    return family


def render_instruction(task: TaskSpec, template: str, split: str = "train") -> str:
    """Fill ``template`` with the task's object, receptacle and direction phrase (of ``split``).

    Introduced in lesson 01.
    """
    return template.format(
        object=task.object_phrase,
        prep=RECEPTACLES[task.target]["prep"] if task.target else "",
        target=task.target or "",
        direction=DIRECTION_WORDS[split][task.direction] if task.direction else "",
    )


def instructions_for(task: TaskSpec, split: str = "train") -> list:
    """Every phrasing of ``task`` in ``split`` (``"train"`` or ``"heldout"``). Introduced in lesson 01."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    return [render_instruction(task, t, split) for t in TEMPLATES[task.family][split]]


def sample_task(rng: np.random.Generator, family: str, config: SceneConfig) -> TaskSpec:
    """Draw a task of ``family``: object from the language axis, phrasing from the semantic axis.

    Introduced in lesson 01. Deterministic given the state of ``rng``.
    """
    check_family(family)
    combos = config.ranges("language").combos
    colour, shape = combos[int(rng.integers(len(combos)))]
    target = str(rng.choice(tuple(RECEPTACLES))) if family == "place" else None
    direction = str(rng.choice(tuple(DIRECTIONS))) if family == "push" else None
    split = config.axis_split("semantic")
    templates = TEMPLATES[family][split]
    template = templates[int(rng.integers(len(templates)))]
    spec = TaskSpec(family, colour, shape, target, direction)
    return TaskSpec(family, colour, shape, target, direction, render_instruction(spec, template, split))


@dataclass(frozen=True)
class ObjectState:
    """Privileged state of the task's object that the success tests read.

    Introduced in lesson 01. Positions in metres (world frame), ``bottom`` is the height of
    its lowest point above the table, ``speed`` its linear speed (m/s), ``touching`` how many
    of the two fingers touch it (0, 1 or 2).
    """

    position: np.ndarray
    start: np.ndarray
    bottom: float
    speed: float
    touching: int


def _inside(receptacle: str, centre, offset) -> bool:
    """Is a point at ``offset`` (x, y) from the receptacle ``centre`` inside its rim?"""
    rim = RECEPTACLES[receptacle]["radius"] - (0.0 if receptacle == "plate" else 0.008)
    dx, dy = offset[0] - centre[0], offset[1] - centre[1]
    if receptacle == "tray":
        return abs(dx) <= rim and abs(dy) <= rim
    return float(np.hypot(dx, dy)) <= rim


def floor_height(receptacle: str) -> float:
    """Height (m) of the surface an object rests on in/on ``receptacle``. Introduced in lesson 01."""
    return RECEPTACLES[receptacle]["height"] if receptacle == "plate" else 0.004


def is_success(task: TaskSpec, obj: ObjectState, receptacle_xy=None) -> bool:
    """The success test of ``task`` for one instant (the env also asks it to hold for a while).

    Introduced in lesson 01. ``receptacle_xy`` is the (x, y) of the place target.
    """
    if task.family == "pick":
        return obj.bottom >= PICK_HEIGHT and obj.touching == 2
    if task.family == "place":
        if receptacle_xy is None:
            raise ValueError("place tasks need receptacle_xy, the (x, y) of the target receptacle")
        return (_inside(task.target, receptacle_xy, obj.position[:2])
                and obj.bottom <= floor_height(task.target) + 0.012
                and obj.speed <= REST_SPEED and obj.touching == 0)
    moved = (obj.position[:2] - obj.start[:2]) @ np.asarray(DIRECTIONS[task.direction])
    return bool(moved >= PUSH_DISTANCE and obj.bottom <= 0.02)


def max_steps(family: str, config: SceneConfig) -> int:
    """The episode length limit of ``family`` (``config.max_steps`` overrides). Introduced in lesson 01."""
    return config.max_steps if config.max_steps is not None else MAX_STEPS[check_family(family)]
