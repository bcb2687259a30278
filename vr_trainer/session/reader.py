"""Read a recording back, complete or not: a file cut short (the program was killed) or damaged
(bytes changed on disk) yields the part before the damage and a message that says where the
damage is and how much was readable."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcap.exceptions import EndOfFile
from mcap.records import Channel, Chunk, Footer, Message
from mcap.stream_reader import StreamReader, breakup_chunk

from vr_trainer.session.format import FORMAT, FrameDecoder, RecordedFrame


class RecordingError(ValueError):
    """A recording cannot be used at all; the message names the file and what is wrong."""


@dataclass
class Recording:
    """What a recording holds. ``damage`` is None for a complete, closed file; otherwise it says
    why reading stopped and what was readable (the lists hold that readable part)."""

    path: Path
    session: dict[str, Any]
    frames: list[RecordedFrame] = field(default_factory=list)
    inbox: dict[int, dict[str, Any]] = field(default_factory=dict)  # frame index -> what the mentor changed
    notices: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)  # /images messages (PNG base64 in "data")
    summary: dict[str, Any] | None = None
    closed: bool = False  # the file ended with its footer
    damage: str | None = None
    bytes_read: int = 0
    file_bytes: int = 0

    @property
    def complete(self) -> bool:
        return self.closed and self.damage is None

    @property
    def duration_s(self) -> float:
        """Clock seconds from the first to the last readable frame."""
        return self.frames[-1].clock_s - self.frames[0].clock_s if len(self.frames) > 1 else 0.0

    def readable(self) -> str:
        """One line: how much of the session could be read."""
        if not self.frames:
            return "no frames are readable"
        return (f"{len(self.frames)} frames ({self.duration_s:.2f} s, frames {self.frames[0].frame.index}"
                f"..{self.frames[-1].frame.index}) are readable; bytes 0..{self.bytes_read} of {self.file_bytes}")


class _Counting:
    """A file wrapper that knows how far the reader got."""

    def __init__(self, fh: Any) -> None:
        self.fh = fh
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        b = self.fh.read(n)
        self.pos += len(b)
        return b


def read_recording(path: str | Path) -> Recording:
    """Read ``path`` (a ``.mcap`` or a ``.partial`` one). Raises :class:`RecordingError` when not
    even the session header is readable; otherwise returns what was readable, with ``damage`` set
    when the file is cut short or damaged."""
    path = Path(path)
    if not path.is_file():
        raise RecordingError(f"{path}: no such recording")
    size = path.stat().st_size
    channels: dict[int, str] = {}
    rec: Recording | None = None
    pending: list[tuple[str, Message]] = []
    decoder = FrameDecoder()
    good = 0
    damage: str | None = None
    closed = False
    with open(path, "rb") as fh:
        src = _Counting(fh)
        reader = StreamReader(src, emit_chunks=True, validate_crcs=True, record_size_limit=max(size, 1024))  # type: ignore[arg-type]
        try:
            for record in reader.records:
                batch = breakup_chunk(record, validate_crc=True) if isinstance(record, Chunk) else [record]
                for r in batch:
                    if isinstance(r, Channel):
                        channels[r.id] = r.topic
                    elif isinstance(r, Message):
                        pending.append((channels.get(r.channel_id, "?"), r))
                    elif isinstance(r, Footer):
                        closed = True
                for topic, m in pending:  # a chunk is used whole or not at all
                    rec = _apply(rec, path, topic, m, decoder)
                pending.clear()
                good = src.pos
        except RecordingError:
            raise
        except Exception as e:  # noqa: BLE001 - whatever a cut or damaged file raises (mcap, zstd, struct, json)
            if isinstance(e, (EndOfFile, EOFError)) or src.pos >= size:  # ran into the end of the file
                damage = _cut(path, good, size)
            else:
                what = str(e) or type(e).__name__
                damage = f"{path} is damaged after byte {good} of {size} ({type(e).__name__}: {what})"
    if rec is None:
        raise RecordingError(f"{path}: not a readable vr-trainer recording"
                             + (f": {damage}" if damage else " (no /session message)"))
    rec.closed, rec.damage, rec.bytes_read, rec.file_bytes = closed, damage, good, size
    if damage is None and not closed:
        rec.damage = _cut(path, good, size)
    return rec


def _cut(path: Path, good: int, size: int) -> str:
    if good == size:
        return (f"{path} ends without its closing records at byte {size}: the recording was not closed "
                "(the program was killed or crashed)")
    return (f"{path} is cut short: bytes {good}..{size} are an incomplete record (the file was truncated "
            "or the program was killed while writing)")


def _apply(rec: Recording | None, path: Path, topic: str, m: Message, decoder: FrameDecoder) -> Recording:
    if topic == "/session":
        session = json.loads(m.data)
        if session.get("format") != FORMAT:
            raise RecordingError(f"{path}: an MCAP file, but not a vr-trainer session (format {session.get('format')})")
        return Recording(path, session)
    if rec is None:
        raise RecordingError(f"{path}: the /session message is missing before the first {topic} message")
    if topic == "/frame":
        rec.frames.append(decoder.decode(m.data))
    elif topic == "/inbox":
        d = json.loads(m.data)
        rec.inbox[int(d["frame"])] = d
    elif topic == "/notices":
        rec.notices.append(json.loads(m.data))
    elif topic == "/metrics":
        rec.metrics.append(json.loads(m.data))
    elif topic == "/images":
        rec.images.append(json.loads(m.data))
    elif topic == "/summary":
        rec.summary = json.loads(m.data)
    return rec


def read_for(path: str | Path, partial: bool, use: str, partial_note: str) -> tuple[Recording, list[str]]:
    """Read a recording to ``use`` it ("replay", "report"): a damaged or cut-short file raises
    :class:`RecordingError` saying how much is readable, unless ``partial`` (then a warning ending
    in ``partial_note``)."""
    rec = read_recording(path)
    warnings: list[str] = []
    if rec.damage is not None:
        if not partial:
            raise RecordingError(f"{rec.damage}; {rec.readable()}. Pass --partial to {use} the readable part.")
        warnings.append(f"{rec.damage}; {rec.readable()}; {partial_note}")
    return rec, warnings
