"""The mirror view as WebRTC video: each view encoded once, sent to every subscriber.

Render thread -> :meth:`MirrorFrameSource.publish` (a latest-frame slot write and a
wake-up; never blocks). On the network thread one pump, paced to at most ``fps``,
takes the newest mirror frame, and in a worker thread cuts each view in use out of it
(:mod:`remote.views`: one eye, both eyes), scales it, converts it to I420, puts the
frame-id strip above it (:mod:`remote.framecode`) and - for VP8 - encodes it once
with libvpx. Every subscriber's :class:`MirrorVideoTrack` of a view gets the same
encoded frames (``av.Packet``, which aiortc only packetises), so N viewers cost one
encode per view in use:
the shape an SFU expects from a publisher, and what lets a handful of viewers share
a 2-core trainee PC. A new subscriber, or a browser's picture-loss report (PLI),
asks the encoder for a key frame. The pump keeps its own 90 kHz clock; with nothing
new from the loop it repeats the last picture every ``idle_repeat_s``.

H264 goes through aiortc's own per-subscriber encoder (raw frames, latest only).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from remote import framecode
from remote.views import BUILTIN_VIEWS, DEFAULT_VIEW, Rect, StreamView
from vr_trainer.app.bridge import LatestSlot
from vr_trainer.frame import MirrorFrame

VIDEO_CLOCK_HZ = 90000
VIDEO_TIME_BASE = Fraction(1, VIDEO_CLOCK_HZ)
MAX_TRACK_QUEUE = 30  # encoded frames a slow subscriber may lag before it is resynced with a key frame


@dataclass
class StreamConfig:
    max_size: tuple[int, int] = (1280, 720)  # the mirror is scaled down to fit, never up
    fps: float = 30.0
    codec: str = "VP8"
    idle_repeat_s: float = 0.5
    stamp_frame_id: bool = True  # the frame-id strip above the picture (framecode.STRIP_PX rows)
    default_view: str = DEFAULT_VIEW  # what a new viewer watches until it picks another
    bitrate_bps: int | None = None  # None: 0.1 bit per pixel per frame, within 0.3-8 Mbit/s
    keyframe_interval_s: float = 10.0

    def bitrate_for(self, width: int, height: int) -> int:
        if self.bitrate_bps:
            return int(self.bitrate_bps)
        return int(min(8e6, max(3e5, 0.1 * width * height * self.fps)))


def stream_size(mirror_w: int, mirror_h: int, max_w: int, max_h: int) -> tuple[int, int]:
    """The video size for a mirror: aspect kept, even sides, within the maximum."""
    s = min(1.0, max_w / mirror_w, max_h / mirror_h)
    return max(2, int(mirror_w * s) // 2 * 2), max(2, int(mirror_h * s) // 2 * 2)


def convert_frame(frame: MirrorFrame, max_size: tuple[int, int], stamp: bool,
                  rgb: np.ndarray | None = None) -> tuple[np.ndarray, int, int, int]:
    """RGB picture (``rgb``, else the whole mirror) -> (I420 at the stream size (PyAV's
    yuv420p ndarray), width, height, strip rows): with the frame-id strip on top when
    ``stamp`` and the picture is wide enough for the code; the height includes the strip."""
    pic = frame.rgb if rgb is None else rgb
    if pic is None:
        raise ValueError("convert_frame: a mirror frame without pixels (a history record)")
    h, w = pic.shape[:2]
    sw, sh = stream_size(w, h, *max_size)
    vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(pic), format="rgb24")
    if (sw, sh) != (w, h):
        out = vf.reformat(width=sw, height=sh, format="yuv420p", interpolation="AREA")
    else:
        out = vf.reformat(format="yuv420p")
    yuv = out.to_ndarray()
    if stamp and framecode.fits(sw, sh):
        yuv, sh = framecode.add_strip_i420(yuv, sw, sh, frame.frame_id)
        return yuv, sw, sh, framecode.STRIP_PX
    return yuv, sw, sh, 0


class Vp8Encoder:
    """libvpx in real-time CBR mode (settings as aiortc's, less its temporal denoiser),
    re-created when the size changes.

    No denoiser (``noise-sensitivity`` 0; aiortc uses 4, meant for cameras): the mirror is a
    render with no sensor noise, and the adaptive denoiser, whose state builds up over the
    encoder's life, averaged the frame-id cells that flip with the previous picture's
    (read as grey, CRC failed on up to 1 picture in 6 from a long-lived shared encoder)."""

    def __init__(self, config: StreamConfig) -> None:
        self.config = config
        self.codec: Any = None
        self.frames = 0

    def encode(self, yuv: np.ndarray, width: int, height: int, pts: int, keyframe: bool) -> tuple[bytes, bool]:
        if self.codec is None or (self.codec.width, self.codec.height) != (width, height):
            rate = self.config.bitrate_for(width, height)
            c = av.CodecContext.create("libvpx", "w")
            c.width, c.height, c.pix_fmt, c.bit_rate = width, height, "yuv420p", rate
            c.time_base = VIDEO_TIME_BASE
            c.gop_size = max(1, int(self.config.keyframe_interval_s * self.config.fps))
            c.qmin, c.qmax = 2, 56
            c.thread_count = 1
            c.options = {"bufsize": str(rate), "minrate": str(rate), "maxrate": str(rate), "cpu-used": "-6",
                         "deadline": "realtime", "lag-in-frames": "0", "noise-sensitivity": "0",
                         "overshoot-pct": "15", "undershoot-pct": "100", "partitions": "0", "static-thresh": "1"}
            self.codec, keyframe = c, True
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts, frame.time_base = pts, VIDEO_TIME_BASE
        if keyframe:
            frame.pict_type = av.video.frame.PictureType.I
        data, is_key = b"", False
        for pkt in self.codec.encode(frame):
            data += bytes(pkt)
            is_key = is_key or pkt.is_keyframe
        self.frames += 1
        return data, is_key


@dataclass
class StreamFrame:
    """One picture as every subscriber gets it."""

    frame_id: int
    pts: int
    width: int
    height: int  # with the frame-id strip
    yuv: np.ndarray
    packet: bytes | None  # VP8 bitstream (None: raw frames for aiortc's own encoder)
    keyframe: bool
    view_id: str = DEFAULT_VIEW
    rect: Rect | None = (0.0, 0.0, 1.0, 1.0)  # where the picture lies in the mirror (None: not part of it)
    strip_px: int = 0  # frame-id rows on top (0: none, e.g. a picture narrower than the code)


class MirrorFrameSource:
    """A :class:`~vr_trainer.app.bridge.FrameSink` and the pump that feeds the tracks.

    ``wants_depth`` tells the loop to read depth back (needed to unproject strokes). The
    bridge sets it only while someone who may annotate is connected: the depth readback
    is most of what streaming costs the render loop on llvmpipe."""

    def __init__(self, config: StreamConfig | None = None) -> None:
        self.config = config or StreamConfig()
        self.wants_depth = False
        self.encoded = self.config.codec.upper() == "VP8"
        self._slot = LatestSlot()
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._new_frame: asyncio.Event | None = None
        self._subscribers: list[MirrorVideoTrack] = []
        self._pump_task: asyncio.Task | None = None
        self.views: dict[str, StreamView] = {v.view_id: v for v in BUILTIN_VIEWS}
        if self.config.default_view not in self.views:
            raise ValueError(f"no view {self.config.default_view!r}; the views are {', '.join(self.views)}")
        self._encoders: dict[str, Vp8Encoder] = {}
        self._last_out: dict[str, StreamFrame] = {}  # worker thread: each view's latest picture
        self._want_keyframe: set[str] = set(self.views)
        self.published = 0
        self.converted = 0
        self.keyframes = 0
        self.encoded_wall_s: dict[int, float] = {}  # frame id -> when it was ready to send

    # ---- render thread ----------------------------------------------------------
    def publish(self, frame: MirrorFrame) -> None:
        self._slot.put(frame)
        self.published += 1
        aloop, ev = self._aloop, self._new_frame
        if aloop is not None and ev is not None:
            try:
                aloop.call_soon_threadsafe(ev.set)
            except RuntimeError:  # the network loop closed while the session ends
                pass

    # ---- network thread ---------------------------------------------------------
    def bind(self, aloop: asyncio.AbstractEventLoop) -> None:
        """Start the pump on the network thread's loop (call from that loop's thread)."""
        self._aloop = aloop
        self._new_frame = asyncio.Event()
        self._pump_task = aloop.create_task(self._pump())

    def close(self) -> None:
        if self._pump_task is not None:
            self._pump_task.cancel()
        for t in list(self._subscribers):
            t.stop()

    def add_view(self, view: StreamView) -> None:
        """Offer another view (the C-arm monitor, the endoscope...) to viewers who join after."""
        self.views[view.view_id] = view
        self._want_keyframe.add(view.view_id)

    @property
    def encoded_frames(self) -> int:
        """Pictures encoded so far, all views together (VP8)."""
        return sum(e.frames for e in list(self._encoders.values()))

    def describe_views(self) -> list[dict[str, Any]]:
        """The view selector's options, as ``hello`` announces them."""
        return [v.describe() for v in self.views.values()]

    def subscribe(self, track: "MirrorVideoTrack") -> None:
        self._subscribers.append(track)
        self.request_keyframe(track.view_id)
        if self._new_frame is not None:
            self._new_frame.set()

    def unsubscribe(self, track: "MirrorVideoTrack") -> None:
        if track in self._subscribers:
            self._subscribers.remove(track)

    def set_view(self, track: "MirrorVideoTrack", view_id: str) -> bool:
        """Switch one subscriber to another view (from its next key frame on); False: no such view."""
        if view_id not in self.views:
            return False
        if view_id != track.view_id:
            track.switch(view_id)
            self.request_keyframe(view_id)
            if self._new_frame is not None:
                self._new_frame.set()
        return True

    def request_keyframe(self, view_id: str | None = None) -> None:
        """A new subscriber or a picture-loss report: the next encoded frame (of this view,
        or of every view) is a key frame."""
        self._want_keyframe.update(self.views if view_id is None else (view_id,))

    async def _pump(self) -> None:
        assert self._new_frame is not None
        cfg = self.config
        loop = asyncio.get_running_loop()
        last: MirrorFrame | None = None
        seen_version, last_sent_s, t0_s, last_pts = 0, 0.0, None, -1
        while True:
            self._new_frame.clear()
            version, frame = self._slot.get()
            fresh = frame is not None and version > seen_version
            if not self._subscribers or (not fresh and (last is None or
                                                        time.perf_counter() - last_sent_s < cfg.idle_repeat_s)):
                wait_s: float | None = cfg.idle_repeat_s if last is not None else None
                try:
                    await asyncio.wait_for(self._new_frame.wait(), wait_s)
                except asyncio.TimeoutError:
                    pass
                continue
            gap_s = last_sent_s + 0.8 / max(cfg.fps, 1.0) - time.perf_counter()
            if gap_s > 0:  # never faster than the configured rate
                await asyncio.sleep(gap_s)
                version, frame = self._slot.get()
            now = time.perf_counter()
            t0_s = now if t0_s is None else t0_s
            pts = max(last_pts + 1, int((now - t0_s) * VIDEO_CLOCK_HZ))
            in_use = sorted({t.view_id for t in self._subscribers})
            keyframes = {v for v in in_use if v in self._want_keyframe}
            self._want_keyframe -= keyframes
            src = frame if version > seen_version else None
            try:
                out = await loop.run_in_executor(None, self._produce_views, src, last, pts, in_use, keyframes)
            except Exception:  # noqa: BLE001 - a bad frame is skipped, the stream goes on
                self._want_keyframe.update(in_use)
                await asyncio.sleep(0.05)
                continue
            seen_version, last_sent_s, last_pts = version, now, pts
            last = src if src is not None else last
            if out:
                self.encoded_wall_s[next(iter(out.values())).frame_id] = time.time()
            if len(self.encoded_wall_s) > 4000:
                for k in list(self.encoded_wall_s)[:2000]:
                    del self.encoded_wall_s[k]
            for track in list(self._subscribers):
                sf = out.get(track.view_id)
                if sf is not None:
                    track.push(sf)

    def _produce_views(self, frame: MirrorFrame | None, last: MirrorFrame | None, pts: int, views: list[str],
                       keyframes: set[str]) -> dict[str, StreamFrame]:
        """Worker thread: each view in use, cut from a new mirror frame (or the last one again)."""
        mirror = frame if frame is not None else last
        assert mirror is not None
        out: dict[str, StreamFrame] = {}
        for view_id in views:
            again = self._last_out.get(view_id) if frame is None else None
            sf = self._produce(mirror, view_id, pts, view_id in keyframes, again)
            if sf is not None:
                out[view_id] = self._last_out[view_id] = sf
        for view_id in [v for v in self._last_out if v not in views]:
            del self._last_out[view_id]
        if frame is not None:
            self.converted += 1
        return out

    def _produce(self, frame: MirrorFrame, view_id: str, pts: int, keyframe: bool,
                 again: StreamFrame | None = None) -> StreamFrame | None:
        """Convert one view of a mirror frame (or take ``again``'s picture) and encode it
        with that view's encoder."""
        if again is not None:
            yuv, w, h, rect, strip = again.yuv, again.width, again.height, again.rect, again.strip_px
        else:
            cut = self.views[view_id].cut(frame)
            if cut is None:
                return None
            rgb, rect = cut
            yuv, w, h, strip = convert_frame(frame, self.config.max_size, self.config.stamp_frame_id, rgb)
        packet, is_key = None, False
        if self.encoded:
            enc = self._encoders.get(view_id)
            if enc is None:
                enc = self._encoders[view_id] = Vp8Encoder(self.config)
            packet, is_key = enc.encode(yuv, w, h, pts, keyframe)
            self.keyframes += is_key
        return StreamFrame(frame.frame_id, pts, w, h, yuv, packet, is_key, view_id, rect, strip)


