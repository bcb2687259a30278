"""Two network namespaces joined by a veth pair, for tests of servers that ignore loopback
(Janus never offers loopback ICE candidates). Needs root and iproute2.

``sfu`` gets 10.77.N.1/24 and ``peer`` 10.77.N.2/24 (N from the pid, so parallel runs do
not collide). :meth:`close` kills whatever still runs in either namespace and deletes
both (which deletes the veth pair); it is safe to call after a partial set-up.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=check)


def can_make_namespaces() -> str | None:
    """None when this process can make namespaces, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is missing (apt-get install iproute2)"
    return None


class NamespacePair:
    def __init__(self) -> None:
        n = os.getpid() % 200 + 20
        tag = f"{os.getpid() % 100000}"
        self.sfu, self.peer = f"vrt{tag}s", f"vrt{tag}p"
        self.sfu_ip, self.peer_ip = f"10.77.{n}.1", f"10.77.{n}.2"
        self._made: list[str] = []

    def open(self) -> NamespacePair:
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

    def pids(self, ns: str) -> list[int]:
        out = ip("netns", "pids", ns, check=False).stdout
        return [int(p) for p in out.split()]

    def close(self) -> None:
        for ns in self._made:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                pids = self.pids(ns)
                for pid in pids:
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
                deadline = time.monotonic() + 3.0
                while pids and self.pids(ns) and time.monotonic() < deadline:
                    time.sleep(0.05)
        for ns in reversed(self._made):
            ip("netns", "del", ns, check=False)
        self._made.clear()

    def __enter__(self) -> NamespacePair:
        try:
            return self.open()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()
