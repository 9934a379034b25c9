"""End-effector poses and damped-least-squares inverse kinematics on MuJoCo's Jacobians.

Introduced in lesson 01.

Orientation convention (the same in ``obs["state"]`` and in the actions): roll, pitch, yaw are
extrinsic X-Y-Z Euler angles of the tool frame, ``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)``. The tool
frame has x along the approach (out of the gripper), y along the finger axis, z = x cross y;
all angles are zero with the gripper pointing forward, fingers level. Positive pitch tilts
the gripper down (pi/2 would point straight down; `PITCH_LIMITS` keeps clear of that gimbal
lock).

**What a 5-DoF arm can track.** The SO-101 moves in the vertical plane through its pan axis, so
every reachable orientation is ``Rz(yaw) Ry(pitch) Rx(roll)`` with yaw equal to the azimuth of
the hand, ``atan2(y, x)``: position (3), pitch and roll are tracked, yaw follows the pan joint
(`TRACKED`, `UNTRACKED`). `reachable_rotation` builds exactly such a target, so the IK below
solves a consistent 6-D problem. The IK's scratch model also answers how low the arm reaches
at given joint angles (`DLSIK.lowest_point`), which keeps the hand off the table.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

from vla_lessons.sim.scene import ARM_JOINTS

#: The two finger slides (the second mirrors the first).
FINGER_JOINTS = ("gripper", "gripper_mirror")

TRACKED = ("x", "y", "z", "roll", "pitch")
UNTRACKED = ("yaw",)
#: Pitch targets are kept in this range (rad): from slightly up to 80 deg down.
PITCH_LIMITS = (-0.6, 1.40)


def euler_to_mat(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """(3, 3) float64 rotation ``Rz(yaw) @ Ry(pitch) @ Rx(roll)``. Introduced in lesson 01."""
    cr, sr, cp, sp, cy, sy = (math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch),
                              math.cos(yaw), math.sin(yaw))
    return np.array([
        [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
        [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
        [-sp, cp * sr, cp * cr],
    ])


def mat_to_euler(rot: np.ndarray) -> np.ndarray:
    """(3,) float64 (roll, pitch, yaw) of a (3, 3) rotation, inverse of `euler_to_mat`.

    Introduced in lesson 01.
    """
    rot = np.asarray(rot, dtype=float).reshape(3, 3)
    pitch = math.asin(max(-1.0, min(1.0, -rot[2, 0])))
    roll = math.atan2(rot[2, 1], rot[2, 2])
    yaw = math.atan2(rot[1, 0], rot[0, 0])
    return np.array([roll, pitch, yaw])


def reachable_rotation(position, roll: float, pitch: float) -> np.ndarray:
    """The (3, 3) orientation the arm can have at ``position`` with this roll and pitch.

    Introduced in lesson 01. Yaw is the hand's azimuth about the pan axis (see module doc).
    """
    return euler_to_mat(roll, pitch, math.atan2(position[1], position[0]))


def rotation_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """(3,) rotation vector (rad, world frame) that turns ``current`` into ``target``.

    Introduced in lesson 01. Both are (3, 3) rotation matrices.
    """
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, (target @ current.T).reshape(9))
    err = np.empty(3)
    mujoco.mju_quat2Vel(err, quat, 1.0)
    return err


class DLSIK:
    """Damped-least-squares IK for the ``ee`` site over the five arm joints.

    Introduced in lesson 01. Works on its own scratch ``MjData`` (the simulation is never
    touched). Each iteration solves ``dq = J^T (J J^T + lambda^2 I)^-1 e`` with the stacked
    (6, 5) Jacobian from ``mj_jacSite`` and the error ``e`` = (position error in m,
    ``ROT_WEIGHT`` x rotation error in rad), then clamps q to the joint ranges.

    Three details keep the answer sensible when the target cannot be reached exactly:

    * **joint limits are an active set**: a joint sitting at a limit that the step would push
      further is frozen and the step is solved again with the other joints' columns. Without
      this, the clamp silently undoes part of every step and the iteration wanders off (a
      wrist at its limit made the hand rise 8 cm in one control step);
    * **position comes first**: when the weighted solve leaves the hand off its target -- the
      asked-for pitch is out of reach at that place -- ``iterations`` more follow with the
      rotation weighted ``FALLBACK_ROT_WEIGHT``, so the hand goes where it was sent and the
      orientation gives way;
    * **the best iterate wins**: near a singularity a damped step can still overshoot, so each
      pass keeps the iterate with the smallest weighted error, never a worse later one.
    """

    ROT_WEIGHT = 0.1
    FALLBACK_ROT_WEIGHT = 0.005
    DAMPING = 0.01

    def __init__(self, model: mujoco.MjModel, iterations: int = 30, tol: float = 2e-4):
        self.model = model
        self.data = mujoco.MjData(model)
        self.iterations = iterations
        self.tol = tol
        self.site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "ee")
        joints = [model.joint(name) for name in ARM_JOINTS]
        self.qpos_adr = np.array([j.qposadr[0] for j in joints])
        self.dof_adr = np.array([j.dofadr[0] for j in joints])
        self.low = np.array([j.range[0] for j in joints])
        self.high = np.array([j.range[1] for j in joints])
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))
        self._fingers = np.array([model.joint(j).qposadr[0] for j in FINGER_JOINTS])
        self._arm_geoms = _collision_geoms_below(model, "upper_arm")

    def forward(self, q: np.ndarray) -> tuple:
        """Position (3,) and rotation (3, 3) of the ``ee`` site at arm joint angles ``q`` (5,)."""
        self.data.qpos[self.qpos_adr] = q
        mujoco.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self.site].copy(), self.data.site_xmat[self.site].reshape(3, 3).copy()

    def lowest_point(self, q: np.ndarray, finger: float) -> float:
        """Height (m) of the lowest point of the arm's collision shapes at joint angles ``q`` (5,).

        Introduced in lesson 01. ``finger`` is each finger's slide (m, 0 = closed); the
        shapes are those of the upper arm and everything after it (boxes and capsules).
        """
        self.data.qpos[self._fingers] = finger
        self.forward(q)
        lowest = math.inf
        for g in self._arm_geoms:
            z, rot = self.data.geom_xpos[g][2], self.data.geom_xmat[g].reshape(3, 3)
            size = self.model.geom_size[g]
            if self.model.geom_type[g] == int(mujoco.mjtGeom.mjGEOM_BOX):
                lowest = min(lowest, z - np.abs(rot[2]) @ size)
            else:  # capsule: radius size[0], half length size[1] along its local z
                lowest = min(lowest, z - abs(rot[2, 2]) * size[1] - size[0])
        return float(lowest)

    def solve(self, q0: np.ndarray, position: np.ndarray, rotation: np.ndarray) -> tuple:
        """Joint angles (5,) reaching ``position`` (3,) and ``rotation`` (3, 3), starting at ``q0``.

        Returns ``(q, position_error_m, rotation_error_rad)`` of the answer (the best effort,
        inside the joint ranges, when the target is out of reach; see the class doc).
        """
        q = np.clip(np.asarray(q0, dtype=float), self.low, self.high)
        q, converged = self._solve(q, position, rotation, self.ROT_WEIGHT)
        pos, rot = self.forward(q)
        if not converged and np.linalg.norm(position - pos) >= self.tol:
            q, _ = self._solve(q, position, rotation, self.FALLBACK_ROT_WEIGHT)
            pos, rot = self.forward(q)
        return q, float(np.linalg.norm(position - pos)), float(np.linalg.norm(rotation_error(rotation, rot)))

    def _solve(self, q: np.ndarray, position: np.ndarray, rotation: np.ndarray, rot_weight: float) -> tuple:
        """Up to ``iterations`` DLS steps from ``q``; returns (best q, whether it converged)."""
        w = np.array([1.0, 1.0, 1.0, rot_weight, rot_weight, rot_weight])
        best_q, best_err = q, math.inf
        for i in range(self.iterations + 1):  # the last pass only scores the last step
            pos, rot = self.forward(q)
            err = np.concatenate([position - pos, rotation_error(rotation, rot)]) * w
            size = float(np.linalg.norm(err))
            if size < best_err:
                best_q, best_err = q, size
            if np.linalg.norm(err[:3]) < self.tol and np.linalg.norm(err[3:]) < self.tol:
                return q, True
            if i == self.iterations:
                break
            mujoco.mj_comPos(self.model, self.data)
            mujoco.mj_jacSite(self.model, self.data, self._jacp, self._jacr, self.site)
            jac = np.vstack([self._jacp[:, self.dof_adr], self._jacr[:, self.dof_adr]]) * w[:, None]
            q = np.clip(q + self._step(jac, err, q), self.low, self.high)
        return best_q, False

    def _step(self, jac: np.ndarray, err: np.ndarray, q: np.ndarray) -> np.ndarray:
        """One damped-least-squares step (5,), with joints pinned at a limit left out.

        ``jac`` is the weighted (6, 5) Jacobian, ``err`` the weighted (6,) error. A joint at
        a limit whose step points out of its range is frozen and the step re-solved, until
        no free joint pushes against a limit.
        """
        free = np.ones(len(q), dtype=bool)
        eye = (self.DAMPING ** 2) * np.eye(len(err))
        dq = jac.T @ np.linalg.solve(jac @ jac.T + eye, err)
        for _ in range(len(q)):
            pushing = free & (((q <= self.low) & (dq < 0)) | ((q >= self.high) & (dq > 0)))
            if not pushing.any():
                break
            free &= ~pushing
            dq = np.zeros(len(q))
            if free.any():
                sub = jac[:, free]
                dq[free] = sub.T @ np.linalg.solve(sub @ sub.T + eye, err)
        return dq


def _collision_geoms_below(model: mujoco.MjModel, body: str) -> list:
    """Ids of the colliding box and capsule geoms of ``body`` and of every body below it."""
    root = model.body(body).id
    below = set()
    for b in range(model.nbody):
        walk = b
        while walk not in (root, 0):
            walk = model.body_parentid[walk]
        if walk == root:
            below.add(b)
    kinds = (int(mujoco.mjtGeom.mjGEOM_BOX), int(mujoco.mjtGeom.mjGEOM_CAPSULE))
    return [g for g in range(model.ngeom) if model.geom_bodyid[g] in below
            and (model.geom_contype[g] or model.geom_conaffinity[g]) and int(model.geom_type[g]) in kinds]

