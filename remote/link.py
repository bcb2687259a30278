"""One viewer of the resident's view, on the trainee's side: an aiortc peer connection
that offers video (sendonly), audio (the resident's microphone when there is one; the
mentor's voice back) and the "mentor" data channel, with an application heartbeat.

The viewer is a browser today. Because the trainee always offers and the video
source is shared (:class:`~remote.publisher.MirrorFrameSource`), an SFU such as Janus
can take a viewer's place later: the trainee publishes once to it and it fans out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from pydantic import BaseModel

from remote import framecode
from remote.annotate import Sender
from remote.peer import add_browser_candidate, prefer_codec
from remote.publisher import MirrorFrameSource, MirrorVideoTrack
from remote.gate import MessageGate
from remote.schema import ANNOTATION_TYPES, PeerInfo, ViewShown, encode, make
from remote.views import Rect

log = logging.getLogger("remote.link")
VIEWER_ROLES = ("expert", "observer")
MAX_DC_BUFFERED_BYTES = 1 << 20
MAX_REMOTE_CANDIDATES = 32
DROP_HEARTBEAT = "heartbeat"  # the viewer went silent
DROP_CONNECT_TIMEOUT = "connect timeout"  # never opened the data channel


@dataclass(frozen=True)
class LinkConfig:
    """What one link needs of the bridge's settings."""

    codec: str = "VP8"
    fps: float = 30.0  # announced in ``hello``
    heartbeat_interval_s: float = 1.0
    dead_after_s: float = 3.0
    connect_timeout_s: float = 20.0
    console_rates: dict[str, tuple[float, float]] | None = None  # None: the schema's defaults


class LinkOwner(Protocol):
    """What a link may ask of the bridge that owns it (network thread only)."""

    async def signal(self, to: str, data: dict[str, Any]) -> None:
        """Send a signalling message to peer ``to`` through the server."""

    async def drop_link(self, link: ViewerLink, reason: str) -> None:
        """Forget and close ``link`` (idempotent)."""

    async def consume_audio(self, track: MediaStreamTrack) -> None:
        """Play (or drain) a viewer's microphone until the track ends."""

    def sync(self, link: ViewerLink) -> None:
        """Send ``link`` the current notes, marks and scenario status."""

    def mentor_message(self, sender: Sender, msg: BaseModel) -> None:
        """Apply an annotation or command from an expert (role already checked)."""


