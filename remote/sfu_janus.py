"""A small client for Janus's JSON API over WebSocket and its VideoRoom plugin: publish
one aiortc video track once, and let any number of subscribers receive it through Janus.

Protocol (Janus's own, subprotocol ``janus-protocol``): ``create`` a session, ``attach``
a handle to ``janus.plugin.videoroom``, send plugin ``message`` requests (Janus answers
``ack`` and later an ``event`` with the same transaction, maybe with a JSEP), and a
``keepalive`` every ``KEEPALIVE_S`` so the session outlives Janus's 60 s timeout. Every
request carries the stack's ``apisecret``. Candidates travel inside the SDP (aiortc
gathers before it offers), so no trickle is sent (``"trickle": false``).

Publisher: ``join`` (ptype publisher, room, pin) -> ``publish`` with our offer -> Janus's
answer. Subscriber: ``join`` (ptype subscriber, streams=[feed]) -> Janus's offer ->
``start`` with our answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from remote import framecode
from remote.errors import RemoteError
from remote.peer import prefer_codec, rtc_configuration

VIDEOROOM = "janus.plugin.videoroom"
KEEPALIVE_S = 20.0
REQUEST_TIMEOUT_S = 15.0
VIDEO_CLOCK_HZ = 90000


class JanusError(RemoteError):
    """Janus (or its VideoRoom plugin) refused a request."""


class JanusClient:
    """One Janus session over one WebSocket; ``async with JanusClient(url, secret) as j``."""

    def __init__(self, url: str, api_secret: str | None = None, keepalive_s: float = KEEPALIVE_S) -> None:
        self.url, self.api_secret, self.keepalive_s = url, api_secret, keepalive_s
        self.keepalives_acked = 0
        self.keepalive_error: str | None = None  # the last refused or unanswered keepalive
        self.session_id: int | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._pending: dict[str, tuple[asyncio.Future[dict[str, Any]], frozenset[str]]] = {}
        self._handles: dict[int, JanusHandle] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._ids = itertools.count(1)
        self._tag = secrets.token_hex(4)

    async def __aenter__(self) -> JanusClient:
        self._http = aiohttp.ClientSession()
        try:
            self._ws = await self._http.ws_connect(self.url, protocols=("janus-protocol",), heartbeat=None)
        except aiohttp.ClientError as e:
            await self._http.close()
            raise JanusError(f"cannot reach Janus at {self.url} ({e})") from None
        self._tasks.append(asyncio.create_task(self._read()))
        try:
            ans = await self.request({"janus": "create"})
        except BaseException:
            await self.close()
            raise
        self.session_id = int(ans["data"]["id"])
        self._tasks.append(asyncio.create_task(self._keepalive()))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        """Janus closed the WebSocket (or we did)."""
        return self._ws is None or self._ws.closed

    async def close(self) -> None:
        if self._ws is not None and not self._ws.closed and self.session_id is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.request({"janus": "destroy"}), 2.0)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(BaseException):
                await t
        self._tasks.clear()
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()
        for fut, _ in self._pending.values():
            if not fut.done():
                fut.set_exception(JanusError("Janus session closed"))

    async def request(self, msg: dict[str, Any], handle_id: int | None = None,
                      timeout_s: float = REQUEST_TIMEOUT_S) -> dict[str, Any]:
        """Send one request; return the message that ends its transaction."""
        if self._ws is None or self._ws.closed:
            raise JanusError(f"Janus at {self.url}: not connected")
        tid = f"{self._tag}-{next(self._ids)}"
        msg = {**msg, "transaction": tid}
        if self.api_secret:
            msg["apisecret"] = self.api_secret
        if self.session_id is not None and msg["janus"] != "create":
            msg["session_id"] = self.session_id
        if handle_id is not None:
            msg["handle_id"] = handle_id
        ends = {"keepalive": frozenset({"ack", "error"}), "message": frozenset({"event", "success", "error"}),
                "trickle": frozenset({"ack", "error"})}.get(msg["janus"], frozenset({"success", "error"}))
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[tid] = (fut, ends)
        try:
            await self._ws.send_json(msg)
            ans = await asyncio.wait_for(fut, timeout_s)
        except asyncio.TimeoutError:
            raise JanusError(f"Janus did not answer {msg['janus']} within {timeout_s:.0f} s") from None
        finally:
            self._pending.pop(tid, None)
        if ans.get("janus") == "error":
            err = ans.get("error") or {}
            raise JanusError(f"Janus refused {msg['janus']}: {err.get('reason')} (code {err.get('code')})")
        return ans

    async def attach(self, plugin: str = VIDEOROOM) -> JanusHandle:
        ans = await self.request({"janus": "attach", "plugin": plugin})
        handle = JanusHandle(self, int(ans["data"]["id"]))
        self._handles[handle.id] = handle
        return handle

    async def _read(self) -> None:
        assert self._ws is not None
        async for raw in self._ws:
            if raw.type != aiohttp.WSMsgType.TEXT:
                continue
            msg = raw.json()
            pending = self._pending.get(str(msg.get("transaction")))
            if pending is not None and msg.get("janus") in pending[1]:
                if not pending[0].done():
                    pending[0].set_result(msg)
                continue
            handle = self._handles.get(int(msg.get("sender") or 0))
            if handle is not None and msg.get("janus") != "ack":
                handle.events.put_nowait(msg)
        for fut, _ in self._pending.values():
            if not fut.done():
                fut.set_exception(JanusError(f"Janus at {self.url} closed the connection"))

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive_s)
            try:
                await self.request({"janus": "keepalive"})
                self.keepalives_acked += 1
            except JanusError as e:
                self.keepalive_error = str(e)


class JanusHandle:
    """One plugin handle; unsolicited events (webrtcup, media, hangup, ...) land in ``events``."""

    def __init__(self, client: JanusClient, handle_id: int) -> None:
        self.client, self.id = client, handle_id
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def message(self, body: dict[str, Any], jsep: dict[str, Any] | None = None,
                      timeout_s: float = REQUEST_TIMEOUT_S) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """A plugin request -> (plugin data, JSEP or None); a plugin error raises."""
        msg: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            msg["jsep"] = jsep
        ans = await self.client.request(msg, self.id, timeout_s)
        data = dict((ans.get("plugindata") or {}).get("data") or {})
        if "error" in data or "error_code" in data:
            raise JanusError(f"VideoRoom refused {body.get('request')}: {data.get('error')} "
                             f"(code {data.get('error_code')})")
        return data, ans.get("jsep")

    async def wait_event(self, kind: str, timeout_s: float = REQUEST_TIMEOUT_S) -> dict[str, Any]:
        """The next unsolicited event of type ``kind`` (e.g. "webrtcup")."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise JanusError(f"no {kind} event from Janus within {timeout_s:.0f} s")
            try:
                msg = await asyncio.wait_for(self.events.get(), left)
            except asyncio.TimeoutError:
                continue
            if msg.get("janus") == kind:
                return msg
            if msg.get("janus") == "hangup":
                raise JanusError(f"Janus hung up: {msg.get('reason')}")


