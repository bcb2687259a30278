"""Two network namespaces joined by a veth pair, for tests of servers that ignore loopback
(Janus never offers loopback ICE candidates). Needs root and iproute2.

``sfu`` gets 10.77.N.1/24 and ``peer`` 10.77.N.2/24; the names carry the test process's
pid, so parallel runs do not collide, and :meth:`open` first removes pairs left by a run
that was killed (its pid gone). :meth:`close` kills whatever still runs in either
namespace and deletes both (which deletes the veth pair); it is safe after a partial set-up.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=check)


def can_make_namespaces() -> str | None:
    """None when this process can make namespaces, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is missing (apt-get install iproute2)"
    return None


def janus_stack_missing() -> str | None:
    """None when namespaces can be made and Debian's janus and coturn are installed, else why not."""
    why = can_make_namespaces()
    if why is None and shutil.which("janus") is None:
        why = "Debian's janus package (scripts/setup.sh test installs it)"
    if why is None and shutil.which("turnserver") is None:
        why = "Debian's coturn package (scripts/setup.sh test installs it)"
    return why


def namespace_pids(ns: str) -> list[int]:
    out = ip("netns", "pids", ns, check=False).stdout
    return [int(p) for p in out.split()]


def delete_namespace(ns: str) -> None:
    """Stop the processes in ``ns`` (TERM, then KILL), then delete it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = namespace_pids(ns)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 3.0
        while pids and namespace_pids(ns) and time.monotonic() < deadline:
            time.sleep(0.05)
    ip("netns", "del", ns, check=False)


def remove_stale_pairs() -> None:
    """Delete pairs made by test processes that no longer run (a killed run skips close)."""
    for line in ip("netns", "list", check=False).stdout.splitlines():
        m = re.fullmatch(r"vrt(\d+)[sp]", line.split(" ")[0])
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            delete_namespace(m.group(0))


class NamespacePair:
    def __init__(self) -> None:
        n = os.getpid() % 200 + 20  # namespaces are isolated: equal subnets in two pairs do not clash
        self.sfu, self.peer = f"vrt{os.getpid()}s", f"vrt{os.getpid()}p"  # veth "vrt<pid>s0": <= 15 chars
        self.sfu_ip, self.peer_ip = f"10.77.{n}.1", f"10.77.{n}.2"
        self._made: list[str] = []

    def open(self) -> NamespacePair:
        remove_stale_pairs()
        veth_s, veth_p = f"{self.sfu}0", f"{self.peer}0"
        for ns in (self.sfu, self.peer):
            ip("netns", "add", ns)
            self._made.append(ns)
        ip("link", "add", veth_s, "type", "veth", "peer", "name", veth_p)
        for ns, dev, addr in ((self.sfu, veth_s, self.sfu_ip), (self.peer, veth_p, self.peer_ip)):
            ip("link", "set", dev, "netns", ns)
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        return self

    def exec_argv(self, ns: str, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *argv]

    def close(self) -> None:
        for ns in reversed(self._made):
            delete_namespace(ns)
        self._made.clear()

    def __enter__(self) -> NamespacePair:
        try:
            return self.open()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()


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
