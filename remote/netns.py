"""Two network namespaces joined by a veth pair, for tests and benchmarks of servers that
ignore loopback (Janus never offers loopback ICE candidates). Needs root and iproute2.

``sfu`` gets 10.77.N.1/24 and ``peer`` 10.77.N.2/24; the names carry the creating process's
pid, so parallel runs do not collide, and :meth:`open` first removes pairs left by a run
that was killed (its pid gone). :meth:`close` kills whatever still runs in either
namespace and deletes both (which deletes the veth pair); it is safe after a partial set-up.
"""

from __future__ import annotations

import os
import re
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
