"""Contracts between the frame loop (GL thread) and anything outside it.

Render -> network: the loop hands each mirror frame to every :class:`FrameSink`
(``publish`` must return at once; sinks keep a single latest-frame slot).
Network -> render: every :class:`Inbox` is drained once per frame in phase 2;
``drain`` returns the messages that arrived since the last call and never blocks.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from vr_trainer.frame import MirrorFrame


class FrameSink(Protocol):
    """Receives mirror frames; must not block."""

    wants_depth: bool

    def publish(self, frame: MirrorFrame) -> None: ...


class Inbox(Protocol):
    def drain(self) -> list[Any]: ...


class LatestSlot:
    """A single latest-value slot shared between threads; writers overwrite."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: Any = None
        self._version = 0
        self._event = threading.Event()

    def put(self, value: Any) -> None:
        with self._lock:
            self._value = value
            self._version += 1
        self._event.set()

    def get(self) -> tuple[int, Any]:
        with self._lock:
            return self._version, self._value


@dataclass
class ThreadSafeInbox:
    """A bounded multi-producer inbox drained by the frame loop.

    When full, the oldest messages are dropped (and counted) rather than
    growing without bound or blocking a producer."""

    maxlen: int = 4096
    dropped: int = 0
    _q: deque = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, message: Any) -> None:
        with self._lock:
            if len(self._q) >= self.maxlen:
                self._q.popleft()
                self.dropped += 1
            self._q.append(message)

    def drain(self) -> list[Any]:
        with self._lock:
            items = list(self._q)
            self._q.clear()
        return items
