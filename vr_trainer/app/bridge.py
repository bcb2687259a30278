"""Contracts between the frame loop (GL thread) and anything outside it.

Render -> network: the loop hands each mirror frame to every :class:`FrameSink`
(``publish`` must return at once; sinks keep a single latest-frame slot).
Scenario -> network: the loop hands the scenario engine's notices (step started, hint,
prompt, critical error, ..., and the final score) to every :class:`NoticeSink` as
JSON-ready dicts (:func:`notice_to_dict`, :func:`run_finished_notice`);
``publish_notice`` must return at once, as ``publish`` does.
Network -> render: every :class:`Inbox` is drained once per frame in phase 2;
``drain`` returns the items that arrived since the last call and never blocks. An
item is an :data:`InboxItem`: a callable the loop runs with a :class:`LoopView`, the
little of the session it may change (annotations, mentor notes) or read (recent
frames, simulation time). No one outside the loop reaches the loop's state.

:class:`BridgeHost` is what a remote bridge may touch of a running session: its
sinks and inboxes (to attach and detach), plus the :class:`LoopView` its inbox items
get. :class:`~vr_trainer.app.loop.FrameLoop` and the GL-free synthetic frame source
implement it explicitly.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from vr_trainer.frame import MirrorFrame
from vr_trainer.sim.annotations import AnnotationSet

log = logging.getLogger("vr_trainer.app.bridge")


class FrameSink(Protocol):
    """Receives mirror frames; must not block."""

    wants_depth: bool

    def publish(self, frame: MirrorFrame) -> None: ...


class NoticeSink(Protocol):
    """Receives scenario notices as JSON-ready dicts on the loop's thread; must not block
    (a remote bridge queues them for its own thread).

    Keys (``None`` where not applicable): ``kind`` (the engine's kinds: step_started,
    step_completed, step_failed, hint, prompt, haptic, sound, overlay, critical_error,
    event; plus ``run_finished`` once the run is scored), ``time_s`` (simulation clock, s),
    ``text_en``, ``text_zh``, ``step_id``, ``event_id``, ``critical_error`` (its id),
    ``step_index`` (0-based index of ``step_id``; == ``step_count`` when the run ended),
    ``step_count``, and on ``run_finished`` ``score`` (0-100), ``passed``, ``pass_mark``."""

    def publish_notice(self, notice: dict[str, Any]) -> None: ...


class LoopView(Protocol):
    """What an inbox item may touch of the running session; only on the loop's
    thread, between two frames (phase 2)."""

    @property
    def annotations(self) -> AnnotationSet:
        """The world-anchored marks drawn into every view (edit in place)."""
        ...

    @property
    def sim_time_s(self) -> float:
        """Simulation time of the state the next frame starts from."""
        ...

    @property
    def next_frame_index(self) -> int:
        """Index of the frame that will first show a change made now."""
        ...

    def recent_frames(self) -> Iterator[MirrorFrame]:
        """Recently published frames, newest first, without pixels (depth and
        matrices, for unprojecting a mark drawn on the video)."""
        ...

    def add_mentor_note(self, author: str, text: str) -> None:
        """Show a mentor's note in the headset."""
        ...


InboxItem = Callable[[LoopView], None]


class Inbox(Protocol):
    def drain(self) -> list[InboxItem]: ...


class BridgeHost(LoopView, Protocol):
    """What a remote bridge may touch of a running session: it adds its frame sink, its
    notice sink and its inbox (and removes them when it closes); its inbox items get
    this as the :class:`LoopView`."""

    sinks: list[FrameSink]
    notice_sinks: list[NoticeSink]
    inboxes: list[Inbox]


NOTICE_KINDS = ("step_started", "step_completed", "step_failed", "hint", "prompt", "haptic", "sound", "overlay",
                "critical_error", "event", "run_finished")


def notice_to_dict(notice: Any, step_ids: Sequence[str]) -> dict[str, Any]:
    """A scenario engine :class:`~vr_trainer.scenario.engine.Notice` as a :class:`NoticeSink`
    dict; ``step_ids`` are the scenario's step ids in order (for ``step_index``/``step_count``)."""
    text = notice.text
    step_id = notice.step_id
    return {"kind": notice.kind, "time_s": float(notice.time_s),
            "text_en": text.en if text is not None else None, "text_zh": text.zh if text is not None else None,
            "step_id": step_id, "event_id": notice.event_id, "critical_error": notice.critical_error,
            "step_index": list(step_ids).index(step_id) if step_id in step_ids else None,
            "step_count": len(step_ids)}


def run_finished_notice(time_s: float, score: float, passed: bool, pass_mark: float | None,
                        step_count: int) -> dict[str, Any]:
    """The :class:`NoticeSink` dict that ends a run: the score (0-100) and whether it passed."""
    return {"kind": "run_finished", "time_s": float(time_s), "text_en": None, "text_zh": None, "step_id": None,
            "event_id": None, "critical_error": None, "step_index": step_count, "step_count": step_count,
            "score": float(score), "passed": bool(passed), "pass_mark": None if pass_mark is None else float(pass_mark)}


def publish_to_sinks(sinks: Iterable[NoticeSink], items: Iterable[dict[str, Any]]) -> int:
    """Hand every notice to every sink (a sink that raises is logged and skipped, never
    stops a frame); returns how many hand-overs failed."""
    failed = 0
    batch = list(items)
    for sink in list(sinks):
        for item in batch:
            try:
                sink.publish_notice(item)
            except Exception:  # noqa: BLE001 - a broken sink must not stop the frame loop
                failed += 1
                log.exception("notice sink %r failed", sink)
    return failed


class LatestSlot:
    """A single latest-value slot shared between threads; writers overwrite."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: Any = None
        self._version = 0
        self._event = threading.Event()

    def put(self, value: Any) -> None:
        with self._lock:
            self._value = value
            self._version += 1
        self._event.set()

    def get(self) -> tuple[int, Any]:
        with self._lock:
            return self._version, self._value


@dataclass
class ThreadSafeInbox:
    """A bounded multi-producer inbox drained by the frame loop.

    When full, the oldest items are dropped (and counted) rather than growing
    without bound or blocking a producer. ``max_per_frame`` spreads a flood over
    frames instead of making one long frame. An item put with a ``coalesce_key``
    replaces the one waiting under that key (latest wins, e.g. a laser pointer per
    viewer). ``tick`` is asked once per drain for an item to run after the others
    (periodic work such as expiring marks), or None."""

    maxlen: int = 4096
    max_per_frame: int | None = None
    tick: Callable[[], InboxItem | None] | None = None
    dropped: int = 0
    _q: deque[InboxItem] = field(default_factory=deque)
    _latest: dict[str, InboxItem] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, item: InboxItem, coalesce_key: str | None = None) -> None:
        with self._lock:
            if coalesce_key is not None:
                self._latest[coalesce_key] = item
                return
            if len(self._q) >= self.maxlen:
                self._q.popleft()
                self.dropped += 1
            self._q.append(item)

    def __len__(self) -> int:
        with self._lock:
            return len(self._q) + len(self._latest)

    def drain(self) -> list[InboxItem]:
        with self._lock:
            n = len(self._q) if self.max_per_frame is None else min(len(self._q), self.max_per_frame)
            items = [self._q.popleft() for _ in range(n)]
            items.extend(self._latest.values())
            self._latest.clear()
        if self.tick is not None:
            extra = self.tick()
            if extra is not None:
                items.append(extra)
        return items
