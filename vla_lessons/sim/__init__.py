"""The simulated robot: an SO-101-like arm on a tabletop, language tasks and a scripted expert.

Introduced in lesson 01.

* `config`     -- `SceneConfig`, the control rate `CONTROL_HZ`, the action limits and the
  train / held-out sides of the five generalization axes;
* `scene`      -- what is on the table (`Layout`) and its MJCF, written from Python strings;
* `tasks`      -- pick / place / push: `TaskSpec`, instruction templates, success tests;
* `kinematics` -- Euler conventions and damped-least-squares IK on ``mj_jacSite``;
* `render`     -- offscreen cameras (`CameraRenderer`);
* `env`        -- `TabletopEnv`, the Gymnasium environment;
* `expert`     -- `ScriptedExpert`, the privileged demonstrator.

Importing this package calls `vla_lessons.env.setup_headless_gl` before mujoco is imported.
"""

from vla_lessons import env as _course_env

_course_env.setup_headless_gl()

from vla_lessons.sim.config import (CONTROL_HZ, GENERALIZATION_AXES, MAX_DPOS, MAX_DROT,  # noqa: E402
                                    SUBSTEPS, SceneConfig)
from vla_lessons.sim.env import GripperPose, SceneObject, TabletopEnv  # noqa: E402
from vla_lessons.sim.expert import ScriptedExpert  # noqa: E402
from vla_lessons.sim.kinematics import TRACKED, UNTRACKED  # noqa: E402
from vla_lessons.sim.scene import JOINT_NAMES  # noqa: E402
from vla_lessons.sim.tasks import FAMILIES, TaskSpec, instructions_for  # noqa: E402

__all__ = [
    "CONTROL_HZ", "FAMILIES", "GENERALIZATION_AXES", "JOINT_NAMES", "MAX_DPOS", "MAX_DROT",
    "SUBSTEPS", "TRACKED", "UNTRACKED", "GripperPose", "SceneConfig", "SceneObject",
    "ScriptedExpert", "TabletopEnv", "TaskSpec", "instructions_for",
]
