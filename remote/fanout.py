"""`mentor serve --sfu janus`: what the server knows of the Janus room it fans out through.

The server never talks to Janus itself. It reads the room from a `mentor stack up`
folder's ``stack.json`` (or a JSON file with the same fields) and, in the ``welcome`` it
sends only after a token was checked, hands the trainee a publisher join and every
expert or observer a subscriber join (:class:`~remote.schema.SfuJoin`): Janus's URL,
its API secret, the room and its pin, and the session's feed id. The room's secret and
Janus's admin key stay with the stack; an unauthenticated client gets nothing.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remote.errors import RemoteError
from remote.schema import SfuJoin

SFU_KINDS = ("janus",)
_FIELDS = {"janus_ws": (str, "a string"), "api_secret": (str, "a string"), "room": (int, "an integer"),
           "pin": (str, "a string")}


@dataclass(frozen=True)
class SfuRoom:
    """A Janus VideoRoom the server hands out (no room secret, no admin key)."""

    janus_ws: str
    api_secret: str
    room: int
    pin: str
    turn_url: str = ""  # the stack's coturn, used when `mentor serve` is given no --turn
    turn_secret: str = ""
    source: str = ""  # where it was read (for messages)

    def join_for(self, role: str, feed: int) -> SfuJoin:
        return SfuJoin(kind="janus", url=self.janus_ws, api_secret=self.api_secret, room=self.room, pin=self.pin,
                       feed=feed, ptype="publisher" if role == "trainee" else "subscriber")


def new_feed_id() -> int:
    """A publisher id for one session's trainee (Janus takes ids up to 2^53)."""
    return secrets.randbelow(2**52) + 1


def load_sfu_room(path: str | Path) -> SfuRoom:
    """The room from ``--stack PATH``: a `mentor stack up` folder (its ``stack.json``) or a
    JSON file with ``janus_ws``, ``api_secret``, ``room``, ``pin`` (and optionally
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
    return SfuRoom(doc["janus_ws"], doc["api_secret"], int(doc["room"]), doc["pin"],
                   str(doc.get("turn_url") or ""), str(doc.get("turn_secret") or ""), str(p))
