"""The recording format: an MCAP file (chunked, checksummed, zstd-compressed) with these channels.

| topic | encoding | when | content |
|---|---|---|---|
| ``/session`` | json | once, first | scenario text + sha256, bundle hashes, backend, eye size, fps, loop settings |
| ``/frame`` | ``vr_trainer.frame.v1`` (below) | every frame | loop's clock value, display time, views, hands, keys |
| ``/inbox`` | json | frames where a mentor changed something | the annotation set and mentor notes after phase 2 |
| ``/notices`` | json | as announced | the scenario engine's notices (:func:`~vr_trainer.app.bridge.notice_to_dict`) |
| ``/metrics`` | json | every ``METRIC_PERIOD_S`` of simulation time | live metric values |
| ``/images`` | json (``foxglove.CompressedImage``) | as taken | C-arm shots, the endoscope at fragment removal |
| ``/audio`` | json | as spoken | a spoken prompt's clip: WAV base64 in ``data``, its text, locale, voice, event |
| ``/summary`` | json | once, last | the run's summary.json |

``vr_trainer.frame.v1``, little-endian: a header ``<IBBBBH`` (frame index, flags, active hand,
number of views, number of hands, length of the keys text), then ``2 + 0`` float64 (the clock
value in seconds the loop read this frame, the predicted display time in seconds), then float32
values (per view: world_from_eye rows 0..2 (12 values, mm), the four fov angles (rad); per hand:
world_from_hand rows 0..2 (12, zeros when untracked), trigger, grip), then per view ``<BHH`` (eye
index, width, height), per hand one byte (bit 0 tracked, 1 primary, 2 secondary), then the keys as
a JSON list (UTF-8). In a frame without the ``KEY`` flag the float64 and float32 blocks are
XOR-ed bit for bit with the previous frame's (consecutive poses share their high bits, so the
chunk compresses about 20 % better); every chunk starts with a key frame.

Poses, fields of view, trigger and grip are stored as float32 (what an OpenXR runtime reports);
the recorder rounds the live frame to those values before the loop uses it
(:func:`quantize_frame`), so the recorded input is exactly the input the run had, and a replay
reproduces the run bit for bit.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from vr_trainer.frame import Fov, Frame, HandInput, InputState, View
from vr_trainer.sim.annotations import AnnotationSet, Pin, Stroke

FORMAT = "vr_trainer.session"
FORMAT_VERSION = 1
FRAME_SCHEMA = "vr_trainer.frame.v1"
TOPICS = ("/session", "/frame", "/inbox", "/notices", "/metrics", "/images", "/audio", "/summary")
IMAGE_SCHEMA = "foxglove.CompressedImage"  # Foxglove shows /images as pictures; our extra fields ride along
METRIC_PERIOD_S = 0.25
HEADER = struct.Struct("<IBBBBH")
VIEW_INTS = struct.Struct("<BHH")
FLAG_KEY, FLAG_RENDER, FLAG_FOCUSED = 1, 2, 4
POSE_VALUES = 12  # rows 0..2 of a 4x4 rigid transform


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=True).encode("utf-8")


def _q32(a: np.ndarray) -> np.ndarray:
    """A 4x4 pose with rows 0..2 rounded to float32 and row 3 exactly (0, 0, 0, 1), as stored."""
    m = np.asarray(a, np.float64).astype(np.float32).astype(np.float64)
    m[3] = (0.0, 0.0, 0.0, 1.0)
    return m


def quantize_frame(frame: Frame) -> None:
    """Round ``frame``'s poses, fields of view, trigger and grip to float32 in place (what the
    recording stores), so that the live run and its replay see the same numbers."""
    for v in frame.views:
        v.pose_world_from_eye = _q32(v.pose_world_from_eye)
        f = v.fov
        v.fov = Fov(*(float(np.float32(x)) for x in (f.angle_left, f.angle_right, f.angle_up, f.angle_down)))
    for h in frame.input.hands:
        if h.pose_world_from_hand is not None:
            h.pose_world_from_hand = _q32(h.pose_world_from_hand)
        h.trigger = float(np.float32(h.trigger))
        h.grip = float(np.float32(h.grip))


@dataclass
class RecordedFrame:
    """One decoded ``/frame`` message: the frame the loop ran and the clock value it read."""

    clock_s: float
    frame: Frame


class FrameEncoder:
    """Frames to ``vr_trainer.frame.v1`` bytes; :meth:`key_next` makes the next one a key frame."""

    def __init__(self) -> None:
        self._prev: tuple[np.ndarray, np.ndarray] | None = None

    def key_next(self) -> None:
        self._prev = None

    def encode(self, clock_s: float, frame: Frame) -> bytes:
        inp = frame.input
        f64 = np.array([clock_s, frame.predicted_display_time_s], np.float64)
        vals: list[np.ndarray] = []
        ints = bytearray()
        for v in frame.views:
            vals.append(np.asarray(v.pose_world_from_eye, np.float64)[:3].ravel())
            vals.append(np.array([v.fov.angle_left, v.fov.angle_right, v.fov.angle_up, v.fov.angle_down]))
            ints += VIEW_INTS.pack(v.eye_index, v.width, v.height)
        for h in inp.hands:
            p = h.pose_world_from_hand
            vals.append(np.asarray(p, np.float64)[:3].ravel() if p is not None else np.zeros(POSE_VALUES))
            vals.append(np.array([h.trigger, h.grip]))
            ints.append((p is not None) | (bool(h.primary_pressed) << 1) | (bool(h.secondary_pressed) << 2))
        f32 = np.concatenate(vals).astype(np.float32) if vals else np.zeros(0, np.float32)
        keys = json_bytes(sorted(inp.keys)) if inp.keys else b""
        prev = self._prev
        key = prev is None or prev[1].shape != f32.shape
        self._prev = (f64, f32)
        b64, b32 = f64.view(np.uint64), f32.view(np.uint32)
        if not key:
            assert prev is not None
            b64, b32 = b64 ^ prev[0].view(np.uint64), b32 ^ prev[1].view(np.uint32)
        flags = (FLAG_KEY if key else 0) | (FLAG_RENDER if frame.should_render else 0) | (FLAG_FOCUSED if inp.focused
                                                                                           else 0)
        head = HEADER.pack(frame.index, flags, inp.active_hand, len(frame.views), len(inp.hands), len(keys))
        return head + b64.tobytes() + b32.tobytes() + bytes(ints) + keys


class FrameDecodeError(ValueError):
    pass


class FrameDecoder:
    """``vr_trainer.frame.v1`` bytes back to frames (in recorded order)."""

    def __init__(self) -> None:
        self._prev: tuple[np.ndarray, np.ndarray] | None = None

    def decode(self, data: bytes) -> RecordedFrame:
        try:
            index, flags, active, n_views, n_hands, n_keys = HEADER.unpack_from(data, 0)
            o = HEADER.size
            f64 = np.frombuffer(data, np.float64, 2, o).copy()
            o += 16
            n32 = n_views * (POSE_VALUES + 4) + n_hands * (POSE_VALUES + 2)
            f32 = np.frombuffer(data, np.float32, n32, o).copy()
            o += 4 * n32
            if not flags & FLAG_KEY:
                if self._prev is None or self._prev[1].shape != f32.shape:
                    raise FrameDecodeError(f"frame {index} is a delta frame without the frame it follows")
                f64 = (f64.view(np.uint64) ^ self._prev[0].view(np.uint64)).view(np.float64)
                f32 = (f32.view(np.uint32) ^ self._prev[1].view(np.uint32)).view(np.float32)
            self._prev = (f64, f32)
            vals = f32.astype(np.float64)
            views, hands = [], []
            k = 0
            for _ in range(n_views):
                eye, w, h = VIEW_INTS.unpack_from(data, o)
                o += VIEW_INTS.size
                views.append(View(eye, _pose(vals[k:k + POSE_VALUES]), Fov(*(float(x) for x in vals[k + 12:k + 16])),
                                  w, h))
                k += POSE_VALUES + 4
            for _ in range(n_hands):
                bits = data[o]
                o += 1
                hands.append(HandInput(_pose(vals[k:k + POSE_VALUES]) if bits & 1 else None, float(vals[k + 12]),
                                       float(vals[k + 13]), bool(bits & 2), bool(bits & 4)))
                k += POSE_VALUES + 2
            keys = frozenset(json.loads(data[o:o + n_keys].decode("utf-8"))) if n_keys else frozenset()
        except (struct.error, ValueError, IndexError, UnicodeDecodeError) as e:
            raise FrameDecodeError(f"undecodable frame message ({e})") from None
        inp = InputState(hands=hands, active_hand=active, focused=bool(flags & FLAG_FOCUSED), keys=keys)
        return RecordedFrame(float(f64[0]), Frame(index, float(f64[1]), views, inp, bool(flags & FLAG_RENDER)))


class FrameClockDecoder:
    """Only the frame index and clock value (s) of ``vr_trainer.frame.v1`` messages (in recorded
    order), without building the frames: what a recording's summary needs, at a fraction of
    :class:`FrameDecoder`'s cost. Raises :class:`FrameDecodeError` where it would."""

    def __init__(self) -> None:
        self._prev: tuple[int, int, int] | None = None  # (clock bits, display time bits, float32 count)

    def decode(self, data: bytes) -> tuple[int, float]:
        try:
            index, flags, _active, n_views, n_hands, n_keys = HEADER.unpack_from(data, 0)
            n32 = n_views * (POSE_VALUES + 4) + n_hands * (POSE_VALUES + 2)
            if len(data) < HEADER.size + 16 + 4 * n32 + VIEW_INTS.size * n_views + n_hands + n_keys:
                raise FrameDecodeError(f"undecodable frame message (frame {index}: {len(data)} bytes, too short)")
            a, b = _U64X2.unpack_from(data, HEADER.size)
            if not flags & FLAG_KEY:
                if self._prev is None or self._prev[2] != n32:
                    raise FrameDecodeError(f"frame {index} is a delta frame without the frame it follows")
                a, b = a ^ self._prev[0], b ^ self._prev[1]
        except struct.error as e:
            raise FrameDecodeError(f"undecodable frame message ({e})") from None
        self._prev = (a, b, n32)
        return index, _F64.unpack(_U64.pack(a))[0]


