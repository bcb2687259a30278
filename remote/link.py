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
from typing import TYPE_CHECKING, Any

from aiortc import RTCPeerConnection, RTCSessionDescription

from remote import framecode
from remote.annotate import Sender
from remote.peer import add_browser_candidate, prefer_codec, rtc_configuration
from remote.publisher import MirrorVideoTrack
from remote.schema import ANNOTATION_TYPES, MessageGate, NoteMsg, encode

if TYPE_CHECKING:  # pragma: no cover
    from remote.trainee import TraineeBridge

log = logging.getLogger("remote.link")
VIEWER_ROLES = ("expert", "observer")
MAX_DC_BUFFERED_BYTES = 1 << 20
MAX_REMOTE_CANDIDATES = 32


class ViewerLink:
    """One viewer (browser or, later, an SFU) on the trainee's side."""

    def __init__(self, bridge: TraineeBridge, info: dict[str, Any]) -> None:
        self.bridge = bridge
        self.peer_id = str(info["peer_id"])
        self.role = str(info.get("role", "observer"))
        self.sender = Sender(self.peer_id, str(info.get("name") or self.peer_id), self.role)
        self.gate = MessageGate.for_console(bridge.config.console_rates)
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
        b = self.bridge
        pc = self.pc = RTCPeerConnection(rtc_configuration(b.ice_servers, b.ice_policy))
        self.track = MirrorVideoTrack(b.source)
        video = pc.addTransceiver(self.track, direction="sendonly")
        prefer_codec(video, b.config.stream.codec)
        if b.source.encoded:  # one shared encoder: a picture-loss report asks it for a key frame
            video.sender._send_keyframe = b.source.request_keyframe  # type: ignore[method-assign]
        mic = b.microphone_for_link()
        pc.addTransceiver(mic if mic is not None else "audio", direction="sendrecv" if mic is not None else "recvonly")
        self.dc = pc.createDataChannel("mentor", ordered=True)
        self.dc.on("open", self._on_open)
        self.dc.on("message", self._on_message)
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self._on_state)
        await pc.setLocalDescription(await pc.createOffer())
        await b.signal(self.peer_id, {"kind": "offer", "sdp": pc.localDescription.sdp})
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
            await self.bridge.drop_link(self, "bad signal")

    def send(self, msg: dict[str, Any]) -> bool:
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
        b = self.bridge
        self.send({"type": "hello", "peer_id": self.peer_id, "role": self.role, "name": self.sender.name,
                   "can_annotate": self.can_annotate, "session_id": b.session_id,
                   "frame_code": {"cell_px": framecode.CELL_PX, "cells": framecode.N_CELLS},
                   "fps": b.config.stream.fps})
        self.send({"type": "notes", "notes": b.notes})
        b.inbox.put(lambda loop: b.applier.sync(loop, self.sender))

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
            asyncio.ensure_future(self.bridge.drop_link(self, "bye"))
        elif t == "sync":
            b = self.bridge
            self.send({"type": "notes", "notes": b.notes})
            b.inbox.put(lambda loop: b.applier.sync(loop, self.sender))
        elif t in ANNOTATION_TYPES:
            if not self.can_annotate:
                self.counters["refused_role"] += 1
                self.send({"type": "ack", "ref": getattr(msg, "id", t), "ok": False,
                           "reason": "observers can watch but not annotate"})
                return
            if isinstance(msg, NoteMsg):
                self.bridge.add_note(self.sender, msg)
            key = f"laser:{self.peer_id}" if t == "laser" else None
            self.bridge.inbox.put(self.bridge.applier.make(self.sender, msg), coalesce_key=key)

    def _on_track(self, track: Any) -> None:
        if track.kind == "audio":
            self._tasks.append(asyncio.ensure_future(self.bridge.consume_audio(self, track)))

    async def _on_state(self) -> None:
        if self.pc is not None and self.pc.connectionState in ("failed", "closed"):
            await self.bridge.drop_link(self, self.pc.connectionState)

    async def _heartbeat(self) -> None:
        """Send a beat every ``heartbeat_interval_s``; check for silence twice as often."""
        cfg = self.bridge.config
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
                    self.bridge.counters["dead_peers"] += 1
                    log.warning("viewer %s silent for %.1f s: dropping", self.peer_id, now - self.last_rx_s)
                    await self.bridge.drop_link(self, "heartbeat")
                    return
            elif now - self.started_s > cfg.connect_timeout_s:
                self.bridge.counters["connect_timeouts"] += 1
                await self.bridge.drop_link(self, "connect timeout")
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
