"""Fan-out through a real Janus VideoRoom and a real coturn (Debian's packages), started
with `vr-trainer mentor stack up` inside a network namespace; the aiortc publisher and
subscribers run as processes in a second namespace joined to it by a veth pair, so all
traffic crosses a real interface (Janus ignores loopback for ICE).

One publisher (one encode), nine subscribers: six direct, one that vanishes midway, two
relay-only (iceTransportPolicy relay: media through coturn). Every subscriber reads the
frame id stamped in each picture, so "advancing video" means ids that keep going up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from netns import NamespacePair, PeerProcess, janus_stack_missing
from remote_helpers import need

HERE = Path(__file__).resolve().parent
PEER_SCRIPT = HERE / "janus_peer_process.py"
VR_TRAINER = [sys.executable, "-m", "vr_trainer"]

pytestmark = pytest.mark.timeout(120)


def _needs() -> None:
    why = janus_stack_missing()
    need(why is None, str(why))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Namespaces + `vr-trainer mentor stack up` in the SFU namespace; torn down even on failure."""
    _needs()
    d = tmp_path_factory.mktemp("janus-stack")
    nets = NamespacePair()
    try:
        nets.open()
        t0 = time.monotonic()
        up = subprocess.run(nets.exec_argv(nets.sfu, *VR_TRAINER, "mentor", "stack", "up", "--dir", str(d),
                                           "--bind", nets.sfu_ip, "--media-ip", nets.sfu_ip),
                            capture_output=True, text=True, timeout=40, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        up_s = time.monotonic() - t0
        assert up.returncode == 0, f"stack up failed: {up.stdout}\n{up.stderr}"
        info = json.loads((d / "stack.json").read_text())
        yield {"dir": d, "nets": nets, "info": info, "up_stdout": up.stdout, "up_s": up_s}
    finally:
        try:
            subprocess.run([*VR_TRAINER, "mentor", "stack", "down", "--dir", str(d)], capture_output=True,
                           timeout=20)
        finally:
            nets.close()


def test_stack_up_prints_where_and_runs_only_what_is_needed(stack: dict[str, Any]) -> None:
    info, d, nets = stack["info"], stack["dir"], stack["nets"]
    out = stack["up_stdout"]
    ws_port = int(info["janus_ws"].rsplit(":", 1)[1])
    assert info["janus_ws"] in out and info["turn_url"] in out and str(d) in out
    assert info["janus_ws"].startswith(f"ws://{nets.sfu_ip}:")
    for name in ("janus", "turnserver"):
        pid = int((d / f"{name}.pid").read_text())
        assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(name.encode())
    assert os.listdir(d / "janus" / "plugins") == ["libjanus_videoroom.so"]
    assert os.listdir(d / "janus" / "transports") == ["libjanus_websockets.so"]
    log = (d / "logs" / "janus.log").read_text()
    assert "VideoRoom plugin initialized" in log and "WebSockets transport plugin initialized" in log
    assert [line for line in log.splitlines() if "server started" in line] == \
        [line for line in log.splitlines() if f"Websockets server started (port {ws_port})" in line], \
        "Janus started a server besides its one WebSocket API (admin API?)"
    assert (d / "stack.json").stat().st_mode & 0o077 == 0
    # nothing listens anywhere but on the namespace's own address; Janus only on its API port
    ss = subprocess.run(nets.exec_argv(nets.sfu, "ss", "-H", "-lntup"), capture_output=True, text=True,
                        timeout=10).stdout.splitlines()
    listening = [(row.split()[0], row.split()[4], row.split()[-1]) for row in ss if row.strip()]
    assert listening and all(addr.startswith(f"{nets.sfu_ip}:") for _, addr, _ in listening), listening
    assert {addr for net, addr, who in listening if net == "tcp" and '"janus"' in who} == \
        {f"{nets.sfu_ip}:{ws_port}"}, listening


def test_janus_refuses_what_lacks_the_generated_secrets(stack: dict[str, Any], tmp_path: Path) -> None:
    nets, d, info = stack["nets"], stack["dir"], stack["info"]
    probe = PeerProcess(nets.exec_argv(nets.peer, sys.executable, str(PEER_SCRIPT), "probe", str(d / "stack.json")),
                        tmp_path / "probe.err")
    try:
        got = probe.wait_for(lambda: probe.last("probe"), 20, "probe answered")
    finally:
        probe.stop()
    assert "Unauthorized" in got["no_secret"] and "code 403" in got["no_secret"], got
    assert "code 433" in got["wrong_pin"] and "pin" in got["wrong_pin"].lower(), got  # 433: unauthorized
    assert "refused create" in got["create"] and "admin_key" in got["create"], got  # rooms need the admin key
    assert "code 433" in got["destroy"], got  # the room needs its generated secret
    assert info["room"] not in got["listed"], got  # private: not listed


def test_one_publisher_nine_subscribers_drop_and_relay(stack: dict[str, Any], tmp_path: Path) -> None:
    nets, d, info = stack["nets"], stack["dir"], stack["info"]
    sj = str(d / "stack.json")
    py = [sys.executable, str(PEER_SCRIPT)]
    peers: list[PeerProcess] = []

    def start(name: str, *args: str) -> PeerProcess:
        p = PeerProcess(nets.exec_argv(nets.peer, *py, *args, "--seconds", "80"), tmp_path / f"{name}.err")
        peers.append(p)
        return p

    try:
        t0 = time.monotonic()
        pub = start("publisher", "publish", sj)
        published = pub.wait_for(lambda: pub.last("published"), 20, "publisher joined and webrtcup")
        feed = str(published["feed"])
        direct = start("direct", "subscribe", sj, feed, "--count", "6")
        dropper = start("dropper", "subscribe", sj, feed, "--count", "1")
        relay = start("relay", "subscribe", sj, feed, "--count", "2", "--relay")
        groups = {"direct": direct, "dropper": dropper, "relay": relay}
        for name, g in groups.items():
            g.wait_for(partial(g.last, "subscribed"), 30, f"{name} subscribed")
        subscribed_s = time.monotonic() - t0

        def all_moving(min_frames: int, min_distinct: int) -> dict[str, dict[str, Any]] | None:
            snap = {n: g.last("status") for n, g in groups.items()}
            if any(s is None for s in snap.values()):
                return None
            ok = all(f >= min_frames and k >= min_distinct for s in snap.values() if s
                     for f, k in zip(s["frames"], s["distinct"]))
            return snap if ok else None  # type: ignore[return-value]

        first = direct.wait_for(lambda: all_moving(20, 15), 30, "all nine subscribers receive advancing video")
        first_s = time.monotonic() - t0

        os.kill(dropper.proc.pid, signal.SIGKILL)  # a subscriber vanishes without a goodbye
        dropper.proc.wait(5)
        time.sleep(3.0)
        later: dict[str, dict[str, Any]] = {}
        for n in ("direct", "relay"):
            s = groups[n].last("status")
            assert s is not None
            later[n] = s
            for k, (f0, f1) in enumerate(zip(first[n]["frames"], s["frames"])):
                assert f1 - f0 >= 15, f"{n}[{k}] got {f1 - f0} frames in the 3 s after a subscriber dropped"
            for k, (i0, i1) in enumerate(zip(first[n]["last_ids"], s["last_ids"])):
                assert i0 is not None and i1 is not None and i1 - i0 >= 15, \
                    f"{n}[{k}]: frame ids {i0} -> {i1}: the picture stopped advancing"
            assert not any(s["ended"])
            assert min(s["keepalives"]) >= 3 and not any(s["keepalive_errors"]), s  # Janus acks our keepalives
        for pairs in later["relay"]["pairs"]:
            assert pairs and all(local == "relay" for local, _ in pairs), f"relay-only subscriber used {pairs}"
        for pairs in later["direct"]["pairs"]:
            assert pairs and all(local == "host" for local, _ in pairs), pairs
        sent = pub.last("status")
        ids = [i for s in later.values() for i in s["last_ids"]]
        assert sent is not None
        assert sent["sent"] - 45 < min(ids) <= max(ids) < sent["sent"] + 30, \
            f"subscribers are not watching live: publisher at frame {sent['sent']}, subscribers at {ids}"
        turn_log = (d / "logs" / "turnserver.log").read_text()
        assert "ALLOCATE processed, success" in turn_log, "coturn never granted a relay allocation"
        frames = [f for s in later.values() if s for f in s["frames"]]
        print(f"\nfan-out: stack up {stack['up_s']:.2f} s (servers answering after {info['started_s']:.2f} s); "
              f"publisher + 9 subscribers subscribed at {subscribed_s:.1f} s, all moving at {first_s:.1f} s; "
              f"after the drop 8 subscribers at {min(frames)}-{max(frames)} frames; publisher sent {sent['sent']}")
    finally:
        for p in peers:
            p.stop()


def test_stack_down_stops_both_and_forgets_them(stack: dict[str, Any]) -> None:
    d = stack["dir"]
    pids = [int((d / f"{name}.pid").read_text()) for name in ("janus", "turnserver")]
    down = subprocess.run([*VR_TRAINER, "mentor", "stack", "down", "--dir", str(d)], capture_output=True, text=True,
                          timeout=20)
    assert down.returncode == 0 and "stopped janus" in down.stdout, down.stdout + down.stderr
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]
    assert not (d / "janus.pid").exists() and not (d / "stack.json").exists()
    again = subprocess.run([*VR_TRAINER, "mentor", "stack", "down", "--dir", str(d)], capture_output=True, text=True,
                           timeout=20)
    assert again.returncode == 0 and "no stack was running" in again.stdout
