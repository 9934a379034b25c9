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
solves a consistent 6-D problem.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

from vla_lessons.sim.scene import ARM_JOINTS

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
    """

    ROT_WEIGHT = 0.1
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

    def forward(self, q: np.ndarray) -> tuple:
        """Position (3,) and rotation (3, 3) of the ``ee`` site at arm joint angles ``q`` (5,)."""
        self.data.qpos[self.qpos_adr] = q
        mujoco.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self.site].copy(), self.data.site_xmat[self.site].reshape(3, 3).copy()

    def solve(self, q0: np.ndarray, position: np.ndarray, rotation: np.ndarray) -> tuple:
        """Joint angles (5,) reaching ``position`` (3,) and ``rotation`` (3, 3), starting at ``q0``.

        Returns ``(q, position_error_m, rotation_error_rad)`` of the final iterate (the best
        effort, inside the joint ranges, when the target is out of reach).
        """
        q = np.clip(np.asarray(q0, dtype=float), self.low, self.high)
        w = np.array([1.0, 1.0, 1.0, self.ROT_WEIGHT, self.ROT_WEIGHT, self.ROT_WEIGHT])
        eye = (self.DAMPING ** 2) * np.eye(6)
        for _ in range(self.iterations):
            pos, rot = self.forward(q)
            err = np.concatenate([position - pos, rotation_error(rotation, rot)]) * w
            if np.linalg.norm(err[:3]) < self.tol and np.linalg.norm(err[3:]) < self.tol:
                break
            mujoco.mj_comPos(self.model, self.data)
            mujoco.mj_jacSite(self.model, self.data, self._jacp, self._jacr, self.site)
            jac = np.vstack([self._jacp[:, self.dof_adr], self._jacr[:, self.dof_adr]]) * w[:, None]
            dq = jac.T @ np.linalg.solve(jac @ jac.T + eye, err)
            q = np.clip(q + dq, self.low, self.high)
        pos, rot = self.forward(q)
        return q, float(np.linalg.norm(position - pos)), float(np.linalg.norm(rotation_error(rotation, rot)))
