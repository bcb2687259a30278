"""OpenXR display backend (pyopenxr): a headset through any conformant runtime.

One session, primary stereo views, one sRGB swapchain per eye at the runtime's
recommended size, actions for both hands (grip/aim poses, trigger, squeeze, two
buttons, haptics) with suggested bindings for the common controllers. OpenXR
metres become the program's millimetres; every pose handed out is ``world_from_*``
in mm.

One small class per runtime concept, the pyopenxr way, each in its own module:

- :class:`~vr_trainer.xr.openxr_session.OpenXRSession`: instance, system, graphics
  binding, session and its state machine (``openxr_session.py``);
- :class:`~vr_trainer.xr.openxr_spaces.ReferenceSpaces`: reference spaces and the
  tracking space's place in the world (``openxr_spaces.py``);
- :class:`~vr_trainer.xr.openxr_actions.HandActions`: actions, bindings, input,
  haptics (``openxr_actions.py``);
- :class:`~vr_trainer.xr.openxr_swapchain.SwapchainSet` of
  :class:`~vr_trainer.xr.openxr_swapchain.EyeSwapchain`: per-eye swapchains
  (``openxr_swapchain.py``);

and this module's :class:`OpenXRBackend`, the frame loop (wait, begin, locate,
submit) over them. Everything created is registered on one
:class:`~vr_trainer.xr.openxr_support.ReleaseStack` (an ``ExitStack``) that
:meth:`OpenXRBackend.close` unwinds in reverse order.

Graphics binding: GLX when there is an X display, EGL (``XR_MNDX_egl_enable``)
when there is not (CI: Monado's simulated HMD with the null compositor).
Every call that can block on the runtime has a hard timeout.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import moderngl
import numpy as np

from vr_trainer.frame import Fov, Frame, InputState, View
from vr_trainer.xr.base import BackendError, DisplayBackend
from vr_trainer.xr.openxr_support import INSTALL_HINT, FrameWaiter, ReleaseStack, graphics_kind, quiet_stderr

try:
    import xr
except ImportError:  # the optional extra is not installed: open() says so
    xr = None  # type: ignore[assignment]

if TYPE_CHECKING:  # pragma: no cover - imported at open(), after xr is known to be there
    from vr_trainer.xr.openxr_actions import HandActions
    from vr_trainer.xr.openxr_session import OpenXRSession
    from vr_trainer.xr.openxr_spaces import ReferenceSpaces
    from vr_trainer.xr.openxr_swapchain import SwapchainSet

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 3.0  # how long close() keeps frames turning for the runtime to reach EXITING


def _probe_runtime(result: list[bool]) -> None:
    try:
        inst = xr.create_instance(xr.InstanceCreateInfo(application_info=xr.ApplicationInfo(
            application_name="vr-trainer-probe", engine_name="vr-trainer", api_version=xr.Version(1, 0, 0))))
        try:
            xr.get_system(inst, xr.SystemGetInfo(form_factor=xr.FormFactor.HEAD_MOUNTED_DISPLAY))
            result.append(True)
        finally:
            xr.destroy_instance(inst)
    except Exception:  # noqa: BLE001 - any failure means: not available
        result.append(False)


def runtime_available(timeout_s: float = 10.0) -> bool:
    """True when an OpenXR runtime answers and has a headset; quiet (for ``--backend auto``)."""
    if xr is None:
        return False
    result: list[bool] = []
    with quiet_stderr():
        t = threading.Thread(target=_probe_runtime, args=(result,), name="openxr-probe", daemon=True)
        t.start()
        t.join(timeout_s)
    return bool(result and result[0])


class OpenXRBackend(DisplayBackend):
    """Frames from an OpenXR runtime; the loop renders each eye into :meth:`render_target`."""

    name = "openxr"

    def __init__(self, max_frames: int | None = None, *, reference_space: str = "stage", graphics: str = "auto",
                 world_from_tracking: np.ndarray | None = None, track: Any = None, align: str = "auto",
                 frame_timeout_s: float = 10.0, start_timeout_s: float = 20.0, app_name: str = "vr-trainer",
                 depth_range_mm: tuple[float, float] = (30.0, 20000.0)) -> None:
        if reference_space not in ("stage", "local"):
            raise BackendError(f"OpenXR reference space must be stage or local, not {reference_space!r}")
        if align not in ("auto", "yaw", "full"):
            raise BackendError(f"OpenXR alignment must be auto, yaw or full, not {align!r}")
        self.max_frames = max_frames
        self.requested_space = reference_space
        self.graphics_pref = graphics
        self._world_from_tracking = None if world_from_tracking is None else np.asarray(world_from_tracking, float)
        self._track = track
        self.align = align
        self.frame_timeout_s = frame_timeout_s
        self.start_timeout_s = start_timeout_s
        self.app_name = app_name
        self.depth_range_mm = depth_range_mm
        self.ctx: moderngl.Context | None = None
        self.graphics_kind = ""
        self.frames_submitted = 0
        self.display_period_s = 0.0  # the runtime's period for this app now (it lengthens it when we are slow)
        self.nominal_period_s = 0.0  # the display's refresh period (runtime's refresh rate, else shortest seen)
        self.refresh_from = "frame timing"
        self._periods_seen = 0
        # per submitted frame: (predicted display time s, xrWaitFrame ms, begin->end ms), the latest 10k
        self.timings: deque[tuple[float, float, float]] = deque(maxlen=10_000)
        self._t_waited = 0.0
        self._wait_ms = 0.0
        self._releases = ReleaseStack()
        self._session: OpenXRSession | None = None
        self._spaces: ReferenceSpaces | None = None
        self._actions: HandActions | None = None
        self._swapchains: SwapchainSet | None = None
        self._waiter: FrameWaiter | None = None
        self._blend_mode: Any = None
        self._pending: Frame | None = None
        self._pending_state: Any = None
        self._pending_views: Any = None
        self._have_images = False
        self._closed = False

    # ---- start-up ----------------------------------------------------------------------------
    def open(self) -> moderngl.Context:
        if xr is None:
            raise BackendError("OpenXR support (pyopenxr) is not installed: pip install 'vr-trainer[xr]', then "
                               + INSTALL_HINT)
        try:
            self._open()
        except BackendError:
            self.close()
            raise
        except Exception as e:
            self.close()
            raise BackendError(f"OpenXR start-up failed ({type(e).__name__}: {e}); " + INSTALL_HINT) from e
        assert self.ctx is not None
        return self.ctx

    def _open(self) -> None:
        from vr_trainer.xr.openxr_actions import HandActions
        from vr_trainer.xr.openxr_session import OpenXRSession
        from vr_trainer.xr.openxr_spaces import ReferenceSpaces
        from vr_trainer.xr.openxr_swapchain import SwapchainSet

        self.graphics_kind = graphics_kind(self.graphics_pref)
        rel = self._releases
        s = self._session = OpenXRSession(self.app_name)
        graphics = s.open(self.graphics_kind, rel)
        self.ctx = graphics.ctx
        if s.refresh_period_s > 0:
            self.nominal_period_s, self.refresh_from = s.refresh_period_s, "XR_FB_display_refresh_rate"
        self._spaces = ReferenceSpaces(s.session, self.requested_space, self._world_from_tracking, self._track,
                                       self.align, s.system_name, rel)
        self._actions = HandActions(s.instance, s.session, rel)
        self._swapchains = swapchains = SwapchainSet(s.session, s.instance, s.system_id, s.extensions, graphics.ctx,
                                                     graphics.raw, rel)
        self._blend_mode = s.blend_mode()
        self._waiter = waiter = FrameWaiter(lambda session: xr.wait_frame(session, xr.FrameWaitInfo()))
        rel.local(waiter.stop)
        rel.runtime(s.end)
        rel.runtime(swapchains.release_images)
        rel.runtime(self._shutdown_session)  # unwound first: the session ends before anything is destroyed
        s.wait_until_running(self.start_timeout_s)

    # ---- the frame loop -----------------------------------------------------------------------
    def frames(self) -> Iterator[Frame]:
        s = self._session
        if s is None or self._closed:
            raise BackendError("OpenXRBackend.frames() before open()")
        index = 0
        while not s.exiting:
            if self.max_frames is not None and index >= self.max_frames:
                self._shutdown_session()
                return
            try:
                s.poll_events()
                if s.exiting:
                    return
                if not s.running:  # IDLE (headset off, or between STOPPING and EXITING): keep the app ticking
                    time.sleep(0.1)
                    yield Frame(index, time.monotonic(), [], InputState(focused=False), should_render=False,
                                extra={"xr_idle": True})
                    index += 1
                    continue
                frame = self._begin()
            except (xr.SessionLostError, xr.InstanceLostError) as e:
                s.finish(f"runtime lost the session ({type(e).__name__})")
                return
            frame.index = index
            yield frame
            index += 1

    def _begin(self) -> Frame:
        """xrWaitFrame (under the frame timeout), xrBeginFrame, locate the views, acquire the images."""
        s, spaces, actions, swapchains = self._session, self._spaces, self._actions, self._swapchains
        assert s is not None and spaces is not None and actions is not None and swapchains is not None
        assert self._waiter is not None
        t0 = time.perf_counter()
        fs = self._waiter.wait(s.session, self.frame_timeout_s)
        self._t_waited = time.perf_counter()
        self._wait_ms = (self._t_waited - t0) * 1000.0
        xr.begin_frame(s.session, xr.FrameBeginInfo())
        self.display_period_s = fs.predicted_display_period / 1e9
        self._periods_seen += 1
        if self.refresh_from != "XR_FB_display_refresh_rate" and self._periods_seen > 3 and self.display_period_s > 0:
            # the first periods can be a guess made before the compositor has timed a frame
            self.nominal_period_s = min(self.nominal_period_s or np.inf, self.display_period_s)
        t = fs.predicted_display_time
        views: list[View] = []
        should_render = bool(fs.should_render)
        xr_views: Any = None
        spaces.align_once(t)
        if should_render:
            vstate, xr_views = xr.locate_views(s.session, xr.ViewLocateInfo(
                view_configuration_type=xr.ViewConfigurationType.PRIMARY_STEREO, display_time=t, space=spaces.space))
            ok = xr.ViewStateFlags.ORIENTATION_VALID_BIT | xr.ViewStateFlags.POSITION_VALID_BIT
            should_render = (vstate.view_state_flags & ok) == ok and len(xr_views) == len(swapchains)
        if should_render:
            swapchains.acquire(self.frame_timeout_s)
            for eye, v in enumerate(xr_views):
                f = v.fov
                w, h = swapchains[eye].size
                views.append(View(eye, spaces.world_pose(v.pose),
                                  Fov(f.angle_left, f.angle_right, f.angle_up, f.angle_down), w, h))
        frame = Frame(0, t / 1e9, views, actions.sample(s.focused, t, spaces), should_render=should_render,
                      extra={"display_period_s": self.display_period_s, "xr_time_ns": int(t),
                             "session_state": s.state_name()})
        self._pending, self._pending_state, self._pending_views = frame, fs, xr_views
        return frame

    def render_target(self, view: View) -> moderngl.Framebuffer:
        assert self._swapchains is not None
        return self._swapchains[view.eye_index].target

    def set_depth_range(self, near_mm: float, far_mm: float) -> None:
        self.depth_range_mm = (near_mm, far_mm)

    def end_frame(self, frame: Frame) -> None:
        """Submit the rendered eyes as one projection layer (with depth when offered); xrEndFrame."""
        s, spaces, swapchains = self._session, self._spaces, self._swapchains
        if frame is not self._pending or s is None or spaces is None or swapchains is None:
            return  # idle frame, or already submitted
        fs, xr_views = self._pending_state, self._pending_views
        self._pending = None
        layers: list[Any] = []
        keep: list[Any] = []  # ctypes structures the layer points at, alive until xrEndFrame returns
        if frame.should_render and frame.views:
            near_mm, far_mm = self.depth_range_mm
            proj_views, depth_infos = swapchains.submit_views(xr_views, near_mm, far_mm)
            self._have_images = True
            layer = xr.CompositionLayerProjection(space=spaces.space, views=proj_views)
            keep += [proj_views, layer, *depth_infos]
            layers.append(ctypes.cast(ctypes.pointer(layer), ctypes.POINTER(xr.CompositionLayerBaseHeader)))
        swapchains.release_images()
        arr = (ctypes.POINTER(xr.CompositionLayerBaseHeader) * len(layers))(*layers)
        try:
            xr.end_frame(s.session, xr.FrameEndInfo(
                display_time=fs.predicted_display_time, environment_blend_mode=self._blend_mode,
                layer_count=len(layers), layers=arr))
        except (xr.SessionLostError, xr.InstanceLostError) as e:
            s.finish(f"runtime lost the session ({type(e).__name__})")
            return
        if layers:
            self.frames_submitted += 1
            self.timings.append((fs.predicted_display_time / 1e9, self._wait_ms,
                                 (time.perf_counter() - self._t_waited) * 1000.0))

    def request_exit(self) -> None:
        """Ask the runtime to end the session (xrRequestExitSession); frames() then ends."""
        if self._session is not None:
            self._session.request_exit()

    # ---- input and haptics --------------------------------------------------------------------
    def aim_poses(self) -> list[np.ndarray | None]:
        """The last frame's aim poses (world_from_aim, mm; None when untracked), left then right."""
        return self._actions.aim_poses() if self._actions is not None else [None, None]

    def haptic_pulse(self, hand: int, amplitude: float, duration_s: float, frequency_hz: float = 0.0) -> None:
        if self._session is None or not self._session.running or self._actions is None:
            return
        self._actions.haptic_pulse(hand, amplitude, duration_s, frequency_hz)

    @property
    def haptics_sent(self) -> int:
        return self._actions.haptics_sent if self._actions is not None else 0

    @property
    def profiles_accepted(self) -> list[str]:
        """Interaction profiles the runtime took suggested bindings for."""
        return list(self._actions.profiles_accepted) if self._actions is not None else []

    @property
    def profiles_rejected(self) -> dict[str, str]:
        """Interaction profiles the runtime refused, with the error's name."""
        return dict(self._actions.profiles_rejected) if self._actions is not None else {}

    # ---- results ------------------------------------------------------------------------------
    def eye_images(self) -> list[np.ndarray] | None:
        if not self._have_images or self.ctx is None or self._swapchains is None:
            return None
        return self._swapchains.eye_images()

    def info(self) -> dict[str, Any]:
        s, sp = self._session, self._spaces
        align_used = sp.align_used if sp is not None else ("fixed" if self._world_from_tracking is not None else "none")
        swapchain = self._swapchains.describe() if self._swapchains is not None else \
            {"swapchain_size": None, "swapchain_format": None, "depth_layer": None}
        return {
            "backend": self.name, "runtime": s.runtime_name if s else "",
            "runtime_version": s.runtime_version if s else "", "system": s.system_name if s else "",
            "graphics_binding": self.graphics_kind,
            "reference_space": sp.name.upper() if sp else "", "alignment": align_used,
            "display_period_ms": round(self.nominal_period_s * 1000.0, 3) if self.nominal_period_s else None,
            "display_period_from": self.refresh_from if self.nominal_period_s else None,
            "app_period_ms": round(self.display_period_s * 1000.0, 3) if self.display_period_s else None,
            **swapchain,
            "interaction_profiles": self.profiles_accepted, "frames_submitted": self.frames_submitted,
            "session_states": list(s.state_log) if s else [], "end_reason": (s.end_reason if s else "") or None,
        }

    # ---- shutdown -----------------------------------------------------------------------------
    def _shutdown_session(self, timeout_s: float = SHUTDOWN_TIMEOUT_S) -> None:
        """End a running session politely: request exit, keep the frame loop turning until EXITING."""
        s, waiter = self._session, self._waiter
        if s is None or s.session is None or s.exiting or (waiter is not None and waiter.hung):
            return
        if self._pending is not None:  # a frame begun and never ended: submit it empty
            self._pending.should_render = False
            self.end_frame(self._pending)
        if not s.exit_requested:
            s.request_exit()
        deadline = time.monotonic() + timeout_s
        try:
            while not s.exiting and time.monotonic() < deadline:
                s.poll_events()
                if s.running and not s.exiting:
                    frame = self._begin()
                    frame.should_render = False
                    self.end_frame(frame)
                elif not s.exiting:
                    time.sleep(0.005)
        except (xr.XrException, BackendError) as e:
            s.finish(f"session ended with {type(e).__name__}")
        if waiter is not None and waiter.hung:  # the runtime stopped answering: no more calls into it
            self._releases.runtime_hung = True

    def close(self) -> None:
        """End the session and release everything, newest first; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._releases.runtime_hung = self._waiter is not None and self._waiter.hung
        self._releases.close()
        self._swapchains = None
        self.ctx = None