def _jsep(pc: RTCPeerConnection) -> dict[str, Any]:
    desc = pc.localDescription
    return {"type": desc.type, "sdp": desc.sdp, "trickle": False}


async def publish(client: JanusClient, room: int, pin: str, track: MediaStreamTrack, *, display: str = "resident",
                  ice_servers: list[dict[str, Any]] | None = None, policy: str = "all", feed: int | None = None,
                  on_keyframe: Callable[[], None] | None = None, token: str | None = None,
                  ) -> tuple[RTCPeerConnection, int]:
    """Join ``room`` as its publisher (as ``feed`` when given; with ``token`` where the room
    has an ``allowed`` list) and send ``track`` (VP8) once; return (pc, feed id).
    ``on_keyframe``: Janus's picture-loss reports (a new subscriber) ask a shared encoder
    for a key frame instead of aiortc's own."""
    handle = await client.attach()
    body: dict[str, Any] = {"request": "join", "ptype": "publisher", "room": room, "pin": pin, "display": display}
    if feed is not None:
        body["id"] = feed
    if token is not None:
        body["token"] = token
    joined, _ = await handle.message(body)
    pc = RTCPeerConnection(rtc_configuration(ice_servers, policy))
    try:
        tr = pc.addTransceiver(track, direction="sendonly")
        prefer_codec(tr, "VP8")
        if on_keyframe is not None:
            tr.sender._send_keyframe = on_keyframe  # type: ignore[method-assign]
        await pc.setLocalDescription(await pc.createOffer())
        data, jsep = await handle.message({"request": "publish", "audio": False, "video": True}, _jsep(pc))
        if jsep is None or jsep.get("type") != "answer":
            raise JanusError(f"VideoRoom publish: no SDP answer ({data})")
        await pc.setRemoteDescription(RTCSessionDescription(jsep["sdp"], "answer"))
        await handle.wait_event("webrtcup")
    except BaseException:
        await pc.close()
        raise
    return pc, int(joined["id"])


