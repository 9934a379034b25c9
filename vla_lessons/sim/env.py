"""`TabletopEnv`: the SO-101-like arm on a tabletop as a Gymnasium environment.

Introduced in lesson 01.

    env = TabletopEnv(SceneConfig(image_size=128))
    obs, info = env.reset(seed=0, options={"task": "pick"})
    obs, reward, terminated, truncated, info = env.step(action)
    env.close()

**Actions** (``action_mode="ee_delta"``, OpenVLA's form): float (7,)
``(dx, dy, dz, droll, dpitch, dyaw, gripper)`` per control step (1 / `CONTROL_HZ` s), metres and
radians in the world (= robot base) frame; rotation deltas are differences of the Euler angles
in ``obs["state"]`` (see `vla_lessons.sim.kinematics`); gripper in [0, 1], **1 = open, 0 =
closed** (BridgeData V2). Limits: |dpos| <= `MAX_DPOS`, |drot| <= `MAX_DROT`; larger values are
clipped and counted in ``info["n_clipped"]`` (number of clipped components, per episode).
Deltas are added to the *commanded* pose (ManiSkill's ``use_target``), which is re-anchored to
the measured pose when the two drift apart (contact, unreachable target). The target is kept in
a `WORKSPACE` box and lifted where the hand, at the asked-for orientation, would cut into the
table (`ARM_FLOOR`; both counted in ``info["n_workspace_clipped"]``), then turned into joint
targets by damped-least-squares IK on ``mj_jacSite``.

**One step moves the hand at most** `MAX_DPOS` **per axis** (plus 2-5 mm of servo lag) **and
never out of the workspace box.** The IK alone cannot promise that: near a joint limit or a
singularity, or where the asked-for pitch is out of reach, its answer can lie far from the hand
(unchecked, it made the hand rise 8 cm in one step). So in ``ee_delta`` mode the joint targets
are checked before they are sent: no target moves more than `MAX_JOINT_STEP` rad, the tool
point they put the hand at (forward kinematics) lies within ``MAX_DPOS + STEP_SLACK`` of the
*measured* position on every axis and inside the workspace, and the arm stays out of the
table. A step that fails is shortened (halved) until it passes; such steps are counted in
``info["n_step_limited"]``. The bound holds while the arm touches nothing but the table: pressed
onto an object or against a receptacle's wall, the hand can be pushed further when the contact
gives way (up to ~6 cm in a stress test of random full-speed moves).

**What is tracked** (``info["tracked"]``): x, y, z, roll (twist about the approach) and pitch.
**dyaw is not tracked**: a 5-DoF arm's yaw is the pan angle, fixed by where the hand is
(yaw = atan2(y, x)).

``action_mode="joint"``: float (6,) absolute targets, the five arm joints in radians (SO-101
names, zero at mid-range) and the gripper opening in [0, 1] (1 = open) -- the same layout as
``obs["joints"]``; values outside the joint ranges are clipped and counted.

**Observations** (a dict):

* ``"image"``: uint8 (H, W, 3), third-person camera; ``"wrist_image"``: uint8 (H, W, 3), wrist
  camera (both absent with ``render_images=False``);
* ``"state"``: float32 (8,) = [ee_x, ee_y, ee_z, ee_roll, ee_pitch, ee_yaw, gripper_opening
  (0 closed .. 1 open), 0.0 (pad to Bridge's 8 entries)];
* ``"joints"``: float32 (6,) = five arm joint angles (rad) and the gripper opening (0..1);
* ``"instruction"``: str.

``terminated`` is True on success (held for ``SUCCESS_HOLD_STEPS``), ``truncated`` at the family's
``MAX_STEPS`` (pick 60, place 100, push 70 control steps). The reward is 1.0 on success, else 0.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from vla_lessons import env as course_env

course_env.setup_headless_gl()

import gymnasium as gym  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402
from gymnasium import spaces  # noqa: E402

from vla_lessons.sim import kinematics  # noqa: E402
from vla_lessons.sim.config import (CONTROL_HZ, MAX_DPOS, MAX_DROT, SUBSTEPS,  # noqa: E402
                                    SceneConfig)
from vla_lessons.sim.render import CameraRenderer  # noqa: E402
from vla_lessons.sim.scene import (ARM_JOINTS, FINGER_TRAVEL, HOME_QPOS, JOINT_RANGES,  # noqa: E402
                                   RECEPTACLES, Layout, sample_layout, scene_xml)
from vla_lessons.sim.tasks import (SUCCESS_HOLD_STEPS, ObjectState, TaskSpec,  # noqa: E402
                                   check_family, is_success, max_steps, sample_task)

#: Workspace box for end-effector targets (m): (low, high) per axis, and the minimum distance
#: from the pan axis.
WORKSPACE = ((-0.05, 0.34), (-0.30, 0.30), (0.008, 0.25))
MIN_REACH = 0.09
#: The commanded pose is re-anchored to the measured one past these gaps (m, rad).
REANCHOR_POS, REANCHOR_ROT = 0.01, 0.1
#: The most a joint target moves in one control step (rad): a joint speed limit of 4.5 rad/s,
#: the order of a hobby servo's top speed.
MAX_JOINT_STEP = 0.45
#: Allowance (m) over `MAX_DPOS` for the servos' tracking lag (the hand trails its target by
#: 2-4 mm at full speed).
STEP_SLACK = 0.002
#: How many times a failing joint step is halved before the arm keeps its last targets.
STEP_HALVINGS = 6
#: The arm's collision shapes are kept this high (m) above the table top (z = 0); lifting the
#: target is retried up to `FLOOR_TRIES` times.
ARM_FLOOR, FLOOR_TRIES = 0.003, 3
#: How deep (m) a joint target may put the arm into the table.
TABLE_SLACK = 0.001
RESET_OPTIONS = ("task",)
CAMERAS = {"image": "third_person", "wrist_image": "wrist"}


@dataclass(frozen=True)
class SceneObject:
    """Ground truth about one thing on the table, for captions, questions and experts.

    Introduced in lesson 01. ``kind`` is ``"object"`` or ``"receptacle"``; ``shape`` is
    cube/ball/cylinder or plate/bowl/tray; ``size`` the extents (x, y, z) in m; ``position``
    (3,) and ``quaternion`` (4,, w x y z) in the world frame; ``held`` is True while both
    fingers touch it.
    """

    name: str
    kind: str
    colour: str
    shape: str
    size: tuple
    position: np.ndarray
    quaternion: np.ndarray
    is_target: bool
    is_distractor: bool
    held: bool


@dataclass(frozen=True)
class GripperPose:
    """The gripper's tool point ``position`` (3,), ``euler`` (roll, pitch, yaw) and ``opening`` (0..1).

    Introduced in lesson 01.
    """

    position: np.ndarray
    euler: np.ndarray
    opening: float


class TabletopEnv(gym.Env):
    """The simulated SO-101-like arm, its tabletop and language tasks (see the module doc).

    Introduced in lesson 01. ``TabletopEnv(config)`` or ``TabletopEnv(image_size=96, ...)``
    (keyword overrides of `SceneConfig`). ``render_mode="rgb_array"`` makes `render` return
    the third-person image.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": CONTROL_HZ}

    def __init__(self, config: SceneConfig | None = None, render_mode: str | None = None, **overrides):
        unknown = [k for k in overrides if k not in SceneConfig.field_names()]
        if unknown:
            raise ValueError(f"unknown SceneConfig fields {unknown}; known: {SceneConfig.field_names()}")
        if config is None:
            config = SceneConfig(**overrides)
        elif not isinstance(config, SceneConfig):
            raise TypeError(f"config must be a SceneConfig, got {type(config).__name__}")
        elif overrides:
            config = dataclasses.replace(config, **overrides)
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.config = config
        self.render_mode = render_mode
        self.action_space = _action_space(config.action_mode)
        self.observation_space = _observation_space(config)
        self.model = self.data = self.task = self.layout = None
        self._renderer = None
        self._ik = None
        self._episode = 0

    @property
    def episode_id(self) -> int:
        """How many episodes this env has started (an expert notices a reset by it)."""
        return self._episode

    # ---------------------------------------------------------------- episode life cycle

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start an episode: draw (or take) a task, lay out the table, compile the scene.

        ``options={"task": name}`` with a family name (``"pick"``, ``"place"``, ``"push"``),
        a `TaskSpec`, or None (a family drawn from ``config.families``).
        Returns ``(obs, info)``; the same seed gives identical observations.
        """
        super().reset(seed=seed)
        options = {} if options is None else options
        if not isinstance(options, dict):
            raise ValueError(f"options must be a dict, got {type(options).__name__}")
        unknown = [k for k in options if k not in RESET_OPTIONS]
        if unknown:
            raise ValueError(f"unknown reset options {unknown}; known: {RESET_OPTIONS}")
        rng = self.np_random
        self.task = self._task_from(options.get("task"), rng)
        self.layout = sample_layout(rng, self.task, self.config)
        noise = rng.normal(0.0, self.config.arm_init_noise, size=len(ARM_JOINTS))
        self._load(self.layout, np.asarray(HOME_QPOS) + noise)
        self._episode += 1
        self._steps, self._streak, self._done = 0, 0, False
        self._n_clipped, self._n_workspace, self._ik_error = 0, 0, 0.0
        self._n_limited = 0
        return self._observe(), self._info(False)

    def _task_from(self, task, rng) -> TaskSpec:
        if task is None:
            family = self.config.families[int(rng.integers(len(self.config.families)))]
            return sample_task(rng, family, self.config)
        if isinstance(task, str):
            return sample_task(rng, check_family(task), self.config)
        if isinstance(task, TaskSpec):
            return task
        raise ValueError(f"options['task'] must be a family name, a TaskSpec or None, got {task!r}")

    def _load(self, layout: Layout, arm_q: np.ndarray) -> None:
        self.model = mujoco.MjModel.from_xml_string(scene_xml(layout, self.config.image_size))
        self.data = mujoco.MjData(self.model)
        m, d = self.model, self.data
        self._ik = kinematics.DLSIK(m)
        self._arm_qpos = self._ik.qpos_adr
        self._arm_qvel = self._ik.dof_adr
        self._arm_ctrl = np.array([m.actuator(j).id for j in ARM_JOINTS])
        self._grip_ctrl = m.actuator("gripper").id
        self._finger_qpos = np.array([m.joint(j).qposadr[0] for j in kinematics.FINGER_JOINTS])
        self._ee = m.site("ee").id
        self._finger_bodies = (m.body("finger_left").id, m.body("finger_right").id)
        arm_q = np.clip(arm_q, self._ik.low, self._ik.high)
        d.qpos[self._arm_qpos] = arm_q
        d.qpos[self._finger_qpos] = FINGER_TRAVEL
        d.ctrl[self._arm_ctrl] = arm_q
        d.ctrl[self._grip_ctrl] = FINGER_TRAVEL
        mujoco.mj_forward(m, d)
        mujoco.mj_step(m, d, nstep=SUBSTEPS)  # let the objects settle on the table
        self._starts = {o.name: d.body(o.name).xpos.copy() for o in layout.objects}
        self._q_cmd = arm_q.copy()
        self._anchor_to_measured()
        if self.config.render_images or self.render_mode == "rgb_array":
            if self._renderer is None:
                self._renderer = CameraRenderer(self.config.image_size)
            self._renderer.set_model(m)

    def step(self, action):
        """Apply one action for 1 / CONTROL_HZ s; returns ``(obs, reward, terminated, truncated, info)``."""
        if self.data is None:
            raise RuntimeError("call reset() before step()")
        if self._done:
            raise RuntimeError("the episode is over (terminated or truncated); call reset()")
        action = self._validate(action)
        grip = action[-1]
        if self.config.binary_gripper:
            grip = 1.0 if grip > 0.5 else 0.0
        if self.config.action_mode == "ee_delta":
            q_target = self._ee_targets(action, grip)
        else:
            q_target = action[:5]
        self._run(q_target, grip)
        self._steps += 1
        self._streak = self._streak + 1 if self._success_now() else 0
        terminated = self._streak >= SUCCESS_HOLD_STEPS
        truncated = not terminated and self._steps >= max_steps(self.task.family, self.config)
        self._done = terminated or truncated
        return self._observe(), float(terminated), terminated, truncated, self._info(terminated)

    def close(self):
        """Free the renderer (OpenGL) and the simulation. Safe to call more than once."""
        renderer, self._renderer = getattr(self, "_renderer", None), None
        if renderer is not None:
            renderer.close()
        self.model = self.data = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def render(self):
        """The third-person image, uint8 (H, W, 3), when ``render_mode="rgb_array"``; else None."""
        if self.render_mode != "rgb_array":
            return None
        if self.data is None:
            raise RuntimeError("call reset() before render()")
        return self._renderer.render(self.data, CAMERAS["image"])

    # ---------------------------------------------------------------- actions

    def _validate(self, action) -> np.ndarray:
        n = 7 if self.config.action_mode == "ee_delta" else 6
        try:
            a = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"action must be {n} numbers, got {action!r}") from None
        if a.shape != (n,):
            what = ("(dx, dy, dz, droll, dpitch, dyaw, gripper)" if n == 7
                    else "(5 joint targets in rad, gripper opening 0..1)")
            raise ValueError(f"action must have shape ({n},) = {what} for action_mode="
                             f"{self.config.action_mode!r}, got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action must be finite, got {a.tolist()}")
        low, high = self.action_space.low.astype(np.float64), self.action_space.high.astype(np.float64)
        clipped = np.clip(a, low, high)
        self._n_clipped += int(np.count_nonzero(clipped != a))
        return clipped

    def _anchor_to_measured(self) -> None:
        pose = self.gripper_pose()
        self._cmd_pos = pose.position.copy()
        self._cmd_roll, self._cmd_pitch = float(pose.euler[0]), float(pose.euler[1])

    def _ee_targets(self, a: np.ndarray, grip: float) -> np.ndarray:
        """Joint targets (5,) for the end-effector delta ``a`` (7,); ``grip`` is the opening asked for."""
        pose = self.gripper_pose()
        if (np.linalg.norm(pose.position - self._cmd_pos) > REANCHOR_POS
                or abs(pose.euler[0] - self._cmd_roll) > REANCHOR_ROT
                or abs(pose.euler[1] - self._cmd_pitch) > REANCHOR_ROT):
            self._anchor_to_measured()
        pos = self._clamp_workspace(self._cmd_pos + a[:3])
        roll_range = (-JOINT_RANGES["wrist_roll"][1], -JOINT_RANGES["wrist_roll"][0])  # roll = -wrist_roll
        roll = self._clamp(self._cmd_roll + a[3], roll_range)
        pitch = self._clamp(self._cmd_pitch + a[4], kinematics.PITCH_LIMITS)
        self._cmd_pos, self._cmd_roll, self._cmd_pitch = pos, roll, pitch
        rot = kinematics.reachable_rotation(pos, roll, pitch)
        q, self._ik_error, _ = self._ik.solve(self._q_cmd, pos, rot)
        finger = max(float(self.data.qpos[self._finger_qpos].max()), float(grip) * FINGER_TRAVEL)
        sink = ARM_FLOOR - self._ik.lowest_point(q, finger)
        if sink > 0:  # this orientation would push the hand into the table: aim higher
            self._n_workspace += 1
            for _ in range(FLOOR_TRIES):  # the raised pose has a slightly different orientation
                pos = pos + np.array([0.0, 0.0, sink])
                q, self._ik_error, _ = self._ik.solve(q, pos, rot)
                sink = ARM_FLOOR - self._ik.lowest_point(q, finger)
                if sink <= 0:
                    break
            self._cmd_pos = pos
        return self._limit_step(q, finger)

    def _limit_step(self, q_target: np.ndarray, finger: float) -> np.ndarray:
        """``q_target`` (5,), shortened if needed so the hand moves at most one action's worth.

        The step from the last joint targets is first scaled so no target moves more than
        `MAX_JOINT_STEP` -- the four joints that move the tool point together, keeping the
        direction of the motion, the wrist roll (which turns the hand about the tool point)
        on its own -- then halved until it passes `_step_allowed`. If no step passes, the
        last targets are kept, or, if even they fail (the arm was pushed more than a step away
        from them), the arm stops where it is. An acceptable ``q_target`` is returned unchanged.
        ``finger`` is the fingers' slide (m) to check the table clearance with.
        """
        q_last = self._q_cmd
        finger_now = float(self.data.qpos[self._finger_qpos].max())
        floor = min(-TABLE_SLACK, self._ik.lowest_point(self.data.qpos[self._arm_qpos], finger_now),
                    self._ik.lowest_point(q_last, finger))
        now = (q_last, self.data.site_xpos[self._ee].copy(), self._ik.forward(q_last)[0], floor)
        q_target = np.clip(q_target, self._ik.low, self._ik.high)
        dq = q_target - q_last
        too_fast = bool(np.any(np.abs(dq) > MAX_JOINT_STEP))
        if not too_fast and self._step_allowed(q_target, finger, *now):
            return q_target
        self._n_limited += 1
        roll = ARM_JOINTS.index("wrist_roll")
        others = np.arange(len(dq)) != roll
        dq[others] *= min(1.0, MAX_JOINT_STEP / float(np.abs(dq[others]).max()))
        dq[roll] = np.clip(dq[roll], -MAX_JOINT_STEP, MAX_JOINT_STEP)
        for _ in range(STEP_HALVINGS):
            q = q_last + dq
            if self._step_allowed(q, finger, *now):
                return q
            dq = dq / 2
        if self._step_allowed(q_last, finger, *now):
            return q_last.copy()  # keep the last targets
        return self.data.qpos[self._arm_qpos].copy()  # stop where the arm is

    def _step_allowed(self, q_next: np.ndarray, finger: float, q_last: np.ndarray, p_now: np.ndarray,
                      p_last: np.ndarray, floor: float) -> bool:
        """Whether the arm may be sent to joint angles ``q_next`` (5,) this step.

        The tool point ``q_next`` puts the hand at must (1) lie within ``MAX_DPOS +
        STEP_SLACK`` of the measured ``p_now`` (3,) along every axis; (2) lie inside the
        workspace (box and `MIN_REACH`), or no further out than the last target's tool point
        ``p_last`` (3,) (the arm may be stuck outside, where the IK's best effort put it;
        comparing with the *measured* point would let the servos' lag ratchet it further
        out); and (3) the arm's lowest point, at ``q_next`` and half-way there from the last
        targets ``q_last`` (the servos sweep the arm along the joint-space line), must not sink
        below ``floor`` (m): `TABLE_SLACK` into the table, or the lower of the arm now and at
        its last targets (opening fingers can push those into the table).
        """
        p_next = self._ik.forward(q_next)[0]
        if np.any(np.abs(p_next - p_now) > MAX_DPOS + STEP_SLACK):
            return False
        for v, v_last, (low, high) in zip(p_next, p_last, WORKSPACE, strict=True):
            if v < min(low, v_last) or v > max(high, v_last):
                return False
        reach, reach_last = math.hypot(p_next[0], p_next[1]), math.hypot(p_last[0], p_last[1])
        if reach < min(MIN_REACH, reach_last):
            return False
        return min(self._ik.lowest_point(q, finger) for q in (q_next, (q_last + q_next) / 2)) >= floor

    def _clamp(self, value: float, bounds) -> float:
        clamped = min(max(value, bounds[0]), bounds[1])
        self._n_workspace += int(clamped != value)
        return clamped

    def _clamp_workspace(self, pos: np.ndarray) -> np.ndarray:
        out = np.array([self._clamp(float(v), b) for v, b in zip(pos, WORKSPACE, strict=True)])
        reach = math.hypot(out[0], out[1])
        if reach < MIN_REACH:
            self._n_workspace += 1
            out[:2] = (out[:2] / reach if reach > 1e-9 else np.array([1.0, 0.0])) * MIN_REACH
        return out

    def _run(self, q_target: np.ndarray, grip: float) -> None:
        """Ramp the arm's servo targets to ``q_target`` over half a control step, then hold."""
        q_target = np.clip(q_target, self._ik.low, self._ik.high)
        q_from = self.data.ctrl[self._arm_ctrl].copy()
        self.data.ctrl[self._grip_ctrl] = float(grip) * FINGER_TRAVEL
        ramp = SUBSTEPS // 2
        for k in range(1, ramp + 1):
            self.data.ctrl[self._arm_ctrl] = q_from + (k / ramp) * (q_target - q_from)
            mujoco.mj_step(self.model, self.data)
        mujoco.mj_step(self.model, self.data, nstep=SUBSTEPS - ramp)
        mujoco.mj_forward(self.model, self.data)  # positions, contacts of the state we report
        self._q_cmd = q_target.copy()

    # ---------------------------------------------------------------- observations

    def _observe(self) -> dict:
        pose = self.gripper_pose()
        obs = {
            "state": np.concatenate([pose.position, pose.euler, [pose.opening, 0.0]]).astype(np.float32),
            "joints": np.concatenate([self.data.qpos[self._arm_qpos], [pose.opening]]).astype(np.float32),
            "instruction": self.task.instruction,
        }
        if self.config.render_images:
            for key, camera in CAMERAS.items():
                obs[key] = self._renderer.render(self.data, camera)
        return obs

    def _info(self, success: bool) -> dict:
        return {"success": bool(success), "task": self.task, "n_clipped": self._n_clipped,
                "n_workspace_clipped": self._n_workspace, "n_step_limited": self._n_limited,
                "ik_error": self._ik_error,
                "tracked": kinematics.TRACKED, "untracked": kinematics.UNTRACKED, "step": self._steps}

    def gripper_pose(self) -> GripperPose:
        """The gripper's pose now (privileged ground truth, also in ``obs["state"]``)."""
        rot = self.data.site_xmat[self._ee].reshape(3, 3)
        opening = float(np.clip(self.data.qpos[self._finger_qpos].mean() / FINGER_TRAVEL, 0.0, 1.0))
        return GripperPose(self.data.site_xpos[self._ee].copy(), kinematics.mat_to_euler(rot), opening)

    # ---------------------------------------------------------------- privileged state

    def _touching(self) -> dict:
        """Object body id -> how many fingers (0-2) touch it now."""
        n = self.data.ncon
        if n == 0:
            return {}
        bodies = self.model.geom_bodyid[self.data.contact.geom[:n]]
        out = {}
        for finger in self._finger_bodies:
            hit = set(bodies[bodies[:, 0] == finger, 1]) | set(bodies[bodies[:, 1] == finger, 0])
            for b in hit:
                out[int(b)] = out.get(int(b), 0) + 1
        return out

    def _bottom(self, name: str) -> float:
        """Height (m) of the lowest point of object ``name`` above the table."""
        geom = self.model.geom(name)
        rot = self.data.geom(name).xmat.reshape(3, 3)
        size, z = geom.size, self.data.geom(name).xpos[2]
        if geom.type[0] == mujoco.mjtGeom.mjGEOM_SPHERE:
            return float(z - size[0])
        if geom.type[0] == mujoco.mjtGeom.mjGEOM_BOX:
            return float(z - np.abs(rot[2]) @ size)
        tilt = abs(rot[2, 2])
        return float(z - size[1] * tilt - size[0] * math.sqrt(max(0.0, 1 - tilt * tilt)))

    def object_state(self, name: str, touching: dict | None = None) -> ObjectState:
        """`ObjectState` of object ``name`` (e.g. ``"obj0"``, always the task's object)."""
        body = self.data.body(name)
        touching = self._touching() if touching is None else touching
        return ObjectState(position=body.xpos.copy(), start=self._starts[name],
                           bottom=self._bottom(name),
                           speed=float(np.linalg.norm(self.data.joint(name).qvel[:3])),
                           touching=touching.get(body.id, 0))

    def _success_now(self) -> bool:
        target = next((r.position for r in self.layout.receptacles if r.is_target), None)
        return is_success(self.task, self.object_state("obj0"), target)

    def pixel_of(self, points) -> np.ndarray:
        """Where world points (N, 3), in metres, land in the scene camera's image: float64 (N, 2), (column, row).

        Introduced in lesson 06 (how much table one pixel covers, so what a shifted image hides).
        The pinhole model of MuJoCo's camera at the current state, for the config's image size;
        pixel (0, 0) is the top-left corner of the top-left pixel. Points behind the camera raise.
        """
        if self.model is None:
            raise ValueError("pixel_of needs a reset TabletopEnv (call reset(seed=...) first)")
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 3 or not np.isfinite(points).all():
            raise ValueError(f"points must be finite (N, 3) world positions in metres, got shape {points.shape}")
        cam = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, CAMERAS["image"])
        local = (points - self.data.cam_xpos[cam]) @ self.data.cam_xmat[cam].reshape(3, 3)  # camera axes x, y, z
        depth = -local[:, 2]  # a MuJoCo camera looks along its -z
        if (depth <= 0).any():
            raise ValueError("a point lies behind the scene camera")
        size = self.config.image_size
        focal = size / 2 / np.tan(np.radians(self.model.cam_fovy[cam]) / 2)
        return np.stack([size / 2 + focal * local[:, 0] / depth, size / 2 - focal * local[:, 1] / depth], axis=1)

    def scene_objects(self) -> list:
        """Every object and receptacle on the table as `SceneObject` records (ground truth).

        Introduced in lesson 01. Objects come first (the task's object is ``"obj0"``), then
        the receptacles; the gripper's pose is `gripper_pose`.
        """
        if self.data is None:
            raise RuntimeError("call reset() before scene_objects()")
        touching = self._touching()
        out = []
        for o in self.layout.objects:
            body = self.data.body(o.name)
            out.append(SceneObject(o.name, "object", o.colour, o.shape, tuple(o.size), body.xpos.copy(),
                                   body.xquat.copy(), o.is_target, not o.is_target,
                                   touching.get(body.id, 0) == 2))
        for r in self.layout.receptacles:
            spec = RECEPTACLES[r.name]
            side = 2 * spec["radius"]
            out.append(SceneObject(r.name, "receptacle", spec["colour"], r.name, (side, side, spec["height"]),
                                   np.array([r.position[0], r.position[1], 0.0]), np.array([1.0, 0, 0, 0]),
                                   r.is_target, False, False))
        return out


