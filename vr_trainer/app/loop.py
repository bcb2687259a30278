"""The frame loop: six phases in one visible order (see :data:`PHASES`).

    1 poll input + XR events       (the backend yields the next frame; ``input_filters`` may adjust it,
                                    e.g. the recorder rounds poses to the precision it stores)
    2 drain the remote inbox       (annotations, mentor commands)
    3 advance the simulation       (fixed steps of ``fixed_dt_s``, independent of the render rate)
    4 freeze a snapshot
    5 render each view, compose the mirror, hand the views to the display
    6 publish the mirror frame     (sinks get a latest frame) + record the step

GL is used on the calling thread only; nothing here awaits.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np

from vr_trainer.app.bridge import BridgeHost, FrameSink, Inbox, NoticeSink, notice_to_dict, publish_to_sinks
from vr_trainer.app.clock import Clock, MonotonicClock
from vr_trainer.frame import Frame, MirrorFrame
from vr_trainer.render.mirror import MirrorCompositor
from vr_trainer.render.renderer import SceneRenderer
from vr_trainer.scenario.engine import Notice
from vr_trainer.sim.annotations import AnnotationSet
from vr_trainer.sim.scene import SceneSnapshot
from vr_trainer.sim.simulation import SimState, Simulation
from vr_trainer.xr.base import DisplayBackend

PHASES = ("poll_input", "drain_inbox", "simulate", "snapshot", "render", "publish")
MENTOR_NOTES_KEPT = 5
NOTICES_KEPT = 256


class StepRules(Protocol):
    """Runs after every fixed simulation step (the scenario engine, procedure rules): reads
    ``state.observation``, returns the state to carry on with and what it announces.
    ``step_ids``: the scenario's steps in order (for the notice sinks' ``step_index``)."""

    @property
    def step_ids(self) -> Sequence[str]: ...

    def after_step(self, state: SimState) -> tuple[SimState, Sequence[Notice]]: ...


@dataclass
class FrameRecord:
    """What the loop keeps of a recent frame: enough to unproject a 2D mark drawn on it."""

    frame_id: int
    time_s: float
    frame: MirrorFrame | None = None


@dataclass
class FrameLoop(BridgeHost):
    backend: DisplayBackend
    renderer: SceneRenderer | None  # None: simulate and score without drawing (a replay with --no-render)
    simulation: Simulation
    state: SimState
    snapshot_fn: Callable[[SimState, Frame], SceneSnapshot]
    mirror: MirrorCompositor | None = None
    clock: Clock = field(default_factory=MonotonicClock)
    fixed_dt_s: float = 1.0 / 120.0
    max_sim_steps_per_frame: int = 12
    inboxes: list[Inbox] = field(default_factory=list)
    sinks: list[FrameSink] = field(default_factory=list)
    notice_sinks: list[NoticeSink] = field(default_factory=list)
    recorders: list[Callable[[SimState, Frame], None]] = field(default_factory=list)
    input_filters: list[Callable[[Frame], None]] = field(default_factory=list)  # phase 1, edit the frame in place
    history_len: int = 90
    trace: Callable[[str, int], None] | None = None
    frame_ms: list[float] = field(default_factory=list)
    inbox_errors: int = 0
    history: deque = field(default_factory=deque)
    _frames: Iterator[Frame] | None = None
    _last_clock_s: float | None = None
    _accum_s: float = 0.0
    last_frame: Frame | None = None
    last_snapshot: SceneSnapshot | None = None
    rules: list[StepRules] = field(default_factory=list)
    notices: deque[Notice] = field(default_factory=lambda: deque(maxlen=NOTICES_KEPT))  # newest last

    def _phase(self, name: str, index: int) -> None:
        if self.trace is not None:
            self.trace(name, index)

    def step(self) -> bool:
        """Run exactly one frame. False when the backend has no more frames."""
        if self._frames is None:
            self._frames = self.backend.frames()
        t0 = time.perf_counter()
        # 1 poll input + XR events
        try:
            frame = next(self._frames)
        except StopIteration:
            return False
        for adjust in self.input_filters:
            adjust(frame)
        i = frame.index
        self._phase("poll_input", i)
        # 2 drain the remote inbox: each item is a callable applied to this loop (its LoopView)
        self._phase("drain_inbox", i)
        for inbox in self.inboxes:
            for item in inbox.drain():
                try:
                    item(self)
                except Exception:  # noqa: BLE001 - a bad message never stops a frame
                    self.inbox_errors += 1
        # 3 fixed-step simulation
        self._phase("simulate", i)
        now = self.clock.now_s()
        if self._last_clock_s is None:
            self._last_clock_s = now
        self._accum_s += max(0.0, now - self._last_clock_s)
        self._last_clock_s = now
        n = 0
        while self._accum_s >= self.fixed_dt_s - 1e-12 and n < self.max_sim_steps_per_frame:
            self.state = self.simulation.step(self.state, frame.input, self.fixed_dt_s)
            for rules in self.rules:
                self.state, announced = rules.after_step(self.state)
                if announced:
                    self.notices.extend(announced)
                    if self.notice_sinks:  # the mentor console
                        self.publish_notices([notice_to_dict(n, rules.step_ids) for n in announced])
            self._accum_s -= self.fixed_dt_s
            n += 1
            for h in self.state.haptics:
                self.backend.haptic_pulse(h.hand, h.amplitude, h.duration_s)
        if n == self.max_sim_steps_per_frame:
            self._accum_s = 0.0  # far behind (debugger, stall): drop time rather than spiral
        # 4 freeze a snapshot
        self._phase("snapshot", i)
        snap = self.snapshot_fn(self.state, frame)
        self.last_snapshot = snap
        # 5 render each view
        self._phase("render", i)
        targets = []
        if frame.should_render and self.renderer is not None:
            for view in frame.views:
                targets.append(self.renderer.render(view, snap, self.backend.render_target(view)))
            if self.mirror is not None and targets:
                self.mirror.compose(targets)
        self.backend.end_frame(frame)
        # 6 publish the mirror frame + record
        self._phase("publish", i)
        if self.mirror is not None and targets and (self.sinks or self.history_len):
            want_depth = any(getattr(s, "wants_depth", False) for s in self.sinks)
            got = self.mirror.read_async(i, want_depth) if self.sinks else None
            if got is not None:
                fid, rgb, depth, views = got
                mf = MirrorFrame(fid, frame.predicted_display_time_s, rgb, depth, views)
                # history keeps what unprojection needs (depth, matrices), not the pixels
                self.history.append(FrameRecord(fid, mf.time_s, MirrorFrame(fid, mf.time_s, None, depth, views)))
                while len(self.history) > self.history_len:
                    self.history.popleft()
                for sink in self.sinks:
                    sink.publish(mf)
        for rec in self.recorders:
            rec(self.state, frame)
        self.last_frame = frame
        self.frame_ms.append((time.perf_counter() - t0) * 1000.0)
        return True

    def run(self, max_frames: int | None = None) -> int:
        """Run until the backend stops (or ``max_frames``); returns frames run."""
        n = 0
        while max_frames is None or n < max_frames:
            if not self.step():
                break
            n += 1
        return n

    # ---- LoopView: what inbox items may touch ------------------------------------------
    @property
    def annotations(self) -> AnnotationSet:
        return self.state.annotations

    @property
    def sim_time_s(self) -> float:
        return self.state.time_s

    @property
    def next_frame_index(self) -> int:
        return self.last_frame.index + 1 if self.last_frame is not None else 0

    def recent_frames(self) -> Iterator[MirrorFrame]:
        return (rec.frame for rec in reversed(self.history) if rec.frame is not None)

    def add_mentor_note(self, author: str, text: str) -> None:
        notes = self.state.mentor_notes
        notes.append((author, text))
        del notes[:-MENTOR_NOTES_KEPT]

    def publish_notices(self, items: list[dict[str, Any]]) -> None:
        """Hand scenario notices (JSON-ready dicts, see :class:`~vr_trainer.app.bridge.NoticeSink`)
        to every notice sink, e.g. the mentor console's bridge. Call it on this thread in the
        simulate phase with the engine's notices of that frame, ``[notice_to_dict(n, step_ids)
        for n in notices]``, and once at the end with ``run_finished_notice(...)``
        (both in :mod:`vr_trainer.app.bridge`). Never blocks; a failing sink is logged."""
        if items and self.notice_sinks:
            publish_to_sinks(self.notice_sinks, items)

    def recent_frame(self, frame_id: int) -> FrameRecord | None:
        for rec in reversed(self.history):
            if rec.frame_id == frame_id:
                return rec
        return None

    def timing_summary(self) -> dict[str, Any]:
        ms = np.array(self.frame_ms[1:] if len(self.frame_ms) > 1 else self.frame_ms)
        if not len(ms):
            return {"frame_ms_median": None, "frame_ms_p95": None}
        return {"frame_ms_median": round(float(np.median(ms)), 3),
                "frame_ms_p95": round(float(np.percentile(ms, 95)), 3)}