async def subscribe(client: JanusClient, room: int, pin: str, feed: int, *,
                    ice_servers: list[dict[str, Any]] | None = None, policy: str = "all",
                    ) -> tuple[RTCPeerConnection, MediaStreamTrack]:
    """Subscribe to publisher ``feed`` of ``room``; return (pc, the received video track)."""
    handle = await client.attach()
    data, offer = await handle.message({"request": "join", "ptype": "subscriber", "room": room, "pin": pin,
                                        "streams": [{"feed": feed}]})
    if offer is None or offer.get("type") != "offer":
        raise JanusError(f"VideoRoom subscribe: no SDP offer ({data})")
    pc = RTCPeerConnection(rtc_configuration(ice_servers, policy))
    got: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()

    @pc.on("track")
    def _on_track(track: MediaStreamTrack) -> None:
        if track.kind == "video" and not got.done():
            got.set_result(track)

    try:
        await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        await handle.message({"request": "start"}, _jsep(pc))
        track = await asyncio.wait_for(got, REQUEST_TIMEOUT_S)
    except BaseException:
        await pc.close()
        raise
    return pc, track


def selected_candidate_types(pc: RTCPeerConnection) -> list[tuple[str, str]]:
    """(local, remote) candidate types of each ICE transport's nominated pair (aioice
    internals; empty when not connected): ("relay", "host") means media goes via TURN."""
    out = []
    for t in pc.getTransceivers():
        ice = t.receiver.transport.transport if t.receiver.transport else None
        conn = getattr(ice, "_connection", None)
        for pair in (getattr(conn, "_nominated", None) or {}).values():
            out.append((pair.local_candidate.type, pair.remote_candidate.type))
    return out


class FrameIdVideoTrack(MediaStreamTrack):
    """Paced synthetic video: a moving pattern with the frame id in the framecode strip
    on top (``size`` includes the strip; width >= framecode.STAMP_WIDTH_PX)."""

    kind = "video"

    def __init__(self, size: tuple[int, int] = (320, 240), fps: float = 15.0) -> None:
        super().__init__()
        self.width, self.height = size
        if not framecode.fits(self.width, self.height - framecode.STRIP_PX):
            raise ValueError(f"{size}: too small for the frame code (width >= {framecode.STAMP_WIDTH_PX})")
        self.fps = fps
        self.frame_id = 0
        self._start: float | None = None
        pic_h = self.height - framecode.STRIP_PX
        yy, xx = np.mgrid[0:pic_h, 0:self.width]
        self._base = ((xx * 2 + yy) % 256).astype(np.uint8)

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        due = self._start + self.frame_id / self.fps
        if due > now:
            await asyncio.sleep(due - now)
        fid = self.frame_id
        self.frame_id += 1
        luma = np.roll(self._base, 4 * fid, axis=1)
        w, h = self.width, self.height
        yuv = np.empty((h * 3 // 2, w), np.uint8)
        yuv[:h] = np.concatenate([framecode.strip_luma(w, fid), luma])
        yuv[h:] = 128
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = int(fid * VIDEO_CLOCK_HZ / self.fps)
        frame.time_base = Fraction(1, VIDEO_CLOCK_HZ)
        return frame


class FrameIdWatcher:
    """Consumes a received video track: counts frames and reads their frame ids."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.track = track
        self.frames = 0
        self.last_id: int | None = None
        self.ids_seen: set[int] = set()
        self.ended = False
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            while True:
                frame = await self.track.recv()
                if not isinstance(frame, av.VideoFrame):
                    continue
                self.frames += 1
                y = frame.to_ndarray(format="gray")
                fid = framecode.read_luma(y)
                if fid is not None:
                    self.last_id = fid
                    self.ids_seen.add(fid)
        except MediaStreamError:
            self.ended = True

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