def _action_space(mode: str) -> spaces.Box:
    if mode == "ee_delta":
        low = [-MAX_DPOS] * 3 + [-MAX_DROT] * 3 + [0.0]
        high = [MAX_DPOS] * 3 + [MAX_DROT] * 3 + [1.0]
    else:
        low = [JOINT_RANGES[j][0] for j in ARM_JOINTS] + [0.0]
        high = [JOINT_RANGES[j][1] for j in ARM_JOINTS] + [1.0]
    return spaces.Box(np.array(low, dtype=np.float32), np.array(high, dtype=np.float32), dtype=np.float32)


def _observation_space(config: SceneConfig) -> spaces.Dict:
    pi = math.pi
    state_low = np.array([-1, -1, -1, -pi, -pi, -pi, 0, 0], dtype=np.float32)
    state_high = np.array([1, 1, 1, pi, pi, pi, 1, 1], dtype=np.float32)  # the pad is always 0
    margin = 0.05  # joint limits are soft: a joint may pass its range by a little
    joints_low = np.array([JOINT_RANGES[j][0] - margin for j in ARM_JOINTS] + [0], dtype=np.float32)
    joints_high = np.array([JOINT_RANGES[j][1] + margin for j in ARM_JOINTS] + [1], dtype=np.float32)
    obs = {
        "state": spaces.Box(state_low, state_high, dtype=np.float32),
        "joints": spaces.Box(joints_low, joints_high, dtype=np.float32),
        "instruction": spaces.Text(max_length=200, charset=frozenset(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,.'?!-")),
    }
    if config.render_images:
        shape = (config.image_size, config.image_size, 3)
        obs["image"] = spaces.Box(0, 255, shape=shape, dtype=np.uint8)
        obs["wrist_image"] = spaces.Box(0, 255, shape=shape, dtype=np.uint8)
    return spaces.Dict(obs)
