"""Offscreen camera images from MuJoCo: one OpenGL context per environment, reused across episodes.

Introduced in lesson 01.

Every episode compiles a new ``MjModel`` (the objects change), and a model needs its own
``MjrContext`` (textures and meshes on the GPU side). Creating the OpenGL context is the slow
part, so `CameraRenderer` keeps one and only swaps the ``MjrContext`` (a few ms) on
`CameraRenderer.set_model`. Call `vla_lessons.env.setup_headless_gl` before importing mujoco.
"""

from __future__ import annotations

import mujoco
import numpy as np


class CameraRenderer:
    """Renders named cameras of a model to uint8 (H, W, 3) arrays, shadows and MSAA off.

    Introduced in lesson 01. Close it with `close` (also safe to call twice and from ``__del__``).
    """

    def __init__(self, size: int):
        self.size = int(size)
        self._gl = mujoco.GLContext(self.size, self.size)
        self._gl.make_current()
        self._context = None
        self._model = None
        self._scene = None
        self._option = mujoco.MjvOption()
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._viewport = mujoco.MjrRect(0, 0, self.size, self.size)

    def set_model(self, model: mujoco.MjModel) -> None:
        """Point the renderer at a newly compiled ``model`` (frees the previous model's context)."""
        if self._gl is None:
            raise RuntimeError("this CameraRenderer was closed")
        if model.vis.global_.offwidth < self.size or model.vis.global_.offheight < self.size:
            raise ValueError(f"the model's offscreen buffer is smaller than {self.size} px; "
                             "build it with scene_xml(..., image_size) of the same size")
        self._gl.make_current()
        if self._context is not None:
            self._context.free()
        self._model = model
        self._context = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_100.value)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._context)
        self._scene = mujoco.MjvScene(model, maxgeom=500)

    def render(self, data: mujoco.MjData, camera: str) -> np.ndarray:
        """uint8 (size, size, 3) image of ``camera`` (a camera name in the model) at ``data``."""
        if self._context is None:
            raise RuntimeError("call set_model(model) before render()")
        cam_id = mujoco.mj_name2id(self._model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if cam_id < 0:
            raise ValueError(f"unknown camera {camera!r}")
        self._gl.make_current()
        self._camera.fixedcamid = cam_id
        mujoco.mjv_updateScene(self._model, data, self._option, None, self._camera,
                               mujoco.mjtCatBit.mjCAT_ALL.value, self._scene)
        mujoco.mjr_render(self._viewport, self._scene, self._context)
        pixels = np.empty((self.size, self.size, 3), dtype=np.uint8)
        mujoco.mjr_readPixels(pixels, None, self._viewport, self._context)
        return np.ascontiguousarray(pixels[::-1])  # OpenGL's rows run bottom-up

    def close(self) -> None:
        """Free the MuJoCo and OpenGL contexts (idempotent)."""
        if self._context is not None:
            try:
                self._gl.make_current()
                self._context.free()
            except Exception:  # interpreter shutdown: the context may already be gone
                pass
            self._context = None
        if self._gl is not None:
            try:
                self._gl.free()
            except Exception:
                pass
            self._gl = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