class MirrorVideoTrack(MediaStreamTrack):
    """One subscriber's video: the source's frames in order (VP8: from a key frame on)."""

    kind = "video"

    def __init__(self, source: MirrorFrameSource, view_id: str | None = None,
                 on_view: Callable[[str, Rect | None, int], None] | None = None) -> None:
        super().__init__()
        self.source = source
        self.view_id = view_id or source.config.default_view
        self.on_view = on_view  # called (network thread) as the first picture of a view, or a new rect, goes out
        self.shown: tuple[str, Rect | None, int] | None = None
        self._queue: deque[StreamFrame] = deque()
        self._ready = asyncio.Event()
        self._needs_keyframe = source.encoded
        self.frames_sent = 0
        self.resyncs = 0
        self.sent_ids: list[tuple[int, float]] = []  # (frame id, wall time) handed to the sender
        source.subscribe(self)

    def switch(self, view_id: str) -> None:
        """Watch another view: what is queued goes, the new view starts at a key frame."""
        self.view_id = view_id
        self._queue.clear()
        self._needs_keyframe = self.source.encoded

    def push(self, frame: StreamFrame) -> None:
        """From the source's pump (network thread)."""
        if frame.view_id != self.view_id:
            return
        if not self.source.encoded:
            self._queue.clear()  # raw frames: only the newest matters
        elif self._needs_keyframe and not frame.keyframe:
            self.source.request_keyframe(self.view_id)
            return
        elif len(self._queue) >= MAX_TRACK_QUEUE:  # fell behind: drop and restart from a key frame
            self._queue.clear()
            self._needs_keyframe = True
            self.resyncs += 1
            self.source.request_keyframe(self.view_id)
            return
        if frame.keyframe:
            self._needs_keyframe = False
        self._queue.append(frame)
        self._ready.set()

    async def recv(self) -> Any:
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        if self.readyState != "live":
            raise MediaStreamError
        f = self._queue.popleft()
        if self.shown != (f.view_id, f.rect, f.strip_px):
            self.shown = (f.view_id, f.rect, f.strip_px)
            if self.on_view is not None:
                self.on_view(f.view_id, f.rect, f.strip_px)
        out: Any
        if f.packet is not None:
            out = av.Packet(f.packet)
        else:
            out = av.VideoFrame.from_ndarray(f.yuv, format="yuv420p")
        out.pts, out.time_base = f.pts, VIDEO_TIME_BASE
        self.frames_sent += 1
        self.sent_ids.append((f.frame_id, time.time()))
        if len(self.sent_ids) > 600:
            del self.sent_ids[:300]
        return out

    def stop(self) -> None:
        self.source.unsubscribe(self)
        super().stop()
        self._ready.set()
