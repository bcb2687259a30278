"""Read a recording back, complete or not: a file cut short (the program was killed) or damaged
(bytes changed on disk) yields the part before the damage and a message that says where the
damage is and how much was readable.

Two ways to read, one parser:

- :class:`RecordingStream` reads as it is iterated: the ``/session`` header on opening, then one
  message at a time (a frame is decoded when it is reached and dropped when the caller lets go of
  it), so memory stays that of one chunk (0.5 s of the session) however long the session is. The
  damage, if any, is known once the iteration has ended (``stream.recording.damage``).
- :func:`read_recording` holds the whole recording (``Recording.frames``), for callers that need
  random access to the frames. With ``frames=False`` it keeps everything but the frames (their count,
  first and last index and clock value are kept in ``Recording.span``): what reports and the
  cohort index need, at a fraction of the memory and time; :meth:`Recording.iter_frames` then
  streams the frames from the file again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Generator, Iterator

from mcap.exceptions import EndOfFile
from mcap.opcode import Opcode
from mcap.records import Channel, Chunk, Footer, McapRecord, Message
from mcap.stream_reader import StreamReader, get_chunk_data_stream

from vr_trainer.session.format import FORMAT, FrameClockDecoder, FrameDecoder, RecordedFrame


class RecordingError(ValueError):
    """A recording cannot be used at all; the message names the file and what is wrong."""


@dataclass
class FrameSpan:
    """Which frames were read: how many, and the first and last one's index and clock value (s)."""

    count: int = 0
    first_index: int = 0
    last_index: int = 0
    first_clock_s: float = 0.0
    last_clock_s: float = 0.0

    def add(self, index: int, clock_s: float) -> None:
        if self.count == 0:
            self.first_index, self.first_clock_s = index, clock_s
        self.count += 1
        self.last_index, self.last_clock_s = index, clock_s

    @property
    def duration_s(self) -> float:
        return self.last_clock_s - self.first_clock_s if self.count > 1 else 0.0

    def readable(self, bytes_read: int, file_bytes: int) -> str:
        """One line: how much of the session could be read."""
        if not self.count:
            return "no frames are readable"
        return (f"{self.count} frames ({self.duration_s:.2f} s, frames {self.first_index}..{self.last_index}) "
                f"are readable; bytes 0..{bytes_read} of {file_bytes}")


@dataclass
class Recording:
    """What a recording holds. ``damage`` is None for a complete, closed file; otherwise it says
    why reading stopped and what was readable (the lists hold that readable part). ``frames`` is
    empty when read with ``frames=False`` (``frames_kept`` False; ``span`` still counts them)."""

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
    span: FrameSpan = field(default_factory=FrameSpan)  # the frames read, kept or not
    frames_kept: bool = True

    @property
    def complete(self) -> bool:
        return self.closed and self.damage is None

    def _span(self) -> FrameSpan:
        if not self.frames_kept:
            return self.span
        if not self.frames:
            return FrameSpan()
        a, b = self.frames[0], self.frames[-1]
        return FrameSpan(len(self.frames), a.frame.index, b.frame.index, a.clock_s, b.clock_s)

    @property
    def frame_count(self) -> int:
        return self._span().count

    @property
    def duration_s(self) -> float:
        """Clock seconds from the first to the last readable frame."""
        return self._span().duration_s

    def readable(self) -> str:
        """One line: how much of the session could be read."""
        return self._span().readable(self.bytes_read, self.file_bytes)

    def iter_frames(self) -> Generator[RecordedFrame, None, None]:
        """The readable frames in order: the kept ones, or (``frames_kept`` False) streamed from the
        file again, as many as the first reading found. Raises :class:`RecordingError` when the file
        is no longer the recording that was read."""
        if self.frames_kept:
            yield from self.frames
            return
        with RecordingStream(self.path) as s:
            if s.recording.session != self.session:
                raise RecordingError(f"{self.path} changed while it was being read (another session header)")
            yield from s.frames(limit=self.span.count)


