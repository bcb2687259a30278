"""`mentor serve --sfu janus`: one private Janus VideoRoom per mentoring session.

The server reads Janus's URL, its API secret and the room-creation ``admin_key`` from a
`mentor stack up` folder's ``stack.json`` (or a JSON file with the same fields). When the
first client of a session has shown a valid token, :class:`SessionRooms` creates that
session's room over one server-side Janus session (``create`` with the admin key): a
random room id, ``is_private`` (not in ``list``), its own generated ``pin`` and ``secret``,
``publishers = 1``, and the ``allowed`` token list holding one generated publish token.
The room is destroyed (with its secret) when the session's last client leaves and when
the server stops. The admin key and every room secret stay in the server.

Who may publish: Janus's VideoRoom checks the ``allowed`` ACL on every publisher ``join``
(a join without a listed ``token`` is refused "Unauthorized (not in the allowed list)"),
and only there: subscribers need just the pin. So the ACL gives exactly the split we
want, enforced by Janus itself and before any media flows, with no race: the trainee's
welcome carries the publish token, an expert's or observer's does not, and a viewer who
knows the pin and the feed id still cannot publish, whether or not the resident is
publishing. ``require_pvtid`` would not do (it ties subscribers to a publisher's private
id, and our viewers publish nothing); moderating by ``kick`` would let a stranger publish
until the server noticed. A viewer of one session never learns another session's room
id or pin, and a wrong pin is refused.

Rooms outlive a server killed without its cleanup (SIGKILL): each room's id and secret is
written to a :class:`~remote.room_ledger.RoomLedger` in the stack folder as it is made, and
a server starting on that stack destroys the rooms listed by servers that no longer run
(:meth:`SessionRooms.reclaim`, before it accepts clients).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from remote.errors import RemoteError
from remote.room_ledger import LEDGER_FOLDER, RoomLedger
from remote.schema import SfuJoin

if TYPE_CHECKING:
    from remote.sfu_janus import JanusClient, JanusHandle

log = logging.getLogger("remote.fanout")
SFU_KINDS = ("janus",)
RECLAIM_TIMEOUT_S = 10.0
_FIELDS = {"janus_ws": (str, "a string"), "api_secret": (str, "a string"), "admin_key": (str, "a string")}
ROOM_BITRATE_BPS = 1_000_000


@dataclass(frozen=True)
class SfuRoom:
    """Where the server makes its sessions' rooms (the admin key never leaves the server)."""

    janus_ws: str
    api_secret: str
    admin_key: str
    turn_url: str = ""  # the stack's coturn, used when `mentor serve` is given no --turn
    turn_secret: str = ""
    source: str = ""  # where it was read (for messages)
    bitrate_bps: int = ROOM_BITRATE_BPS


@dataclass(frozen=True)
class SessionRoom:
    """One session's Janus room as the server knows it (``secret`` stays here)."""

    janus_ws: str
    api_secret: str
    room: int
    pin: str
    secret: str = field(repr=False)
    publish_token: str = field(repr=False)
    feed: int = 0
    create_s: float = 0.0

    def join_for(self, role: str) -> SfuJoin:
        """A publisher join (with the publish token) for the trainee, a subscriber join
        (room, pin, feed: what subscribing needs) for experts and observers."""
        trainee = role == "trainee"
        return SfuJoin(kind="janus", url=self.janus_ws, api_secret=self.api_secret, room=self.room, pin=self.pin,
                       feed=self.feed, ptype="publisher" if trainee else "subscriber",
                       token=self.publish_token if trainee else None)


def new_feed_id() -> int:
    """A publisher id for one session's trainee (Janus takes ids up to 2^53)."""
    return secrets.randbelow(2**52) + 1


