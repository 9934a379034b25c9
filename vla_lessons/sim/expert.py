"""`ScriptedExpert`: a hand-written policy that solves every task family from privileged state.

Introduced in lesson 01 (it records the course's demonstrations).

The expert reads the end-effector pose from ``obs["state"]`` and the objects' poses from the
simulator (privileged: a learned policy only sees the images). It runs a small state machine
per family -- pick: approach above, descend, close, lift; place: pick, carry, lower, release,
retreat; push: close, get behind the object, lower, push along the direction, retreat -- and
turns each waypoint into a bounded end-effector delta with a proportional step capped at a
speed, so motions are smooth: no teleports, the gripper is either 1.0 (open) or 0.0 (closed).
A downward phase also ends when the hand has stopped moving: the env keeps the hand off the
table (`vla_lessons.sim.env.ARM_FLOOR`), so a tilted, open hand may rest above its goal.
``noise`` adds seeded Gaussian noise to the motion part of the actions, for diverse data.
"""

from __future__ import annotations

import math

import numpy as np

from vla_lessons.sim.config import MAX_DPOS, MAX_DROT
from vla_lessons.sim.scene import DIRECTIONS, RECEPTACLES, footprint
from vla_lessons.sim.tasks import PUSH_DISTANCE, floor_height

GRASP_PITCH = 1.25
PUSH_PITCH = 1.30
HOVER = 0.07        # approach height above the grasp point (m)
CARRY_Z = 0.11      # tool height while carrying (m)
RELEASE_GAP = 0.015  # object bottom above the receptacle floor when it is let go (m)
GAIN = 0.7
STALL = 0.0015      # a hand that moved less than this (m) in a step has stopped (it rests on something)


def _yaw_of(quat) -> float:
    w, x, y, z = quat
    return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def align_roll(angle: float, hand_yaw: float, pitch: float) -> float:
    """Roll (rad) that turns the finger axis parallel to the horizontal line at ``angle`` (rad).

    Introduced in lesson 01. In the arm's frame the finger axis points horizontally along
    ``(sin(pitch) sin(roll), cos(roll))``; of the two rolls that line it up with the line
    (it has no sign), the one nearer zero is returned.
    """
    beta = angle - hand_yaw
    roll = math.atan2(math.cos(beta) / max(math.sin(pitch), 1e-3), math.sin(beta))
    return (roll + math.pi / 2) % math.pi - math.pi / 2


def cube_roll(cube_yaw: float, hand_yaw: float, pitch: float) -> float:
    """Roll (rad) that lines the finger axis up with a face normal of a cube turned ``cube_yaw``.

    Introduced in lesson 01. The smaller of the two rolls (one per pair of faces) wins.
    """
    rolls = [align_roll(cube_yaw + k * math.pi / 2, hand_yaw, pitch) for k in (0, 1)]
    return min(rolls, key=abs)


