"""`vr-trainer replay FILE --backend desktop`: watch a recorded session in a window, paused,
stepped and sought, without changing what it computes.

Keys: Space pauses and resumes; D steps one frame while paused; E jumps 5 s ahead; A jumps 5 s
back; Esc closes. Pausing shows the same recorded frame again with the same clock value, so the
fixed-step accumulator takes no step: the simulation does not move and the score is unchanged.
Jumping ahead runs the frames in between without drawing them. Jumping back rebuilds the session
and runs it from the start, undrawn, to the target frame (the simulation cannot run backwards).
The window is :class:`~vr_trainer.xr.desktop.DesktopBackend`'s (only that module imports glfw):
its frames are read for the keys only. The recorded frames are streamed from the file, as the
headless replay does (every move goes forward; a jump back reads the file again from the start),
so memory does not grow with the session's length.
"""

from __future__ import annotations

import time
from contextlib import closing
from pathlib import Path
from typing import Any, Iterator

from vr_trainer.app.replay import COMPARED, ReplayBackend, ReplayClock, configure_loop, load_for_replay
from vr_trainer.frame import Frame, View
from vr_trainer.session.format import RecordedFrame
from vr_trainer.session.reader import Recording

JUMP_S = 5.0


class ReplayWindow:
    """The desktop window and its keyboard: :meth:`poll` returns the keys pressed since the last
    call (edges, not held keys), or None once the window is closed."""

    def __init__(self, size: tuple[int, int]) -> None:
        from vr_trainer.xr.desktop import DesktopBackend

        self.desktop = DesktopBackend(size=size)
        self._keys: Iterator[Frame] | None = None
        self._held: frozenset[str] = frozenset()
        self.paused = False  # kept here: a jump back rebuilds the backend, not the viewer's state

    def open(self) -> Any:
        if self.desktop.ctx is None:
            self.desktop.open()
            self._keys = self.desktop.frames()
        return self.desktop.ctx

    def poll(self) -> frozenset[str] | None:
        assert self._keys is not None
        try:
            keys = next(self._keys).input.keys
        except StopIteration:
            return None
        new = keys - self._held
        self._held = keys
        return new

    def close(self) -> None:
        self.desktop.close()


class DesktopReplayBackend(ReplayBackend):
    """Recorded frames shown in a :class:`ReplayWindow`, paused, stepped and sought by its keys.
    ``start_index``: frames before it run undrawn (a jump). After :meth:`frames` ends,
    ``restart_at`` is the frame a jump back asked for (None: the end or the window closed)."""

    name = "replay-desktop"

    def __init__(self, recording: Recording, clock: ReplayClock, window: ReplayWindow, speed: float = 1.0,
                 start_index: int = 0) -> None:
        super().__init__(recording, clock, render=True, speed=speed)
        self.window = window
        self.start_index = start_index
        self.restart_at: int | None = None
        self.closed_by_user = False

    def open(self) -> Any:
        self.ctx = self.window.open()
        return self.ctx

    def _show(self, rf: RecordedFrame, k: int) -> Frame:
        """Frame number ``k`` of the recording, ``rf``, as the loop's next frame."""
        self.clock.value_s = rf.clock_s
        self.current_index = rf.frame.index
        rf.frame.should_render = k >= self.start_index
        return rf.frame

    def frames(self) -> Iterator[Frame]:
        with closing(self.recording.iter_frames()) as stream:
            yield from self._frames(stream)

    def _frames(self, stream: Iterator[RecordedFrame]) -> Iterator[Frame]:
        count = self.recording.frame_count
        fps = count / max(self.recording.duration_s, 1e-6)
        jump = max(1, int(round(JUMP_S * fps)))
        speed = self.speed or 1.0
        k, cur = 0, next(stream, None)  # frame number k of the recording, the next to show
        last: tuple[RecordedFrame, int] | None = None
        if cur is None:
            return
        wall0, clock0 = time.perf_counter(), cur.clock_s
        while cur is not None:
            if k < self.start_index:  # running to a jump's target, undrawn
                yield self._show(cur, k)
                last, wall0, clock0 = (cur, k), time.perf_counter(), cur.clock_s
                k, cur = k + 1, next(stream, None)
                continue
            pressed = self.window.poll()
            if pressed is None:
                self.closed_by_user = True
                return
            if "space" in pressed:
                self.window.paused = not self.window.paused
            if "a" in pressed:
                self.restart_at = max(0, k - jump)
                return
            if "e" in pressed:
                self.start_index = min(count - 1, k + jump)
                continue
            if self.window.paused and "d" not in pressed:
                if last is not None:
                    yield self._show(*last)  # the same frame and clock value: no simulation step
                time.sleep(1.0 / 60.0)
                wall0, clock0 = time.perf_counter(), cur.clock_s
                continue
            delay = wall0 + (cur.clock_s - clock0) / speed - time.perf_counter()
            if delay > 0 and not self.window.paused:
                time.sleep(delay)
            yield self._show(cur, k)
            last = (cur, k)
            k, cur = k + 1, next(stream, None)

    def render_target(self, view: View) -> Any:
        return self.window.desktop.render_target(view)

    def end_frame(self, frame: Frame) -> None:
        if frame.should_render:
            self.window.desktop.end_frame(frame)

    def eye_images(self) -> list[Any]:
        return self.window.desktop.eye_images()

    def close(self) -> None:
        pass  # the window outlives a jump back; ReplayWindow.close closes it


def replay_in_window(path: str | Path, speed: float = 1.0, out_dir: str | Path | None = None,
                     allow_changed_bundle: bool = False, partial: bool = False) -> dict[str, Any]:
    """Show ``path`` in a desktop window until it ends or the window is closed; returns the summary
    of what was replayed (scored as far as it got)."""
    from vr_trainer.app.session import build_session
    from vr_trainer.render.renderer import SceneRenderer

    rec, scenario, warnings = load_for_replay(path, allow_changed_bundle, partial, frames=False)
    with closing(rec.iter_frames()) as stream:
        views = next((rf.frame.views for rf in stream if rf.frame.views), [])
    window = ReplayWindow((views[0].width, views[0].height) if views else (640, 480))
    renderer = None
    start, restarts = 0, 0
    try:
        while True:
            scene, meshes = build_session(scenario)
            clock = ReplayClock()
            backend = DesktopReplayBackend(rec, clock, window, speed, start)
            ctx = backend.open()
            if renderer is None:
                renderer = SceneRenderer(ctx, samples=rec.session.get("msaa_samples"))
                scene.upload(renderer, meshes)  # the same mesh ids on every rebuild: uploaded once
            loop = scene.frame_loop(backend, renderer, None, clock)
            configure_loop(loop, rec, backend)
            n = loop.run()
            if backend.restart_at is None:
                break
            start, restarts = backend.restart_at, restarts + 1
        summary: dict[str, Any] = {"replay_of": str(rec.path), "backend": "replay-desktop", "frames": n,
                                   "reached_end": not backend.closed_by_user, "jumps_back": restarts,
                                   "scenario": scenario.id, "warnings": warnings}
        if scene.rules is not None:
            summary.update(scene.rules.engine.result().to_summary())
        if rec.summary is not None and not backend.closed_by_user:
            summary["matches_recording"] = {k: summary.get(k) == rec.summary.get(k) for k in COMPARED}
        if out_dir is not None:
            from vr_trainer.app.run import write_outputs

            write_outputs(Path(out_dir), backend.eye_images(), summary)
        return summary
    finally:
        window.close()
