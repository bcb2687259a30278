"""The mirror view as a WebRTC video track: render thread -> latest-frame slot ->
one conversion per frame (scale + RGB->I420 + frame-id stamp, off the event loop)
-> a paced track per subscriber.

The render thread only calls :meth:`MirrorFrameSource.publish` (a slot write and a
wake-up). Each subscriber - a browser today, an SFU such as Janus tomorrow - gets its
own :class:`MirrorVideoTrack` over the same source, so the conversion is shared and
the publisher does not care what is on the other end of the peer connection.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from fractions import Fraction
import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from remote import framecode
from vr_trainer.app.bridge import LatestSlot, MirrorFrame

VIDEO_CLOCK_HZ = 90000
VIDEO_TIME_BASE = Fraction(1, VIDEO_CLOCK_HZ)


@dataclass
class StreamConfig:
    max_size: tuple[int, int] = (1280, 720)  # the mirror is scaled down to fit, never up
    fps: float = 30.0
    codec: str = "VP8"
    idle_repeat_s: float = 0.5  # resend the last picture when the loop publishes nothing new
    stamp_frame_id: bool = True


def stream_size(mirror_w: int, mirror_h: int, max_w: int, max_h: int) -> tuple[int, int]:
    """The video size for a mirror: aspect kept, even sides, within the maximum."""
    s = min(1.0, max_w / mirror_w, max_h / mirror_h)
    return max(2, int(mirror_w * s) // 2 * 2), max(2, int(mirror_h * s) // 2 * 2)


@dataclass
class EncodedSource:
    """A converted frame shared by all subscribers."""

    version: int
    frame_id: int
    yuv: np.ndarray  # (h*3/2, w) I420 as PyAV's yuv420p ndarray
    width: int
    height: int
    published_s: float


def convert_frame(frame: MirrorFrame, max_size: tuple[int, int], stamp: bool) -> tuple[np.ndarray, int, int]:
    """RGB mirror -> I420 at the stream size, frame id stamped (runs in a worker thread)."""
    h, w = frame.rgb.shape[:2]
    sw, sh = stream_size(w, h, *max_size)
    vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame.rgb), format="rgb24")
    if (sw, sh) != (w, h):
        out = vf.reformat(width=sw, height=sh, format="yuv420p", interpolation="AREA")
    else:
        out = vf.reformat(format="yuv420p")
    yuv = out.to_ndarray()
    if stamp:
        framecode.stamp_i420(yuv, sw, sh, frame.frame_id)
    return yuv, sw, sh


class MirrorFrameSource:
    """A :class:`~vr_trainer.app.bridge.FrameSink`: the latest mirror frame, converted on demand.

    ``wants_depth`` is True so the loop keeps the depth needed to unproject strokes."""

    wants_depth = True

    def __init__(self, config: StreamConfig | None = None) -> None:
        self.config = config or StreamConfig()
        self._slot = LatestSlot()
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._new_frame: asyncio.Event | None = None
        self._converted: EncodedSource | None = None
        self._converting: tuple[int, asyncio.Future] | None = None
        self.published = 0
        self.converted = 0
        self.publish_times_s: dict[int, float] = {}

    def bind(self, aloop: asyncio.AbstractEventLoop) -> None:
        """Attach to the network thread's event loop (call from that loop)."""
        self._aloop = aloop
        self._new_frame = asyncio.Event()

    # ---- render thread ----------------------------------------------------------
    def publish(self, frame: MirrorFrame) -> None:
        self._slot.put((frame, time.perf_counter()))
        self.published += 1
        aloop = self._aloop
        if aloop is not None and self._new_frame is not None:
            try:
                aloop.call_soon_threadsafe(self._new_frame.set)
            except RuntimeError:  # loop closed while the session ends
                pass

    # ---- network thread ---------------------------------------------------------
    @property
    def version(self) -> int:
        return self._slot.get()[0]

    async def wait_newer(self, version: int, timeout_s: float) -> bool:
        """Wait until a frame newer than ``version`` is published; False on timeout."""
        assert self._new_frame is not None, "bind() first"
        deadline = time.monotonic() + timeout_s
        while self.version <= version:
            self._new_frame.clear()
            if self.version > version:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self._new_frame.wait(), left)
            except asyncio.TimeoutError:
                return self.version > version
        return True

    async def latest(self) -> EncodedSource | None:
        """The newest frame, converted once however many subscribers ask."""
        version, item = self._slot.get()
        if item is None:
            return None
        cur = self._converted
        if cur is not None and cur.version == version:
            return cur
        if self._converting is not None and self._converting[0] == version:
            return await asyncio.shield(self._converting[1])
        loop = asyncio.get_running_loop()
        fut = loop.create_task(self._convert(version, item))
        self._converting = (version, fut)
        return await asyncio.shield(fut)

    async def _convert(self, version: int, item: tuple[MirrorFrame, float]) -> EncodedSource:
        frame, t_pub = item
        loop = asyncio.get_running_loop()
        yuv, w, h = await loop.run_in_executor(None, convert_frame, frame, self.config.max_size,
                                               self.config.stamp_frame_id)
        src = EncodedSource(version, frame.frame_id, yuv, w, h, t_pub)
        if self._converted is None or self._converted.version < version:
            self._converted = src
        self.converted += 1
        return src


class MirrorVideoTrack(MediaStreamTrack):
    """One subscriber's video: paced by its own clock, at most ``fps``, frames as they come.

    ``recv`` waits for a new mirror frame (sending it at once keeps latency low),
    never faster than the configured rate, and repeats the last picture after
    ``idle_repeat_s`` so the receiver never sees a stall when the loop pauses."""

    kind = "video"

    def __init__(self, source: MirrorFrameSource) -> None:
        super().__init__()
        self.source = source
        self._t0_s: float | None = None
        self._last_sent_s = 0.0
        self._last_pts = -1
        self._last_version = 0
        self._last: EncodedSource | None = None
        self.frames_sent = 0
        self.sent_ids: list[tuple[int, float]] = []  # (frame id, wall time) handed to the encoder

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        cfg = self.source.config
        min_gap_s = 0.8 / max(cfg.fps, 1.0)
        wait_s = self._last_sent_s + min_gap_s - time.perf_counter()
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        while True:
            if self._last is None:
                await self.source.wait_newer(0, 3600.0)
            else:
                await self.source.wait_newer(self._last_version, cfg.idle_repeat_s)
            if self.readyState != "live":
                raise MediaStreamError
            src = await self.source.latest()
            if src is not None:
                break
        self._last, self._last_version = src, src.version
        now = time.perf_counter()
        if self._t0_s is None:
            self._t0_s = now
        pts = max(self._last_pts + 1, int((now - self._t0_s) * VIDEO_CLOCK_HZ))
        frame = av.VideoFrame.from_ndarray(src.yuv, format="yuv420p")
        frame.pts, frame.time_base = pts, VIDEO_TIME_BASE
        self._last_pts, self._last_sent_s = pts, now
        self.frames_sent += 1
        self.sent_ids.append((src.frame_id, time.time()))
        if len(self.sent_ids) > 600:
            del self.sent_ids[:300]
        return frame
