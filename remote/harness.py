"""A real frame loop on its own thread, paced like a headset: for the streaming
benchmark and the remote tests.

GL lives on the loop thread, so everything that touches the loop (building it,
reading pixels) runs there; :meth:`LoopThread.call` runs a function between two
frames and returns its result. The "board" scene is a flat slab of bone facing the
viewer (pixel checks are easy on it); "default" is the built-in scenario.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BOARD_SIZE_MM = (800.0, 600.0, 20.0)
BOARD_HEAD_MM = (0.0, 0.0, 600.0)


def board_mesh() -> tuple[np.ndarray, np.ndarray]:
    """A box centred at the origin, front face at z = +10 mm."""
    w, h, d = (s / 2.0 for s in BOARD_SIZE_MM)
    v = np.array([[x, y, z] for z in (-d, d) for y in (-h, h) for x in (-w, w)], float)
    f = np.array([[4, 5, 7], [4, 7, 6], [1, 0, 2], [1, 2, 3], [0, 4, 6], [0, 6, 2], [5, 1, 3], [5, 3, 7],
                  [2, 6, 7], [2, 7, 3], [0, 1, 5], [0, 5, 4]])
    return v, f


@dataclass
class _Call:
    fn: Callable[[Any], Any]
    fut: concurrent.futures.Future

    def __call__(self, loop: Any) -> None:
        if not self.fut.set_running_or_notify_cancel():
            return
        try:
            self.fut.set_result(self.fn(loop))
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            self.fut.set_exception(e)


@dataclass
class LoopThread:
    """Builds and runs a FrameLoop paced at ``fps`` on a thread of its own."""

    eye_size: tuple[int, int] = (320, 240)
    fps: float = 30.0
    scene: str = "board"
    layout: str = "side_by_side"
    head_keys: list[dict] | None = None  # PoseTrack head keyframes (board scene)
    loop: Any = None
    frame_ms: list[float] = field(default_factory=list)
    gap_ms: list[float] = field(default_factory=list)  # time between frame starts
    publish_wall_s: dict[int, float] = field(default_factory=dict)  # frame index -> wall time rendered
    error: BaseException | None = None

    def __post_init__(self) -> None:
        from vr_trainer.app.bridge import ThreadSafeInbox

        self._calls = ThreadSafeInbox(maxlen=256)
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="frame-loop", daemon=True)
        self._setup: list[Callable[[Any], None]] = []

    # ---- control ------------------------------------------------------------------
    def start(self, before_run: Callable[[Any], None] | None = None, timeout_s: float = 60.0) -> LoopThread:
        if before_run is not None:
            self._setup.append(before_run)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError("frame loop did not start")
        if self.error is not None:
            raise RuntimeError(f"frame loop failed to start: {self.error!r}") from self.error
        return self

    def call(self, fn: Callable[[Any], Any], timeout_s: float = 10.0) -> Any:
        """Run ``fn(loop)`` on the loop thread between frames; return its result."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._calls.put(_Call(fn, fut))
        return fut.result(timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def reset_timing(self) -> None:
        self.frame_ms.clear()
        self.gap_ms.clear()

    # ---- loop thread ------------------------------------------------------------------
    def _build(self) -> tuple[Any, Any]:
        os.environ.setdefault("EGL_PLATFORM", "surfaceless")
        from vr_trainer.app.clock import MonotonicClock
        from vr_trainer.app.loop import FrameLoop
        from vr_trainer.render.mirror import MirrorCompositor
        from vr_trainer.render.renderer import SceneRenderer
        from vr_trainer.xr.headless import HeadlessBackend

        w, h = self.eye_size
        mirror_size = (w * 2, h) if self.layout == "side_by_side" else (w, h)
        if self.scene == "default":
            from vr_trainer.app.session import build_session
            from vr_trainer.scenario.loader import default_scenario_path, load_scenario

            sc, meshes = build_session(load_scenario(default_scenario_path()))
            track = sc.track
            track.fps = self.fps
            backend = HeadlessBackend(track, size=self.eye_size, frames=10 ** 9)
            ctx = backend.open()
            renderer = SceneRenderer(ctx)
            sc.upload(renderer, meshes)
            loop = FrameLoop(backend, renderer, sc.simulation, sc.initial_state, sc.snapshot,
                             MirrorCompositor(ctx, mirror_size, self.layout), MonotonicClock())
            return loop, backend
        from vr_trainer.sim.scene import DrawItem, SceneSnapshot
        from vr_trainer.sim.simulation import SimState, Simulation
        from vr_trainer.xr.posetrack import PoseTrack

        keys = self.head_keys or [{"t_s": 0.0, "position_mm": list(BOARD_HEAD_MM), "look_at_mm": [0, 0, 0]}]
        track = PoseTrack.from_keys(keys, [], fps=self.fps)
        backend = HeadlessBackend(track, size=self.eye_size, frames=10 ** 9)
        ctx = backend.open()
        renderer = SceneRenderer(ctx)
        v, f = board_mesh()
        renderer.add_mesh("board", v, f, "bone")
        item = DrawItem("board", np.eye(4))

        def snapshot(state: Any, frame: Any) -> Any:
            return SceneSnapshot(state.time_s, frame.index, (item,), (), state.annotations)

        loop = FrameLoop(backend, renderer, Simulation(np.eye(4)), SimState(), snapshot,
                         MirrorCompositor(ctx, mirror_size, self.layout), MonotonicClock())
        return loop, backend

    def _main(self) -> None:
        backend = None
        try:
            self.loop, backend = self._build()
            self.loop.inboxes.append(self._calls)
            self.loop.trace = self._trace
            for fn in self._setup:
                fn(self.loop)
        except BaseException as e:  # noqa: BLE001
            self.error = e
            self._ready.set()
            if backend is not None:
                backend.close()
            return
        self._ready.set()
        period_s = 1.0 / self.fps
        next_s = time.perf_counter()
        last_start = None
        try:
            while not self._stop.is_set():
                start = time.perf_counter()
                if last_start is not None:
                    self.gap_ms.append((start - last_start) * 1000.0)
                last_start = start
                if not self.loop.step():
                    break
                self.frame_ms.append((time.perf_counter() - start) * 1000.0)
                next_s += period_s
                delay = next_s - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                else:
                    next_s = time.perf_counter()  # behind: do not try to catch up
        except BaseException as e:  # noqa: BLE001
            self.error = e
        finally:
            for fn in self._calls.drain():  # nobody will run these now
                if isinstance(fn, _Call):
                    fn.fut.cancel()
            backend.close()

    def _trace(self, phase: str, index: int) -> None:
        if phase == "publish":
            self.publish_wall_s[index] = time.time()
            if len(self.publish_wall_s) > 4000:
                for k in sorted(self.publish_wall_s)[:2000]:
                    del self.publish_wall_s[k]


@dataclass
class SyntheticFrameThread:
    """Mirror frames from precomputed pictures at ``fps``, no GL: the streaming
    pipeline's own latency, apart from how fast this machine renders. Quacks like a
    FrameLoop as far as :class:`~remote.trainee.TraineeBridge` needs."""

    size: tuple[int, int] = (1280, 720)
    fps: float = 30.0
    sinks: list[Any] = field(default_factory=list)
    inboxes: list[Any] = field(default_factory=list)
    publish_wall_s: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from collections import deque
        from types import SimpleNamespace

        from vr_trainer.sim.annotations import AnnotationSet

        w, h = self.size
        yy, xx = np.mgrid[0:h, 0:w]
        self._pictures = []
        for k in range(8):  # moving content, so the encoder does real work
            img = np.empty((h, w, 3), np.uint8)
            img[..., 0] = (xx + 16 * k) % 256
            img[..., 1] = (yy + 8 * k) % 256
            img[..., 2] = ((xx // 64 + yy // 64 + k) % 2) * 180
            self._pictures.append(img)
        self.history: Any = deque()
        self.state = SimpleNamespace(annotations=AnnotationSet(), time_s=0.0)
        self.last_frame = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="synthetic-frames", daemon=True)

    def start(self) -> "SyntheticFrameThread":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _main(self) -> None:
        from vr_trainer.frame import MirrorFrame

        period_s = 1.0 / self.fps
        next_s = time.perf_counter()
        i = 0
        while not self._stop.is_set():
            for inbox in list(self.inboxes):
                inbox.drain()  # nothing to apply here: keep the queue short
            frame = MirrorFrame(i, i * period_s, self._pictures[i % len(self._pictures)], None, [])
            self.publish_wall_s[i] = time.time()
            for sink in list(self.sinks):
                sink.publish(frame)
            i += 1
            next_s += period_s
            time.sleep(max(0.0, next_s - time.perf_counter()))
