"""Mentor messages applied on the render thread.

The network thread validates a message, checks the sender's role and puts an
:data:`~vr_trainer.app.bridge.InboxItem` into the bridge's
:class:`~vr_trainer.app.bridge.ThreadSafeInbox`; the frame loop runs it in phase 2
with its :class:`~vr_trainer.app.bridge.LoopView`. :class:`AnnotationApplier` turns
strokes, pins and the laser pointer drawn on a video frame into world-anchored marks:
it finds that frame (held frames first, then the loop's recent frames), unprojects
with its depth and matrices (:mod:`vr_trainer.sim.unproject`) and edits
``view.annotations``. Replies go back through ``reply(peer_id, message)``, which must
be thread-safe.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from remote.framecode import ID_MODULO
from remote.schema import ClearMsg, Hold, LaserMsg, NoteMsg, PinMsg, Release, StrokeMsg, UndoMsg
from vr_trainer.app.bridge import InboxItem, LoopView
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
    def find_frame(self, view: LoopView, sender: Sender, frame_id: int) -> MirrorFrame | None:
        fid = frame_id % ID_MODULO
        held = self.held.get((sender.peer_id, fid))
        if held is not None:
            return held[0]
        for frame in view.recent_frames():
            if frame.frame_id % ID_MODULO == fid:
                return frame
        return None

    def housekeeping(self, view: LoopView) -> None:
        """Every frame: expire the laser pointer and old held frames."""
        now = self.clock_s()
        ann = view.annotations
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

    def tick(self) -> InboxItem | None:
        """The inbox's per-frame item: housekeeping while there is any to do."""
        return self.housekeeping if self.needs_housekeeping else None

    def forget_peer(self, view: LoopView, peer_id: str) -> None:
        """A viewer left: drop its held frames and its laser pointer."""
        for key in [k for k in self.held if k[0] == peer_id]:
            del self.held[key]
        pin_id = f"{LASER_PREFIX}{peer_id}"
        if self.lasers.pop(pin_id, None) is not None:
            view.annotations.remove(pin_id)

    # ---- messages -> callables -------------------------------------------------
    def make(self, sender: Sender, msg: Any) -> InboxItem:
        handlers: dict[type, Callable[[LoopView, Sender, Any], None]] = {
            Hold: self._hold, Release: self._release, StrokeMsg: self._stroke, PinMsg: self._pin,
            LaserMsg: self._laser, UndoMsg: self._undo, ClearMsg: self._clear, NoteMsg: self._note}
        handler = handlers[type(msg)]

        def apply(view: LoopView) -> None:
            handler(view, sender, msg)

        return apply

    def _ack(self, sender: Sender, ref: str, ok: bool, reason: str = "", **extra: Any) -> None:
        self._count("applied" if ok else "refused")
        self.reply(sender.peer_id, {"type": "ack", "ref": ref, "ok": ok, "reason": reason, **extra})

    def _changed(self, view: LoopView) -> None:
        self.broadcast_marks(marks_snapshot(view.annotations))

    def _hold(self, view: LoopView, sender: Sender, msg: Hold) -> None:
        frame = self.find_frame(view, sender, msg.frame_id)
        if frame is None:
            self._ack(sender, f"hold:{msg.frame_id}", False, "frame no longer available")
            return
        self.held[(sender.peer_id, msg.frame_id)] = (frame, self.clock_s() + HOLD_TTL_S)
        self.held.move_to_end((sender.peer_id, msg.frame_id))
        mine = [k for k in self.held if k[0] == sender.peer_id]
        for k in mine[:-HELD_PER_PEER]:
            del self.held[k]
        self._ack(sender, f"hold:{msg.frame_id}", True)

    def _release(self, view: LoopView, sender: Sender, msg: Release) -> None:
        self.held.pop((sender.peer_id, msg.frame_id), None)

    def _unproject(self, view: LoopView, sender: Sender, frame_id: int,
                   points_uv: np.ndarray) -> tuple[np.ndarray | None, str]:
        frame = self.find_frame(view, sender, frame_id)
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

    def _log(self, view: LoopView, mark_id: str, sent_ms: float | None) -> int:
        idx = view.next_frame_index
        self.applied.append(AppliedLog(mark_id, sent_ms, time.time(), idx))
        if len(self.applied) > 1000:
            del self.applied[:500]
        return idx

    def _stroke(self, view: LoopView, sender: Sender, msg: StrokeMsg) -> None:
        ann: AnnotationSet = view.annotations
        mark_id = f"{sender.name}/{msg.id}"
        if not self._room_for_marks(ann):
            self._ack(sender, msg.id, False, f"too many marks ({MAX_MARKS}); clear some")
            return
        pts, why = self._unproject(view, sender, msg.frame_id, np.asarray(msg.points))
        if pts is None or len(pts) < 2:
            self._ack(sender, msg.id, False, why or "stroke leaves the picture")
            return
        ann.remove(mark_id)
        ann.add_stroke(Stroke(mark_id, pts.astype(np.float32), msg.color, float(msg.width_px),
                              float(view.sim_time_s), sender.name))
        idx = self._log(view, mark_id, msg.t_ms)
        self._ack(sender, msg.id, True, render_index=idx, points=len(pts))
        self._changed(view)

    def _pin(self, view: LoopView, sender: Sender, msg: PinMsg) -> None:
        ann: AnnotationSet = view.annotations
        mark_id = f"{sender.name}/{msg.id}"
        if not self._room_for_marks(ann):
            self._ack(sender, msg.id, False, f"too many marks ({MAX_MARKS}); clear some")
            return
        pts, why = self._unproject(view, sender, msg.frame_id, np.asarray([msg.point]))
        if pts is None:
            self._ack(sender, msg.id, False, why)
            return
        ann.remove(mark_id)
        ann.add_pin(Pin(mark_id, pts[0].astype(np.float32), msg.color, float(view.sim_time_s), msg.label,
                        sender.name))
        idx = self._log(view, mark_id, msg.t_ms)
        self._ack(sender, msg.id, True, render_index=idx)
        self._changed(view)

    def _laser(self, view: LoopView, sender: Sender, msg: LaserMsg) -> None:
        ann: AnnotationSet = view.annotations
        pin_id = f"{LASER_PREFIX}{sender.peer_id}"
        if msg.point is None:
            if pin_id in self.lasers:
                ann.remove(pin_id)
                del self.lasers[pin_id]
            return
        pts, _ = self._unproject(view, sender, msg.frame_id, np.asarray([msg.point]))
        if pts is None:
            return  # the laser just does not show over empty space
        ann.remove(pin_id)
        ann.add_pin(Pin(pin_id, pts[0].astype(np.float32), LASER_COLOR, float(view.sim_time_s), "", pin_id))
        self.lasers[pin_id] = self.clock_s()
        self._count("laser")

    def _undo(self, view: LoopView, sender: Sender, msg: UndoMsg) -> None:
        ok = view.annotations.undo(sender.name)
        self._ack(sender, "undo", ok, "" if ok else "nothing of yours to undo")
        if ok:
            self._changed(view)

    def _clear(self, view: LoopView, sender: Sender, msg: ClearMsg) -> None:
        view.annotations.clear()
        self.lasers.clear()
        self._ack(sender, "clear", True)
        self._changed(view)

    def _note(self, view: LoopView, sender: Sender, msg: NoteMsg) -> None:
        view.add_mentor_note(sender.name, msg.text)

    def sync(self, view: LoopView, sender: Sender) -> None:
        self.reply(sender.peer_id, {"type": "marks", "marks": marks_snapshot(view.annotations)})

