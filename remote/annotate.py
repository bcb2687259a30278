"""Mentor messages applied on the render thread.

The network thread validates a message, checks the sender's role and puts a
callable into :class:`MentorInbox`; the frame loop runs it in phase 2 with the
loop. :class:`AnnotationApplier` turns strokes, pins and the laser pointer drawn on
a video frame into world-anchored marks: it finds that frame (held frames first,
then the loop's recent history), unprojects with its depth and matrices
(:mod:`vr_trainer.sim.unproject`) and edits ``loop.state.annotations``. Replies go
back through ``reply(peer_id, message)``, which must be thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from remote.framecode import ID_MODULO
from remote.schema import ClearMsg, Hold, LaserMsg, NoteMsg, PinMsg, Release, StrokeMsg, UndoMsg
from vr_trainer.frame import MirrorFrame
from vr_trainer.sim.annotations import AnnotationSet, Pin, Stroke
from vr_trainer.sim.unproject import unproject_pixels

MAX_MARKS = 500
HELD_PER_PEER = 8
HOLD_TTL_S = 120.0
LASER_TTL_S = 0.75
LASER_COLOR = (1.0, 0.15, 0.1, 1.0)
LASER_PREFIX = "laser:"

Reply = Callable[[str, dict[str, Any]], None]


@dataclass
class Sender:
    peer_id: str
    name: str  # the author recorded on marks; undo removes this author's newest mark
    role: str


def marks_snapshot(ann: AnnotationSet) -> list[dict[str, Any]]:
    """The current marks (no laser) as the console lists them."""
    out: list[dict[str, Any]] = [{"id": s.stroke_id, "kind": "stroke", "author": s.author, "points": len(s.points_mm)}
                                 for s in ann.strokes if not s.author.startswith(LASER_PREFIX)]
    out += [{"id": p.pin_id, "kind": "pin", "author": p.author, "label": p.label}
            for p in ann.pins if not p.author.startswith(LASER_PREFIX)]
    return out


@dataclass
class AppliedLog:
    """What was applied when (for the stroke-to-headset benchmark)."""

    mark_id: str
    sent_ms: float | None
    applied_wall_s: float
    render_index: int


@dataclass
class AnnotationApplier:
    """Render-thread state: held frames, laser pins; builds the callables."""

    reply: Reply
    broadcast_marks: Callable[[list[dict[str, Any]]], None]
    clock_s: Callable[[], float] = time.monotonic
    held: OrderedDict[tuple[str, int], tuple[MirrorFrame, float]] = field(default_factory=OrderedDict)
    lasers: dict[str, float] = field(default_factory=dict)  # pin id -> last update (clock_s)
    applied: list[AppliedLog] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)

    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    # ---- frames ----------------------------------------------------------------
    def find_frame(self, loop: Any, sender: Sender, frame_id: int) -> MirrorFrame | None:
        fid = frame_id % ID_MODULO
        held = self.held.get((sender.peer_id, fid))
        if held is not None:
            return held[0]
        for rec in reversed(loop.history):
            if rec.frame_id % ID_MODULO == fid and rec.frame is not None:
                return rec.frame
        return None

    def housekeeping(self, loop: Any) -> None:
        """Every frame: expire the laser pointer and old held frames."""
        now = self.clock_s()
        ann = loop.state.annotations
        for pin_id, t in list(self.lasers.items()):
            if now - t > LASER_TTL_S:
                ann.remove(pin_id)
                del self.lasers[pin_id]
        for key, (_, expires) in list(self.held.items()):
            if expires < now:
                del self.held[key]

    @property
    def needs_housekeeping(self) -> bool:
        return bool(self.lasers or self.held)

    # ---- messages -> callables -------------------------------------------------
    def make(self, sender: Sender, msg: Any) -> Callable[[Any], None]:
        handlers: dict[type, Callable[[Any, Sender, Any], None]] = {
            Hold: self._hold, Release: self._release, StrokeMsg: self._stroke, PinMsg: self._pin,
            LaserMsg: self._laser, UndoMsg: self._undo, ClearMsg: self._clear, NoteMsg: self._note}
        handler = handlers[type(msg)]

        def apply(loop: Any) -> None:
            handler(loop, sender, msg)

        return apply

    def _ack(self, sender: Sender, ref: str, ok: bool, reason: str = "", **extra: Any) -> None:
        self._count("applied" if ok else "refused")
        self.reply(sender.peer_id, {"type": "ack", "ref": ref, "ok": ok, "reason": reason, **extra})

    def _changed(self, loop: Any) -> None:
        self.broadcast_marks(marks_snapshot(loop.state.annotations))

    def _hold(self, loop: Any, sender: Sender, msg: Hold) -> None:
        frame = self.find_frame(loop, sender, msg.frame_id)
        if frame is None:
            self._ack(sender, f"hold:{msg.frame_id}", False, "frame no longer available")
            return
        self.held[(sender.peer_id, msg.frame_id)] = (frame, self.clock_s() + HOLD_TTL_S)
        self.held.move_to_end((sender.peer_id, msg.frame_id))
        mine = [k for k in self.held if k[0] == sender.peer_id]
        for k in mine[:-HELD_PER_PEER]:
            del self.held[k]
        self._ack(sender, f"hold:{msg.frame_id}", True)

    def _release(self, loop: Any, sender: Sender, msg: Release) -> None:
        self.held.pop((sender.peer_id, msg.frame_id), None)

    def _unproject(self, loop: Any, sender: Sender, frame_id: int,
                   points_uv: np.ndarray) -> tuple[np.ndarray | None, str]:
        frame = self.find_frame(loop, sender, frame_id)
        if frame is None:
            return None, "frame no longer available (freeze the video to draw on an older picture)"
        if frame.depth is None or not frame.views:
            return None, "frame has no depth to place the mark"
        h, w = frame.depth.shape[:2]
        px = np.asarray(points_uv, dtype=np.float64) * np.array([w, h], dtype=np.float64)
        res = unproject_pixels(px, frame.depth, frame.views)
        if res is None:
            return None, "no anatomy under the mark"
        return res.points_mm, ""

    def _room_for_marks(self, ann: AnnotationSet) -> bool:
        return len(ann.strokes) + len(ann.pins) - len(self.lasers) < MAX_MARKS

    def _log(self, loop: Any, mark_id: str, sent_ms: float | None) -> int:
        idx = loop.last_frame.index + 1 if loop.last_frame is not None else 0
        self.applied.append(AppliedLog(mark_id, sent_ms, time.time(), idx))
        if len(self.applied) > 1000:
            del self.applied[:500]
        return idx

    def _stroke(self, loop: Any, sender: Sender, msg: StrokeMsg) -> None:
        ann: AnnotationSet = loop.state.annotations
        mark_id = f"{sender.name}/{msg.id}"
        if not self._room_for_marks(ann):
            self._ack(sender, msg.id, False, f"too many marks ({MAX_MARKS}); clear some")
            return
        pts, why = self._unproject(loop, sender, msg.frame_id, np.asarray(msg.points))
        if pts is None or len(pts) < 2:
            self._ack(sender, msg.id, False, why or "stroke leaves the picture")
            return
        ann.remove(mark_id)
        ann.add_stroke(Stroke(mark_id, pts.astype(np.float32), msg.color, float(msg.width_px),
                              float(loop.state.time_s), sender.name))
        idx = self._log(loop, mark_id, msg.t_ms)
        self._ack(sender, msg.id, True, render_index=idx, points=len(pts))
        self._changed(loop)

    def _pin(self, loop: Any, sender: Sender, msg: PinMsg) -> None:
        ann: AnnotationSet = loop.state.annotations
        mark_id = f"{sender.name}/{msg.id}"
        if not self._room_for_marks(ann):
            self._ack(sender, msg.id, False, f"too many marks ({MAX_MARKS}); clear some")
            return
        pts, why = self._unproject(loop, sender, msg.frame_id, np.asarray([msg.point]))
        if pts is None:
            self._ack(sender, msg.id, False, why)
            return
        ann.remove(mark_id)
        ann.add_pin(Pin(mark_id, pts[0].astype(np.float32), msg.color, float(loop.state.time_s), msg.label,
                        sender.name))
        idx = self._log(loop, mark_id, msg.t_ms)
        self._ack(sender, msg.id, True, render_index=idx)
        self._changed(loop)

    def _laser(self, loop: Any, sender: Sender, msg: LaserMsg) -> None:
        ann: AnnotationSet = loop.state.annotations
        pin_id = f"{LASER_PREFIX}{sender.peer_id}"
        if msg.point is None:
            if pin_id in self.lasers:
                ann.remove(pin_id)
                del self.lasers[pin_id]
            return
        pts, _ = self._unproject(loop, sender, msg.frame_id, np.asarray([msg.point]))
        if pts is None:
            return  # the laser just does not show over empty space
        ann.remove(pin_id)
        ann.add_pin(Pin(pin_id, pts[0].astype(np.float32), LASER_COLOR, float(loop.state.time_s), "", pin_id))
        self.lasers[pin_id] = self.clock_s()
        self._count("laser")

    def _undo(self, loop: Any, sender: Sender, msg: UndoMsg) -> None:
        ok = loop.state.annotations.undo(sender.name)
        self._ack(sender, "undo", ok, "" if ok else "nothing of yours to undo")
        if ok:
            self._changed(loop)

    def _clear(self, loop: Any, sender: Sender, msg: ClearMsg) -> None:
        loop.state.annotations.clear()
        self.lasers.clear()
        self._ack(sender, "clear", True)
        self._changed(loop)

    def _note(self, loop: Any, sender: Sender, msg: NoteMsg) -> None:
        notes = getattr(loop.state, "mentor_notes", None)
        if isinstance(notes, list):
            notes.append((sender.name, msg.text))
            del notes[:-5]

    def sync(self, loop: Any, sender: Sender) -> None:
        self.reply(sender.peer_id, {"type": "marks", "marks": marks_snapshot(loop.state.annotations)})


class MentorInbox:
    """The bridge's :class:`~vr_trainer.app.bridge.Inbox`: bounded, at most
    ``max_per_frame`` items a frame (a flood spreads over frames instead of making
    one long), laser updates coalesced per sender, plus a per-frame tick."""

    def __init__(self, applier: AnnotationApplier, maxlen: int = 4096, max_per_frame: int = 64) -> None:
        self.applier = applier
        self.max_per_frame = max_per_frame
        self._q: deque = deque()
        self._latest: dict[str, Callable[[Any], None]] = {}  # coalesced (latest wins), e.g. laser per peer
        self._lock = threading.Lock()
        self.maxlen = maxlen
        self.dropped = 0

    def put(self, item: Callable[[Any], None], coalesce_key: str | None = None) -> None:
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

    def drain(self) -> list[Any]:
        with self._lock:
            n = min(len(self._q), self.max_per_frame)
            items = [self._q.popleft() for _ in range(n)]
            items.extend(self._latest.values())
            self._latest.clear()
        if self.applier.needs_housekeeping:
            items.append(self.applier.housekeeping)
        return items
