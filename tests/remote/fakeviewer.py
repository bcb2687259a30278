"""An aiortc viewer (expert or observer) for in-process tests: joins through the real
server, answers the trainee's offer, decodes the video and reads the frame code.

Use it as an async context manager (``async with FakeViewer(url, token) as v:``):
it joins on entry and closes its peer connection, WebSocket and HTTP session on
exit, so a failing assert cannot leak a peer."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from remote import framecode
from remote.peer import rtc_configuration


class FakeViewer:
    def __init__(self, base_url: str, token: str, rtp_drop: Callable[[int], bool] | None = None) -> None:
        self.base_url, self.token = base_url, token
        self.rtp_drop = rtp_drop
        self.http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.pc: RTCPeerConnection | None = None
        self.dc: Any = None
        self.welcome: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.messages: list[dict[str, Any]] = []
        self.frame_ids: list[int | None] = []
        self.frame_times: list[float] = []
        self.last_luma: np.ndarray | None = None
        self.last_rgb: np.ndarray | None = None
        self.keep_rgb = False
        self.rtp_seen = 0
        self.rtp_dropped = 0
        self.silent = False
        self._tasks: list[asyncio.Task] = []
        self._dc_open = asyncio.Event()
        self._closed = False

    async def __aenter__(self) -> FakeViewer:
        try:
            return await self.join()
        except BaseException:
            await self.close(bye=False)
            raise

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def join(self, timeout_s: float = 15.0, expect_media: bool = True) -> FakeViewer:
        self.http = aiohttp.ClientSession()
        self.ws = await self.http.ws_connect(self.base_url.replace("http", "ws", 1) + "/ws")
        await self.ws.send_str(json.dumps({"v": 1, "type": "join", "token": self.token}))
        first = json.loads((await self.ws.receive(timeout=timeout_s)).data)
        if first.get("type") != "welcome":
            self.error = first
            return self
        self.welcome = first
        self._tasks.append(asyncio.ensure_future(self._signals()))
        if expect_media:
            await asyncio.wait_for(self._dc_open.wait(), timeout_s)
        return self

    async def _signals(self) -> None:
        assert self.ws is not None
        async for raw in self.ws:
            if raw.type != aiohttp.WSMsgType.TEXT:
                break
            msg = json.loads(raw.data)
            if msg.get("type") == "signal" and msg["data"].get("kind") == "offer":
                await self._answer(msg["from"], msg["data"]["sdp"])

    async def _answer(self, trainee_id: str, sdp: str) -> None:
        pc = self.pc = RTCPeerConnection(rtc_configuration([]))

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "video":
                self._tasks.append(asyncio.ensure_future(self._video(track)))

        @pc.on("datachannel")
        def on_dc(dc: Any) -> None:
            self.dc = dc

            @dc.on("message")
            def on_message(raw: Any) -> None:
                try:
                    m = json.loads(raw)
                except ValueError:
                    return
                if m.get("type") == "hb":
                    if not self.silent:
                        self.send({"type": "hb_ack", "seq": m["seq"], "t_ms": m["t_ms"]})
                    return
                self.messages.append(m)

            self._dc_open.set()
            self._tasks.append(asyncio.ensure_future(self._heartbeat()))

        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        self._patch_transport()
        assert self.ws is not None
        await self.ws.send_str(json.dumps({"v": 1, "type": "signal", "to": trainee_id,
                                           "data": {"kind": "answer", "sdp": pc.localDescription.sdp}}))

    async def _heartbeat(self) -> None:
        seq = 0
        while True:
            await asyncio.sleep(1.0)
            if not self.silent and self.dc is not None and self.dc.readyState == "open":
                seq += 1
                self.send({"type": "hb", "seq": seq, "t_ms": time.time() * 1000.0})

    def _patch_transport(self) -> None:
        assert self.pc is not None
        dtls = self.pc.getTransceivers()[0].receiver.transport
        orig_rtp = dtls._handle_rtp_data
        orig_send_data, orig_send_rtp = dtls._send_data, dtls._send_rtp

        async def handle_rtp(data: bytes, arrival_time_ms: int) -> None:
            self.rtp_seen += 1
            if self.silent or (self.rtp_drop is not None and self.rtp_drop(self.rtp_seen)):
                self.rtp_dropped += 1
                return
            await orig_rtp(data, arrival_time_ms)

        async def send_data(data: bytes) -> None:
            if not self.silent:
                await orig_send_data(data)

        async def send_rtp(data: bytes) -> None:
            if not self.silent:
                await orig_send_rtp(data)

        dtls._handle_rtp_data = handle_rtp
        dtls._send_data = send_data
        dtls._send_rtp = send_rtp

    async def _video(self, track: Any) -> None:
        try:
            while True:
                frame = await track.recv()
                yuv = frame.to_ndarray(format="yuv420p")
                luma = yuv[: frame.height]
                shown = self.of_type("view")
                strip = shown[-1]["strip_px"] if shown else framecode.STRIP_PX
                self.last_luma = luma[strip:]  # what the console shows: no code strip
                if self.keep_rgb:
                    self.last_rgb = frame.to_ndarray(format="rgb24")[strip:]
                self.frame_ids.append(framecode.read_luma(luma))
                self.frame_times.append(time.monotonic())
        except (MediaStreamError, asyncio.CancelledError):
            pass

    def send(self, msg: dict[str, Any] | str) -> None:
        assert self.dc is not None
        self.dc.send(msg if isinstance(msg, (str, bytes)) else json.dumps({"v": 1, **msg}))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == kind]

    async def wait_for(self, pred: Callable[[], Any], timeout_s: float = 10.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            v = pred()
            if v:
                return v
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")

    async def wait_frames(self, n: int, timeout_s: float = 15.0) -> None:
        start = len(self.frame_ids)
        await self.wait_for(lambda: len(self.frame_ids) >= start + n, timeout_s, f"{n} video frames")

    def latest_id(self) -> int | None:
        for fid in reversed(self.frame_ids):
            if fid is not None:
                return fid
        return None

    async def close(self, bye: bool = True) -> None:
        """Leave (with a goodbye unless ``bye`` is False, as a vanished browser); idempotent."""
        if self._closed:
            return
        self._closed = True
        if bye and self.dc is not None and self.dc.readyState == "open":
            self.send({"type": "bye"})
            await asyncio.sleep(0.05)
        for t in self._tasks:
            t.cancel()
        if self.pc is not None:
            await self.pc.close()
        if self.ws is not None:
            await self.ws.close()
        if self.http is not None:
            await self.http.close()