class _Counting:
    """A file wrapper that knows how far the reader got."""

    def __init__(self, fh: Any) -> None:
        self.fh = fh
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        b = self.fh.read(n)
        self.pos += len(b)
        return b


def _chunk_records(chunk: Chunk) -> Iterator[McapRecord]:
    """The channel and message records of ``chunk`` one by one (``mcap``'s ``breakup_chunk`` makes
    a list of them all), once the decompressed chunk's checksum is good."""
    data, length = get_chunk_data_stream(chunk, validate_crc=True)
    while data.count < length:
        opcode, n = data.read1(), data.read8()
        if opcode == Opcode.CHANNEL:
            yield Channel.read(data)
        elif opcode == Opcode.MESSAGE:
            yield Message.read(data, n)
        else:
            data.read(n)


class RecordingStream:
    """``path`` (a ``.mcap`` or a ``.partial`` one) read as it is iterated. Opening reads the
    ``/session`` header (raises :class:`RecordingError` when not even that is readable);
    :meth:`frames` then yields the frames one by one while the other channels (inbox, notices,
    metrics, images, summary; a few hundred small messages) are gathered into ``recording``, whose
    ``damage``, ``closed`` and byte counts are set once the iteration has ended. Iterate once.
    ``decode_frames=False`` yields no frames and only counts them (``recording.span``): the frames'
    index and clock value are read without building the frames.

        with RecordingStream(path) as stream:
            for rf in stream.frames():
                ...
        if stream.recording.damage: ...
    """

    def __init__(self, path: str | Path, decode_frames: bool = True) -> None:
        path = Path(path)
        if not path.is_file():
            raise RecordingError(f"{path}: no such recording")
        self.path = path
        self.decode_frames = decode_frames
        self.file_bytes = path.stat().st_size
        self.good = 0  # bytes up to the end of the last chunk read whole
        self.closed = False
        self.damage: str | None = None
        self.finished = False
        self._fh = open(path, "rb")
        try:
            self._items = self._decoded()
            session = self._header()
        except BaseException:
            self._fh.close()
            raise
        self.recording = Recording(path, session, frames_kept=False, file_bytes=self.file_bytes)

    def __enter__(self) -> RecordingStream:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._items.close()
        self._fh.close()

    def _header(self) -> dict[str, Any]:
        for topic, payload in self._items:
            if topic != "/session":
                raise RecordingError(f"{self.path}: the /session message is missing before the first {topic} message")
            fmt = payload.get("format") if isinstance(payload, dict) else None
            if fmt != FORMAT:
                raise RecordingError(f"{self.path}: an MCAP file, but not a vr-trainer session (format {fmt})")
            return payload
        raise RecordingError(f"{self.path}: not a readable vr-trainer recording"
                             + (f": {self.damage}" if self.damage else " (no /session message)"))

    def _decoded(self) -> Generator[tuple[str, Any], None, None]:
        """(topic, payload) of every readable message in order: a RecordedFrame (or, without
        ``decode_frames``, (index, clock_s)) for ``/frame``, the JSON for the others. Sets ``damage``
        where reading stopped early; a chunk's messages come only once its checksum is good."""
        size = self.file_bytes
        src = _Counting(self._fh)
        reader = StreamReader(src, emit_chunks=True, validate_crcs=True,  # type: ignore[arg-type]
                              record_size_limit=max(size, 1024))
        channels: dict[int, str] = {}
        decode = FrameDecoder().decode if self.decode_frames else FrameClockDecoder().decode
        try:
            for record in reader.records:
                for r in _chunk_records(record) if isinstance(record, Chunk) else (record,):
                    if isinstance(r, Channel):
                        channels[r.id] = r.topic
                    elif isinstance(r, Message):
                        topic = channels.get(r.channel_id, "?")
                        if topic == "/frame":
                            yield topic, decode(r.data)
                        elif topic != "/audio":
                            yield topic, json.loads(r.data)
                    elif isinstance(r, Footer):
                        self.closed = True
                self.good = src.pos
        except Exception as e:  # noqa: BLE001 - whatever a cut or damaged file raises (mcap, zstd, struct, json)
            if isinstance(e, (EndOfFile, EOFError)) or src.pos >= size:  # ran into the end of the file
                self.damage = _cut(self.path, self.good, size)
            else:
                what = str(e) or type(e).__name__
                self.damage = f"{self.path} is damaged after byte {self.good} of {size} ({type(e).__name__}: {what})"
        if self.damage is None and not self.closed:
            self.damage = _cut(self.path, self.good, size)

    def frames(self, limit: int | None = None) -> Iterator[RecordedFrame]:
        """The readable frames, one by one (none without ``decode_frames``: then they are only
        counted); at most ``limit``. The other channels go into ``recording`` on the way."""
        rec, span = self.recording, self.recording.span
        for topic, payload in self._items:
            if topic == "/frame":
                if limit is not None and span.count >= limit:
                    break
                if self.decode_frames:
                    span.add(payload.frame.index, payload.clock_s)
                    yield payload
                else:
                    span.add(*payload)
            elif topic == "/inbox":
                rec.inbox[int(payload["frame"])] = payload
            elif topic == "/notices":
                rec.notices.append(payload)
            elif topic == "/metrics":
                rec.metrics.append(payload)
            elif topic == "/images":
                rec.images.append(payload)
            elif topic == "/summary":
                rec.summary = payload
        else:
            self.finished = True
            rec.closed, rec.damage, rec.bytes_read = self.closed, self.damage, self.good

    def done(self) -> Recording:
        """The recording (all but the frames) once :meth:`frames` has been iterated to its end."""
        if not self.finished:
            for _ in self.frames():
                pass
        return self.recording