_U64X2, _U64, _F64 = struct.Struct("<QQ"), struct.Struct("<Q"), struct.Struct("<d")


def _pose(rows: np.ndarray) -> np.ndarray:
    m = np.eye(4)
    m[:3] = rows.reshape(3, 4)
    return m


# ---- mentor annotations and notes (the /inbox channel) ----------------------------------------
def annotations_to_dict(a: AnnotationSet) -> dict[str, Any]:
    """The whole annotation set as JSON-ready data (positions in mm, world frame)."""
    return {"version": a.version, "fade_after_s": a.fade_after_s, "fade_duration_s": a.fade_duration_s,
            "strokes": [{"id": s.stroke_id, "points_mm": np.asarray(s.points_mm, float).tolist(),
                         "rgba": list(s.color_rgba), "width_px": s.width_px, "created_s": s.created_s,
                         "author": s.author} for s in a.strokes],
            "pins": [{"id": p.pin_id, "position_mm": np.asarray(p.position_mm, float).tolist(),
                      "rgba": list(p.color_rgba), "created_s": p.created_s, "label": p.label, "author": p.author}
                     for p in a.pins],
            "order": [list(o) for o in a._order]}


def apply_annotations(a: AnnotationSet, d: dict[str, Any]) -> None:
    """Make ``a`` (edited in place: the renderer holds it) what ``d`` recorded."""
    a.fade_after_s, a.fade_duration_s = float(d["fade_after_s"]), float(d["fade_duration_s"])
    a.strokes = [Stroke(s["id"], np.asarray(s["points_mm"], float).reshape(-1, 3), tuple(s["rgba"]), s["width_px"],
                        s["created_s"], s["author"]) for s in d["strokes"]]
    a.pins = [Pin(p["id"], np.asarray(p["position_mm"], float), tuple(p["rgba"]), p["created_s"], p["label"],
                  p["author"]) for p in d["pins"]]
    a._order = [(k, i) for k, i in d["order"]]
    a.version = int(d["version"])


def image_message(kind: str, time_s: float, png: bytes, **meta: Any) -> dict[str, Any]:
    """One ``/images`` message: a PNG (``data`` base64, as Foxglove's CompressedImage in JSON has it)
    with ``kind`` (``carm``, ``endoscope``), the simulation time and whatever ``meta`` describes it
    (view, shot number, C-arm geometry, removed %). No patient data: the picture is of the bundle."""
    import base64

    sec = int(max(0.0, time_s))
    return {"timestamp": {"sec": sec, "nsec": int(round((max(0.0, time_s) - sec) * 1e9))}, "frame_id": kind,
            "format": "png", "data": base64.b64encode(png).decode("ascii"), "kind": kind, "time_s": time_s, **meta}
