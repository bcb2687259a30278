"""Pieces of the OpenXR backend that need neither ``xr`` nor GL: binding tables,
pose conversion (metres -> millimetres), placement of the tracking space in the
world, a quiet stderr for the loader, a frame waiter with a timeout, and the
release stack that unwinds everything the backend created."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from vr_trainer.xr.base import BackendError

log = logging.getLogger(__name__)

INSTALL_HINT = ("install and start an OpenXR runtime such as SteamVR or Monado (or point XR_RUNTIME_JSON at "
                "its manifest), or run with --backend desktop")
# sRGB colour formats in order of preference, then depth formats (GL enums)
SRGB_FORMATS = {0x8C43: "GL_SRGB8_ALPHA8", 0x8C41: "GL_SRGB8"}
LINEAR_FALLBACK = {0x8058: "GL_RGBA8"}
DEPTH_FORMATS = {0x8CAC: "GL_DEPTH_COMPONENT32F", 0x81A6: "GL_DEPTH_COMPONENT24", 0x88F0: "GL_DEPTH24_STENCIL8",
                 0x81A5: "GL_DEPTH_COMPONENT16"}
HANDS = ("/user/hand/left", "/user/hand/right")

# interaction profile -> action name -> component paths under /user/hand/<side>/ (both hands unless a dict)
BINDINGS: dict[str, dict[str, Any]] = {
    "/interaction_profiles/khr/simple_controller": {
        "grip_pose": "input/grip/pose", "aim_pose": "input/aim/pose", "trigger": "input/select/click",
        "primary": "input/menu/click", "haptic": "output/haptic"},
    "/interaction_profiles/oculus/touch_controller": {
        "grip_pose": "input/grip/pose", "aim_pose": "input/aim/pose", "trigger": "input/trigger/value",
        "squeeze": "input/squeeze/value", "primary": {"left": "input/x/click", "right": "input/a/click"},
        "secondary": {"left": "input/y/click", "right": "input/b/click"}, "haptic": "output/haptic"},
    "/interaction_profiles/valve/index_controller": {
        "grip_pose": "input/grip/pose", "aim_pose": "input/aim/pose", "trigger": "input/trigger/value",
        "squeeze": "input/squeeze/value", "primary": "input/a/click", "secondary": "input/b/click",
        "haptic": "output/haptic"},
    "/interaction_profiles/htc/vive_controller": {
        "grip_pose": "input/grip/pose", "aim_pose": "input/aim/pose", "trigger": "input/trigger/value",
        "squeeze": "input/squeeze/click", "primary": "input/trackpad/click", "secondary": "input/menu/click",
        "haptic": "output/haptic"},
    "/interaction_profiles/microsoft/motion_controller": {
        "grip_pose": "input/grip/pose", "aim_pose": "input/aim/pose", "trigger": "input/trigger/value",
        "squeeze": "input/squeeze/click", "primary": "input/trackpad/click", "secondary": "input/menu/click",
        "haptic": "output/haptic"},
}


@contextlib.contextmanager
def quiet_stderr() -> Iterator[list[str]]:
    """Silence file descriptor 2 (the loader and runtime print there from C); yields what was printed."""
    captured: list[str] = []
    try:
        saved = os.dup(2)
    except OSError:
        yield captured
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        try:
            os.dup2(tmp.fileno(), 2)
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured.append(tmp.read().decode("utf-8", "replace"))


def graphics_kind(preferred: str) -> str:
    if preferred not in ("auto", "egl", "glx"):
        raise BackendError(f"OpenXR graphics binding must be auto, egl or glx, not {preferred!r}")
    if preferred != "auto":
        return preferred
    return "glx" if os.environ.get("DISPLAY") else "egl"


def pose_matrix_mm(pose: Any) -> np.ndarray:
    """An ``XrPosef`` (metres, quaternion x y z w) as a 4x4 in millimetres."""
    q, p = pose.orientation, pose.position
    x, y, z, w = q.x, q.y, q.z, q.w
    m = np.eye(4)
    m[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                 [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                 [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    m[:3, 3] = (p.x * 1000.0, p.y * 1000.0, p.z * 1000.0)
    return m


def heading_rad(pose: np.ndarray) -> float:
    """Rotation about +y of a pose's view direction (-z); 0 looks along -z."""
    f = -pose[:3, 2]
    if np.hypot(f[0], f[2]) < 0.1:  # looking (nearly) straight down or up: the head's up points along
        f = pose[:3, 1] * (1.0 if f[1] < 0 else -1.0)
    return float(np.arctan2(-f[0], -f[2]))


