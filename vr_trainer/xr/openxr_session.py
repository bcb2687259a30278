"""The OpenXR session-state manager (after pyopenxr's ``SessionStateManager``): the
instance, system, graphics binding and session of one runtime, and the session's
lifecycle: events, state changes (``xrBeginSession`` at READY, ``xrEndSession`` at
STOPPING), the exit request, and why the session ended.

Everything it creates is registered on the backend's :class:`ReleaseStack`, so that
closing unwinds it in reverse order."""

from __future__ import annotations

import ctypes
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import moderngl
import xr

from vr_trainer.xr.base import BackendError
from vr_trainer.xr.openxr_gl import EGLContext, GLXHandles, RawFramebuffers
from vr_trainer.xr.openxr_support import INSTALL_HINT, ReleaseStack, quiet_stderr

log = logging.getLogger(__name__)

PRIMARY_STEREO = xr.ViewConfigurationType.PRIMARY_STEREO
OPTIONAL_EXTENSIONS = ("XR_KHR_composition_layer_depth", "XR_FB_display_refresh_rate")


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def why_unavailable(err: Exception | None) -> str:
    """A short reason the loader found no runtime, naming a missing manifest when that is it."""
    manifest = os.environ.get("XR_RUNTIME_JSON")
    if manifest and not os.path.isfile(manifest):
        return f"XR_RUNTIME_JSON names {manifest}, which does not exist"
    return type(err).__name__ if err is not None else "the runtime offers no extensions"


@dataclass
class OpenXRGraphics:
    """The OpenGL context the session renders with, and the graphics binding the runtime needs.

    ``kind``: ``egl`` (``XR_MNDX_egl_enable``, no display) or ``glx`` (an X display)."""

    kind: str
    ctx: moderngl.Context
    binding: Any  # xr.GraphicsBindingEGLMNDX | xr.GraphicsBindingOpenGLXlibKHR
    raw: RawFramebuffers
    egl: EGLContext | None = None

    @classmethod
    def create(cls, kind: str, releases: ReleaseStack) -> OpenXRGraphics:
        gpa: Callable[[bytes], int]
        egl: EGLContext | None = None
        binding: Any
        if kind == "egl":
            egl = EGLContext()
            releases.local(egl.destroy)
            ctx = moderngl.create_context(require=330)
            releases.local(ctx.release)
            binding = xr.GraphicsBindingEGLMNDX(
                get_proc_address=ctypes.cast(egl.get_proc_address_fn, xr.PFN_xrEglGetProcAddressMNDX),
                display=egl.display, config=egl.config, context=egl.context)
            gpa = egl.get_proc_address
        else:
            ctx = moderngl.create_standalone_context(require=330)
            releases.local(ctx.release)
            glx = GLXHandles.current()
            binding = xr.GraphicsBindingOpenGLXlibKHR()
            types = dict(xr.GraphicsBindingOpenGLXlibKHR._fields_)
            binding.x_display = ctypes.cast(glx.display, types["x_display"])
            binding.visualid = glx.visualid
            binding.glx_fbconfig = ctypes.cast(glx.fbconfig, types["glx_fbconfig"])
            binding.glx_drawable = glx.drawable
            binding.glx_context = ctypes.cast(glx.context, types["glx_context"])
            gpa = glx.get_proc_address
        raw = RawFramebuffers(ctx, gpa)
        releases.local(raw.release)
        return cls(kind, ctx, binding, raw, egl)


