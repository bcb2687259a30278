"""Headless backend: EGL offscreen, stereo, driven by a scripted pose track. No display needed."""

from __future__ import annotations

import os
import time
from typing import Any, Iterator

import moderngl
import numpy as np

from vr_trainer.frame import Fov, Frame, HandInput, InputState, View
from vr_trainer.xr.base import BackendError, DisplayBackend, read_rgb
from vr_trainer.xr.posetrack import PoseTrack, eye_poses


def headset_fov(eye_index: int, width: int, height: int, outer_deg: float = 50.0, inner_deg: float = 42.0) -> Fov:
    """A headset-like asymmetric field of view for one eye whose aspect matches the target size."""
    lo, ro = np.radians(outer_deg), np.radians(inner_deg)
    if eye_index == 1:
        lo, ro = ro, lo
    span_x = np.tan(lo) + np.tan(ro)
    half_y = float(np.arctan(span_x * height / width / 2.0))
    return Fov(-float(lo), float(ro), half_y, -half_y)


def create_egl_context() -> moderngl.Context:
    """A standalone OpenGL 3.3+ context over EGL (no display)."""
    try:
        return moderngl.create_standalone_context(backend="egl", require=330)  # type: ignore[arg-type]
    except Exception as e:  # noqa: BLE001 - any failure here means: no EGL
        raise BackendError(
            f"cannot create an EGL OpenGL context ({e}); install Mesa's EGL "
            "(apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri) or use --backend desktop") from None


class HeadlessBackend(DisplayBackend):
    """Stereo offscreen rendering at a fixed pace from a :class:`PoseTrack`."""

    name = "headless"

    def __init__(self, track: PoseTrack, size: tuple[int, int] = (640, 480), frames: int | None = None,
                 ipd_mm: float = 63.0, stereo: bool = True, paced: bool = False, loop_track: bool = False) -> None:
        """``paced``: one frame per 1/fps of wall time (a live session someone watches);
        ``loop_track``: with no ``frames`` limit, replay the pose track until stopped."""
        self.track = track
        self.size = size
        self.paced = paced
        self.loop_track = loop_track
        once = max(1, int(round(track.duration_s * track.fps)) + 1)
        self.max_frames: int | None = frames if frames is not None else (None if loop_track else once)
        self._track_frames = once
        self.ipd_mm = ipd_mm
        self.stereo = stereo
        self.ctx: moderngl.Context | None = None
        self._fbos: list[moderngl.Framebuffer] = []
        self.haptics: list[tuple[int, float, float, float]] = []
        self._stop = False

    def open(self) -> moderngl.Context:
        os.environ.setdefault("EGL_PLATFORM", "surfaceless")
        self.ctx = create_egl_context()
        w, h = self.size
        n = 2 if self.stereo else 1
        self._fbos = [self.ctx.framebuffer(color_attachments=[self.ctx.texture((w, h), 4)],
                                           depth_attachment=self.ctx.depth_renderbuffer((w, h))) for _ in range(n)]
        return self.ctx

    def request_exit(self) -> None:
        self._stop = True

    def frames(self) -> Iterator[Frame]:
        if self.ctx is None:
            raise BackendError("HeadlessBackend.frames() before open()")
        w, h = self.size
        i = 0
        start = time.perf_counter()
        while self.max_frames is None or i < self.max_frames:
            if self._stop:
                return
            if self.paced:
                delay = start + i / self.track.fps - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            t = (i % self._track_frames if self.loop_track else i) / self.track.fps
            head = self.track.head_pose(t)
            poses = eye_poses(head, self.ipd_mm) if self.stereo else [head]
            views = [View(k, p, headset_fov(k, w, h), w, h) for k, p in enumerate(poses)]
            acts = self.track.actions_at(t)  # scripted actions: the primary button or keys
            hands = [HandInput(), HandInput(self.track.tool_pose(t), trigger=self.track.trigger(t),
                                            primary_pressed="next_instrument" in acts)]
            yield Frame(i, i / self.track.fps, views, InputState(hands=hands, active_hand=1, focused=True,
                                                                 keys=acts - {"next_instrument"}))
            i += 1

    def render_target(self, view: View) -> moderngl.Framebuffer:
        return self._fbos[view.eye_index]

    def end_frame(self, frame: Frame) -> None:
        pass

    def haptic_pulse(self, hand: int, amplitude: float, duration_s: float, frequency_hz: float = 0.0) -> None:
        self.haptics.append((hand, amplitude, duration_s, frequency_hz))

    def eye_images(self) -> list[np.ndarray]:
        return [read_rgb(f) for f in self._fbos]

    def info(self) -> dict[str, Any]:
        return {"backend": self.name, "eye_size": list(self.size), "pace_fps": self.track.fps, "paced": self.paced}

    def close(self) -> None:
        for f in self._fbos:
            for a in f.color_attachments:
                a.release()
            f.release()
        self._fbos = []
        if self.ctx is not None:
            self.ctx.release()
            self.ctx = None