class ScriptedExpert:
    """Privileged scripted policy for `TabletopEnv` in ``ee_delta`` mode.

    Introduced in lesson 01. ``act(obs)`` returns float32 (7,) actions within the limits; it
    notices a new episode by itself. ``noise`` is the std (m) of Gaussian noise on the position
    deltas (a tenth of it, in rad, on the rotation deltas), drawn from ``seed``.
    """

    SPEED = {"approach": 0.025, "descend": 0.015, "lift": 0.02, "carry": 0.025, "lower": 0.012,
             "retreat": 0.02, "push": 0.012}

    def __init__(self, env, noise: float = 0.0, seed: int | None = 0):
        if getattr(env, "config", None) is None or env.config.action_mode != "ee_delta":
            raise ValueError("ScriptedExpert needs a TabletopEnv with action_mode='ee_delta'")
        if not (isinstance(noise, (int, float)) and 0.0 <= noise <= 0.01):
            raise ValueError(f"noise must be a number in [0, 0.01] m, got {noise!r}")
        self.env = env
        self.noise = float(noise)
        self.rng = np.random.default_rng(seed)
        self._episode = None
        self.phase = None

    # ------------------------------------------------------------------ bookkeeping

    def reset(self) -> None:
        """Forget the current episode (also done automatically when the env resets)."""
        self._episode = self.env.episode_id
        self.phase, self._count = "start", 0
        self._grasp = None
        self._last_pos, self._moved = None, math.inf

    def _goto(self, phase: str) -> None:
        self.phase, self._count = phase, 0

    def _stalled(self) -> bool:
        """True when the hand has stopped moving, two or more steps into the phase."""
        return self._count > 2 and self._moved < STALL

    def act(self, obs: dict) -> np.ndarray:
        """The next action, float32 (7,) = (dx, dy, dz, droll, dpitch, dyaw, gripper)."""
        if self._episode != self.env.episode_id:
            self.reset()
        self._count += 1
        family = self.env.task.family
        pos, euler = np.asarray(obs["state"][:3], float), np.asarray(obs["state"][3:6], float)
        self._moved = math.inf if self._last_pos is None else float(np.linalg.norm(pos - self._last_pos))
        self._last_pos = pos
        step = {"pick": self._pick, "place": self._place, "push": self._push}[family]
        target, roll, pitch, grip, speed = step(pos)
        return self._action(pos, euler, target, roll, pitch, grip, speed)

    def _action(self, pos, euler, target, roll, pitch, grip, speed) -> np.ndarray:
        dpos = GAIN * (target - pos)
        norm = float(np.linalg.norm(dpos))
        if norm > speed:
            dpos *= speed / norm
        drot = np.clip(GAIN * np.array([roll - euler[0], pitch - euler[1]]), -0.15, 0.15)
        if self.noise > 0:
            dpos = dpos + self.rng.normal(0.0, self.noise, 3)
            drot = drot + self.rng.normal(0.0, self.noise / 10, 2)
        action = np.concatenate([np.clip(dpos, -MAX_DPOS, MAX_DPOS), np.clip(drot, -MAX_DROT, MAX_DROT),
                                 [0.0, grip]])
        return action.astype(np.float32)

    # ------------------------------------------------------------------ privileged look-ups

    def _object(self):
        obj = next(o for o in self.env.scene_objects() if o.name == "obj0")
        return obj, self.env.object_state("obj0")

    def _grasp_plan(self):
        """Grasp point (3,) and roll for the task's object, fixed when the descent starts."""
        obj, state = self._object()
        centre = obj.position.copy()
        grasp_z = max(centre[2], 0.014)
        hand_yaw = math.atan2(centre[1], centre[0])
        roll = cube_roll(_yaw_of(obj.quaternion), hand_yaw, GRASP_PITCH) if obj.shape == "cube" else 0.0
        return np.array([centre[0], centre[1], grasp_z]), roll

    # ------------------------------------------------------------------ the families

    def _pick_phases(self, pos):
        """Approach, descend, close and lift; returns a waypoint or None when lifted."""
        if self.phase == "start":
            self._goto("approach")
        if self.phase == "approach":
            point, roll = self._grasp_plan()
            above = point + [0, 0, HOVER]
            if np.linalg.norm(above - pos) < 0.012 or self._count > 30:
                self._grasp = (point, roll)
                self._goto("descend")
            else:
                return above, roll, GRASP_PITCH, 1.0, self.SPEED["approach"]
        point, roll = self._grasp
        if self.phase == "descend":
            obj, _ = self._object()  # follow the object if it was nudged
            point = np.array([obj.position[0], obj.position[1], point[2]])
            self._grasp = (point, roll)
            if np.linalg.norm(point - pos) < 0.004 or self._count > 20 or self._stalled():
                self._goto("close")
            else:
                return point, roll, GRASP_PITCH, 1.0, self.SPEED["descend"]
        if self.phase == "close":
            if self._count > 3:
                self._goto("lift")
            else:
                return point, roll, GRASP_PITCH, 0.0, self.SPEED["descend"]
        return None

    def _pick(self, pos):
        waypoint = self._pick_phases(pos)
        if waypoint is not None:
            return waypoint
        point, roll = self._grasp
        return np.array([point[0], point[1], 0.13]), roll, GRASP_PITCH, 0.0, self.SPEED["lift"]

    def _place(self, pos):
        waypoint = self._pick_phases(pos)
        if waypoint is not None:
            return waypoint
        point, roll = self._grasp
        rec = next(r for r in self.env.layout.receptacles if r.is_target)
        goal = np.array([rec.position[0], rec.position[1], CARRY_Z])
        if self.phase == "lift":
            if pos[2] > CARRY_Z - 0.03 or self._count > 15:
                self._goto("carry")
            else:
                return np.array([point[0], point[1], CARRY_Z]), roll, GRASP_PITCH, 0.0, self.SPEED["lift"]
        if self.phase == "carry":
            if np.linalg.norm(goal[:2] - pos[:2]) < 0.008 or self._count > 30:
                self._goto("lower")
            else:
                return goal, roll, GRASP_PITCH, 0.0, self.SPEED["carry"]
        if self.phase == "lower":
            _, state = self._object()
            drop = state.bottom - (floor_height(rec.name) + RELEASE_GAP)
            if drop < 0.004 or self._count > 20 or self._stalled():
                self._goto("release")
            else:
                low = np.array([goal[0], goal[1], pos[2] - drop])
                return low, roll, GRASP_PITCH, 0.0, self.SPEED["lower"]
        if self.phase == "release":
            if self._count > 3:
                self._goto("retreat")
            else:
                return pos, roll, GRASP_PITCH, 1.0, self.SPEED["lower"]
        up = np.array([pos[0], pos[1], RECEPTACLES[rec.name]["height"] + 0.10])
        return up, roll, GRASP_PITCH, 1.0, self.SPEED["retreat"]

    def _push(self, pos):
        obj, state = self._object()
        d = np.array(DIRECTIONS[self.env.task.direction])
        reach = footprint(obj.size) + 0.014
        push_z = 0.016
        behind = obj.position[:2] - d * (reach + 0.02)
        # the finger axis along the push: a finger's flat outer face does the pushing
        roll = align_roll(math.atan2(d[1], d[0]), math.atan2(behind[1], behind[0]), PUSH_PITCH)
        if self.phase == "start":
            self._goto("above")
        if self.phase == "above":
            target = np.array([*behind, push_z + 0.06])
            if np.linalg.norm(target - pos) < 0.01 or self._count > 30:
                self._goto("lower")
            else:
                return target, roll, PUSH_PITCH, 0.0, self.SPEED["approach"]
        if self.phase == "lower":
            target = np.array([*behind, push_z])
            if np.linalg.norm(target - pos) < 0.005 or self._count > 20 or self._stalled():
                self._goto("push")
            else:
                return target, roll, PUSH_PITCH, 0.0, self.SPEED["descend"]
        if self.phase == "push":
            moved = (obj.position[:2] - state.start[:2]) @ d
            if moved > PUSH_DISTANCE + 0.025 or self._count > 40:
                self._goto("retreat")
            else:  # stay on the line through the object, a little ahead of contact
                contact = obj.position[:2] - d * reach
                target = np.array([*(contact + 0.03 * d), push_z])
                return target, roll, PUSH_PITCH, 0.0, self.SPEED["push"]
        return np.array([pos[0], pos[1], 0.10]), roll, PUSH_PITCH, 0.0, self.SPEED["retreat"]
