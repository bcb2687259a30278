"""The tests' side of :mod:`remote.netns` (namespace pairs, also used by `vr-trainer bench
fanout`): :class:`PeerProcess`, a peer script run in a namespace."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from remote.netns import (  # noqa: F401 - re-exported for the tests
    NamespacePair,
    can_make_namespaces,
    delete_namespace,
    ip,
    janus_stack_missing,
    namespace_pids,
    remove_stale_pairs,
)


class PeerProcess:
    """A peer script under `ip netns exec`; its JSON lines are collected by a thread."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.log = log
        self._err = open(log, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err)
        self.lines: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            with self._lock:
                self.lines.append(msg)

    def last(self, event: str) -> dict[str, Any] | None:
        with self._lock:
            for m in reversed(self.lines):
                if m.get("event") == event:
                    return m
        return None

    def wait_for(self, pred: Callable[[], Any], timeout_s: float, what: str) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            err = self.last("error")
            if err is not None:
                raise AssertionError(f"{what}: peer failed: {err['error']} (log {self.log})")
            got = pred()
            if got:
                return got
            if self.proc.poll() is not None:
                raise AssertionError(f"{what}: peer exited ({self.proc.returncode}); stderr: "
                                     f"{self.log.read_text()[-2000:]}")
            time.sleep(0.1)
        raise AssertionError(f"{what}: not within {timeout_s:.0f} s; last status {self.last('status')}; "
                             f"stderr: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
        self._err.close()
