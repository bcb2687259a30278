"""OpenXR display backend (pyopenxr): a headset through any conformant runtime.

The only module that imports ``xr``. One session, primary stereo views, one
sRGB swapchain per eye at the runtime's recommended size, actions for both
hands (grip/aim poses, trigger, squeeze, two buttons, haptics) with suggested
bindings for the common controllers. OpenXR metres become the program's
millimetres here; every pose handed out is ``world_from_*`` in mm.

Graphics binding: GLX when there is an X display, EGL (``XR_MNDX_egl_enable``)
when there is not (CI: Monado's simulated HMD with the null compositor).
Every call that can block on the runtime has a hard timeout.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import moderngl
import numpy as np

from vr_trainer.frame import Fov, Frame, HandInput, InputState, View
from vr_trainer.xr.base import BackendError, DisplayBackend, read_rgb
from vr_trainer.xr.openxr_gl import DepthCopier, EGLContext, GLXHandles, RawFramebuffers
from vr_trainer.xr.openxr_support import (
    BINDINGS,
    DEPTH_FORMATS,
    HANDS,
    INSTALL_HINT,
    LINEAR_FALLBACK,
    SRGB_FORMATS,
    FrameWaiter,
    align_world_from_tracking,
    graphics_kind,
    pose_matrix_mm,
    quiet_stderr,
)

try:
    import xr
except ImportError:  # the optional extra is not installed: open() says so
    xr = None  # type: ignore[assignment]

log = logging.getLogger(__name__)


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
        self.max_frames = max_frames
        self.requested_space = reference_space
        self.graphics_pref = graphics
        self._world_from_tracking = None if world_from_tracking is None else np.asarray(world_from_tracking, float)
        self._track = track
        if align not in ("auto", "yaw", "full"):
            raise BackendError(f"OpenXR alignment must be auto, yaw or full, not {align!r}")
        self.align = align
        self.align_used = "fixed" if world_from_tracking is not None else "none"
        self._aligned = world_from_tracking is not None or track is None
        self.frame_timeout_s = frame_timeout_s
        self.start_timeout_s = start_timeout_s
        self.app_name = app_name
        self.depth_range_mm = depth_range_mm
        self.ctx: moderngl.Context | None = None
        self.instance = self.session = self.system_id = None
        self.space_name = ""
        self.graphics_kind = ""
        self.runtime_name = ""
        self.runtime_version = ""
        self.system_name = ""
        self.state_log: list[str] = []
        self.profiles_accepted: list[str] = []
        self.profiles_rejected: dict[str, str] = {}
        self.haptics_sent = 0
        self.frames_submitted = 0
        self.end_reason = ""
        self.display_period_s = 0.0  # the runtime's period for this app now (it lengthens it when we are slow)
        self.nominal_period_s = 0.0  # the display's refresh period (runtime's refresh rate, else shortest seen)
        self.refresh_from = "frame timing"
        self._periods_seen = 0
        # per submitted frame: (predicted display time s, xrWaitFrame ms, begin->end ms), the latest 10k
        self.timings: deque[tuple[float, float, float]] = deque(maxlen=10_000)
        self._t_waited = 0.0
        self._wait_ms = 0.0
        self._exts: set[str] = set()
        self._egl: EGLContext | None = None
        self._glx: GLXHandles | None = None
        self._binding: Any = None
        self._spaces: dict[str, Any] = {}
        self._space: Any = None
        self._action_set: Any = None
        self._actions: dict[str, Any] = {}
        self._hand_paths: list[Any] = []
        self._hand_spaces: dict[str, list[Any]] = {}
        self._swapchains: list[dict[str, Any]] = []
        self._raw: RawFramebuffers | None = None
        self._depth_copier: DepthCopier | None = None
        self._eye_copies: list[moderngl.Framebuffer] = []
        self._have_images = False
        self._waiter: FrameWaiter | None = None
        self._state = 0
        self._running = False
        self._exiting = False
        self._exit_requested = False
        self._pending: Frame | None = None
        self._pending_state: Any = None
        self._pending_views: Any = None
        self._last_aims: list[np.ndarray | None] = [None, None]
        self._acquired: list[tuple[Any, int]] = []
        self._active_hand = 1
        self._blend_mode: Any = None
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
        self.graphics_kind = graphics_kind(self.graphics_pref)
        with quiet_stderr() as noise:
            try:
                available = {e.extension_name.decode() if isinstance(e.extension_name, bytes) else str(e.extension_name)
                             for e in xr.enumerate_instance_extension_properties()}
            except xr.XrException as e:
                available = set()
                err: Exception | None = e
            else:
                err = None
        if err is not None or not available:
            log.debug("OpenXR loader said: %s", "".join(noise).strip())
            raise BackendError(f"no OpenXR runtime is available ({self._why_unavailable(err)}): " + INSTALL_HINT)
        need = ["XR_KHR_opengl_enable"] + (["XR_MNDX_egl_enable"] if self.graphics_kind == "egl" else [])
        missing = [n for n in need if n not in available]
        if missing:
            raise BackendError(f"the OpenXR runtime lacks {', '.join(missing)} (needed for OpenGL"
                               f"{' without a display' if self.graphics_kind == 'egl' else ''}); "
                               "run it under X with DISPLAY set, or use --backend desktop")
        enabled = need + [n for n in ("XR_KHR_composition_layer_depth", "XR_FB_display_refresh_rate") if n in available]
        self._exts = set(enabled)
        with quiet_stderr() as noise:
            try:
                self.instance = xr.create_instance(xr.InstanceCreateInfo(
                    application_info=xr.ApplicationInfo(application_name=self.app_name, application_version=1,
                                                        engine_name="vr-trainer", engine_version=1,
                                                        api_version=xr.Version(1, 0, 0)),
                    enabled_extension_names=enabled))
            except xr.XrException as e:
                log.debug("OpenXR runtime said: %s", "".join(noise).strip())
                raise BackendError(f"no OpenXR runtime is available ({self._why_unavailable(e)}): "
                                   + INSTALL_HINT) from None
        props = xr.get_instance_properties(self.instance)
        self.runtime_name = props.runtime_name.decode(errors="replace") if isinstance(props.runtime_name, bytes) \
            else str(props.runtime_name)
        self.runtime_version = str(xr.Version(props.runtime_version))
        try:
            self.system_id = xr.get_system(self.instance, xr.SystemGetInfo(
                form_factor=xr.FormFactor.HEAD_MOUNTED_DISPLAY))
        except xr.XrException as e:
            raise BackendError(f"the OpenXR runtime {self.runtime_name} answers but has no headset ({type(e).__name__}): "
                               "connect and switch on the headset, or run with --backend desktop") from None
        sp = xr.get_system_properties(self.instance, self.system_id)
        self.system_name = sp.system_name.decode(errors="replace") if isinstance(sp.system_name, bytes) \
            else str(sp.system_name)
        self._graphics_requirements()
        self._create_gl()
        self.session = xr.create_session(self.instance, xr.SessionCreateInfo(
            next=ctypes.cast(ctypes.pointer(self._binding), ctypes.c_void_p), system_id=self.system_id))
        if "XR_FB_display_refresh_rate" in self._exts:
            with contextlib.suppress(xr.XrException):
                hz = xr.get_display_refresh_rate_fb(self.session)
                hz = float(getattr(hz, "value", hz))
                if hz > 0:
                    self.nominal_period_s, self.refresh_from = 1.0 / hz, "XR_FB_display_refresh_rate"
        self._create_spaces()
        self._create_actions()
        self._create_swapchains()
        modes = [int(m) for m in xr.enumerate_environment_blend_modes(
            self.instance, self.system_id, xr.ViewConfigurationType.PRIMARY_STEREO)]
        opaque = int(xr.EnvironmentBlendMode.OPAQUE.value)
        self._blend_mode = xr.EnvironmentBlendMode(opaque if opaque in modes or not modes else modes[0])
        self._waiter = FrameWaiter(lambda session: xr.wait_frame(session, xr.FrameWaitInfo()))
        deadline = time.monotonic() + self.start_timeout_s
        while not self._running:
            self._poll_events()
            if self._exiting:
                raise BackendError(f"the OpenXR runtime ended the session before it started (state {self._state_name()})")
            if time.monotonic() > deadline:
                raise BackendError(f"the OpenXR runtime did not start the session within {self.start_timeout_s:.0f} s "
                                   f"(state {self._state_name()}); is the headset awake?")
            time.sleep(0.005)

    @staticmethod
    def _why_unavailable(err: Exception | None) -> str:
        manifest = os.environ.get("XR_RUNTIME_JSON")
        if manifest and not os.path.isfile(manifest):
            return f"XR_RUNTIME_JSON names {manifest}, which does not exist"
        return type(err).__name__ if err is not None else "the runtime offers no extensions"

    def _graphics_requirements(self) -> None:
        fn = ctypes.cast(xr.get_instance_proc_addr(self.instance, "xrGetOpenGLGraphicsRequirementsKHR"),
                         xr.PFN_xrGetOpenGLGraphicsRequirementsKHR)
        req = xr.GraphicsRequirementsOpenGLKHR()
        res = xr.check_result(xr.Result(fn(self.instance, self.system_id, ctypes.byref(req))))
        if res.is_exception():
            raise res

    def _create_gl(self) -> None:
        gpa: Callable[[bytes], int]
        if self.graphics_kind == "egl":
            self._egl = EGLContext()
            self.ctx = moderngl.create_context(require=330)
            self._binding = xr.GraphicsBindingEGLMNDX(
                get_proc_address=ctypes.cast(self._egl.get_proc_address_fn, xr.PFN_xrEglGetProcAddressMNDX),
                display=self._egl.display, config=self._egl.config, context=self._egl.context)
            gpa = self._egl.get_proc_address
        else:
            self.ctx = moderngl.create_standalone_context(require=330)
            self._glx = GLXHandles.current()
            b = xr.GraphicsBindingOpenGLXlibKHR()
            types = dict(xr.GraphicsBindingOpenGLXlibKHR._fields_)
            b.x_display = ctypes.cast(self._glx.display, types["x_display"])
            b.visualid = self._glx.visualid
            b.glx_fbconfig = ctypes.cast(self._glx.fbconfig, types["glx_fbconfig"])
            b.glx_drawable = self._glx.drawable
            b.glx_context = ctypes.cast(self._glx.context, types["glx_context"])
            self._binding = b
            gpa = self._glx.get_proc_address
        self._raw = RawFramebuffers(self.ctx, gpa)

    def _create_spaces(self) -> None:
        offered = set(xr.enumerate_reference_spaces(self.session))
        for name, kind in (("local", xr.ReferenceSpaceType.LOCAL), ("stage", xr.ReferenceSpaceType.STAGE)):
            if kind.value in offered or kind in offered:
                self._spaces[name] = xr.create_reference_space(self.session, xr.ReferenceSpaceCreateInfo(
                    reference_space_type=kind, pose_in_reference_space=xr.Posef()))
        self.space_name = self.requested_space if self.requested_space in self._spaces else "local"
        self._space = self._spaces[self.space_name]
        self._spaces["view"] = xr.create_reference_space(self.session, xr.ReferenceSpaceCreateInfo(
            reference_space_type=xr.ReferenceSpaceType.VIEW, pose_in_reference_space=xr.Posef()))
        if self._world_from_tracking is None:  # until aligned to the scenario's first head pose (first frame)
            self._world_from_tracking = np.eye(4)
            if self.space_name == "local":  # LOCAL's origin is the head at start: lift it to eye height
                self._world_from_tracking[1, 3] = 1650.0

    def _align(self, display_time: int) -> None:
        """Map the tracked head onto the scenario's first head pose (see align_world_from_tracking)."""
        loc = xr.locate_space(self._spaces["view"], self._space, display_time)
        ok = xr.SpaceLocationFlags.POSITION_VALID_BIT | xr.SpaceLocationFlags.ORIENTATION_VALID_BIT
        if (loc.location_flags & ok) != ok:
            return
        mode = self.align
        if mode == "auto":  # a simulated headset has nobody inside to look down at the patient
            mode = "full" if "simulated" in self.system_name.lower() else "yaw"
        self._world_from_tracking = align_world_from_tracking(
            self._track.head_pose(0.0), pose_matrix_mm(loc.pose), mode, keep_height=self.space_name == "stage")
        self.align_used = mode
        self._aligned = True

    def _create_actions(self) -> None:
        inst = self.instance
        self._hand_paths = [xr.string_to_path(inst, p) for p in HANDS]
        self._action_set = xr.create_action_set(inst, xr.ActionSetCreateInfo(
            action_set_name="vr_trainer", localized_action_set_name="VR Trainer", priority=0))
        kinds = {"grip_pose": xr.ActionType.POSE_INPUT, "aim_pose": xr.ActionType.POSE_INPUT,
                 "trigger": xr.ActionType.FLOAT_INPUT, "squeeze": xr.ActionType.FLOAT_INPUT,
                 "primary": xr.ActionType.BOOLEAN_INPUT, "secondary": xr.ActionType.BOOLEAN_INPUT,
                 "haptic": xr.ActionType.VIBRATION_OUTPUT}
        for name, kind in kinds.items():
            self._actions[name] = xr.create_action(self._action_set, xr.ActionCreateInfo(
                action_type=kind, action_name=name, localized_action_name=name.replace("_", " "),
                count_subaction_paths=2, subaction_paths=(xr.Path * 2)(*self._hand_paths)))
        for profile, table in BINDINGS.items():
            suggested = []
            for action, comp in table.items():
                for side, hand in zip(("left", "right"), HANDS):
                    c = comp[side] if isinstance(comp, dict) else comp
                    suggested.append(xr.ActionSuggestedBinding(self._actions[action],
                                                               xr.string_to_path(inst, f"{hand}/{c}")))
            try:
                xr.suggest_interaction_profile_bindings(inst, xr.InteractionProfileSuggestedBinding(
                    interaction_profile=xr.string_to_path(inst, profile),
                    count_suggested_bindings=len(suggested),
                    suggested_bindings=(xr.ActionSuggestedBinding * len(suggested))(*suggested)))
                self.profiles_accepted.append(profile)
            except xr.XrException as e:
                self.profiles_rejected[profile] = type(e).__name__
        for pose in ("grip_pose", "aim_pose"):
            self._hand_spaces[pose] = [xr.create_action_space(self.session, xr.ActionSpaceCreateInfo(
                action=self._actions[pose], subaction_path=p, pose_in_action_space=xr.Posef()))
                for p in self._hand_paths]
        xr.attach_session_action_sets(self.session, xr.SessionActionSetsAttachInfo(
            count_action_sets=1, action_sets=ctypes.pointer(self._action_set)))

    def _create_swapchains(self) -> None:
        assert self.ctx is not None and self._raw is not None
        formats = list(xr.enumerate_swapchain_formats(self.session))
        color_fmt = next((f for f in SRGB_FORMATS if f in formats), None)
        if color_fmt is None:
            color_fmt = next((f for f in LINEAR_FALLBACK if f in formats), None)
            log.warning("OpenXR runtime offers no sRGB swapchain format; colours will look too bright")
        if color_fmt is None:
            raise BackendError(f"the OpenXR runtime offers no 8-bit colour swapchain format ({[hex(f) for f in formats]})")
        depth_fmt = next((f for f in DEPTH_FORMATS if f in formats), None) \
            if "XR_KHR_composition_layer_depth" in self._exts else None
        views = xr.enumerate_view_configuration_views(self.instance, self.system_id,
                                                      xr.ViewConfigurationType.PRIMARY_STEREO)
        usage = xr.SwapchainUsageFlags
        for eye, vc in enumerate(views):
            w, h = vc.recommended_image_rect_width, vc.recommended_image_rect_height
            sc: dict[str, Any] = {"size": (w, h), "format": color_fmt, "depth_format": depth_fmt}
            sc["color"] = xr.create_swapchain(self.session, xr.SwapchainCreateInfo(
                usage_flags=usage.COLOR_ATTACHMENT_BIT | usage.SAMPLED_BIT | usage.TRANSFER_SRC_BIT,
                format=color_fmt, sample_count=1, width=w, height=h, face_count=1, array_size=1, mip_count=1))
            images = xr.enumerate_swapchain_images(sc["color"], xr.SwapchainImageOpenGLKHR)
            # the renderer blits colour+depth into view.framebuffer: its depth must match the renderer's (D24)
            sc["depth_tex"] = self.ctx.depth_texture((w, h))
            sc["fbos"] = [self.ctx.framebuffer([self.ctx.external_texture(img.image, (w, h), 4, 0, "f1")],
                                               sc["depth_tex"]) for img in images]
            if depth_fmt is not None:
                sc["depth"] = xr.create_swapchain(self.session, xr.SwapchainCreateInfo(
                    usage_flags=usage.DEPTH_STENCIL_ATTACHMENT_BIT | usage.SAMPLED_BIT, format=depth_fmt,
                    sample_count=1, width=w, height=h, face_count=1, array_size=1, mip_count=1))
                dimages = xr.enumerate_swapchain_images(sc["depth"], xr.SwapchainImageOpenGLKHR)
                sc["depth_fbos"] = [self._raw.depth_only(img.image, (w, h), stencil=depth_fmt == 0x88F0)
                                    for img in dimages]
            self._swapchains.append(sc)
            copy = self.ctx.texture((w, h), 4, internal_format=0x8C43 if color_fmt in SRGB_FORMATS else None)
            self._eye_copies.append(self.ctx.framebuffer([copy]))
        if depth_fmt is not None:
            self._depth_copier = DepthCopier(self.ctx)

    # ---- events and session state -------------------------------------------------------------
    def _state_name(self) -> str:
        try:
            return xr.SessionState(self._state).name
        except ValueError:
            return str(self._state)

    def _poll_events(self) -> None:
        while True:
            try:
                ev = xr.poll_event(self.instance)
            except xr.EventUnavailable:
                return
            kind = xr.StructureType(ev.type)
            if kind == xr.StructureType.EVENT_DATA_INSTANCE_LOSS_PENDING:
                self._finish("instance loss pending")
            elif kind == xr.StructureType.EVENT_DATA_SESSION_STATE_CHANGED:
                e = ctypes.cast(ctypes.byref(ev), ctypes.POINTER(xr.EventDataSessionStateChanged)).contents
                self._on_state(xr.SessionState(e.state))

    def _on_state(self, state: Any) -> None:
        S = xr.SessionState
        self._state = int(state.value)
        self.state_log.append(state.name)
        if state == S.READY:
            xr.begin_session(self.session, xr.SessionBeginInfo(
                primary_view_configuration_type=xr.ViewConfigurationType.PRIMARY_STEREO))
            self._running = True
        elif state == S.STOPPING:
            self._running = False
            xr.end_session(self.session)
        elif state == S.EXITING:
            self._finish("exit requested by the app" if self._exit_requested else "runtime ended the session")
        elif state == S.LOSS_PENDING:
            self._finish("session loss pending")

    def _finish(self, reason: str) -> None:
        self._exiting = True
        self._running = False
        self.end_reason = self.end_reason or reason

    def request_exit(self) -> None:
        """Ask the runtime to end the session (xrRequestExitSession); frames() then ends."""
        self._exit_requested = True
        if self._running and self.session is not None:
            try:
                xr.request_exit_session(self.session)
            except xr.XrException:
                self._finish("exit requested by the app")
        else:
            self._finish("exit requested by the app")

    # ---- the frame loop -----------------------------------------------------------------------
    def frames(self) -> Iterator[Frame]:
        if self.session is None:
            raise BackendError("OpenXRBackend.frames() before open()")
        index = 0
        while not self._exiting:
            if self.max_frames is not None and index >= self.max_frames:
                self._shutdown_session()
                return
            try:
                self._poll_events()
                if self._exiting:
                    return
                if not self._running:  # IDLE (headset off, or between STOPPING and EXITING): keep the app ticking
                    time.sleep(0.1)
                    yield Frame(index, time.monotonic(), [], InputState(focused=False), should_render=False,
                                extra={"xr_idle": True})
                    index += 1
                    continue
                frame = self._begin()
            except (xr.SessionLostError, xr.InstanceLostError) as e:
                self._finish(f"runtime lost the session ({type(e).__name__})")
                return
            frame.index = index
            yield frame
            index += 1

    def _begin(self) -> Frame:
        assert self._waiter is not None
        t0 = time.perf_counter()
        fs = self._waiter.wait(self.session, self.frame_timeout_s)
        self._t_waited = time.perf_counter()
        self._wait_ms = (self._t_waited - t0) * 1000.0
        xr.begin_frame(self.session, xr.FrameBeginInfo())
        self.display_period_s = fs.predicted_display_period / 1e9
        self._periods_seen += 1
        if self.refresh_from != "XR_FB_display_refresh_rate" and self._periods_seen > 3 and self.display_period_s > 0:
            # the first periods can be a guess made before the compositor has timed a frame
            self.nominal_period_s = min(self.nominal_period_s or np.inf, self.display_period_s)
        t = fs.predicted_display_time
        views: list[View] = []
        should_render = bool(fs.should_render)
        xr_views: Any = None
        if not self._aligned:
            self._align(t)
        if should_render:
            vstate, xr_views = xr.locate_views(self.session, xr.ViewLocateInfo(
                view_configuration_type=xr.ViewConfigurationType.PRIMARY_STEREO, display_time=t, space=self._space))
            ok = xr.ViewStateFlags.ORIENTATION_VALID_BIT | xr.ViewStateFlags.POSITION_VALID_BIT
            should_render = (vstate.view_state_flags & ok) == ok and len(xr_views) == len(self._swapchains)
        if should_render:
            for eye, (v, sc) in enumerate(zip(xr_views, self._swapchains)):
                idx = self._acquire(sc["color"])
                if "depth" in sc:
                    sc["depth_index"] = self._acquire(sc["depth"])
                sc["index"] = idx
                w, h = sc["size"]
                f = v.fov
                views.append(View(eye, self._world_from_tracking @ pose_matrix_mm(v.pose),
                                  Fov(f.angle_left, f.angle_right, f.angle_up, f.angle_down), w, h))
        frame = Frame(0, t / 1e9, views, self._sync_input(t), should_render=should_render,
                      extra={"display_period_s": self.display_period_s, "xr_time_ns": int(t),
                             "session_state": self._state_name()})
        self._pending, self._pending_state, self._pending_views = frame, fs, xr_views
        return frame

    def _acquire(self, swapchain: Any) -> int:
        idx = xr.acquire_swapchain_image(swapchain, xr.SwapchainImageAcquireInfo())
        self._acquired.append((swapchain, idx))
        deadline = time.monotonic() + self.frame_timeout_s
        while True:
            res = xr.check_result(xr.raw_functions.xrWaitSwapchainImage(
                swapchain, xr.SwapchainImageWaitInfo(timeout=100_000_000)))
            if res.is_exception():
                raise res
            if res != xr.Result.TIMEOUT_EXPIRED:
                return idx
            if time.monotonic() > deadline:
                raise BackendError(f"the OpenXR runtime did not free a swapchain image within {self.frame_timeout_s:.0f} s")

    def render_target(self, view: View) -> moderngl.Framebuffer:
        sc = self._swapchains[view.eye_index]
        return sc["fbos"][sc["index"]]

    def set_depth_range(self, near_mm: float, far_mm: float) -> None:
        self.depth_range_mm = (near_mm, far_mm)

    def end_frame(self, frame: Frame) -> None:
        if frame is not self._pending or self.session is None:
            return  # idle frame, or already submitted
        fs, xr_views = self._pending_state, self._pending_views
        self._pending = None
        layers: list[Any] = []
        keep: list[Any] = []
        if frame.should_render and frame.views:
            near_mm, far_mm = self.depth_range_mm
            proj_views = (xr.CompositionLayerProjectionView * len(frame.views))()
            for k, (view, sc) in enumerate(zip(frame.views, self._swapchains)):
                w, h = sc["size"]
                if self.ctx is not None and k < len(self._eye_copies):
                    self.ctx.copy_framebuffer(self._eye_copies[k], sc["fbos"][sc["index"]])
                pv = proj_views[k]
                pv.type = xr.StructureType.COMPOSITION_LAYER_PROJECTION_VIEW
                pv.pose, pv.fov = xr_views[k].pose, xr_views[k].fov
                pv.sub_image.swapchain = sc["color"]
                pv.sub_image.image_rect = xr.Rect2Di(xr.Offset2Di(0, 0), xr.Extent2Di(w, h))
                if "depth" in sc and self._depth_copier is not None:
                    self._depth_copier.copy(sc["depth_tex"], sc["depth_fbos"][sc["depth_index"]])
                    di = xr.CompositionLayerDepthInfoKHR(
                        sub_image=xr.SwapchainSubImage(sc["depth"], xr.Rect2Di(xr.Offset2Di(0, 0), xr.Extent2Di(w, h)), 0),
                        min_depth=0.0, max_depth=1.0, near_z=near_mm / 1000.0, far_z=far_mm / 1000.0)
                    keep.append(di)
                    pv.next = ctypes.cast(ctypes.pointer(di), ctypes.c_void_p)
            self._have_images = True
            layer = xr.CompositionLayerProjection(space=self._space, views=proj_views)
            keep += [proj_views, layer]
            layers.append(ctypes.cast(ctypes.pointer(layer), ctypes.POINTER(xr.CompositionLayerBaseHeader)))
        self._release_images()
        arr = (ctypes.POINTER(xr.CompositionLayerBaseHeader) * len(layers))(*layers)
        try:
            xr.end_frame(self.session, xr.FrameEndInfo(
                display_time=fs.predicted_display_time, environment_blend_mode=self._blend_mode,
                layer_count=len(layers), layers=arr))
        except (xr.SessionLostError, xr.InstanceLostError) as e:
            self._finish(f"runtime lost the session ({type(e).__name__})")
            return
        if layers:
            self.frames_submitted += 1
            self.timings.append((fs.predicted_display_time / 1e9, self._wait_ms,
                                 (time.perf_counter() - self._t_waited) * 1000.0))

    def _release_images(self) -> None:
        for swapchain, _ in self._acquired:
            xr.release_swapchain_image(swapchain, xr.SwapchainImageReleaseInfo())
        self._acquired.clear()

    # ---- input and haptics --------------------------------------------------------------------
    def _sync_input(self, display_time: int) -> InputState:
        S = xr.SessionState
        focused = self._state == S.FOCUSED.value
        inp = InputState(hands=[HandInput(), HandInput()], active_hand=self._active_hand, focused=focused)
        if not focused:
            return inp
        xr.sync_actions(self.session, xr.ActionsSyncInfo(
            count_active_action_sets=1, active_action_sets=ctypes.pointer(xr.ActiveActionSet(self._action_set, 0))))
        aims: list[np.ndarray | None] = []
        for k, path in enumerate(self._hand_paths):
            hand = inp.hands[k]

            def get(name: str, fn: Any, path: Any = path) -> Any:
                return fn(self.session, xr.ActionStateGetInfo(action=self._actions[name], subaction_path=path))
            hand.trigger = float(get("trigger", xr.get_action_state_float).current_state)
            hand.grip = float(get("squeeze", xr.get_action_state_float).current_state)
            hand.primary_pressed = bool(get("primary", xr.get_action_state_boolean).current_state)
            hand.secondary_pressed = bool(get("secondary", xr.get_action_state_boolean).current_state)
            hand.pose_world_from_hand = self._locate(self._hand_spaces["grip_pose"][k], display_time)
            aims.append(self._locate(self._hand_spaces["aim_pose"][k], display_time))
            if hand.trigger > 0.5 or hand.grip > 0.5:
                self._active_hand = k
        if inp.hands[self._active_hand].pose_world_from_hand is None and \
                inp.hands[1 - self._active_hand].pose_world_from_hand is not None:
            self._active_hand = 1 - self._active_hand
        inp.active_hand = self._active_hand
        inp.keys = frozenset()
        self._last_aims = aims
        return inp

    def _locate(self, space: Any, display_time: int) -> np.ndarray | None:
        loc = xr.locate_space(space, self._space, display_time)
        ok = xr.SpaceLocationFlags.POSITION_VALID_BIT | xr.SpaceLocationFlags.ORIENTATION_VALID_BIT
        if (loc.location_flags & ok) != ok:
            return None
        return self._world_from_tracking @ pose_matrix_mm(loc.pose)

    def aim_poses(self) -> list[np.ndarray | None]:
        """The last frame's aim poses (world_from_aim, mm; None when untracked), left then right."""
        return list(self._last_aims)

    def haptic_pulse(self, hand: int, amplitude: float, duration_s: float, frequency_hz: float = 0.0) -> None:
        if not self._running or self.session is None or hand not in (0, 1):
            return
        vib = xr.HapticVibration(duration=max(1, int(duration_s * 1e9)), frequency=float(frequency_hz),
                                 amplitude=float(np.clip(amplitude, 0.0, 1.0)))
        try:
            xr.apply_haptic_feedback(self.session, xr.HapticActionInfo(
                action=self._actions["haptic"], subaction_path=self._hand_paths[hand]), vib)
            self.haptics_sent += 1
        except xr.XrException as e:
            log.debug("haptic pulse refused: %s", e)

    # ---- results ------------------------------------------------------------------------------
    def eye_images(self) -> list[np.ndarray] | None:
        if not self._have_images or self.ctx is None:
            return None
        return [read_rgb(fbo) for fbo in self._eye_copies]

    def info(self) -> dict[str, Any]:
        sc = self._swapchains[0] if self._swapchains else None
        fmt = None if sc is None else {**SRGB_FORMATS, **LINEAR_FALLBACK}.get(sc["format"], hex(sc["format"]))
        return {
            "backend": self.name, "runtime": self.runtime_name, "runtime_version": self.runtime_version,
            "system": self.system_name, "graphics_binding": self.graphics_kind,
            "reference_space": self.space_name.upper(), "alignment": self.align_used,
            "display_period_ms": round(self.nominal_period_s * 1000.0, 3) if self.nominal_period_s else None,
            "display_period_from": self.refresh_from if self.nominal_period_s else None,
            "app_period_ms": round(self.display_period_s * 1000.0, 3) if self.display_period_s else None,
            "swapchain_size": list(sc["size"]) if sc else None, "swapchain_format": fmt,
            "depth_layer": None if sc is None or sc["depth_format"] is None else DEPTH_FORMATS[sc["depth_format"]],
            "interaction_profiles": list(self.profiles_accepted), "frames_submitted": self.frames_submitted,
            "session_states": list(self.state_log), "end_reason": self.end_reason or None,
        }

    # ---- shutdown -----------------------------------------------------------------------------
    def _shutdown_session(self, timeout_s: float = 3.0) -> None:
        """End a running session politely: request exit, keep the frame loop turning until EXITING."""
        if self.session is None or self._exiting or (self._waiter is not None and self._waiter.hung):
            return
        if self._pending is not None:  # a frame begun and never ended: submit it empty
            self._pending.should_render = False
            self.end_frame(self._pending)
        if not self._exit_requested:
            self.request_exit()
        deadline = time.monotonic() + timeout_s
        try:
            while not self._exiting and time.monotonic() < deadline:
                self._poll_events()
                if self._running and not self._exiting:
                    frame = self._begin()
                    frame.should_render = False
                    self.end_frame(frame)
                elif not self._exiting:
                    time.sleep(0.005)
        except (xr.XrException, BackendError) as e:
            self._finish(f"session ended with {type(e).__name__}")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        hung = self._waiter is not None and self._waiter.hung
        if xr is not None and self.session is not None and not hung:
            with contextlib.suppress(Exception):
                self._shutdown_session()
            with contextlib.suppress(Exception):
                self._release_images()
            if self._running:
                with contextlib.suppress(Exception):
                    xr.end_session(self.session)
                self._running = False
        if self._waiter is not None:
            self._waiter.stop()
        self._release_gl()
        if xr is not None and not hung:
            for sc in self._swapchains:
                for key in ("color", "depth"):
                    if key in sc:
                        with contextlib.suppress(Exception):
                            xr.destroy_swapchain(sc[key])
            for sp in [*self._spaces.values(), *(s for v in self._hand_spaces.values() for s in v)]:
                with contextlib.suppress(Exception):
                    xr.destroy_space(sp)
            if self._action_set is not None:
                with contextlib.suppress(Exception):
                    xr.destroy_action_set(self._action_set)
            if self.session is not None:
                with contextlib.suppress(Exception):
                    xr.destroy_session(self.session)
            if self.instance is not None:
                with contextlib.suppress(Exception):
                    xr.destroy_instance(self.instance)
        self._swapchains, self._spaces, self._hand_spaces = [], {}, {}
        self._action_set = self.session = self.instance = None
        if self.ctx is not None:
            with contextlib.suppress(Exception):
                self.ctx.release()
            self.ctx = None
        if self._egl is not None:
            self._egl.destroy()
            self._egl = None

    def _release_gl(self) -> None:
        if self.ctx is None:
            return
        with contextlib.suppress(Exception):
            for sc in self._swapchains:
                for fbo in sc.get("fbos", []):
                    fbo.color_attachments[0].release()
                    fbo.release()
                sc["depth_tex"].release()
                for fbo in sc.get("depth_fbos", []):
                    fbo.release()
            for fbo in self._eye_copies:
                fbo.color_attachments[0].release()
                fbo.release()
            if self._depth_copier is not None:
                self._depth_copier.release()
            if self._raw is not None:
                self._raw.release()
        self._eye_copies = []
