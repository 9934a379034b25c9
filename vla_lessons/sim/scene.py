"""The tabletop scene: what is on the table (a `Layout`) and its MJCF, written from Python strings.

Introduced in lesson 01.

The world frame is the robot's base frame: the origin is on the table top under the
``shoulder_pan`` axis, x points forward (away from the robot), y to the robot's left, z up.

**The arm is modelled on the SO-101** (LeRobot's low-cost 5-DoF arm with a gripper). Joint names,
axes, signs, ranges and link offsets are the published kinematics of
``so101_new_calib.xml`` in huggingface/lerobot (``src/lerobot/robots/so101_follower/sim``,
generated from The Robot Studio's Onshape CAD); each number below cites the joint origin it
comes from. As in that "new calibration", joint zero is the middle of each range: the upper arm
stands up, the forearm and the gripper point forward horizontally. Simplifications, all made
on purpose and listed here:

* link shapes are capsules, boxes and cylinders (no meshes);
* the small sideways offsets along the joint axes (-18.3 mm at the shoulder, +18.1 mm at the
  wrist, which cancel) are dropped, so the arm moves in one vertical plane through the pan
  axis and the hand's yaw is exactly the pan angle;
* the tool point sits on the wrist-roll axis (the real gripper frame is 7.9 mm off it);
* the real gripper's hinged jaw is replaced by a **parallel gripper**: two fingers on slide
  joints (``gripper`` and a mirrored ``gripper_mirror`` coupled by an equality), with box
  collision pads on the fingertips;
* bodies are gravity-compensated (``gravcomp``), standing in for the servos' holding torque.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from vla_lessons.sim.config import (COLOURS, NOMINAL_SIZE, PHYSICS_DT, SHAPES, TABLE_LOOKS,
                                    TRAIN_COMBOS, TRAIN_RANGES, SceneConfig)

#: The six actuated joints, in the order of ``obs["joints"]`` and of joint-mode actions.
JOINT_NAMES = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
ARM_JOINTS = JOINT_NAMES[:5]
#: Joint ranges (rad) from so101_new_calib.xml (the gripper there is a hinge; ours slides).
JOINT_RANGES = {
    "shoulder_pan": (-1.91986, 1.91986),
    "shoulder_lift": (-1.74533, 1.74533),
    "elbow_flex": (-1.69, 1.69),
    "wrist_flex": (-1.65806, 1.65806),
    "wrist_roll": (-2.74385, 2.84121),
}
#: Travel of each finger (m): the pads' gap goes from 2 * PAD_GAP0 (closed) to that + 2 * travel.
FINGER_TRAVEL = 0.032
PAD_GAP0 = 0.0025
#: Tool centre point (the ``ee`` site) ahead of the wrist_flex axis (m): 0.0611 + 0.0982, i.e.
#: the real gripper frame's distance (wrist_flex -> wrist_roll -> gripperframe).
TCP_FROM_WRIST = 0.1593
#: Joint angles of the start pose (rad), before the seeded noise: hand above the workspace.
HOME_QPOS = (0.0, -0.55, 0.55, 1.15, 0.0)

#: Receptacles: kind -> geometry (m: rim radius or half side, height), the preposition the
#: instructions use, and their colour.
RECEPTACLES = {
    "plate": {"radius": 0.06, "height": 0.008, "prep": "on", "rgb": (0.93, 0.93, 0.90), "colour": "white"},
    "bowl": {"radius": 0.066, "height": 0.032, "prep": "in", "rgb": (0.45, 0.70, 0.70), "colour": "teal"},
    "tray": {"radius": 0.062, "height": 0.022, "prep": "in", "rgb": (0.32, 0.36, 0.42), "colour": "grey"},
}
ROBOT_RGB = (0.88, 0.88, 0.86)
MOTOR_RGB = (0.12, 0.12, 0.13)
PAD_RGB = (0.20, 0.20, 0.22)

#: Where things may stand: distance from the pan axis (m) and |azimuth| (deg).
FULL_RADIUS = (0.12, 0.29)
FULL_AZIMUTH_DEG = 58.0
RECEPTACLE_RADIUS = (0.15, 0.27)
#: How far the push expert travels, reserved free in front of a push target (m).
PUSH_TRAVEL = 0.10
DIRECTIONS = {"left": (0.0, 1.0), "right": (0.0, -1.0), "forward": (1.0, 0.0), "backward": (-1.0, 0.0)}


def joints_to_lerobot(joints) -> dict:
    """A (6,) joint vector of the sim (``obs["joints"]``, joint-mode actions) as LeRobot's SO-101 dict.

    Introduced in lesson 01, used in lesson 12. LeRobot's ``SO101Follower`` with
    ``use_degrees=True`` reads and takes ``{"<joint>.pos": value}``: degrees for the five arm
    joints (zero at mid-range, like the sim) and 0 (closed) .. 100 (open) for the gripper.
    The sim follows so101_new_calib.xml's signs; check a real arm's signs with a dry run.
    """
    joints = np.asarray(joints, dtype=float)
    if joints.shape != (6,) or not np.all(np.isfinite(joints)):
        raise ValueError(f"joints must be 6 finite numbers ({', '.join(JOINT_NAMES)}), got {joints!r}")
    out = {f"{name}.pos": math.degrees(v) for name, v in zip(ARM_JOINTS, joints[:5], strict=True)}
    out["gripper.pos"] = 100.0 * float(joints[5])
    return out


def joints_from_lerobot(positions: dict) -> np.ndarray:
    """The inverse of `joints_to_lerobot`: float64 (6,) radians and gripper opening 0..1.

    Introduced in lesson 01, used in lesson 12.
    """
    keys = [f"{name}.pos" for name in JOINT_NAMES]
    missing = [k for k in keys if k not in positions]
    if missing:
        raise ValueError(f"missing LeRobot keys {missing}; expected {keys}")
    arm = [math.radians(float(positions[k])) for k in keys[:5]]
    return np.array(arm + [float(positions["gripper.pos"]) / 100.0])


@dataclass(frozen=True)
class ObjectSpec:
    """One movable object: ``size`` is its extents (x, y, z) in metres, ``position`` (x, y) on the table.

    Introduced in lesson 01.
    """

    name: str
    colour: str
    shape: str
    size: tuple
    position: tuple
    yaw: float
    density: float
    is_target: bool


@dataclass(frozen=True)
class ReceptacleSpec:
    """A static receptacle (``plate``, ``bowl`` or ``tray``) at ``position`` (x, y).

    Introduced in lesson 01.
    """

    name: str
    position: tuple
    is_target: bool


@dataclass(frozen=True)
class Layout:
    """One episode's table: its look, the objects (target first) and the receptacles.

    Introduced in lesson 01.
    """

    table: str
    objects: tuple
    receptacles: tuple


# --------------------------------------------------------------------------------------------
# Sampling a layout
# --------------------------------------------------------------------------------------------

def _uniform_in(rng: np.random.Generator, intervals) -> float:
    """A uniform draw from a union of (low, high) intervals, weighted by their lengths."""
    lengths = np.array([hi - lo for lo, hi in intervals], dtype=float)
    k = int(rng.choice(len(intervals), p=lengths / lengths.sum()))
    lo, hi = intervals[k]
    return float(rng.uniform(lo, hi))


def _polar(rng, radius_intervals, azimuth_deg) -> np.ndarray:
    r = _uniform_in(rng, radius_intervals)
    az = math.radians(rng.uniform(-azimuth_deg, azimuth_deg))
    return np.array([r * math.cos(az), r * math.sin(az)])


def in_region(xy, radius, azimuth_deg) -> bool:
    """True when table point ``xy`` lies in the sector ``radius`` = (lo, hi), |azimuth| <= bound.

    Introduced in lesson 10 (the motion axis' regions).
    """
    r = math.hypot(xy[0], xy[1])
    az = math.degrees(math.atan2(xy[1], xy[0]))
    return radius[0] <= r <= radius[1] and abs(az) <= azimuth_deg


def object_size(shape: str, scale: float, aspect: float) -> tuple:
    """Extents (x, y, z) in metres of a ``shape`` at ``scale`` x nominal (``aspect`` = h / d for cylinders).

    Introduced in lesson 01.
    """
    base = NOMINAL_SIZE[shape] * scale
    if shape == "cylinder":
        return (base, base, base * aspect)
    return (base, base, base)


def footprint(size) -> float:
    """Radius (m) of the circle an object of extents ``size`` occupies. Introduced in lesson 01."""
    return 0.5 * math.hypot(size[0], size[1])


def receptacle_footprint(kind: str) -> float:
    """Radius (m) of the circle a receptacle occupies (a tray's: half diagonal). Introduced in lesson 01."""
    radius = RECEPTACLES[kind]["radius"]
    return radius * math.sqrt(2.0) if kind == "tray" else radius


def _sample_object(rng, name, colour, shape, config: SceneConfig, is_target) -> ObjectSpec:
    phys = config.ranges("physical")
    scale = _uniform_in(rng, phys.size_scale)
    aspect = _uniform_in(rng, phys.cylinder_aspect)
    yaw = float(rng.uniform(-math.pi / 4, math.pi / 4)) if shape == "cube" else 0.0
    return ObjectSpec(name, colour, shape, object_size(shape, scale, aspect), (0.0, 0.0), yaw,
                      phys.density, is_target)


def _free(xy, radius, taken) -> bool:
    return all(math.hypot(xy[0] - x, xy[1] - y) >= radius + r for (x, y), r in taken)


def _target_start(rng, task, size, config: SceneConfig) -> np.ndarray | None:
    """A start for the task's object in the motion axis' region (None if this draw failed)."""
    motion = config.ranges("motion")
    xy = _polar(rng, motion.radius, motion.azimuth_deg)
    if motion.exclude_train_region and in_region(xy, TRAIN_RANGES.radius[0], TRAIN_RANGES.azimuth_deg):
        return None
    if task.family == "push":
        end = xy + PUSH_TRAVEL * np.array(DIRECTIONS[task.direction])
        behind = xy - (footprint(size) + 0.06) * np.array(DIRECTIONS[task.direction])
        reach = (0.11, 0.285)
        if not (in_region(end, reach, 62.0) and in_region(behind, reach, 62.0)):
            return None
    return xy


def sample_layout(rng: np.random.Generator, task, config: SceneConfig) -> Layout:
    """Draw a `Layout` for ``task`` (a `TaskSpec`) from the distributions of ``config``.

    Introduced in lesson 01. The task's object is ``objects[0]``; distractors never share its
    colour and shape, receptacles are two of plate/bowl/tray (always the place target).
    Deterministic given the state of ``rng``.
    """
    visual = config.ranges("visual")
    table = str(rng.choice(visual.tables))
    n_distractors = int(rng.integers(visual.n_distractors[0], visual.n_distractors[1] + 1))
    for _attempt in range(200):
        layout = _try_layout(rng, task, config, table, n_distractors)
        if layout is not None:
            return layout
    raise RuntimeError("could not place the objects without overlap; this is a bug in the ranges")


def _try_layout(rng, task, config, table, n_distractors) -> Layout | None:
    target = _sample_object(rng, "obj0", task.colour, task.shape, config, True)
    start = None
    for _ in range(100):
        start = _target_start(rng, task, target.size, config)
        if start is not None:
            break
    if start is None:
        return None
    target = replace(target, position=(float(start[0]), float(start[1])))
    taken = [(tuple(start), footprint(target.size) + 0.012)]
    if task.family == "push":  # keep the push corridor and the pusher's approach free
        d = np.array(DIRECTIONS[task.direction])
        for s in np.linspace(-0.07, PUSH_TRAVEL + 0.04, 8):
            taken.append((tuple(start + s * d), footprint(target.size) + 0.01))

    kinds = ["plate", "bowl", "tray"]
    first = task.target if task.family == "place" else str(rng.choice(kinds))
    second = str(rng.choice([k for k in kinds if k != first]))
    receptacles = []
    for kind in (first, second):
        xy = _place(rng, RECEPTACLE_RADIUS, FULL_AZIMUTH_DEG, receptacle_footprint(kind) + 0.01, taken)
        if xy is None:
            return None
        receptacles.append(ReceptacleSpec(kind, xy, task.family == "place" and kind == task.target))

    combos = [c for c in TRAIN_COMBOS if c != (task.colour, task.shape)]
    picks = rng.choice(len(combos), size=n_distractors, replace=False)
    objects = [target]
    for i, k in enumerate(picks):
        colour, shape = combos[int(k)]
        obj = _sample_object(rng, f"obj{i + 1}", colour, shape, config, False)
        xy = _place(rng, FULL_RADIUS, FULL_AZIMUTH_DEG, footprint(obj.size) + 0.012, taken)
        if xy is None:
            return None
        objects.append(replace(obj, position=xy))
    return Layout(table, tuple(objects), tuple(receptacles))


def _place(rng, radius, azimuth_deg, r_self, taken):
    for _ in range(60):
        xy = _polar(rng, (radius,), azimuth_deg)
        if _free(xy, r_self, taken):
            taken.append((tuple(xy), r_self))
            return (float(xy[0]), float(xy[1]))
    return None


# --------------------------------------------------------------------------------------------
# MJCF
# --------------------------------------------------------------------------------------------

def _f(*values) -> str:
    return " ".join(f"{v:.6g}" for v in values)


def look_at_xyaxes(pos, target, up=(0.0, 0.0, 1.0)) -> str:
    """MJCF ``xyaxes`` of a camera at ``pos`` looking at ``target`` (a camera looks along its -z).

    Introduced in lesson 01.
    """
    pos, target, up = (np.asarray(v, dtype=float) for v in (pos, target, up))
    forward = target - pos
    forward /= np.linalg.norm(forward)
    x = np.cross(forward, up)
    x /= np.linalg.norm(x)
    y = np.cross(x, forward)
    return _f(*x, *y)


#: The third-person camera: in front of the robot, to its right, looking at the workspace.
THIRD_PERSON_POS = (0.48, -0.17, 0.34)
THIRD_PERSON_TARGET = (0.17, 0.01, 0.0)
THIRD_PERSON_FOVY = 54


def _arm_xml() -> str:
    """The SO-101-like arm. Offsets (m) are the joint origins of so101_new_calib.xml."""
    r = JOINT_RANGES
    grey, dark, pad = _f(*ROBOT_RGB, 1), _f(*MOTOR_RGB, 1), _f(*PAD_RGB, 1)
    wrist_cam = look_at_xyaxes((0.015, 0.0, 0.05), (0.135, 0.0, 0.0), up=(1.0, 0.0, 0.0))
    tcp = TCP_FROM_WRIST - 0.0611
    finger_x, finger_hx = 0.077, 0.031
    return f"""
    <body name="base" pos="0 0 0" childclass="arm">
      <geom class="arm_visual" type="cylinder" pos="0 0 0.03" size="0.045 0.03" rgba="{grey}"/>
      <geom class="arm_visual" type="box" pos="0.0 0 0.045" size="0.022 0.02 0.017" rgba="{dark}"/>
      <!-- shoulder_pan: base -> shoulder origin z = 0.0624 -->
      <body name="shoulder" pos="0 0 0.0624" gravcomp="1">
        <joint name="shoulder_pan" axis="0 0 -1" range="{_f(*r['shoulder_pan'])}"/>
        <geom class="arm_visual" type="box" pos="0.018 0 0.027" size="0.026 0.028 0.026" rgba="{grey}"/>
        <geom type="box" pos="0.018 0 0.027" size="0.026 0.028 0.026" mass="0.1" group="3"/>
        <!-- shoulder_lift: shoulder -> upper_arm origin (0.0304, 0, 0.0542) -->
        <body name="upper_arm" pos="0.0304 0 0.0542" gravcomp="1">
          <joint name="shoulder_lift" axis="0 1 0" range="{_f(*r['shoulder_lift'])}"/>
          <geom class="arm_visual" type="cylinder" quat="0.7071068 0.7071068 0 0" size="0.02 0.024" rgba="{dark}"/>
          <geom type="capsule" fromto="0 0 0 0.028 0 0.1126" size="0.016" mass="0.103" rgba="{grey}"/>
          <!-- elbow_flex: upper_arm -> lower_arm origin (0.028, 0, 0.1126), |.| = 0.116 -->
          <body name="lower_arm" pos="0.028 0 0.1126" gravcomp="1">
            <joint name="elbow_flex" axis="0 1 0" range="{_f(*r['elbow_flex'])}"/>
            <geom class="arm_visual" type="cylinder" quat="0.7071068 0.7071068 0 0" size="0.019 0.022" rgba="{dark}"/>
            <geom type="capsule" fromto="0 0 0 0.1349 0 0.0052" size="0.014" mass="0.104" rgba="{grey}"/>
            <!-- wrist_flex: lower_arm -> wrist origin (0.1349, 0, 0.0052) -->
            <body name="wrist" pos="0.1349 0 0.0052" gravcomp="1">
              <joint name="wrist_flex" axis="0 1 0" range="{_f(*r['wrist_flex'])}"/>
              <geom class="arm_visual" type="cylinder" quat="0.7071068 0.7071068 0 0" size="0.017 0.021" rgba="{dark}"/>
              <geom type="capsule" fromto="0 0 0 0.05 0 0" size="0.014" mass="0.079" rgba="{grey}"/>
              <!-- wrist_roll: wrist -> gripper origin 0.0611 along the forearm; its frame is the
                   tool frame: x = approach, y = finger axis, z = x cross y -->
              <body name="hand" pos="0.0611 0 0" gravcomp="1">
                <joint name="wrist_roll" axis="-1 0 0" range="{_f(*r['wrist_roll'])}"/>
                <geom class="arm_visual" type="box" pos="0.012 0 0" size="0.014 0.02 0.02" rgba="{dark}"/>
                <geom type="box" pos="0.036 0 0" size="0.01 0.046 0.015" mass="0.087" rgba="{grey}"/>
                <site name="ee" pos="{tcp:.4f} 0 0" size="0.004" rgba="1 0 0 0.5" group="4"/>
                <camera name="wrist" pos="0.015 0 0.05" xyaxes="{wrist_cam}" fovy="75"/>
                <body name="finger_left" pos="0 0 0" gravcomp="1">
                  <joint name="gripper" class="finger" axis="0 1 0"/>
                  <geom class="finger" pos="{finger_x} {PAD_GAP0 + 0.0055:.4f} 0" size="{finger_hx} 0.004 0.011" rgba="{grey}"/>
                  <geom class="pad" name="pad_left" pos="{tcp:.4f} {PAD_GAP0 + 0.0015:.4f} 0" rgba="{pad}"/>
                </body>
                <body name="finger_right" pos="0 0 0" gravcomp="1">
                  <joint name="gripper_mirror" class="finger" axis="0 -1 0"/>
                  <geom class="finger" pos="{finger_x} {-(PAD_GAP0 + 0.0055):.4f} 0" size="{finger_hx} 0.004 0.011" rgba="{grey}"/>
                  <geom class="pad" name="pad_right" pos="{tcp:.4f} {-(PAD_GAP0 + 0.0015):.4f} 0" rgba="{pad}"/>
                </body>
              </body>
            </body>
          </body>
        </body>
      </body>
    </body>"""


def _object_xml(obj: ObjectSpec) -> str:
    rgba = _f(*COLOURS[obj.colour], 1)
    sx, sy, sz = obj.size
    pos = _f(obj.position[0], obj.position[1], sz / 2 + 0.0005)
    quat = _f(math.cos(obj.yaw / 2), 0, 0, math.sin(obj.yaw / 2))
    if obj.shape == "cube":
        geom = f'type="box" size="{_f(sx / 2, sy / 2, sz / 2)}"'
    elif obj.shape == "ball":
        geom = f'type="sphere" size="{sx / 2:.6g}" condim="6" friction="1 0.005 0.0005"'
    else:
        geom = f'type="cylinder" size="{_f(sx / 2, sz / 2)}"'
    return (f'    <body name="{obj.name}" pos="{pos}" quat="{quat}">\n'
            f'      <freejoint name="{obj.name}"/>\n'
            f'      <geom name="{obj.name}" class="object" {geom} density="{obj.density:.6g}" rgba="{rgba}"/>\n'
            f'    </body>')


def _receptacle_xml(rec: ReceptacleSpec) -> str:
    spec = RECEPTACLES[rec.name]
    rgba = _f(*spec["rgb"], 1)
    x, y = rec.position
    radius, height = spec["radius"], spec["height"]
    parts = [f'    <body name="{rec.name}" pos="{_f(x, y, 0)}">']
    if rec.name == "plate":
        parts.append(f'      <geom class="receptacle" type="cylinder" pos="0 0 {height / 2:.4f}" '
                     f'size="{_f(radius, height / 2)}" rgba="{rgba}"/>')
        parts.append(f'      <geom class="receptacle_visual" type="cylinder" pos="0 0 {height:.4f}" '
                     f'size="{_f(radius * 0.72, 0.0004)}" rgba="{_f(0.85, 0.85, 0.82, 1)}"/>')
    else:
        floor = 0.004
        parts.append(f'      <geom class="receptacle" type="cylinder" pos="0 0 {floor / 2:.4f}" '
                     f'size="{_f(radius, floor / 2)}" rgba="{rgba}"/>' if rec.name == "bowl" else
                     f'      <geom class="receptacle" type="box" pos="0 0 {floor / 2:.4f}" '
                     f'size="{_f(radius, radius, floor / 2)}" rgba="{rgba}"/>')
        n, wall = (12, 0.004) if rec.name == "bowl" else (4, 0.005)
        chord = 2 * radius * math.tan(math.pi / n) + (0.004 if rec.name == "bowl" else 2 * wall)
        for k in range(n):
            a = 2 * math.pi * k / n
            cx, cy = (radius - wall) * math.cos(a), (radius - wall) * math.sin(a)
            quat = _f(math.cos(a / 2), 0, 0, math.sin(a / 2))
            parts.append(f'      <geom class="receptacle" type="box" pos="{_f(cx, cy, height / 2)}" '
                         f'quat="{quat}" size="{_f(wall, chord / 2, height / 2)}" rgba="{rgba}"/>')
    parts.append("    </body>")
    return "\n".join(parts)


def _table_asset(table: str) -> tuple:
    rgb1, rgb2, builtin = TABLE_LOOKS[table]
    if builtin == "flat":
        return "", f'rgba="{_f(*rgb1, 1)}"'
    texture = (f'<texture name="table" type="2d" builtin="{builtin}" rgb1="{_f(*rgb1)}" '
               f'rgb2="{_f(*rgb2)}" width="256" height="256"/>\n'
               f'    <material name="table" texture="table" texrepeat="{8 if builtin == "checker" else 1} '
               f'{10 if builtin == "checker" else 1}" texuniform="false"/>')
    return texture, 'material="table"'


def scene_xml(layout: Layout, image_size: int = 128) -> str:
    """The complete MJCF (a string) of the tabletop with ``layout`` on it.

    Introduced in lesson 01. Rendering is set up for speed: shadows and multisampling off
    (``shadowsize="0" offsamples="0"``), which makes CPU rendering about 10x faster.
    """
    texture, table_look = _table_asset(layout.table)
    objects = "\n".join(_object_xml(o) for o in layout.objects)
    receptacles = "\n".join(_receptacle_xml(r) for r in layout.receptacles)
    third = look_at_xyaxes(THIRD_PERSON_POS, THIRD_PERSON_TARGET)
    actuators = "\n".join(
        f'    <position class="arm" name="{j}" joint="{j}" ctrlrange="{_f(*JOINT_RANGES[j])}"/>' for j in ARM_JOINTS)
    return f"""<mujoco model="vla_lessons_tabletop">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{PHYSICS_DT}" integrator="implicitfast" cone="elliptic" impratio="10"/>
  <visual>
    <quality shadowsize="0" offsamples="0"/>
    <global offwidth="{image_size}" offheight="{image_size}"/>
    <headlight ambient="0.45 0.45 0.45" diffuse="0.45 0.45 0.45" specular="0 0 0"/>
  </visual>
  <asset>
    {texture}
    <texture name="sky" type="skybox" builtin="gradient" rgb1="0.80 0.82 0.85" rgb2="0.55 0.57 0.60" width="64" height="64"/>
  </asset>
  <default>
    <default class="arm">
      <joint damping="0.3" armature="0.028" frictionloss="0.02"/>
      <geom contype="2" conaffinity="1" friction="0.8 0.005 0.0001"/>
      <position kp="150" dampratio="1" forcerange="-8 8"/>
      <default class="arm_visual">
        <geom contype="0" conaffinity="0" mass="0" group="1"/>
      </default>
      <default class="finger">
        <joint type="slide" range="0 {FINGER_TRAVEL}" damping="3" armature="0.002" frictionloss="0"/>
        <geom type="box" mass="0.015"/>
      </default>
      <default class="pad">
        <geom type="box" size="0.011 0.0015 0.0105" mass="0.002" condim="6" priority="1"
              friction="1.6 0.02 0.001" solref="0.004 1" solimp="0.95 0.99 0.001"/>
      </default>
    </default>
    <default class="object">
      <geom condim="4" friction="1.0 0.005 0.0001" solref="0.005 1" solimp="0.95 0.99 0.001"/>
    </default>
    <default class="receptacle">
      <geom contype="1" conaffinity="1" condim="3" friction="0.9 0.005 0.0001"/>
      <default class="receptacle_visual">
        <geom contype="0" conaffinity="0"/>
      </default>
    </default>
  </default>
  <worldbody>
    <light name="sun" directional="true" pos="0.2 -0.2 1.2" dir="-0.15 0.2 -1" diffuse="0.55 0.55 0.55" castshadow="false"/>
    <geom name="floor" type="plane" pos="0 0 -0.75" size="3 3 0.1" rgba="0.42 0.42 0.44 1" contype="0" conaffinity="0"/>
    <geom name="table" type="box" pos="0.17 0 -0.02" size="0.42 0.55 0.02" {table_look}
          friction="0.9 0.005 0.0001" condim="3"/>
    <camera name="third_person" pos="{_f(*THIRD_PERSON_POS)}" xyaxes="{third}" fovy="{THIRD_PERSON_FOVY}"/>
{_arm_xml()}
{receptacles}
{objects}
  </worldbody>
  <equality>
    <joint joint1="gripper_mirror" joint2="gripper" polycoef="0 1 0 0 0" solref="0.004 1"/>
  </equality>
  <actuator>
{actuators}
    <position name="gripper" joint="gripper" ctrlrange="0 {FINGER_TRAVEL}" kp="300" dampratio="1" forcerange="-7 7"/>
  </actuator>
</mujoco>
"""


def default_layout() -> Layout:
    """A fixed small layout (red cube, green ball, plate, bowl) for quick looks and tests.

    Introduced in lesson 01.
    """
    cube = ObjectSpec("obj0", "red", "cube", object_size("cube", 1.0, 1.0), (0.21, 0.0), 0.0,
                      TRAIN_RANGES.density, True)
    ball = ObjectSpec("obj1", "green", "ball", object_size("ball", 1.0, 1.0), (0.18, 0.12), 0.0,
                      TRAIN_RANGES.density, False)
    return Layout("oak", (cube, ball), (ReceptacleSpec("plate", (0.20, -0.15), False),
                                        ReceptacleSpec("bowl", (0.26, 0.16), False)))


assert set(SHAPES) == set(NOMINAL_SIZE)
