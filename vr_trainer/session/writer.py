"""The recorder's writer: a thread that owns the MCAP file, fed through a bounded queue.

The frame loop only enqueues (``put_nowait``: never blocks a frame; when the queue is full the
item is dropped and counted, and the count goes into the summary). The thread encodes, writes
and finishes a chunk at least every ``flush_interval_s`` (0.5 s), so a process killed with
SIGKILL loses at most that plus what was queued. The file is written as ``NAME.partial`` and
renamed to ``NAME`` when the recording is closed; a reader accepts a ``.partial`` file and
reads what is complete.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

from mcap.writer import CompressionType, Writer

from vr_trainer.frame import Frame
from vr_trainer.session.format import FORMAT, FORMAT_VERSION, FRAME_SCHEMA, IMAGE_SCHEMA, FrameEncoder, json_bytes

log = logging.getLogger("vr_trainer.session.writer")
QUEUE_ITEMS = 8192  # 90 s of frames at 90 Hz: the writer would have to stall that long to drop one
FLUSH_INTERVAL_S = 0.5
FRAME_SCHEMA_TEXT = (b"little-endian: <IBBBBH header (index, flags 1 key/2 render/4 focused, active hand, views, "
                     b"hands, keys length), 2 float64 (clock s, display time s), float32 per view 12 pose + 4 fov, "
                     b"per hand 12 pose + trigger + grip (XOR-ed with the previous frame unless a key frame), "
                     b"per view <BHH (eye, width, height), per hand 1 byte (tracked, primary, secondary), keys JSON")

IMAGE_SCHEMA_TEXT = (b'{"type":"object","properties":{"timestamp":{"type":"object",'
                     b'"properties":{"sec":{"type":"integer"},"nsec":{"type":"integer"}}},"frame_id":{"type":"string"},"format":{"type":"string"},'
                     b'"data":{"type":"string","contentEncoding":"base64"}}}')


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


class SessionWriter:
    """Writes one session to ``path`` (via ``path.partial``); ``session`` is the ``/session`` message."""

    def __init__(self, path: str | os.PathLike[str], session: dict[str, Any], start_unix_s: float | None = None,
                 flush_interval_s: float = FLUSH_INTERVAL_S, queue_items: int = QUEUE_ITEMS) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.partial = partial_path(self.path)
        self.flush_interval_s = flush_interval_s
        self.dropped = 0
        self.frames = 0
        self.error: str | None = None
        self.bytes_written = 0
        self._start_ns = int((time.time() if start_unix_s is None else start_unix_s) * 1e9)
        self._clock0: float | None = None
        self._last_s = 0.0
        self._q: queue.Queue[tuple[str, float, Any] | None] = queue.Queue(maxsize=queue_items)
        self._fh = open(self.partial, "wb")
        self._mcap = Writer(self._fh, chunk_size=64 << 20, compression=CompressionType.ZSTD, enable_data_crcs=True)
        self._mcap.start(profile="", library=f"{FORMAT} {FORMAT_VERSION}")
        json_schema = self._mcap.register_schema("json", "jsonschema", b"{}")
        frame_schema = self._mcap.register_schema(FRAME_SCHEMA, "vr_trainer", FRAME_SCHEMA_TEXT)
        self._ch = {t: self._mcap.register_channel(t, "json", json_schema)
                    for t in ("/session", "/inbox", "/notices", "/metrics", "/audio", "/summary")}
        self._ch["/frame"] = self._mcap.register_channel("/frame", "vr_trainer", frame_schema)
        image_schema = self._mcap.register_schema(IMAGE_SCHEMA, "jsonschema", IMAGE_SCHEMA_TEXT)
        self._ch["/images"] = self._mcap.register_channel("/images", "json", image_schema)
        self._seq = 0
        self._encoder = FrameEncoder()
        self._write("/session", 0, json_bytes(session))
        self._mcap.flush()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="session-writer", daemon=True)
        self._thread.start()

    # ---- the frame loop's side: never blocks ----------------------------------------------
    def _put(self, item: tuple[str, float, Any]) -> None:
        try:
            self._q.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def frame(self, clock_s: float, frame: Frame) -> None:
        """Record one frame (the loop's clock value this frame, the frame it ran)."""
        if self._clock0 is None:
            self._clock0 = clock_s
        self._last_s = clock_s
        self._put(("/frame", clock_s, frame))

    def message(self, topic: str, clock_s: float, payload: Any) -> None:
        """Record a JSON-ready ``payload`` on ``topic`` (``/inbox``, ``/notices``, ``/metrics``,
        ``/images``, ``/audio``)."""
        self._put((topic, clock_s, payload))

    # ---- the writer thread ---------------------------------------------------------------
    def _log_ns(self, clock_s: float) -> int:
        rel = clock_s - self._clock0 if self._clock0 is not None else 0.0
        return self._start_ns + max(0, int(round(rel * 1e9)))

    def _write(self, topic: str, log_ns: int, data: bytes) -> None:
        self._mcap.add_message(self._ch[topic], log_time=log_ns, data=data, publish_time=log_ns, sequence=self._seq)
        self._seq += 1

    def _run(self) -> None:
        last_flush = time.monotonic()
        while True:
            timeout = max(0.0, last_flush + self.flush_interval_s - time.monotonic())
            try:
                item = self._q.get(timeout=timeout)
            except queue.Empty:
                item = ()  # type: ignore[assignment] # time to flush
            if item is None:
                return
            if item and self.error is None:
                topic, clock_s, payload = item
                try:
                    if topic == "/frame":
                        self._write(topic, self._log_ns(clock_s), self._encoder.encode(clock_s, payload))
                        self.frames += 1
                    else:
                        self._write(topic, self._log_ns(clock_s), json_bytes(payload))
                except Exception as e:  # noqa: BLE001 - a full disk must not stop the session
                    self.error = f"recording stopped: {e}"
                    log.error("%s (%s)", self.error, self.partial)
            if time.monotonic() - last_flush >= self.flush_interval_s:
                self._flush()
                last_flush = time.monotonic()

    def _flush(self) -> None:
        if self.error is not None:
            return
        try:
            self._mcap.flush()  # ends the chunk: everything so far is on disk (the OS has it)
            self._encoder.key_next()  # each chunk starts with a key frame
        except Exception as e:  # noqa: BLE001
            self.error = f"recording stopped: {e}"
            log.error("%s (%s)", self.error, self.partial)

    def close(self, summary: dict[str, Any] | None = None) -> Path:
        """Write ``summary`` (``/summary``), finish the file and rename it to ``path``; returns the path
        (the ``.partial`` one when writing failed). Safe to call twice."""
        if self._closed:
            return self.path if self.error is None else self.partial
        self._closed = True
        self._q.put(None)  # blocks only here, at the end of the session
        self._thread.join()
        try:
            if self.error is None:
                if summary is not None:
                    self._write("/summary", self._log_ns(self._last_clock()), json_bytes(summary))
                self._mcap.finish()
        except Exception as e:  # noqa: BLE001
            self.error = f"recording not finished: {e}"
        finally:
            self._fh.close()
        self.bytes_written = self.partial.stat().st_size
        if self.error is not None:
            return self.partial
        os.replace(self.partial, self.path)
        return self.path

    def _last_clock(self) -> float:
        return self._last_s