class OpenXRSession:
    """One runtime's instance, system and session, and the session's state machine."""

    def __init__(self, app_name: str = "vr-trainer") -> None:
        self.app_name = app_name
        self.instance: Any = None
        self.system_id: Any = None
        self.session: Any = None
        self.graphics: OpenXRGraphics | None = None
        self.extensions: set[str] = set()
        self.runtime_name = ""
        self.runtime_version = ""
        self.system_name = ""
        self.refresh_period_s = 0.0  # from XR_FB_display_refresh_rate when offered, else 0
        self.state = 0  # xr.SessionState value
        self.state_log: list[str] = []
        self.running = False  # between xrBeginSession and xrEndSession
        self.exiting = False  # the session is over (EXITING, loss, or exit before it started)
        self.exit_requested = False
        self.end_reason = ""

    # ---- start-up ----------------------------------------------------------------------------
    def open(self, graphics_kind: str, releases: ReleaseStack) -> OpenXRGraphics:
        """Create the instance, find the headset, make the GL context and create the session."""
        self._create_instance(graphics_kind, releases)
        self._find_system()
        graphics = self.graphics = OpenXRGraphics.create(graphics_kind, releases)
        self.session = xr.create_session(self.instance, xr.SessionCreateInfo(
            next=ctypes.cast(ctypes.pointer(graphics.binding), ctypes.c_void_p), system_id=self.system_id))
        releases.runtime(xr.destroy_session, self.session)
        if "XR_FB_display_refresh_rate" in self.extensions:
            try:
                hz = xr.get_display_refresh_rate_fb(self.session)
                hz = float(getattr(hz, "value", hz))
                if hz > 0:
                    self.refresh_period_s = 1.0 / hz
            except xr.XrException as e:
                log.debug("display refresh rate unavailable: %s", e)
        return graphics

    def _create_instance(self, graphics_kind: str, releases: ReleaseStack) -> None:
        with quiet_stderr() as noise:
            try:
                available = {_text(e.extension_name) for e in xr.enumerate_instance_extension_properties()}
            except xr.XrException as e:
                available = set()
                err: Exception | None = e
            else:
                err = None
        if err is not None or not available:
            log.debug("OpenXR loader said: %s", "".join(noise).strip())
            raise BackendError(f"no OpenXR runtime is available ({why_unavailable(err)}): " + INSTALL_HINT)
        need = ["XR_KHR_opengl_enable"] + (["XR_MNDX_egl_enable"] if graphics_kind == "egl" else [])
        missing = [n for n in need if n not in available]
        if missing:
            raise BackendError(f"the OpenXR runtime lacks {', '.join(missing)} (needed for OpenGL"
                               f"{' without a display' if graphics_kind == 'egl' else ''}); "
                               "run it under X with DISPLAY set, or use --backend desktop")
        enabled = need + [n for n in OPTIONAL_EXTENSIONS if n in available]
        self.extensions = set(enabled)
        with quiet_stderr() as noise:
            try:
                self.instance = xr.create_instance(xr.InstanceCreateInfo(
                    application_info=xr.ApplicationInfo(application_name=self.app_name, application_version=1,
                                                        engine_name="vr-trainer", engine_version=1,
                                                        api_version=xr.Version(1, 0, 0)),
                    enabled_extension_names=enabled))
            except xr.XrException as e:
                log.debug("OpenXR runtime said: %s", "".join(noise).strip())
                raise BackendError(f"no OpenXR runtime is available ({why_unavailable(e)}): "
                                   + INSTALL_HINT) from None
        releases.runtime(xr.destroy_instance, self.instance)
        props = xr.get_instance_properties(self.instance)
        self.runtime_name = _text(props.runtime_name)
        self.runtime_version = str(xr.Version(props.runtime_version))

    def _find_system(self) -> None:
        try:
            self.system_id = xr.get_system(self.instance, xr.SystemGetInfo(
                form_factor=xr.FormFactor.HEAD_MOUNTED_DISPLAY))
        except xr.XrException as e:
            raise BackendError(f"the OpenXR runtime {self.runtime_name} answers but has no headset "
                               f"({type(e).__name__}): connect and switch on the headset, "
                               "or run with --backend desktop") from None
        self.system_name = _text(xr.get_system_properties(self.instance, self.system_id).system_name)
        fn = ctypes.cast(xr.get_instance_proc_addr(self.instance, "xrGetOpenGLGraphicsRequirementsKHR"),
                         xr.PFN_xrGetOpenGLGraphicsRequirementsKHR)
        req = xr.GraphicsRequirementsOpenGLKHR()
        res = xr.check_result(xr.Result(fn(self.instance, self.system_id, ctypes.byref(req))))
        if res.is_exception():
            raise res

    def blend_mode(self) -> Any:
        """OPAQUE when the system offers it (or says nothing), else its first mode."""
        modes = [int(m) for m in xr.enumerate_environment_blend_modes(self.instance, self.system_id, PRIMARY_STEREO)]
        opaque = int(xr.EnvironmentBlendMode.OPAQUE.value)
        return xr.EnvironmentBlendMode(opaque if opaque in modes or not modes else modes[0])

    def wait_until_running(self, timeout_s: float) -> None:
        """Poll events until the runtime has begun the session (READY), within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not self.running:
            self.poll_events()
            if self.exiting:
                raise BackendError("the OpenXR runtime ended the session before it started "
                                   f"(state {self.state_name()})")
            if time.monotonic() > deadline:
                raise BackendError(f"the OpenXR runtime did not start the session within {timeout_s:.0f} s "
                                   f"(state {self.state_name()}); is the headset awake?")
            time.sleep(0.005)

    # ---- events and state --------------------------------------------------------------------
    @property
    def focused(self) -> bool:
        return self.state == xr.SessionState.FOCUSED.value

    def state_name(self) -> str:
        try:
            return xr.SessionState(self.state).name
        except ValueError:
            return str(self.state)

    def poll_events(self) -> None:
        """Handle every queued runtime event (xrPollEvent never blocks)."""
        while True:
            try:
                ev = xr.poll_event(self.instance)
            except xr.EventUnavailable:
                return
            kind = xr.StructureType(ev.type)
            if kind == xr.StructureType.EVENT_DATA_INSTANCE_LOSS_PENDING:
                self.finish("instance loss pending")
            elif kind == xr.StructureType.EVENT_DATA_SESSION_STATE_CHANGED:
                e = ctypes.cast(ctypes.byref(ev), ctypes.POINTER(xr.EventDataSessionStateChanged)).contents
                self._on_state(xr.SessionState(e.state))

    def _on_state(self, state: Any) -> None:
        S = xr.SessionState
        self.state = int(state.value)
        self.state_log.append(state.name)
        if state == S.READY:
            xr.begin_session(self.session, xr.SessionBeginInfo(primary_view_configuration_type=PRIMARY_STEREO))
            self.running = True
        elif state == S.STOPPING:
            self.running = False
            xr.end_session(self.session)
        elif state == S.EXITING:
            self.finish("exit requested by the app" if self.exit_requested else "runtime ended the session")
        elif state == S.LOSS_PENDING:
            self.finish("session loss pending")

    def finish(self, reason: str) -> None:
        """The session is over; the first reason given is kept."""
        self.exiting = True
        self.running = False
        self.end_reason = self.end_reason or reason

    def request_exit(self) -> None:
        """Ask the runtime to end the session (xrRequestExitSession); it then walks to EXITING."""
        self.exit_requested = True
        if self.running and self.session is not None:
            try:
                xr.request_exit_session(self.session)
            except xr.XrException:
                self.finish("exit requested by the app")
        else:
            self.finish("exit requested by the app")

    def end(self) -> None:
        """At close: end a session the runtime still runs (xrEndSession)."""
        if self.running:
            self.running = False
            xr.end_session(self.session)
