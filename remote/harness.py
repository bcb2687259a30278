"""A GL-free stand-in for the frame loop: mirror frames from precomputed pictures at a
fixed rate, for measuring the streaming pipeline's own latency apart from how fast
this machine renders (`vr-trainer bench stream`).

The real paced frame loop lives with the sessions it builds, in
:mod:`vr_trainer.app.live`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vr_trainer.app.bridge import BridgeHost, FrameSink, Inbox, NoticeSink, publish_to_sinks
from vr_trainer.frame import MirrorFrame
from vr_trainer.sim.annotations import AnnotationSet

MENTOR_NOTES_KEPT = 5
HISTORY_LEN = 90


@dataclass
class SyntheticFrameThread(BridgeHost):
    """Publishes ``size`` (width, height) moving pictures at ``fps`` to its sinks and
    applies its inboxes once a frame, as the frame loop does: a
    :class:`~vr_trainer.app.bridge.BridgeHost` a :class:`~remote.trainee.TraineeBridge`
    can attach to. Frames carry no depth, so a mark drawn on them is refused.
    Scenario notices given to :meth:`post_notices` (any thread) are published on its own
    thread at the start of the next frame, where the frame loop publishes the engine's."""

    size: tuple[int, int] = (1280, 720)
    fps: float = 30.0
    sinks: list[FrameSink] = field(default_factory=list)
    notice_sinks: list[NoticeSink] = field(default_factory=list)
    inboxes: list[Inbox] = field(default_factory=list)
    publish_wall_s: dict[int, float] = field(default_factory=dict)
    mentor_notes: list[tuple[str, str]] = field(default_factory=list)
    inbox_errors: int = 0

    def __post_init__(self) -> None:
        w, h = self.size
        yy, xx = np.mgrid[0:h, 0:w]
        self._pictures = []
        for k in range(8):  # moving content, so the encoder does real work
            img = np.empty((h, w, 3), np.uint8)
            img[..., 0] = (xx + 16 * k) % 256
            img[..., 1] = (yy + 8 * k) % 256
            img[..., 2] = ((xx // 64 + yy // 64 + k) % 2) * 180
            self._pictures.append(img)
        self._annotations = AnnotationSet()
        self._index = 0
        self._history: deque[MirrorFrame] = deque(maxlen=HISTORY_LEN)  # without pixels, as the loop's
        self._stop = threading.Event()
        self._posted: list[dict[str, Any]] = []
        self._posted_lock = threading.Lock()
        self._thread = threading.Thread(target=self._main, name="synthetic-frames", daemon=True)

    # ---- LoopView --------------------------------------------------------------------
    @property
    def annotations(self) -> AnnotationSet:
        return self._annotations

    @property
    def sim_time_s(self) -> float:
        return self._index / self.fps

    @property
    def next_frame_index(self) -> int:
        return self._index

    def recent_frames(self) -> Iterator[MirrorFrame]:
        return reversed(self._history)

    def add_mentor_note(self, author: str, text: str) -> None:
        self.mentor_notes.append((author, text))
        del self.mentor_notes[:-MENTOR_NOTES_KEPT]

    def publish_notices(self, items: list[dict[str, Any]]) -> None:
        """Hand notices to every notice sink now (on this host's thread)."""
        if items and self.notice_sinks:
            publish_to_sinks(self.notice_sinks, items)

    def post_notices(self, items: list[dict[str, Any]]) -> None:
        """Publish ``items`` from this host's thread at the start of the next frame."""
        with self._posted_lock:
            self._posted.extend(items)

    # ---- thread ----------------------------------------------------------------------
    def start(self) -> SyntheticFrameThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _main(self) -> None:
        period_s = 1.0 / self.fps
        next_s = time.perf_counter()
        while not self._stop.is_set():
            i = self._index
            with self._posted_lock:
                posted, self._posted = self._posted, []
            self.publish_notices(posted)
            for inbox in list(self.inboxes):
                for item in inbox.drain():
                    try:
                        item(self)
                    except Exception:  # noqa: BLE001 - a bad message never stops a frame
                        self.inbox_errors += 1
            frame = MirrorFrame(i, i * period_s, self._pictures[i % len(self._pictures)], None, [])
            self._history.append(MirrorFrame(i, frame.time_s, None, None, []))
            self.publish_wall_s[i] = time.time()
            for sink in list(self.sinks):
                sink.publish(frame)
            self._index = i + 1
            next_s += period_s
            time.sleep(max(0.0, next_s - time.perf_counter()))
