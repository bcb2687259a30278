"""`mentor serve --sfu janus`, started by `mentor stack up --serve` next to a real Janus and
coturn in one network namespace (TLS: beyond loopback the server needs it); the resident
(a TraineeBridge on a synthetic loop whose frames carry depth), experts, observers and
strangers run in a second namespace, as in test_fanout_janus.py.

The resident publishes once to the room the server hands it; viewers authenticated by
their JWT get a subscriber join and receive advancing video through Janus; an expert's
stroke reaches the resident over the server's WebSocket, an observer's is refused; a
client without a valid token learns nothing of Janus. Each session has its own private
room (made by the server on first use, destroyed when its last client leaves) whose
``allowed`` list holds only the trainee's publish token: an observer who tries to publish
is refused and the resident's video keeps flowing; a viewer of one session cannot join
another's room.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from netns import NamespacePair, PeerProcess, janus_stack_missing
from remote_helpers import need

from remote.tokens import TokenSigner

HERE = Path(__file__).resolve().parent
CLIENT = HERE / "mentor_sfu_process.py"
VR_TRAINER = [sys.executable, "-m", "vr_trainer"]
SESSION = "or-sfu"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def mentor_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Namespaces + `stack up --serve` (Janus, coturn, mentor server) in the SFU namespace."""
    why = janus_stack_missing()
    need(why is None, str(why))
    d = tmp_path_factory.mktemp("mentor-sfu")
    nets = NamespacePair()
    secret = secrets.token_bytes(32)
    (d / "secret").write_bytes(base64.urlsafe_b64encode(secret))
    try:
        nets.open()
        cert, key = d / "cert.pem", d / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "1", "-subj", f"/CN={nets.sfu_ip}", "-addext",
                        f"subjectAltName=IP:{nets.sfu_ip}", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True, timeout=20)
        stack_dir = d / "stack"
        t0 = time.monotonic()
        up = subprocess.run(nets.exec_argv(nets.sfu, *VR_TRAINER, "mentor", "stack", "up", "--dir", str(stack_dir),
                                           "--bind", nets.sfu_ip, "--media-ip", nets.sfu_ip, "--serve",
                                           "--tls-cert", str(cert), "--tls-key", str(key),
                                           "--secret-file", str(d / "secret")),
                            capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        up_s = time.monotonic() - t0
        assert up.returncode == 0, f"stack up --serve failed: {up.stdout}\n{up.stderr}"
        info = json.loads((stack_dir / "stack.json").read_text())
        yield {"dir": stack_dir, "nets": nets, "info": info, "signer": TokenSigner(secret), "cert": cert,
               "up_stdout": up.stdout, "up_s": up_s, "tmp": d}
    finally:
        try:
            subprocess.run([*VR_TRAINER, "mentor", "stack", "down", "--dir", str(d / "stack")], capture_output=True,
                           timeout=30)
        finally:
            nets.close()


def client(st: dict[str, Any], name: str, *args: str) -> PeerProcess:
    nets = st["nets"]
    argv = nets.exec_argv(nets.peer, "env", f"VR_TRAINER_MENTOR_CA={st['cert']}", sys.executable, str(CLIENT),
                          *args)
    return PeerProcess(argv, st["tmp"] / f"{name}.err")


class Peers:
    """The client processes a test starts (each for at most 60 s), stopped together."""

    def __init__(self, st: dict[str, Any]) -> None:
        self.st = st
        self.started: list[PeerProcess] = []

    def start(self, name: str, *args: str) -> PeerProcess:
        p = client(self.st, name, *args, "--seconds", "60")
        self.started.append(p)
        return p

    def stop(self) -> None:
        for p in self.started:
            p.stop()


def test_stack_up_serve_starts_the_mentor_server_in_sfu_mode(mentor_stack: dict[str, Any]) -> None:
    info, out = mentor_stack["info"], mentor_stack["up_stdout"]
    assert info["mentor_url"].startswith(f"https://{mentor_stack['nets'].sfu_ip}:"), info
    assert info["mentor_url"] in out and "--sfu janus" in out, out
    log = (mentor_stack["dir"] / "logs" / "mentor.out").read_text()
    assert f"its own private Janus room at {info['janus_ws']}" in log, log


def test_no_janus_details_without_a_valid_token(mentor_stack: dict[str, Any]) -> None:
    info, signer = mentor_stack["info"], mentor_stack["signer"]
    forged = TokenSigner(secrets.token_bytes(32)).issue(SESSION, "expert", "Mallory")
    expired = signer.issue(SESSION, "observer", "late", ttl_s=60, now_s=time.time() - 3600)
    k = client(mentor_stack, "knock", "knock", info["mentor_url"], forged, expired, "not-a-token")
    try:
        got = k.wait_for(lambda: k.last("knocked"), 30, "the server answered every knock")
    finally:
        k.stop()
    results = got["results"]
    assert len(results) == 4, results
    for r in results:
        text = "".join(r["answers"])
        assert r["answers"] and all(json.loads(a)["type"] == "error" for a in r["answers"]), r
        assert r["close_code"] in (4400, 4401), r
        for secret in (info["api_secret"], info["pin"], info["janus_ws"], info["room_secret"], info["admin_key"]):
            assert secret not in text, f"an unauthenticated client saw a Janus detail: {r}"


def test_resident_publishes_once_viewers_watch_through_janus_expert_annotates(mentor_stack: dict[str, Any]) -> None:
    info, signer, url = mentor_stack["info"], mentor_stack["signer"], mentor_stack["info"]["mentor_url"]
    peers = Peers(mentor_stack)
    start = peers.start

    try:
        t0 = time.monotonic()
        res = start("resident", "resident", url, signer.issue(SESSION, "trainee", "resident"))
        expert = start("expert", "viewer", url, signer.issue(SESSION, "expert", "Dr Li"), "--stroke")
        observer = start("observer", "viewer", url, signer.issue(SESSION, "observer", "student"), "--stroke")
        observer2 = start("observer2", "viewer", url, signer.issue(SESSION, "observer", "student 2"))
        viewers = {"expert": expert, "observer": observer, "observer2": observer2}
        published = res.wait_for(lambda: (s := res.last("status")) and s["feed"] and s, 30,
                                 "the resident published to the server's Janus room")
        welcomes = {n: v.wait_for(lambda v=v: v.last("welcome"), 20, f"{n} welcomed") for n, v in viewers.items()}
        for n, w in welcomes.items():
            assert w["ptype"] == "subscriber" and w["can_annotate"] == (n == "expert"), w
            assert "secret" not in " ".join(k for k in w["welcome_keys"] if k != "api_secret"), w  # no room secret
            assert [info["turn_url"]] in w["ice_urls"], w  # the stack's coturn, per-peer credentials
        subscribed = {n: v.wait_for(lambda v=v: v.last("subscribed"), 30, f"{n} subscribed") for n, v in
                      viewers.items()}

        def moving(v: PeerProcess, frames: int) -> dict[str, Any] | None:
            s = v.last("status")
            return s if s and s["frames"] >= frames and s["distinct"] >= frames - 5 else None

        first = {n: v.wait_for(lambda v=v: moving(v, 20), 30, f"{n} receives advancing video")
                 for n, v in viewers.items()}
        moving_s = time.monotonic() - t0

        def expert_stroke() -> Any:
            s = res.last("status")
            return s if s and any(k["author"] == "Dr Li" for k in s["strokes"]) else None

        got = res.wait_for(expert_stroke, 20, "the expert's stroke reached the resident")
        stroke = next(k for k in got["strokes"] if k["author"] == "Dr Li")
        assert stroke["id"] == "Dr Li/s1" and stroke["points"] >= 2, stroke
        assert not any(k["author"].startswith("student") for k in got["strokes"]), got["strokes"]

        def ack(v: PeerProcess, pred: Any) -> Any:
            s = v.last("status")
            return next((m for m in (s or {}).get("received", []) if pred(m)), None)

        ok = expert.wait_for(lambda: ack(expert, lambda m: m.get("type") == "mentor"
                                         and m["data"].get("type") == "ack" and m["data"].get("ref") == "s1"),
                             10, "the expert got the resident's ack")
        assert ok["data"]["ok"] is True, ok
        refused = observer.wait_for(lambda: ack(observer, lambda m: m.get("type") == "error"), 10,
                                    "the observer's stroke was refused")
        assert refused["code"] == "forbidden" and "observers" in refused["message"], refused
        time.sleep(2.0)
        final = res.last("status")
        assert final is not None and not any(k["author"].startswith("student") for k in final["strokes"])
        assert final["links"] == 0 and final["sfu"]["published"] == 1, final  # one publish, no peer per viewer
        for n, v in viewers.items():
            s = v.last("status")
            assert s is not None and s["frames"] - first[n]["frames"] >= 15, (n, first[n], s)
            assert s["last_id"] - first[n]["last_id"] >= 15, f"{n}: the picture stopped advancing"
            assert s["keepalives"] >= 1, s
        joins = {n: w["join_s"] for n, w in welcomes.items()}
        subs = {n: s["subscribe_s"] for n, s in subscribed.items()}
        print(f"\nmentor --sfu janus: stack up --serve {mentor_stack['up_s']:.2f} s; resident published in "
              f"{published['publish_s']} s; welcome {joins}; subscribed {subs}; all moving at {moving_s:.1f} s; "
              f"frames {[v.last('status')['frames'] for v in viewers.values()]}")  # type: ignore[index]
    finally:
        peers.stop()


def probe(st: dict[str, Any], *rooms: int) -> dict[int, bool]:
    """Whether each room exists in Janus (asked from the viewers' namespace)."""
    return probe_and_list(st, *rooms)[0]


def probe_and_list(st: dict[str, Any], *rooms: int, admin: bool = False) -> tuple[dict[int, bool], list[int]]:
    """Whether each room exists, and (``admin``: with the stack's admin key) the rooms Janus lists."""
    info = st["info"]
    p = client(st, "probe", "probe", info["janus_ws"], info["api_secret"], *map(str, rooms),
               *(("--admin-key", info["admin_key"]) if admin else ()))
    try:
        got = p.wait_for(lambda: p.last("probed"), 20, "Janus answered exists")
    finally:
        p.stop()
    return {int(k): v for k, v in got["exists"].items()}, list(got["listed"] or [])


def test_each_session_has_its_own_room_and_only_the_trainee_publishes(mentor_stack: dict[str, Any]) -> None:
    info, signer, url = mentor_stack["info"], mentor_stack["signer"], mentor_stack["info"]["mentor_url"]
    peers = Peers(mentor_stack)
    start = peers.start

    def moving(v: PeerProcess, frames: int) -> dict[str, Any] | None:
        s = v.last("status")
        return s if s and s["frames"] >= frames and s["distinct"] >= frames - 5 else None

    def refused_all(got: dict[str, Any], name: str, rooms: set[int]) -> None:
        for r in got["results"]:
            assert r["refused"], f"{name}: Janus let it {r['what']}: {r}"
        for r in got["results"][:3]:  # the room's allowed list: no publish without the trainee's token
            assert "not in the allowed list" in r["error"], (name, r)
        assert "433" in got["results"][3]["error"], (name, got["results"][3])  # the other room: wrong pin
        assert not rooms & set(got["listed"]), (name, got)  # private rooms are not listed

    try:
        t0 = time.monotonic()
        res = start("resident-a", "resident", url, signer.issue("or-a", "trainee", "resident A"))
        expert = start("expert-a", "viewer", url, signer.issue("or-a", "expert", "Dr Wu"))
        published = res.wait_for(lambda: (s := res.last("status")) and s["feed"] and s, 30, "resident A published")
        wa = expert.wait_for(lambda: expert.last("welcome"), 20, "expert A welcomed")
        room_a, feed_a = wa["room"], wa["feed"]
        expert.wait_for(lambda: moving(expert, 20), 30, "expert A receives video")
        # session B: nobody publishes; its observer tries to publish as B's feed and to join A's room
        intr_b = start("intruder-b", "intruder", url, signer.issue("or-b", "observer", "student B"),
                       "--other-room", str(room_a), "--other-feed", str(feed_a))
        wb = intr_b.wait_for(lambda: intr_b.last("welcome"), 20, "observer B welcomed")
        room_b = wb["room"]
        assert len({room_a, room_b, info["room"]}) == 3, (room_a, room_b)  # a room per session, not the stack's
        assert wb["ptype"] == "subscriber" and not wb["has_token"], wb
        got_b = intr_b.wait_for(lambda: intr_b.last("tried"), 40, "observer B's attempts answered")
        refused_all(got_b, "observer B", {room_a, room_b})
        # session A: while the resident publishes, its own observer tries the same
        before = expert.last("status")
        assert before is not None
        intr_a = start("intruder-a", "intruder", url, signer.issue("or-a", "observer", "student A"),
                       "--other-room", str(room_b), "--other-feed", str(wb["feed"]))
        got_a = intr_a.wait_for(lambda: intr_a.last("tried"), 40, "observer A's attempts answered")
        refused_all(got_a, "observer A", {room_a, room_b})
        assert (intr_a.last("welcome") or {}).get("room") == room_a
        after = expert.wait_for(lambda: moving(expert, before["frames"] + 15), 20,
                                "the resident's video keeps flowing to the expert")
        assert after["last_id"] - before["last_id"] >= 15, (before, after)
        st = res.last("status")
        assert st is not None and st["sfu"]["published"] == 1 and st["feed"] == feed_a, st  # never displaced
        assert probe(mentor_stack, room_a, room_b) == {room_a: True, room_b: True}
        intr_b.stop()  # session B's only client leaves: its room goes
        deadline = time.monotonic() + 10
        while (now := probe(mentor_stack, room_a, room_b)) != {room_a: True, room_b: False}:
            assert time.monotonic() < deadline, f"session B's room still there: {now}"
        for p in (intr_a, expert, res):
            p.stop()
        deadline = time.monotonic() + 10
        while probe(mentor_stack, room_a)[room_a]:
            assert time.monotonic() < deadline, "session A's room still there after it ended"
        print(f"\nper-session rooms: resident A published in {published['publish_s']} s (its room made on its "
              f"join); observer B welcomed in {wb['join_s']} s (room made first); Janus refused "
              f"{len(got_a['results']) + len(got_b['results'])} attempts; test {time.monotonic() - t0:.1f} s")
    finally:
        peers.stop()


RESTART = ("import sys; from pathlib import Path; from remote.server import ServerConfig; "
           "from remote.stack_mentor import start_mentor; a = sys.argv[1:]; "
           "print(start_mentor(Path(a[0]), ServerConfig(a[1], int(a[2]), a[3], a[4]), a[5])[1])")


def test_rooms_left_by_a_killed_server_are_destroyed_when_it_starts_again(mentor_stack: dict[str, Any]) -> None:
    """SIGKILL skips the server's clean-up, so its room stays in Janus; the next server on
    the stack destroys it (from the room ledger in the stack folder) before taking clients."""
    d, info, nets, st = mentor_stack["dir"], mentor_stack["info"], mentor_stack["nets"], mentor_stack
    peers = Peers(st)
    try:
        v = peers.start("orphaned", "viewer", info["mentor_url"], st["signer"].issue("or-killed", "observer", "s"))
        room = v.wait_for(lambda: v.last("welcome"), 20, "the observer welcomed")["room"]
        pid = int((d / "mentor.pid").read_text())
        ledger = list((d / "mentor-rooms").glob(f"{pid}-*.json"))
        assert len(ledger) == 1 and str(room) in json.loads(ledger[0].read_text())["rooms"], ledger
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]:
            assert time.monotonic() < deadline, "the server outlived SIGKILL"
            time.sleep(0.05)
    finally:
        peers.stop()
    exists, listed = probe_and_list(st, room, admin=True)
    assert exists == {room: True} and room in listed, (exists, listed)  # left behind by the killed server
    port = info["mentor_url"].rsplit(":", 1)[1]
    again = subprocess.run(nets.exec_argv(nets.sfu, sys.executable, "-c", RESTART, str(d), nets.sfu_ip, port,
                                          str(st["cert"]), str(st["tmp"] / "key.pem"), str(st["tmp"] / "secret")),
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr
    exists, listed = probe_and_list(st, room, admin=True)
    assert exists == {room: False} and room not in listed, (exists, listed)
    assert not ledger[0].exists(), "the killed server's ledger outlived its rooms"
    log = (d / "logs" / "mentor.out").read_text()
    assert "1 destroyed" in log, log[-2000:]


def test_stack_down_stops_the_mentor_server_too(mentor_stack: dict[str, Any]) -> None:
    d = mentor_stack["dir"]
    pid = int((d / "mentor.pid").read_text())
    down = subprocess.run([*VR_TRAINER, "mentor", "stack", "down", "--dir", str(d)], capture_output=True, text=True,
                          timeout=30)
    assert down.returncode == 0 and "mentor" in down.stdout and "janus" in down.stdout, down.stdout + down.stderr
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]
    assert not (d / "mentor.pid").exists()
