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
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np

from vr_trainer.app.bridge import LoopView, ThreadSafeInbox

if TYPE_CHECKING:  # pragma: no cover - GL modules load on the loop thread
    from vr_trainer.app.loop import FrameLoop
    from vr_trainer.xr.headless import HeadlessBackend

BOARD_SIZE_MM = (800.0, 600.0, 20.0)
BOARD_HEAD_MM = (0.0, 0.0, 600.0)
T = TypeVar("T")


def board_mesh() -> tuple[np.ndarray, np.ndarray]:
    """A box centred at the origin, front face at z = +10 mm: vertices (8, 3) mm, faces (12, 3)."""
    w, h, d = (s / 2.0 for s in BOARD_SIZE_MM)
    v = np.array([[x, y, z] for z in (-d, d) for y in (-h, h) for x in (-w, w)], float)
    f = np.array([[4, 5, 7], [4, 7, 6], [1, 0, 2], [1, 2, 3], [0, 4, 6], [0, 6, 2], [5, 1, 3], [5, 3, 7],
                  [2, 6, 7], [2, 7, 3], [0, 1, 5], [0, 5, 4]])
    return v, f


@dataclass
class _Call(Generic[T]):
    """An inbox item that runs ``fn`` with the whole loop (this module owns the loop)."""

    fn: Callable[[FrameLoop], T]
    fut: concurrent.futures.Future[T]
    loop: FrameLoop

    def __call__(self, view: LoopView) -> None:
        if not self.fut.set_running_or_notify_cancel():
            return
        try:
            self.fut.set_result(self.fn(self.loop))
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
    loop: FrameLoop | None = None
    frame_ms: list[float] = field(default_factory=list)
    gap_ms: list[float] = field(default_factory=list)  # time between frame starts
    publish_wall_s: dict[int, float] = field(default_factory=dict)  # frame index -> wall time rendered
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self._calls = ThreadSafeInbox(maxlen=256)
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="frame-loop", daemon=True)
        self._setup: list[Callable[[FrameLoop], None]] = []

    # ---- control ------------------------------------------------------------------
    def start(self, before_run: Callable[[FrameLoop], None] | None = None, timeout_s: float = 60.0) -> LoopThread:
        if before_run is not None:
            self._setup.append(before_run)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError("frame loop did not start")
        if self.error is not None:
            raise RuntimeError(f"frame loop failed to start: {self.error!r}") from self.error
        return self

    def call(self, fn: Callable[[FrameLoop], T], timeout_s: float = 10.0) -> T:
        """Run ``fn(loop)`` on the loop thread between frames; return its result."""
        if self.loop is None:
            raise RuntimeError("the frame loop is not running (call start() first)")
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._calls.put(_Call(fn, fut, self.loop))
        return fut.result(timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def reset_timing(self) -> None:
        self.frame_ms.clear()
        self.gap_ms.clear()

    # ---- loop thread ------------------------------------------------------------------
    def _build(self) -> tuple[FrameLoop, HeadlessBackend]:
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
            loop = sc.frame_loop(backend, renderer, MirrorCompositor(ctx, mirror_size, self.layout), MonotonicClock())
            return loop, backend
        from vr_trainer.frame import Frame
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

        def snapshot(state: SimState, frame: Frame) -> SceneSnapshot:
            return SceneSnapshot(state.time_s, frame.index, (item,), (), state.annotations)

        loop = FrameLoop(backend, renderer, Simulation(np.eye(4)), SimState(), snapshot,
                         MirrorCompositor(ctx, mirror_size, self.layout), MonotonicClock())
        return loop, backend

    def _main(self) -> None:
        backend: Any = None
        try:
            loop, backend = self._build()
            loop.inboxes.append(self._calls)
            loop.trace = self._trace
            for fn in self._setup:
                fn(loop)
            self.loop = loop
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
                if not loop.step():
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
            for item in self._calls.drain():  # nobody will run these now
                if isinstance(item, _Call):
                    item.fut.cancel()
            backend.close()

    def _trace(self, phase: str, index: int) -> None:
        if phase == "publish":
            self.publish_wall_s[index] = time.time()
            if len(self.publish_wall_s) > 4000:
                for k in sorted(self.publish_wall_s)[:2000]:
                    del self.publish_wall_s[k]