def rotation_y(angle_rad: float) -> np.ndarray:
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    m = np.eye(4)
    m[:3, :3] = [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]
    return m


def align_world_from_tracking(world_from_head: np.ndarray, tracking_from_head: np.ndarray, mode: str,
                              keep_height: bool) -> np.ndarray:
    """``world_from_tracking`` that puts the tracked head where the scenario wants it (mm).

    ``yaw``: turn about y and shift in x/z only, so the floor stays level and, with
    ``keep_height`` (STAGE), the user's own eye height is kept: for people.
    ``full``: the tracked head lands exactly on ``world_from_head``, pitch included:
    for simulated headsets, which cannot look down at the patient."""
    if mode == "full":
        inv = np.eye(4)
        r = tracking_from_head[:3, :3]
        inv[:3, :3] = r.T
        inv[:3, 3] = -r.T @ tracking_from_head[:3, 3]
        return world_from_head @ inv
    m = rotation_y(heading_rad(world_from_head) - heading_rad(tracking_from_head))
    moved = m[:3, :3] @ tracking_from_head[:3, 3]
    m[:3, 3] = world_from_head[:3, 3] - moved
    if keep_height:
        m[1, 3] = 0.0
    return m


class FrameWaiter:
    """Runs ``xrWaitFrame`` on a helper thread so the caller can give up after a timeout
    (the OpenXR spec allows xrWaitFrame on another thread than xrBeginFrame)."""

    def __init__(self, wait_frame: Callable[[Any], Any]) -> None:
        self._wait_frame = wait_frame
        self._req: queue.Queue = queue.Queue()
        self._res: queue.Queue = queue.Queue()
        self.hung = False
        self._thread = threading.Thread(target=self._run, name="openxr-wait-frame", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            session = self._req.get()
            if session is None:
                return
            try:
                self._res.put((True, self._wait_frame(session)))
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                self._res.put((False, e))

    def wait(self, session: Any, timeout_s: float) -> Any:
        if self.hung:
            raise BackendError("the OpenXR runtime stopped delivering frames earlier in this session")
        self._req.put(session)
        try:
            ok, value = self._res.get(timeout=timeout_s)
        except queue.Empty:
            self.hung = True
            raise BackendError(f"the OpenXR runtime delivered no frame for {timeout_s:.0f} s (xrWaitFrame hung); "
                               "check that the headset is on and the runtime is running, "
                               "or use --backend desktop") from None
        if not ok:
            raise value
        return value

    def stop(self) -> None:
        if not self.hung:
            self._req.put(None)
            self._thread.join(1.0)


class ReleaseStack:
    """An :class:`contextlib.ExitStack` of release calls, unwound in reverse order of creation.

    Every release runs even when one before it failed (the failure is logged at
    debug level: at close there is nobody left to tell). Calls into the runtime are
    registered with :meth:`runtime` and skipped once ``runtime_hung`` is set: a runtime
    that stopped delivering frames can block any further call forever, while GL and
    local resources (:meth:`local`) are still released."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self.runtime_hung = False

    def runtime(self, fn: Callable[..., Any], *args: Any) -> None:
        """Register a call into the runtime (``xrDestroy*``, ``xrEndSession`` ...)."""
        self._stack.callback(self._call, True, fn, args)

    def local(self, fn: Callable[..., Any], *args: Any) -> None:
        """Register a release that does not call the runtime (GL objects, threads)."""
        self._stack.callback(self._call, False, fn, args)

    def _call(self, runtime: bool, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        if runtime and self.runtime_hung:
            return
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - releasing: the next resource must still be released
            log.debug("release %s failed: %s: %s", getattr(fn, "__qualname__", fn), type(e).__name__, e)

    def close(self) -> None:
        """Run every registered release, newest first; safe to call twice."""
        self._stack.close()
