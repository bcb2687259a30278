"""The resident's side: publish the mirror view to the mentoring session and apply
the mentor's marks.

``TraineeBridge(url, token).attach(host)`` adds a :class:`MirrorFrameSource` to the
host's sinks, a :class:`~remote.status.NoticeRelay` to its notice sinks (scenario notices
become ``status`` messages for every viewer; a viewer who joins later gets the current
step and the latest notices) and a :class:`~vr_trainer.app.bridge.ThreadSafeInbox` to its inboxes
(the host is a :class:`~vr_trainer.app.bridge.BridgeHost`: the frame loop, or the
synthetic frame source of the benchmark), then runs an asyncio loop in
its own thread: a WebSocket to the server for signalling, and per viewer one
:class:`~remote.link.ViewerLink` (an aiortc peer connection that offers video
sendonly, audio and a data channel "mentor"). Nothing on the render thread awaits; the network
thread hands work over through the inbox, the render thread hands frames over
through the latest-frame slot and replies through ``call_soon_threadsafe``.

Options ride on the URL's query string: ``fps`` (default 30), ``size`` (largest
video, default 1280x720), ``codec`` (VP8 | H264), ``audio`` (auto | none |
FORMAT:DEVICE), ``loopback`` (1 offers 127.0.0.1 too; default when the server is on
loopback). ``VR_TRAINER_MENTOR_CA`` names a CA bundle for a self-signed server.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import ssl
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from pydantic import BaseModel

from remote.annotate import LASER_PREFIX, AnnotationApplier, Sender
from remote.audio import open_microphone, open_speaker
from remote.errors import RemoteError
from remote.bridge_config import BridgeConfig, config_from_options, parse_mentor_url
from remote.link import DROP_CONNECT_TIMEOUT, DROP_HEARTBEAT, VIEWER_ROLES, ViewerLink
from remote.peer import IceOptions, configure_ice, rtc_configuration
from remote.publisher import MirrorFrameSource
from remote.schema import (
    SERVER_ADAPTER,
    LaserMsg,
    MentorRelayed,
    NoteMsg,
    PeerInfo,
    PeerJoined,
    PeerLeft,
    Relayed,
    ServerError,
    Welcome,
    encode,
)
from remote.server import is_loopback_host
from remote.status import NoticeRelay, StatusBoard
from remote.trainee_sfu import SfuPublisher, SfuViewer
from vr_trainer.app.bridge import BridgeHost, LoopView, ThreadSafeInbox

log = logging.getLogger("remote.trainee")
MAX_INBOX_ITEMS_PER_FRAME = 64  # a flood of marks spreads over frames instead of making one long
_DROP_COUNTERS = {DROP_HEARTBEAT: "dead_peers", DROP_CONNECT_TIMEOUT: "connect_timeouts"}


class TraineeBridge:
    """Connects a running session (a :class:`~vr_trainer.app.bridge.BridgeHost`: the frame
    loop, or the benchmark's synthetic frame source) to a mentoring session.

    A context manager: ``with TraineeBridge(url, token) as bridge: bridge.attach(loop)``
    closes the peers, the WebSocket and the network thread on the way out."""

    def __init__(self, mentor_url: str, token: str, config: BridgeConfig | None = None) -> None:
        if not token:
            raise RemoteError("--mentor needs --token (a trainee token from `vr-trainer mentor token`)")
        self.base_url, self.ws_url, opts = parse_mentor_url(mentor_url)
        self.config = config_from_options(opts, config)
        self.token = token
        host = urlsplit(self.base_url).hostname or ""
        configure_ice(self.config.ice or IceOptions(include_loopback=is_loopback_host(host)))
        self.source = MirrorFrameSource(self.config.stream)
        for view in self.config.extra_views:  # e.g. the C-arm monitor, the endoscope (issue #10)
            self.source.add_view(view)
        self.applier = AnnotationApplier(self._reply_threadsafe, self._broadcast_marks_threadsafe)
        self.inbox = ThreadSafeInbox(max_per_frame=MAX_INBOX_ITEMS_PER_FRAME, tick=self.applier.tick)
        self.notices = NoticeRelay(self._notices_waiting_threadsafe)  # scenario notices -> ``status``
        self.status = StatusBoard()  # network thread only
        self.links: dict[str, ViewerLink] = {}
        self.sfu = SfuPublisher(self.source, self, self.config.console_rates)  # `mentor serve --sfu janus`
        self.notes: list[dict[str, Any]] = []
        self.counters: Counter = Counter()
        self.session_id = ""
        self.peer_id = ""
        self.ice_servers: list[dict[str, Any]] = []
        self.ice_policy = "all"
        self.error: str | None = None
        self.audio_frames_in = 0
        self._host: BridgeHost | None = None
        self._aloop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._thread_main, name="mentor-bridge", daemon=True)
        self._first_outcome = threading.Event()
        self._stop: asyncio.Event | None = None
        self._main_task: asyncio.Task | None = None
        self._mic: Any = None
        self._relay = MediaRelay()
        self._speaker: Any = None
        self._ws: Any = None
        self._closed_link_counters: Counter = Counter()

    def __enter__(self) -> TraineeBridge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- render-thread API ------------------------------------------------------
    def attach(self, host: BridgeHost) -> None:
        """Publish ``host``'s mirror and feed its inbox; returns once the server answered
        (or after ``connect_wait_s``). A refused token raises :class:`RemoteError`."""
        self._host = host
        # Everything loaded so far (scene, libraries) lives for the whole session: keep
        # it out of the cyclic collector, whose full passes otherwise pause every thread
        # for 100-300 ms once the network thread makes garbage.
        gc.freeze()
        host.sinks.append(self.source)
        host.notice_sinks.append(self.notices)
        host.inboxes.append(self.inbox)
        self._thread.start()
        self._first_outcome.wait(self.config.connect_wait_s)
        if self.error is not None:
            self.close()
            raise RemoteError(f"mentor server {self.base_url} refused this session: {self.error}")
        if not self.session_id:
            log.warning("mentor server %s not reachable yet; retrying in the background", self.base_url)

    def close(self, timeout_s: float = 5.0) -> None:
        host = self._host
        if host is not None:
            if self.source in host.sinks:
                host.sinks.remove(self.source)
            if self.notices in host.notice_sinks:
                host.notice_sinks.remove(self.notices)
            if self.inbox in host.inboxes:
                host.inboxes.remove(self.inbox)
        if self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), self._aloop).result(timeout_s)
            except Exception:  # noqa: BLE001 - closing anyway
                pass
            self._aloop.call_soon_threadsafe(self._aloop.stop)
            self._thread.join(timeout_s)

    def stats(self) -> dict[str, Any]:
        gates: Counter = Counter(self._closed_link_counters)
        for link in list(self.links.values()):
            gates.update(link.gate.counters)
            gates.update(link.counters)
        return {"links": len(self.links), "published": self.source.published, "converted": self.source.converted,
                "keyframes": self.source.keyframes,
                "audio_frames_in": self.audio_frames_in, "inbox_dropped": self.inbox.dropped,
                "notices_published": self.notices.published, "notices_dropped": self.notices.dropped,
                **{f"notices_{k}": v for k, v in self.status.counters.items()},
                "sfu_feed": self.sfu.feed, "sfu_publish_s": self.sfu.publish_s, "sfu_error": self.sfu.error,
                **{f"sfu_{k}": v for k, v in self.sfu.counters.items()},
                **dict(self.counters), **{f"msg_{k}": v for k, v in gates.items()},
                **{f"applied_{k}": v for k, v in self.applier.counters.items()}}

    # ---- thread-safe hand-overs -------------------------------------------------
    def _reply_threadsafe(self, peer_id: str, msg: dict[str, Any]) -> None:
        try:
            self._aloop.call_soon_threadsafe(self._reply, peer_id, msg)
        except RuntimeError:
            pass

    def _reply(self, peer_id: str, msg: dict[str, Any]) -> None:
        link = self.links.get(peer_id) or self.sfu.viewers.get(peer_id)
        if link is not None:
            link.send(msg)

    def _broadcast_marks_threadsafe(self, marks: list[dict[str, Any]]) -> None:
        try:
            self._aloop.call_soon_threadsafe(self.broadcast, {"type": "marks", "marks": marks})
        except RuntimeError:
            pass

    def broadcast(self, msg: dict[str, Any] | BaseModel) -> None:
        targets: list[ViewerLink | SfuViewer] = [*self.links.values(), *self.sfu.viewers.values()]
        for link in targets:
            link.send(msg)

    def _notices_waiting_threadsafe(self) -> None:
        try:
            self._aloop.call_soon_threadsafe(self._send_status)
        except RuntimeError:  # the network thread has ended
            pass

    def _send_status(self) -> None:
        """Network thread: turn the waiting notices into ``status`` messages for every viewer."""
        for msg in self.status.ingest(self.notices.drain(), self.notices.dropped):
            self.broadcast(msg)

    def add_note(self, sender: Sender, msg: NoteMsg) -> None:
        self.notes.append({"id": f"{sender.name}/{msg.id}", "author": sender.name, "text": msg.text,
                           "t_ms": time.time() * 1000.0})
        del self.notes[:-50]
        self.broadcast({"type": "notes", "notes": self.notes})

    # ---- what a ViewerLink may ask (LinkOwner), network thread -----------------------
    def sync(self, link: ViewerLink | SfuViewer) -> None:
        link.send({"type": "notes", "notes": self.notes})
        status = self.status.snapshot(self.notices.dropped)
        if status is not None:
            link.send(status)
        sender = link.sender
        self.inbox.put(lambda view: self.applier.sync(view, sender))

    def mentor_message(self, sender: Sender, msg: BaseModel) -> None:
        if isinstance(msg, NoteMsg):
            self.add_note(sender, msg)
        key = f"{LASER_PREFIX}{sender.peer_id}" if isinstance(msg, LaserMsg) else None  # latest wins
        self.inbox.put(self.applier.make(sender, msg), coalesce_key=key)

    # ---- network thread ---------------------------------------------------------
    def _thread_main(self) -> None:
        asyncio.set_event_loop(self._aloop)
        self.source.bind(self._aloop)
        self._stop = asyncio.Event()
        self._main_task = self._aloop.create_task(self._main())
        try:
            self._aloop.run_forever()
        finally:
            self._aloop.close()

    def microphone_for_link(self) -> Any:
        return self._relay.subscribe(self._mic) if self._mic is not None else None

    async def consume_audio(self, track: MediaStreamTrack) -> None:
        """Play (or at least drain and count) a viewer's microphone."""
        if self._speaker is None and self.config.audio != "none":
            self._speaker = open_speaker(self.config.audio)
            if self._speaker is not None:
                self._speaker.addTrack(self._relay.subscribe(track))
                await self._speaker.start()
        mine = self._relay.subscribe(track) if self._speaker is not None else track
        try:
            while True:
                await mine.recv()
                self.audio_frames_in += 1
        except (MediaStreamError, asyncio.CancelledError):
            pass

    async def _main(self) -> None:
        self._mic = await asyncio.get_running_loop().run_in_executor(None, open_microphone, self.config.audio)
        ssl_ctx: Any = True  # default verification (unused for ws:)
        if self.ws_url.startswith("wss:"):
            ca = self.config.ca_file or os.environ.get("VR_TRAINER_MENTOR_CA")
            ssl_ctx = ssl.create_default_context(cafile=ca) if ca else True
        delay_s = 0.25
        async with aiohttp.ClientSession() as http:
            while self._stop is not None and not self._stop.is_set():
                try:
                    async with http.ws_connect(self.ws_url, heartbeat=5.0, ssl=ssl_ctx,
                                               max_msg_size=256 * 1024) as ws:
                        self._ws = ws
                        await ws.send_str(encode({"type": "join", "token": self.token}))
                        async for raw in ws:
                            if raw.type != aiohttp.WSMsgType.TEXT:
                                break
                            delay_s = 0.25
                            try:
                                await self._on_server(raw.data)
                            except Exception:  # noqa: BLE001 - one bad message must not end the session
                                self.counters["server_message_errors"] += 1
                                log.exception("mentor server message not handled")
                except (TimeoutError, aiohttp.ClientError, OSError) as e:
                    self.counters["server_unreachable"] += 1
                    log.info("mentor server: %s", e)
                    self._first_outcome.set()
                finally:
                    self._ws = None
                if self.error is not None:
                    break
                self.counters["server_reconnects"] += 1
                try:
                    await asyncio.wait_for(self._stop.wait(), delay_s)
                except TimeoutError:
                    pass
                delay_s = min(self.config.reconnect_max_s, delay_s * 2)
            for link in list(self.links.values()):
                await self.drop_link(link, "closing")

    async def _on_server(self, text: str) -> None:
        try:
            msg = SERVER_ADAPTER.validate_json(text)
        except ValueError:  # pydantic's ValidationError included
            self.counters["server_malformed"] += 1
            return
        if isinstance(msg, Welcome):
            if msg.role != "trainee":
                self.error = (f"the token is for the {msg.role} role; the resident's session needs a trainee "
                              "token (vr-trainer mentor token --role trainee ...)")
                self._first_outcome.set()
                if self._ws is not None:
                    await self._ws.close()
                return
            self.session_id, self.peer_id = msg.session_id, msg.peer_id
            self.ice_servers = [s.model_dump(exclude_none=True) for s in msg.ice_servers]
            self.ice_policy = msg.ice_transport_policy
            present = {p.peer_id for p in msg.peers}
            if msg.sfu is not None:  # publish once to the session's Janus room; viewers watch there
                self.sfu.start(msg.sfu, self.ice_servers, self.ice_policy)
            for pid in [p for p in self.sfu.viewers if p not in present]:
                self._forget_sfu_viewer(pid)
            for pid, link in list(self.links.items()):
                if pid not in present:
                    await self.drop_link(link, "gone after reconnect")
            self._first_outcome.set()
            for p in msg.peers:
                if p.peer_id not in self.links:
                    await self._add_link(p)
        elif isinstance(msg, PeerJoined):
            await self._add_link(msg.peer)
        elif isinstance(msg, PeerLeft):
            gone = self.links.get(msg.peer_id)
            if gone is not None:
                await self.drop_link(gone, "left")
            self._forget_sfu_viewer(msg.peer_id)
        elif isinstance(msg, MentorRelayed):
            self.sfu.on_mentor(msg)
        elif isinstance(msg, Relayed):
            target = self.links.get(msg.sender)
            if target is not None:
                await target.on_signal(msg.data.model_dump(exclude_none=True))
        elif isinstance(msg, ServerError):
            if msg.code in ("unauthorized", "replaced", "full"):
                self.error = msg.message or msg.code
                log.info("mentor server refused us: %s", self.error)
                self._first_outcome.set()

    async def _add_link(self, info: PeerInfo) -> None:
        if info.role not in VIEWER_ROLES:
            return
        if self.sfu.active:  # the viewer watches through Janus: no peer connection of ours
            self.sfu.add_viewer(info)
            self._update_depth_wish()
            return
        if len(self.links) >= self.config.max_links:
            self.counters["links_refused"] += 1
            return
        link = ViewerLink(info, self, source=self.source, config=self.config.link_config(),
                          rtc_config=rtc_configuration(self.ice_servers, self.ice_policy),
                          session_id=self.session_id, microphone=self.microphone_for_link())
        self.links[link.peer_id] = link
        self.counters["links_opened"] += 1
        self._update_depth_wish()
        try:
            await link.start()
        except Exception as e:  # noqa: BLE001
            log.warning("viewer %s: could not start (%s)", link.peer_id, e)
            await self.drop_link(link, "start failed")

    async def drop_link(self, link: ViewerLink, reason: str) -> None:
        if self.links.get(link.peer_id) is link:
            del self.links[link.peer_id]
            self.counters["links_closed"] += 1
            if reason in _DROP_COUNTERS:
                self.counters[_DROP_COUNTERS[reason]] += 1
            self._closed_link_counters.update(link.gate.counters)
            self._closed_link_counters.update(link.counters)
            self._update_depth_wish()
            log.info("viewer %s (%s) closed: %s", link.peer_id, link.role, reason)
            pid = link.peer_id

            def forget(view: LoopView) -> None:
                self.applier.forget_peer(view, pid)

            self.inbox.put(forget)
        await link.close()

    def _forget_sfu_viewer(self, pid: str) -> None:
        if self.sfu.remove_viewer(pid):
            self._update_depth_wish()
            self.inbox.put(lambda view: self.applier.forget_peer(view, pid))

    def _update_depth_wish(self) -> None:
        """Read depth back only while someone who may annotate is connected."""
        self.source.wants_depth = any(link.can_annotate for link in self.links.values()) or self.sfu.has_expert

    async def signal(self, to: str, data: dict[str, Any]) -> None:
        await self.send_server({"type": "signal", "to": to, "data": data})

    async def send_server(self, msg: dict[str, Any]) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            return
        await ws.send_str(encode(msg))

    async def _shutdown(self) -> None:
        if self._stop is not None:
            self._stop.set()
        ws = self._ws
        if ws is not None:
            await ws.close()
        if self._main_task is not None:
            try:
                await asyncio.wait_for(self._main_task, 4.0)
            except (TimeoutError, Exception):  # noqa: BLE001
                self._main_task.cancel()
        await self.sfu.close()
        self.source.close()
        if self._speaker is not None:
            await self._speaker.stop()