def read_recording(path: str | Path, frames: bool = True) -> Recording:
    """Read ``path`` (a ``.mcap`` or a ``.partial`` one). Raises :class:`RecordingError` when not
    even the session header is readable; otherwise returns what was readable, with ``damage`` set
    when the file is cut short or damaged. ``frames=False``: the frames are counted, not kept."""
    with RecordingStream(path, decode_frames=frames) as s:
        kept = list(s.frames())
        rec = s.done()
    if frames:
        rec.frames, rec.frames_kept = kept, True
    return rec


def iter_frames(path: str | Path, partial: bool = False, use: str = "read") -> Iterator[RecordedFrame]:
    """The frames of ``path`` one by one, as they are read. After the readable part of a damaged or
    cut-short file it raises :class:`RecordingError` saying where and how much was readable, unless
    ``partial`` (then it just ends)."""
    with RecordingStream(path) as s:
        yield from s.frames()
    if s.recording.damage is not None and not partial:
        raise RecordingError(_refusal(s.recording, use))


def _refusal(rec: Recording, use: str) -> str:
    return f"{rec.damage}; {rec.readable()}. Pass --partial to {use} the readable part."


def _cut(path: Path, good: int, size: int) -> str:
    if good == size:
        return (f"{path} ends without its closing records at byte {size}: the recording was not closed "
                "(the program was killed or crashed)")
    return (f"{path} is cut short: bytes {good}..{size} are an incomplete record (the file was truncated "
            "or the program was killed while writing)")


def read_for(path: str | Path, partial: bool, use: str, partial_note: str,
             frames: bool = True) -> tuple[Recording, list[str]]:
    """Read a recording to ``use`` it ("replay", "report"): a damaged or cut-short file raises
    :class:`RecordingError` saying how much is readable, unless ``partial`` (then a warning ending
    in ``partial_note``). ``frames=False``: the frames are counted, not kept
    (:meth:`Recording.iter_frames` streams them)."""
    rec = read_recording(path, frames=frames)
    warnings: list[str] = []
    if rec.damage is not None:
        if not partial:
            raise RecordingError(_refusal(rec, use))
        warnings.append(f"{rec.damage}; {rec.readable()}; {partial_note}")
    return rec, warnings
