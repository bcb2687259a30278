"""The Janus rooms a mentor server has made, kept on disk so that rooms left behind by a
server that could not clean up (SIGKILL, a crash, power loss) are destroyed by the next
server started on the same stack, instead of living until Janus restarts.

Each server process writes ``DIR/mentor-rooms/<pid>-<start ticks>.json`` (mode 0600,
replaced atomically on every change): ``{"pid": P, "rooms": {"<room id>": "<secret>"}}``.
Destroying a VideoRoom room needs its secret (Janus's admin key does not replace it), which
is why the secrets are written down; the folder is the stack's own (mode 0700). A file
whose process no longer runs (the pid is gone, or now names a process started at another
time) is stale: :meth:`RoomLedger.stale` returns it for the new server to destroy its rooms.
Files of servers that still run on the same stack are left alone.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

LEDGER_FOLDER = "mentor-rooms"


def process_start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks after boot, /proc/PID/stat field 22), or None if no
    such process runs (a zombie counts as gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if not fields or fields[0] in ("Z", "X"):
        return None
    try:
        return int(fields[19])  # fields after the command name start at field 3 (state)
    except (IndexError, ValueError):
        return None


@dataclass
class StaleLedger:
    """The rooms a server that no longer runs had made."""

    path: Path
    pid: int
    rooms: dict[int, str] = field(repr=False)


class RoomLedger:
    """This process's rooms (room id -> secret) in ``folder``."""

    def __init__(self, folder: Path, pid: int | None = None) -> None:
        self.folder = folder
        self.pid = os.getpid() if pid is None else pid
        self.path = folder / f"{self.pid}-{process_start_ticks(self.pid) or 0}.json"
        self.rooms: dict[int, str] = {}

    def add(self, room: int, secret: str) -> None:
        self.rooms[room] = secret
        self._write()

    def remove(self, room: int) -> None:
        if self.rooms.pop(room, None) is not None:
            self._write()

    def _write(self) -> None:
        if not self.rooms:
            self.path.unlink(missing_ok=True)
            return
        write_atomic(self.path, {"pid": self.pid, "rooms": {str(r): s for r, s in self.rooms.items()}})

    def stale(self) -> list[StaleLedger]:
        """Ledgers in the folder whose server no longer runs (unreadable ones are dropped)."""
        out = []
        for p in sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []:
            if p == self.path:
                continue
            try:
                pid_s, ticks_s = p.stem.split("-", 1)
                pid, ticks = int(pid_s), int(ticks_s)
            except ValueError:
                continue
            if process_start_ticks(pid) == ticks and ticks:
                continue  # that server still runs: its rooms are its own
            try:
                doc = json.loads(p.read_text())
                rooms = {int(r): str(s) for r, s in doc["rooms"].items()}
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                p.unlink(missing_ok=True)
                continue
            out.append(StaleLedger(p, pid, rooms))
        return out

    @staticmethod
    def settle(stale: StaleLedger, left: dict[int, str]) -> None:
        """Keep only the rooms of a stale ledger that could not be destroyed (tried again by
        the next server); remove the file when none are left."""
        if left:
            write_atomic(stale.path, {"pid": stale.pid, "rooms": {str(r): s for r, s in left.items()}})
        else:
            stale.path.unlink(missing_ok=True)


def write_atomic(path: Path, doc: object) -> None:
    """Write JSON to ``path`` through a private temporary file and a rename (never half a
    file, even when the process dies while writing)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
