"""What a tabletop episode may look like: the control rate, the action limits and `SceneConfig`.

Introduced in lesson 01 (the scene) and used again in lesson 10 (success per generalization axis).

Everything that varies between episodes is drawn from a *distribution* chosen by `SceneConfig`.
Each of five **generalization axes** has a ``train`` and a ``heldout`` distribution, and an
evaluation switches one axis at a time to its held-out side:

==========  ======================================  =============================================
axis        train                                   held-out
==========  ======================================  =============================================
visual      table looks ``TRAIN_TABLES``,           table looks ``HELDOUT_TABLES`` (incl. a
            1-2 distractor objects                  checker texture), 3-4 distractors
motion      target object starts in the sector      target starts outside it (nearer, farther or
            r in [0.17, 0.25] m, |azimuth| <= 30 deg more to the side: r in [0.13, 0.28] m,
                                                    |azimuth| <= 45 deg)
physical    size x [0.9, 1.1] of nominal, cylinder  size x [0.7, 0.8] or [1.2, 1.3], cylinder
            height/diameter in [1.1, 1.4],           height/diameter in [0.75, 0.9] or [1.6, 1.8],
            density 400 kg/m^3                      density 900 kg/m^3 (heavier)
language    target colour+shape from                target colour+shape from ``HELDOUT_COMBOS``
            the train combinations                  (every colour and shape seen, never together)
semantic    train phrasings (see ``tasks.py``)      unseen phrasings and direction words
==========  ======================================  =============================================

``SceneConfig(split="train")`` draws every axis from train, ``SceneConfig(split="heldout")`` every
axis from held-out, and ``SceneConfig(heldout=("visual",))`` only the visual axis.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

#: The one control rate of the simulated robot (Hz): one `TabletopEnv.step` = 1 / CONTROL_HZ s.
CONTROL_HZ = 10
#: Physics time step (s); `SUBSTEPS` physics steps make one control step.
PHYSICS_DT = 0.002
SUBSTEPS = round(1.0 / (CONTROL_HZ * PHYSICS_DT))

#: Action limits per control step: |dx|, |dy|, |dz| (m) and |droll|, |dpitch|, |dyaw| (rad).
MAX_DPOS = 0.03
MAX_DROT = 0.3

GENERALIZATION_AXES = ("visual", "motion", "physical", "language", "semantic")
SPLITS = ("train", "heldout")
ACTION_MODES = ("ee_delta", "joint")
IMAGE_SIZE_RANGE = (96, 224)

#: Object colours (name -> RGB in [0, 1]); the instruction names them.
COLOURS = {
    "red": (0.85, 0.12, 0.10),
    "green": (0.15, 0.65, 0.20),
    "blue": (0.12, 0.30, 0.90),
    "yellow": (0.95, 0.82, 0.10),
    "purple": (0.55, 0.20, 0.75),
    "orange": (1.00, 0.50, 0.05),
}
SHAPES = ("cube", "ball", "cylinder")
#: Colour-shape pairs never seen in training (neither as target nor as distractor).
HELDOUT_COMBOS = (
    ("red", "ball"), ("green", "cylinder"), ("blue", "cube"),
    ("yellow", "ball"), ("purple", "cylinder"), ("orange", "cube"),
)
TRAIN_COMBOS = tuple((c, s) for c in COLOURS for s in SHAPES if (c, s) not in HELDOUT_COMBOS)

#: Nominal object sizes (m): cube edge, ball diameter, cylinder diameter.
NOMINAL_SIZE = {"cube": 0.035, "ball": 0.04, "cylinder": 0.032}

#: Table looks: name -> (rgb1, rgb2, builtin texture or "flat").
TABLE_LOOKS = {
    "oak": ((0.62, 0.47, 0.32), (0.55, 0.41, 0.27), "gradient"),
    "grey": ((0.55, 0.56, 0.58), (0.50, 0.51, 0.53), "flat"),
    "cream": ((0.86, 0.83, 0.74), (0.80, 0.77, 0.68), "flat"),
    "checker": ((0.30, 0.32, 0.36), (0.62, 0.64, 0.68), "checker"),
    "felt": ((0.16, 0.36, 0.30), (0.13, 0.31, 0.26), "flat"),
}
TRAIN_TABLES = ("oak", "grey", "cream")
HELDOUT_TABLES = ("checker", "felt")


@dataclass(frozen=True)
class AxisRanges:
    """The numbers behind one side (train or held-out) of the generalization axes.

    Introduced in lesson 10. Intervals are lists of ``(low, high)`` pairs to draw from.
    """

    tables: tuple
    n_distractors: tuple          # inclusive (low, high)
    radius: tuple                 # intervals for the target's distance from the pan axis (m)
    azimuth_deg: float            # |azimuth| bound of the target's start (deg)
    exclude_train_region: bool    # held-out motion: reject starts inside the train sector
    size_scale: tuple             # intervals
    cylinder_aspect: tuple        # intervals of height / diameter
    density: float                # kg / m^3
    combos: tuple                 # target (colour, shape) pairs


TRAIN_RANGES = AxisRanges(
    tables=TRAIN_TABLES, n_distractors=(1, 2), radius=((0.17, 0.25),), azimuth_deg=30.0,
    exclude_train_region=False, size_scale=((0.9, 1.1),), cylinder_aspect=((1.1, 1.4),),
    density=400.0, combos=TRAIN_COMBOS,
)
HELDOUT_RANGES = AxisRanges(
    tables=HELDOUT_TABLES, n_distractors=(3, 4), radius=((0.13, 0.28),), azimuth_deg=45.0,
    exclude_train_region=True, size_scale=((0.7, 0.8), (1.2, 1.3)),
    cylinder_aspect=((0.75, 0.9), (1.6, 1.8)), density=900.0, combos=HELDOUT_COMBOS,
)


@dataclass(frozen=True)
class SceneConfig:
    """Everything that chooses the distribution of tabletop episodes.

    Introduced in lesson 01.

    Args:
        split: ``"train"`` or ``"heldout"``: the side of *every* generalization axis.
        heldout: axes (from ``GENERALIZATION_AXES``) drawn from their held-out side while the
            others stay on train. Use either this or ``split="heldout"``, not both.
        image_size: side of the square uint8 images, in pixels (96-224).
        render_images: False skips both cameras (fast expert runs); the observation then has
            no ``"image"``/``"wrist_image"`` keys.
        action_mode: ``"ee_delta"`` (OpenVLA's 7-vector of end-effector deltas) or ``"joint"``
            (6 absolute joint targets, like LeRobot's SO-101).
        families: task families that ``reset(options={"task": None})`` samples from.
        max_steps: episode length limit; ``None`` uses each family's ``MAX_STEPS`` in tasks.py.
        binary_gripper: True turns the gripper command into open (> 0.5) or closed, as
            SimplerEnv does for Bridge policies; False tracks the opening continuously.
        arm_init_noise: std (rad) of the seeded noise on the arm's start joint angles.
    """

    split: str = "train"
    heldout: tuple = ()
    image_size: int = 128
    render_images: bool = True
    action_mode: str = "ee_delta"
    families: tuple = ("pick", "place", "push")
    max_steps: int | None = None
    binary_gripper: bool = True
    arm_init_noise: float = 0.02

    def __post_init__(self):
        from vla_lessons.sim.tasks import FAMILIES  # tasks imports this module

        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if isinstance(self.heldout, str) or not isinstance(self.heldout, (tuple, list)):
            raise ValueError(f"heldout must be a tuple of axis names from {GENERALIZATION_AXES}, "
                             f"got {self.heldout!r}")
        unknown = [a for a in self.heldout if a not in GENERALIZATION_AXES]
        if unknown:
            raise ValueError(f"unknown generalization axes {unknown}; known: {GENERALIZATION_AXES}")
        if self.split == "heldout" and self.heldout:
            raise ValueError("give either split='heldout' (all axes) or heldout=(axes...), not both")
        object.__setattr__(self, "heldout", tuple(self.heldout))
        lo, hi = IMAGE_SIZE_RANGE
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, int) \
                or not lo <= self.image_size <= hi:
            raise ValueError(f"image_size must be an int in [{lo}, {hi}], got {self.image_size!r}")
        for name in ("render_images", "binary_gripper"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.action_mode not in ACTION_MODES:
            raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {self.action_mode!r}")
        if isinstance(self.families, str) or not self.families:
            raise ValueError(f"families must be a non-empty tuple of {tuple(FAMILIES)}, "
                             f"got {self.families!r}")
        bad = [f for f in self.families if f not in FAMILIES]
        if bad:
            raise ValueError(f"unknown task families {bad}; known: {tuple(FAMILIES)}")
        object.__setattr__(self, "families", tuple(self.families))
        if self.max_steps is not None and (isinstance(self.max_steps, bool)
                                           or not isinstance(self.max_steps, int)
                                           or self.max_steps < 1):
            raise ValueError(f"max_steps must be None or a positive int, got {self.max_steps!r}")
        noise = self.arm_init_noise
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise <= 0.2:
            raise ValueError(f"arm_init_noise must be a number in [0, 0.2] rad, got {noise!r}")

    def axis_split(self, axis: str) -> str:
        """``"train"`` or ``"heldout"``: the side that ``axis`` is drawn from. Introduced in lesson 10."""
        if axis not in GENERALIZATION_AXES:
            raise ValueError(f"unknown generalization axis {axis!r}; known: {GENERALIZATION_AXES}")
        if self.split == "heldout" or axis in self.heldout:
            return "heldout"
        return "train"

    def ranges(self, axis: str) -> AxisRanges:
        """The `AxisRanges` to draw ``axis`` from. Introduced in lesson 10."""
        return HELDOUT_RANGES if self.axis_split(axis) == "heldout" else TRAIN_RANGES

    @classmethod
    def field_names(cls) -> tuple:
        """The field names, for error messages about unknown options. Introduced in lesson 01."""
        return tuple(f.name for f in fields(cls))
