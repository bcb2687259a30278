"""`vr-trainer mentor serve`: signalling over a WebSocket plus the expert console.

One room per session id. A client opens ``/ws`` and sends ``join`` with its token
within :data:`JOIN_TIMEOUT_S`; the server checks the signature, expiry and role,
answers ``welcome`` (its peer id, the ICE servers, the peers present) and from then
on only relays ``signal`` messages between the room's trainee and its viewers
(viewers may signal only the trainee), adding the authenticated sender. The trainee
learns each viewer's role from ``peer-joined``, which only the server sends, so an
observer cannot claim to be an expert. Media and annotations then flow peer to peer
(trainee -> viewer, or trainee -> an SFU later). The server refuses to listen on a
non-loopback address without TLS.

With ``--sfu janus`` (:mod:`remote.fanout`) the welcome also carries the session's own
Janus room (made on first use, destroyed when the session's last client leaves): a
publisher join with the room's publish token for the trainee, a subscriber join for experts and observers;
the trainee publishes once to Janus, viewers subscribe there, and the console's
messages travel over this WebSocket (``mentor``), an observer's annotations refused here.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import logging
import secrets
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from remote.errors import RemoteError, TokenError
from remote.fanout import RECLAIM_TIMEOUT_S, SessionRooms, SfuRoom
from remote.gate import MessageGate
from remote.schema import (
    MAX_NOTE_CHARS,
    IceServer,
    Join,
    Leave,
    MentorRelayed,
    MentorSend,
    PeerInfo,
    PeerJoined,
    PeerLeft,
    Ping,
    Pong,
    Relayed,
    ServerError,
    Signal,
    Welcome,
    encode,
    json_schema,
    make,
)
from remote.tokens import TokenClaims, TokenSigner

log = logging.getLogger("remote.server")
STATIC_DIR = Path(__file__).resolve().parent / "static"
JOIN_TIMEOUT_S = 5.0
WS_HEARTBEAT_S = 2.0
CLOSE_BAD_REQUEST, CLOSE_UNAUTHORIZED, CLOSE_FORBIDDEN = 4400, 4401, 4403
CLOSE_JOIN_TIMEOUT, CLOSE_REPLACED, CLOSE_FULL = 4408, 4409, 4429
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "media-src 'self' blob: mediastream:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'")


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    tls_cert: str | None = None
    tls_key: str | None = None
    stun_urls: list[str] = field(default_factory=list)
    turn_urls: list[str] = field(default_factory=list)
    turn_username: str | None = None
    turn_password: str | None = None
    turn_secret: str | None = None  # coturn use-auth-secret: short-lived credentials per peer
    turn_ttl_s: int = 12 * 3600
    relay_only: bool = False
    max_viewers: int = 8
    sfu: SfuRoom | None = None  # --sfu janus: the room the trainee publishes to once


def is_loopback_host(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(config: ServerConfig) -> None:
    """Refuse plain HTTP on anything but loopback; check the TLS files exist."""
    if bool(config.tls_cert) != bool(config.tls_key):
        raise RemoteError("give both --tls-cert and --tls-key (or neither, on 127.0.0.1 only)")
    if config.tls_cert:
        for p in (config.tls_cert, config.tls_key):
            if not Path(str(p)).is_file():
                raise RemoteError(f"{p}: no such TLS file")
    elif not is_loopback_host(config.host):
        raise RemoteError(f"refusing to serve on {config.host} without TLS: give --tls-cert and --tls-key, "
                          "or bind 127.0.0.1 behind a TLS proxy (browsers also need https for the microphone)")
    if config.relay_only and not config.turn_urls:
        raise RemoteError("--relay-only needs at least one --turn server")
    for u in config.stun_urls:
        if not u.startswith(("stun:", "stuns:")):
            raise RemoteError(f"--stun {u!r}: STUN URLs start with stun: (e.g. stun:stun.example.org:3478)")
    for u in config.turn_urls:
        if not u.startswith(("turn:", "turns:")):
            raise RemoteError(f"--turn {u!r}: TURN URLs start with turn: (e.g. turn:turn.example.org:3478)")


def ssl_context(config: ServerConfig) -> ssl.SSLContext | None:
    if not config.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(str(config.tls_cert), str(config.tls_key))
    except (ssl.SSLError, OSError) as e:
        raise RemoteError(f"cannot load TLS certificate/key ({e}); give a PEM certificate chain and its key") from None
    return ctx


@dataclass(eq=False)
class PeerConn:
    peer_id: str
    ws: web.WebSocketResponse
    claims: TokenClaims
    gate: MessageGate

    def info(self) -> PeerInfo:
        return PeerInfo.model_validate({"peer_id": self.peer_id, "role": self.claims.role, "name": self.claims.name})


@dataclass
class Room:
    session_id: str
    trainee: PeerConn | None = None
    viewers: dict[str, PeerConn] = field(default_factory=dict)

    def empty(self) -> bool:
        return self.trainee is None and not self.viewers


class MentorServer:
    """The aiohttp application: rooms, token checks, relaying."""

    def __init__(self, signer: TokenSigner, config: ServerConfig | None = None) -> None:
        self.signer = signer
        self.config = config or ServerConfig()
        self.rooms: dict[str, Room] = {}
        self.counters: Counter = Counter()
        self.sfu_rooms = SessionRooms(self.config.sfu) if self.config.sfu is not None else None

    # ---- app ------------------------------------------------------------------
    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._headers], client_max_size=64 * 1024)
        app.router.add_get("/", self._root)
        app.router.add_get("/console", self._console)
        app.router.add_get("/ws", self._ws)
        app.router.add_get("/healthz", self._health)
        app.router.add_get("/schema.json", self._schema)
        app.router.add_get("/favicon.ico", self._no_content)
        app.router.add_static("/static/", STATIC_DIR, show_index=False, follow_symlinks=False)
        if self.sfu_rooms is not None:
            app.on_startup.append(self._reclaim_rooms)
            app.on_shutdown.append(lambda _app: self.sfu_rooms.close_all())  # type: ignore[union-attr]
        return app

    async def _reclaim_rooms(self, _app: web.Application) -> None:
        """Before the first client: destroy Janus rooms left by a server that was killed."""
        assert self.sfu_rooms is not None
        try:
            got = await asyncio.wait_for(self.sfu_rooms.reclaim(), RECLAIM_TIMEOUT_S)
        except (asyncio.TimeoutError, RemoteError) as e:
            log.warning("rooms left by an earlier server were not cleaned up (%s); the next start tries again", e)
            return
        if any(got.values()):
            log.warning("Janus rooms left by an earlier server: %(destroyed)d destroyed, %(gone)d already gone, "
                        "%(failed)d not destroyed", got)

    @web.middleware
    async def _headers(self, request: web.Request, handler: Any) -> web.StreamResponse:
        resp = await handler(request)
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Cache-Control", "no-cache")
        if self.config.tls_cert:
            resp.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return resp

    async def _root(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("console")  # relative: works behind a path prefix

    async def _console(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_DIR / "console.html")

    async def _health(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True, "rooms": len(self.rooms), "counters": dict(self.counters)})

    async def _no_content(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)

    async def _schema(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(json_schema())

    def ice_servers(self, peer_id: str, expires_s: int) -> list[IceServer]:
        c = self.config
        out: list[IceServer] = []
        if c.stun_urls:
            out.append(IceServer(urls=list(c.stun_urls)))
        if c.turn_urls:
            if c.turn_secret:
                user = f"{min(expires_s, int(time.time()) + c.turn_ttl_s)}:{peer_id}"
                mac = hmac.new(c.turn_secret.encode(), user.encode(), hashlib.sha1).digest()
                out.append(IceServer(urls=list(c.turn_urls), username=user, credential=base64.b64encode(mac).decode()))
            else:
                out.append(IceServer(urls=list(c.turn_urls), username=c.turn_username or "",
                                     credential=c.turn_password or ""))
        return out

    # ---- one WebSocket --------------------------------------------------------
    async def _ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=WS_HEARTBEAT_S, max_msg_size=MessageGate.for_signal().max_bytes + 1024)
        await ws.prepare(request)
        self.counters["connections"] += 1
        peer = await self._join(ws)
        if peer is None:
            return ws
        room = await self._enter(peer)
        if room is None:
            return ws
        expiry = asyncio.get_running_loop().call_later(max(0.0, peer.claims.expires_s - time.time()),
                                                       lambda: asyncio.ensure_future(
                                                           ws.close(code=CLOSE_UNAUTHORIZED, message=b"token expired")))
        try:
            async for raw in ws:
                if raw.type == WSMsgType.TEXT:
                    await self._handle(room, peer, raw.data)
                elif raw.type == WSMsgType.BINARY:
                    peer.gate.admit(raw.data)
                    self.counters["dropped"] += 1
                elif raw.type == WSMsgType.ERROR:
                    break
        finally:
            expiry.cancel()
            await self._leave(room, peer)
        return ws

    async def _refuse(self, ws: web.WebSocketResponse, code: int, reason: str, message: str) -> None:
        self.counters[f"refused_{reason}"] += 1
        try:
            await ws.send_str(encode(make(ServerError, code=reason, message=message[:MAX_NOTE_CHARS])))
        except (ConnectionError, RuntimeError):
            pass
        await ws.close(code=code, message=reason.encode()[:120])

    async def _join(self, ws: web.WebSocketResponse) -> PeerConn | None:
        gate = MessageGate.for_signal()
        try:
            raw = await ws.receive(timeout=JOIN_TIMEOUT_S)
        except TimeoutError:
            await self._refuse(ws, CLOSE_JOIN_TIMEOUT, "join_timeout", f"send join within {JOIN_TIMEOUT_S:.0f} s")
            return None
        if raw.type != WSMsgType.TEXT:
            if raw.type not in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                await self._refuse(ws, CLOSE_BAD_REQUEST, "bad_request", "the first message must be join")
            return None
        msg = gate.admit(raw.data)
        if not isinstance(msg, Join):
            await self._refuse(ws, CLOSE_UNAUTHORIZED, "unauthorized", "the first message must be join with a token")
            return None
        try:
            claims = self.signer.verify(msg.token)
        except TokenError as e:
            await self._refuse(ws, CLOSE_UNAUTHORIZED, "unauthorized", str(e))
            return None
        return PeerConn(secrets.token_urlsafe(9), ws, claims, gate)

    async def _enter(self, peer: PeerConn) -> Room | None:
        role, sid, sfu = peer.claims.role, peer.claims.session_id, None
        if self.sfu_rooms is not None:  # the session's own Janus room, made on first use
            try:
                sfu = (await self.sfu_rooms.open(sid)).join_for(role)
            except RemoteError as e:
                log.warning("session %s: no Janus room (%s)", sid, e)
                await self._refuse(peer.ws, CLOSE_FULL, "sfu_unavailable", "the fan-out server is not available")
                self._session_over(sid)
                return None
        room = self.rooms.setdefault(sid, Room(sid))
        if role == "trainee":
            old = room.trainee
            room.trainee = peer
            if old is not None:
                self.counters["trainee_replaced"] += 1
                await self._send(old, make(ServerError, code="replaced", message="another trainee joined"))
                await old.ws.close(code=CLOSE_REPLACED, message=b"replaced")
            others = list(room.viewers.values())
        else:
            if len(room.viewers) >= self.config.max_viewers:
                await self._refuse(peer.ws, CLOSE_FULL, "full", f"session full ({self.config.max_viewers} viewers)")
                self._session_over(sid)
                return None
            room.viewers[peer.peer_id] = peer
            others = [room.trainee] if room.trainee is not None else []
        self.counters[f"joined_{role}"] += 1
        await self._send(peer, make(
            Welcome, **peer.info().model_dump(), session_id=room.session_id, expires_s=peer.claims.expires_s,
            can_annotate=peer.claims.can_annotate,
            ice_servers=self.ice_servers(peer.peer_id, peer.claims.expires_s),
            ice_transport_policy="relay" if self.config.relay_only else "all",
            peers=[o.info() for o in others],
            sfu=sfu))
        for o in others:
            await self._send(o, make(PeerJoined, peer=peer.info()))
        log.info("%s %s (%s) joined session %s", role, peer.peer_id, peer.claims.name, room.session_id)
        return room

    def _session_over(self, sid: str) -> None:
        """Forget a session nobody is in any more, and destroy its Janus room."""
        if sid in self.rooms and not self.rooms[sid].empty():
            return
        self.rooms.pop(sid, None)
        if self.sfu_rooms is not None:
            asyncio.ensure_future(self._close_sfu_room(sid))

    async def _close_sfu_room(self, sid: str) -> None:
        assert self.sfu_rooms is not None
        try:
            await self.sfu_rooms.close(sid, keep=lambda: sid in self.rooms)  # unless someone joined again
        except RemoteError as e:
            log.warning("session %s: %s", sid, e)

    async def _leave(self, room: Room, peer: PeerConn) -> None:
        if room.trainee is peer:
            room.trainee = None
            others = list(room.viewers.values())
        elif room.viewers.get(peer.peer_id) is peer:
            del room.viewers[peer.peer_id]
            others = [room.trainee] if room.trainee is not None else []
        else:
            return
        for o in others:
            await self._send(o, make(PeerLeft, peer_id=peer.peer_id))
        if room.empty():
            self._session_over(room.session_id)
        for k, n in peer.gate.counters.items():
            self.counters[f"signal_{k}"] += n

    async def _send(self, peer: PeerConn,
                    msg: Welcome | PeerJoined | PeerLeft | Relayed | MentorRelayed | ServerError | Pong) -> None:
        if peer.ws.closed:
            return
        try:
            await peer.ws.send_str(encode(msg))
        except (ConnectionError, RuntimeError):
            pass

    async def _handle(self, room: Room, peer: PeerConn, raw: str) -> None:
        msg = peer.gate.admit(raw)
        if msg is None:
            self.counters["dropped"] += 1
            return
        if isinstance(msg, Ping):
            await self._send(peer, make(Pong))
        elif isinstance(msg, Leave):
            await peer.ws.close()
        elif isinstance(msg, Join):
            self.counters["dropped"] += 1
        elif isinstance(msg, MentorSend):
            await self._mentor(room, peer, msg)
        elif isinstance(msg, Signal):
            if peer is room.trainee:
                target = room.viewers.get(msg.to or "")
            else:
                target = room.trainee if msg.to in (None, getattr(room.trainee, "peer_id", None)) else None
                if msg.to is not None and target is None:
                    self.counters["refused_route"] += 1
            if target is None:
                await self._send(peer, make(ServerError, code="no_peer", message="no such peer in the session"))
                return
            self.counters["relayed"] += 1
            await self._send(target, make(Relayed, sender=peer.peer_id, data=msg.data))


    async def _mentor(self, room: Room, peer: PeerConn, msg: MentorSend) -> None:
        """A console message over the WebSocket: the trainee's to one viewer, an expert's to
        the trainee; an observer's is refused here (its token's role, not what it claims)."""
        if peer is room.trainee:
            target = room.viewers.get(msg.to or "")
        elif not peer.claims.can_annotate:
            self.counters["refused_role"] += 1
            await self._send(peer, make(ServerError, code="forbidden",
                                        message="observers can watch but not annotate"))
            return
        else:
            target = room.trainee
        if target is None:
            await self._send(peer, make(ServerError, code="no_peer", message="no such peer in the session"))
            return
        self.counters["mentor_relayed"] += 1
        await self._send(target, make(MentorRelayed, sender=peer.peer_id, data=msg.data))


async def start_server(signer: TokenSigner, config: ServerConfig) -> tuple[web.AppRunner, str, MentorServer]:
    """Start listening; returns the runner (``await runner.cleanup()``), base URL and server."""
    check_bind(config)
    server = MentorServer(signer, config)
    runner = web.AppRunner(server.make_app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, ssl_context=ssl_context(config))
    await site.start()
    port = runner.addresses[0][1] if runner.addresses else config.port
    host = config.host if ":" not in config.host else f"[{config.host}]"
    return runner, f"{'https' if config.tls_cert else 'http'}://{host}:{port}", server


class ServerThread:
    """The server on its own asyncio loop in a thread (tests, benchmarks)."""

    def __init__(self, signer: TokenSigner, config: ServerConfig | None = None) -> None:
        self.signer, self.config = signer, config or ServerConfig(port=0)
        self.loop = asyncio.new_event_loop()
        self.url = ""
        self.server: MentorServer | None = None
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="mentor-server", daemon=True)

    def start(self, timeout_s: float = 10.0) -> ServerThread:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(start_server(self.signer, self.config), self.loop)
        self._runner, self.url, self.server = fut.result(timeout_s)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(timeout_s)
            self._runner = None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout_s)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