class SessionRooms:
    """The server's Janus session (one handle) and the room of each mentoring session."""

    def __init__(self, sfu: SfuRoom) -> None:
        self.sfu = sfu
        self.rooms: dict[str, SessionRoom] = {}
        self.counters: dict[str, int] = {"created": 0, "destroyed": 0}
        self._locks: dict[str, asyncio.Lock] = {}
        self._janus: JanusClient | None = None
        self._handle: JanusHandle | None = None
        self._connect = asyncio.Lock()
        # where this server notes its rooms: the stack's folder (beside stack.json)
        self.ledger = RoomLedger(Path(sfu.source).parent / LEDGER_FOLDER) if sfu.source else None
        self.reclaimed: dict[str, int] = {}

    def _note(self, room: int, secret: str | None) -> None:
        """Add (with its secret) or remove a room in the ledger; a ledger that cannot be
        written costs only the clean-up after a crash, so it is a warning."""
        if self.ledger is None:
            return
        try:
            if secret is None:
                self.ledger.remove(room)
            else:
                self.ledger.add(room, secret)
        except OSError as e:
            log.warning("cannot note Janus room %s in %s (%s): a crash would leave it behind", room,
                        self.ledger.path, e)

    async def reclaim(self) -> dict[str, int]:
        """Destroy the rooms that servers which no longer run left in Janus (their ledgers in
        the stack folder); counts of rooms destroyed, already gone, and not destroyed (kept
        in their ledger for the next start)."""
        from remote.sfu_janus import JanusError

        out = {"destroyed": 0, "gone": 0, "failed": 0}
        try:
            stale = self.ledger.stale() if self.ledger is not None else []
        except OSError as e:
            log.warning("cannot read the room ledgers (%s)", e)
            stale = []
        for st in stale:
            left: dict[int, str] = {}
            for room, secret in st.rooms.items():
                try:
                    await self._admin({"request": "destroy", "room": room, "secret": secret, "permanent": False})
                    out["destroyed"] += 1
                except JanusError as e:
                    if "code 426" in str(e):  # no such room: Janus restarted since
                        out["gone"] += 1
                    else:
                        out["failed"] += 1
                        left[room] = secret
                        log.warning("could not destroy room %s left by server %s: %s", room, st.pid, e)
            try:
                RoomLedger.settle(st, left)
            except OSError as e:
                log.warning("cannot update %s (%s)", st.path, e)
        self.reclaimed = out
        return out

    async def _admin(self, body: dict[str, Any]) -> dict[str, Any]:
        from remote.sfu_janus import JanusClient

        async with self._connect:
            if self._janus is None or self._janus.closed or self._handle is None:
                if self._janus is not None:
                    await self._janus.close()
                self._janus = self._handle = None
                janus = JanusClient(self.sfu.janus_ws, self.sfu.api_secret)
                await janus.__aenter__()
                self._janus, self._handle = janus, await janus.attach()
            handle = self._handle
        data, _ = await handle.message(body)
        return data

    async def open(self, session_id: str) -> SessionRoom:
        """The session's room, created on first use (or again if Janus lost it)."""
        async with self._locks.setdefault(session_id, asyncio.Lock()):
            room = self.rooms.get(session_id)
            if room is not None and (await self._admin({"request": "exists", "room": room.room})).get("exists"):
                return room
            if room is not None:  # Janus lost it (restarted)
                self._note(room.room, None)
            room = await self._create()
            self.rooms[session_id] = room
            return room

    async def _create(self) -> SessionRoom:
        from remote.sfu_janus import JanusError

        t0 = time.monotonic()
        pin, secret, token = (secrets.token_urlsafe(n) for n in (12, 24, 24))
        for _ in range(5):
            room_id = secrets.randbelow(2**52) + 1
            self._note(room_id, secret)  # written ahead: a kill during create leaves no unknown room
            try:
                await self._admin({"request": "create", "admin_key": self.sfu.admin_key, "room": room_id,
                                   "permanent": False, "description": "vr-trainer session", "is_private": True,
                                   "secret": secret, "pin": pin, "allowed": [token], "publishers": 1,
                                   "bitrate": self.sfu.bitrate_bps, "fir_freq": 10, "videocodec": "vp8",
                                   "audiocodec": "opus", "record": False})
                break
            except BaseException as e:
                self._note(room_id, None)
                if not isinstance(e, JanusError) or "code 427" not in str(e):  # 427: that id exists; pick another
                    raise
        else:
            raise RemoteError("Janus: could not find a free room id")
        self.counters["created"] += 1
        return SessionRoom(self.sfu.janus_ws, self.sfu.api_secret, room_id, pin, secret, token, new_feed_id(),
                           round(time.monotonic() - t0, 4))

    async def close(self, session_id: str, keep: Callable[[], bool] | None = None) -> None:
        """Destroy the session's room (everyone in it is hung up), unless ``keep()`` says,
        once the room is ours to change, that someone joined the session again."""
        from remote.sfu_janus import JanusError

        async with self._locks.setdefault(session_id, asyncio.Lock()):
            if keep is not None and keep():
                return
            room = self.rooms.pop(session_id, None)
            self._locks.pop(session_id, None)
            if room is None:
                return
            try:
                await self._admin({"request": "destroy", "room": room.room, "secret": room.secret,
                                   "permanent": False})
                self.counters["destroyed"] += 1
                self._note(room.room, None)
            except (JanusError, OSError) as e:
                if "code 426" in str(e):  # Janus no longer has it (restarted)
                    self._note(room.room, None)
                self.counters["destroy_errors"] = self.counters.get("destroy_errors", 0) + 1
                raise RemoteError(f"Janus: could not destroy room {room.room}: {e}") from None

    async def close_all(self) -> None:
        """Destroy every room (server stop) and end the server's Janus session."""
        for sid in list(self.rooms):
            try:
                await asyncio.wait_for(self.close(sid), 5.0)
            except (RemoteError, asyncio.TimeoutError):
                pass
        if self._janus is not None:
            await self._janus.close()
            self._janus = self._handle = None


def load_sfu_room(path: str | Path) -> SfuRoom:
    """Janus's details from ``--stack PATH``: a `mentor stack up` folder (its ``stack.json``)
    or a JSON file with ``janus_ws``, ``api_secret``, ``admin_key`` (and optionally
    ``turn_url``, ``turn_secret``)."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "stack.json"
    try:
        doc: Any = json.loads(p.read_text())
    except OSError as e:
        raise RemoteError(f"--stack {p}: cannot read it ({e.strerror or e}); start a stack with "
                          "`vr-trainer mentor stack up --dir DIR` and give DIR") from None
    except ValueError as e:
        raise RemoteError(f"--stack {p}: not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise RemoteError(f"--stack {p}: expected a JSON object with {', '.join(_FIELDS)}")
    for name, (kind, what) in _FIELDS.items():
        if not isinstance(doc.get(name), kind) or isinstance(doc.get(name), bool):
            raise RemoteError(f"--stack {p}: field {name!r} missing or not {what}")
    if not str(doc["janus_ws"]).startswith(("ws://", "wss://")):
        raise RemoteError(f"--stack {p}: field 'janus_ws' must be a ws:// or wss:// URL")
    return SfuRoom(doc["janus_ws"], doc["api_secret"], doc["admin_key"], str(doc.get("turn_url") or ""),
                   str(doc.get("turn_secret") or ""), str(p))
