"""Desktop backend: a real glfw window. Mouse-look (right button) and WASD/QE move
the head; the mouse cursor drives the active instrument hand (scroll: depth),
left button = trigger, Space = grip, Tab = next instrument, V = one eye / side by
side, Esc = quit; the C-arm: 1 = AP shot, 2 = lateral, 3 = oblique, F = another shot in the
current view. The only module that imports glfw."""

from __future__ import annotations

import time
from typing import Any, Iterator

import glfw
import moderngl
import numpy as np

from vr_trainer.frame import Frame, HandInput, InputState, View
from vr_trainer.sim.transforms import pose_from_axis
from vr_trainer.xr.base import BackendError, DisplayBackend, read_rgb
from vr_trainer.xr.headless import headset_fov
from vr_trainer.xr.posetrack import PoseTrack, eye_poses

MOVE_MM_PER_S = 400.0
LOOK_DEG_PER_PX = 0.15
CARM_KEYS = (("carm_ap", glfw.KEY_1), ("carm_lateral", glfw.KEY_2), ("carm_oblique", glfw.KEY_3),
             ("carm_shot", glfw.KEY_F))  # key names the simulation takes as C-arm shots


class DesktopBackend(DisplayBackend):
    name = "desktop"

    def __init__(self, size: tuple[int, int] = (640, 480), frames: int | None = None, layout: str = "side_by_side",
                 track: PoseTrack | None = None, ipd_mm: float = 63.0, vsync: bool = True) -> None:
        self.eye_size = size
        self.max_frames = frames
        self.layout = layout
        self.track = track
        self.ipd_mm = ipd_mm
        self.vsync = vsync
        self.window: Any = None
        self.ctx: moderngl.Context | None = None
        self._fbos: list[moderngl.Framebuffer] = []
        self._blitter: Any = None
        self.haptics: list[tuple[int, float, float, float]] = []
        head = track.head_pose(0.0) if track is not None else np.eye(4)
        self.head_pos = head[:3, 3].copy()
        fwd = -head[:3, 2]
        self.yaw = float(np.arctan2(-fwd[0], -fwd[2]))
        self.pitch = float(np.arcsin(np.clip(fwd[1], -1, 1)))
        self.hand_depth_mm = 450.0
        self._last_cursor: tuple[float, float] | None = None
        self._scroll = 0.0
        self._toggle_layout = False

    # ---- lifecycle ----------------------------------------------------------
    def open(self) -> moderngl.Context:
        if not glfw.init():
            raise BackendError("cannot open a window: no display (set DISPLAY, or use --backend headless)")
        glfw.window_hint(glfw.CONTEXT_VERSION_MAJOR, 3)
        glfw.window_hint(glfw.CONTEXT_VERSION_MINOR, 3)
        glfw.window_hint(glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE)
        glfw.window_hint(glfw.OPENGL_FORWARD_COMPAT, True)
        w, h = self._window_size()
        self.window = glfw.create_window(w, h, "vr-trainer", None, None)
        if not self.window:
            glfw.terminate()
            raise BackendError("cannot open an OpenGL 3.3 window on this display; use --backend headless")
        glfw.make_context_current(self.window)
        glfw.swap_interval(1 if self.vsync else 0)
        glfw.set_scroll_callback(self.window, self._on_scroll)
        glfw.set_key_callback(self.window, self._on_key)
        self.ctx = moderngl.create_context()
        ew, eh = self.eye_size
        self._fbos = [self.ctx.framebuffer(color_attachments=[self.ctx.texture((ew, eh), 4)],
                                           depth_attachment=self.ctx.depth_renderbuffer((ew, eh))) for _ in range(2)]
        from vr_trainer.render.mirror import TextureBlitter

        self._blitter = TextureBlitter(self.ctx)
        return self.ctx

    def _window_size(self) -> tuple[int, int]:
        w, h = self.eye_size
        return (2 * w, h) if self.layout == "side_by_side" else (w, h)

    def _on_scroll(self, _win: Any, _dx: float, dy: float) -> None:
        self._scroll += dy

    def _on_key(self, _win: Any, key: int, _sc: int, action: int, _mods: int) -> None:
        if key == glfw.KEY_V and action == glfw.PRESS:
            self._toggle_layout = True
        elif key == glfw.KEY_ESCAPE and action == glfw.PRESS:
            glfw.set_window_should_close(self.window, True)  # a quick tap must not be missed between polls

    # ---- frames -------------------------------------------------------------
    def head_pose(self) -> np.ndarray:
        cy, sy, cp, sp = np.cos(self.yaw), np.sin(self.yaw), np.cos(self.pitch), np.sin(self.pitch)
        fwd = np.array([-sy * cp, sp, -cy * cp])
        m = pose_from_axis(self.head_pos, -fwd)
        return m

    def frames(self) -> Iterator[Frame]:
        if self.window is None:
            raise BackendError("DesktopBackend.frames() before open()")
        i = 0
        t_prev = time.perf_counter()
        t0 = t_prev
        while not glfw.window_should_close(self.window):
            if self.max_frames is not None and i >= self.max_frames:
                return
            glfw.poll_events()
            now = time.perf_counter()
            dt = min(now - t_prev, 0.1)
            t_prev = now
            keys = self._update_head(dt)
            if self._toggle_layout:
                self._toggle_layout = False
                self.layout = "left" if self.layout == "side_by_side" else "side_by_side"
            head = self.head_pose()
            ew, eh = self.eye_size
            views = [View(k, p, headset_fov(k, ew, eh), ew, eh)
                     for k, p in enumerate(eye_poses(head, self.ipd_mm))]
            inp = InputState(hands=[HandInput(), self._hand_input(head, views[0])], active_hand=1,
                             focused=True,  # a desktop window keeps input even when unfocused (tests, second monitor)
                             keys=keys)
            yield Frame(i, now - t0, views, inp)
            i += 1

    def _update_head(self, dt: float) -> frozenset[str]:
        win = self.window
        pressed = {name for name, k in (("w", glfw.KEY_W), ("a", glfw.KEY_A), ("s", glfw.KEY_S), ("d", glfw.KEY_D),
                                        ("q", glfw.KEY_Q), ("e", glfw.KEY_E), ("space", glfw.KEY_SPACE),
                                        ("tab", glfw.KEY_TAB)) if glfw.get_key(win, k) == glfw.PRESS}
        pressed |= {name for name, k in CARM_KEYS if glfw.get_key(win, k) == glfw.PRESS}
        cx, cy = glfw.get_cursor_pos(win)
        if glfw.get_mouse_button(win, glfw.MOUSE_BUTTON_RIGHT) == glfw.PRESS and self._last_cursor is not None:
            self.yaw -= np.radians((cx - self._last_cursor[0]) * LOOK_DEG_PER_PX)
            self.pitch = float(np.clip(self.pitch - np.radians((cy - self._last_cursor[1]) * LOOK_DEG_PER_PX),
                                       -1.5, 1.5))
        self._last_cursor = (cx, cy)
        head = self.head_pose()
        fwd, right = -head[:3, 2], head[:3, 0]
        move = np.zeros(3)
        move += fwd * (("w" in pressed) - ("s" in pressed))
        move += right * (("d" in pressed) - ("a" in pressed))
        move[1] += ("e" in pressed) - ("q" in pressed)
        self.head_pos = self.head_pos + move * MOVE_MM_PER_S * dt
        if self._scroll:
            self.hand_depth_mm = float(np.clip(self.hand_depth_mm + self._scroll * 15.0, 100.0, 1500.0))
            self._scroll = 0.0
        return frozenset(pressed)

    def _hand_input(self, head: np.ndarray, view: View) -> HandInput:
        """The instrument tip on the ray from the left eye through the cursor, shaft towards the eye."""
        win = self.window
        ww, wh = glfw.get_window_size(win)
        cx, cy = glfw.get_cursor_pos(win)
        halves = 2 if self.layout == "side_by_side" else 1
        u = (cx % (ww / halves)) / (ww / halves)
        v = cy / max(wh, 1)
        f = view.fov
        x = np.tan(f.angle_left) + u * (np.tan(f.angle_right) - np.tan(f.angle_left))
        y = np.tan(f.angle_up) - v * (np.tan(f.angle_up) - np.tan(f.angle_down))
        d_eye = np.array([x, y, -1.0])
        d = view.pose_world_from_eye[:3, :3] @ (d_eye / np.linalg.norm(d_eye))
        tip = view.pose_world_from_eye[:3, 3] + d * self.hand_depth_mm
        # hold the instrument like a pen: shaft back towards the eye, tilted upwards
        toward = -d + np.array([0.0, 0.6, 0.0])
        trig = 1.0 if glfw.get_mouse_button(win, glfw.MOUSE_BUTTON_LEFT) == glfw.PRESS else 0.0
        grip = 1.0 if glfw.get_key(win, glfw.KEY_SPACE) == glfw.PRESS else 0.0
        return HandInput(pose_from_axis(tip, toward), trigger=trig, grip=grip,
                         primary_pressed=glfw.get_key(win, glfw.KEY_TAB) == glfw.PRESS)

    def render_target(self, view: View) -> moderngl.Framebuffer:
        return self._fbos[view.eye_index]

    def end_frame(self, frame: Frame) -> None:
        assert self.ctx is not None
        want = self._window_size()
        if glfw.get_window_size(self.window) != want:
            glfw.set_window_size(self.window, *want)
        fw, fh = glfw.get_framebuffer_size(self.window)
        self.ctx.screen.use()
        self.ctx.viewport = (0, 0, fw, fh)
        self.ctx.clear(0.0, 0.0, 0.0, 1.0)
        self.ctx.disable(moderngl.DEPTH_TEST)
        fbs = self._fbos if self.layout == "side_by_side" else self._fbos[:1]
        n = len(fbs)
        for k, fb in enumerate(fbs):
            self._blitter.draw(fb.color_attachments[0], (2.0 * k / n - 1.0, -1.0, 2.0 / n, 2.0))
        glfw.swap_buffers(self.window)

    def haptic_pulse(self, hand: int, amplitude: float, duration_s: float, frequency_hz: float = 0.0) -> None:
        self.haptics.append((hand, amplitude, duration_s, frequency_hz))  # no rumble on a desktop

    def eye_images(self) -> list[np.ndarray]:
        return [read_rgb(f) for f in self._fbos]

    def screen_image(self) -> np.ndarray:
        """What the window shows (HxWx3, top row first)."""
        assert self.ctx is not None
        fw, fh = glfw.get_framebuffer_size(self.window)
        raw = self.ctx.screen.read(viewport=(0, 0, fw, fh), components=3, alignment=1)
        return np.frombuffer(raw, np.uint8).reshape(fh, fw, 3)[::-1].copy()

    def info(self) -> dict[str, Any]:
        return {"backend": self.name, "eye_size": list(self.eye_size), "layout": self.layout}

    def close(self) -> None:
        if self.window is not None:
            for f in self._fbos:
                f.release()
            self._fbos = []
            if self.ctx is not None:
                self.ctx.release()
                self.ctx = None
            glfw.destroy_window(self.window)
            self.window = None
            glfw.terminate()