class ViewerLink:
    """One viewer (browser or, later, an SFU) on the trainee's side.

    It gets what it uses: the shared video source, the microphone track (or None),
    the ICE configuration and the :class:`LinkOwner` for signalling, closing and the
    mentor's messages; never the bridge itself."""

    def __init__(self, info: PeerInfo, owner: LinkOwner, *, source: MirrorFrameSource, config: LinkConfig,
                 rtc_config: RTCConfiguration, session_id: str, microphone: MediaStreamTrack | None = None) -> None:
        self.owner = owner
        self.source = source
        self.config = config
        self.rtc_config = rtc_config
        self.session_id = session_id
        self.microphone = microphone
        self.peer_id = info.peer_id
        self.role = info.role
        self.sender = Sender(self.peer_id, info.name or self.peer_id, self.role)
        self.gate = MessageGate.for_console(config.console_rates)
        self.pc: RTCPeerConnection | None = None
        self.dc: Any = None
        self.track: MirrorVideoTrack | None = None
        self.started_s = time.monotonic()
        self.last_rx_s = self.started_s
        self.opened = False
        self.closed = False
        self.rtt_ms: float | None = None
        self.counters: Counter = Counter()
        self._tasks: list[asyncio.Task] = []

    @property
    def can_annotate(self) -> bool:
        return self.role == "expert"

    async def start(self) -> None:
        pc = self.pc = RTCPeerConnection(self.rtc_config)
        track = self.track = MirrorVideoTrack(self.source, on_view=self._on_view)
        video = pc.addTransceiver(track, direction="sendonly")
        prefer_codec(video, self.config.codec)
        if self.source.encoded:  # one shared encoder a view: a picture-loss report asks it for a key frame
            video.sender._send_keyframe = lambda: self.source.request_keyframe(track.view_id)  # type: ignore
        mic = self.microphone
        pc.addTransceiver(mic if mic is not None else "audio", direction="sendrecv" if mic is not None else "recvonly")
        self.dc = pc.createDataChannel("mentor", ordered=True)
        self.dc.on("open", self._on_open)
        self.dc.on("message", self._on_message)
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self._on_state)
        await pc.setLocalDescription(await pc.createOffer())
        await self.owner.signal(self.peer_id, {"kind": "offer", "sdp": pc.localDescription.sdp})
        self._tasks.append(asyncio.ensure_future(self._heartbeat()))

    async def on_signal(self, data: dict[str, Any]) -> None:
        if self.pc is None or self.closed:
            return
        kind = data.get("kind")
        try:
            if kind == "answer" and self.pc.signalingState == "have-local-offer":
                await self.pc.setRemoteDescription(RTCSessionDescription(sdp=data["sdp"], type="answer"))
            elif kind in ("candidate", "end-of-candidates"):
                self.counters["candidates"] += 1
                if self.counters["candidates"] > MAX_REMOTE_CANDIDATES:  # no probing from our address
                    self.counters["candidates_skipped"] += 1
                elif not await add_browser_candidate(self.pc, data):
                    self.counters["candidates_skipped"] += 1
            else:
                self.counters["signal_ignored"] += 1
        except Exception as e:  # noqa: BLE001 - a bad answer ends this link, not the session
            log.warning("viewer %s: bad %s (%s); dropping the link", self.peer_id, kind, e)
            await self.owner.drop_link(self, "bad signal")

    def send(self, msg: dict[str, Any] | BaseModel) -> bool:
        dc = self.dc
        if dc is None or dc.readyState != "open" or self.closed:
            return False
        if dc.bufferedAmount > MAX_DC_BUFFERED_BYTES:
            self.counters["send_dropped"] += 1
            return False
        try:
            dc.send(encode(msg))
        except Exception:  # noqa: BLE001 - channel closing under us
            return False
        return True

    def _on_open(self) -> None:
        self.opened = True
        self.last_rx_s = time.monotonic()
        self.send({"type": "hello", "peer_id": self.peer_id, "role": self.role, "name": self.sender.name,
                   "can_annotate": self.can_annotate, "session_id": self.session_id,
                   "frame_code": {"cell_px": framecode.CELL_PX, "cells": framecode.N_CELLS,
                                  "strip_px": self._strip_px},
                   "fps": self.config.fps, "views": self.source.describe_views(),
                   "view": self.track.view_id if self.track is not None else None})
        if self.track is not None and self.track.shown is not None:
            self._on_view(*self.track.shown)
        self.owner.sync(self)

    @property
    def _strip_px(self) -> int:
        return framecode.STRIP_PX if self.source.config.stamp_frame_id else 0

    def _on_view(self, view_id: str, rect: Rect | None, strip_px: int) -> None:
        """The video's next picture shows ``view_id`` (from the track, as it goes out)."""
        box = None if rect is None else tuple(min(1.0, max(0.0, float(x))) for x in rect)
        try:
            msg = make(ViewShown, view=view_id, rect=box, can_annotate=self.can_annotate and box is not None,
                       strip_px=strip_px)
        except ValueError:  # a view from the app with a bad id or rect: say nothing rather than break the video
            self.counters["bad_view"] += 1
            return
        self.send(msg)

    def _on_message(self, raw: Any) -> None:
        try:
            self._handle(raw)
        except Exception:  # noqa: BLE001 - a message must never break the channel
            self.counters["handler_errors"] += 1
            log.exception("viewer %s: message handling failed", self.peer_id)

    def _handle(self, raw: Any) -> None:
        now = time.monotonic()
        self.last_rx_s = now
        msg: Any = self.gate.admit(raw, now)
        if msg is None:
            return
        t = msg.type
        if t == "hb":
            self.send({"type": "hb_ack", "seq": msg.seq, "t_ms": msg.t_ms})
        elif t == "hb_ack":
            self.rtt_ms = max(0.0, time.time() * 1000.0 - msg.t_ms)
        elif t == "bye":
            asyncio.ensure_future(self.owner.drop_link(self, "bye"))
        elif t == "sync":
            self.owner.sync(self)
        elif t == "view":
            if self.track is None or not self.source.set_view(self.track, msg.view):
                self.send({"type": "ack", "ref": "view", "ok": False, "reason": f"no view {msg.view!r} here"})
        elif t in ANNOTATION_TYPES:
            if not self.can_annotate:
                self.counters["refused_role"] += 1
                self.send({"type": "ack", "ref": getattr(msg, "id", t), "ok": False,
                           "reason": "observers can watch but not annotate"})
                return
            self.owner.mentor_message(self.sender, msg)

    def _on_track(self, track: Any) -> None:
        if track.kind == "audio":
            self._tasks.append(asyncio.ensure_future(self.owner.consume_audio(track)))

    async def _on_state(self) -> None:
        if self.pc is not None and self.pc.connectionState in ("failed", "closed"):
            await self.owner.drop_link(self, self.pc.connectionState)

    async def _heartbeat(self) -> None:
        """Send a beat every ``heartbeat_interval_s``; check for silence twice as often."""
        cfg = self.config
        seq = 0
        next_beat_s = time.monotonic()
        while not self.closed:
            await asyncio.sleep(cfg.heartbeat_interval_s / 2.0)
            now = time.monotonic()
            if self.opened:
                if now >= next_beat_s:
                    seq += 1
                    next_beat_s = now + cfg.heartbeat_interval_s
                    self.send({"type": "hb", "seq": seq, "t_ms": time.time() * 1000.0})
                if now - self.last_rx_s > cfg.dead_after_s:
                    log.warning("viewer %s silent for %.1f s: dropping", self.peer_id, now - self.last_rx_s)
                    await self.owner.drop_link(self, DROP_HEARTBEAT)
                    return
            elif now - self.started_s > cfg.connect_timeout_s:
                await self.owner.drop_link(self, DROP_CONNECT_TIMEOUT)
                return

    async def close(self) -> None:
        if self.closed:
            return
        self.send({"type": "bye"})
        self.closed = True
        for t in self._tasks:
            if t is not asyncio.current_task():
                t.cancel()
        if self.track is not None:
            self.track.stop()
        if self.pc is not None:
            try:
                await asyncio.wait_for(self.pc.close(), 5.0)
            except (TimeoutError, Exception):  # noqa: BLE001
                pass
