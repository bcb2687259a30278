"""`mentor serve --sfu janus` without Janus: what the server hands out in its welcome, and
the console messages it relays over the WebSocket with the sender's role checked
(tests/remote/test_mentor_sfu.py runs it with a real Janus)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from remote_helpers import run

from remote.errors import RemoteError
from remote.fanout import SessionRooms, SfuRoom, load_sfu_room
from remote.room_ledger import RoomLedger, process_start_ticks
from remote.server import ServerConfig, ServerThread
from remote.sfu_janus import JanusError

pytestmark = pytest.mark.timeout(60)
ROOM = SfuRoom("ws://10.77.9.1:8188", "api-secret-xyz", "admin-key-xyz", "turn:10.77.9.1:3478", "turn-secret")


@pytest.fixture
def fake_janus(monkeypatch: pytest.MonkeyPatch) -> dict[int, dict[str, Any]]:
    """The server's room requests answered in memory (test_mentor_sfu.py uses a real Janus)."""
    rooms: dict[int, dict[str, Any]] = {}

    async def admin(self: SessionRooms, body: dict[str, Any]) -> dict[str, Any]:
        if body["request"] == "create":
            assert body["admin_key"] == ROOM.admin_key and body["is_private"] and body["publishers"] == 1
            rooms[body["room"]] = body
            return {"videoroom": "created", "room": body["room"]}
        if body["request"] == "destroy":
            if body["room"] not in rooms:
                raise JanusError(f"VideoRoom refused destroy: No such room ({body['room']}) (code 426)")
            assert rooms.pop(body["room"])["secret"] == body["secret"]
            return {"videoroom": "destroyed"}
        return {"videoroom": "success", "exists": body["room"] in rooms}

    monkeypatch.setattr(SessionRooms, "_admin", admin)
    return rooms


async def join(http: aiohttp.ClientSession, url: str, token: str) -> tuple[aiohttp.ClientWebSocketResponse, Any]:
    ws = await http.ws_connect(url.replace("http", "ws", 1) + "/ws")
    await ws.send_str(json.dumps({"v": 1, "type": "join", "token": token}))
    return ws, json.loads((await ws.receive(timeout=5)).data)


async def next_of(ws: aiohttp.ClientWebSocketResponse, kind: str) -> Any:
    while True:
        msg = json.loads((await ws.receive(timeout=5)).data)
        if msg["type"] == kind:
            return msg


def test_welcome_hands_the_trainee_a_publisher_join_and_viewers_a_subscriber_join(
        signer: Any, fake_janus: dict[int, dict[str, Any]]) -> None:
    async def go() -> None:
        with ServerThread(signer, ServerConfig(port=0, sfu=ROOM)) as srv:
            async with aiohttp.ClientSession() as http:
                bws, bad = await join(http, srv.url, "garbage")
                assert bad["type"] == "error" and "api-secret" not in json.dumps(bad) and not fake_janus
                tws, tw = await join(http, srv.url, signer.issue("s1", "trainee", "resident"))
                ews, ew = await join(http, srv.url, signer.issue("s1", "expert", "Dr Li"))
                ows, ow = await join(http, srv.url, signer.issue("s1", "observer", "student"))
                o2ws, other = await join(http, srv.url, signer.issue("s2", "observer", "elsewhere"))
                made = fake_janus[tw["sfu"]["room"]]  # the session's own room, made on the first join
                assert tw["sfu"] == {"kind": "janus", "url": ROOM.janus_ws, "api_secret": ROOM.api_secret,
                                     "room": made["room"], "pin": made["pin"], "feed": tw["sfu"]["feed"],
                                     "ptype": "publisher", "token": made["allowed"][0]}
                sub = {k: v for k, v in tw["sfu"].items() if k != "token"}
                assert ew["sfu"] == {**sub, "ptype": "subscriber"} and ow["sfu"] == ew["sfu"]  # no publish token
                assert len(fake_janus) == 2 and other["sfu"]["room"] != made["room"]  # one room per session
                assert other["sfu"]["pin"] != made["pin"] and other["sfu"]["feed"] != tw["sfu"]["feed"]
                for w in (tw, ew, ow, other):
                    text = json.dumps(w)
                    assert ROOM.admin_key not in text and all(r["secret"] not in text for r in fake_janus.values())
                await o2ws.close()  # session s2 is over: its room is destroyed
                for _ in range(50):
                    if other["sfu"]["room"] not in fake_janus:
                        break
                    await asyncio.sleep(0.02)
                assert list(fake_janus) == [made["room"]]
                # an expert's stroke goes to the trainee with the authenticated sender ...
                stroke = {"v": 1, "type": "stroke", "id": "s1", "frame_id": 3, "points": [[0.1, 0.1], [0.2, 0.2]]}
                await ews.send_str(json.dumps({"v": 1, "type": "mentor", "data": stroke}))
                got = await next_of(tws, "mentor")
                assert got["from"] == ew["peer_id"] and got["data"] == stroke
                # ... an observer's is refused by the server and never reaches it
                await ows.send_str(json.dumps({"v": 1, "type": "mentor", "to": tw["peer_id"], "data": stroke}))
                refused = await next_of(ows, "error")
                assert refused["code"] == "forbidden" and "observers" in refused["message"]
                # the trainee answers one viewer
                await tws.send_str(json.dumps({"v": 1, "type": "mentor", "to": ew["peer_id"],
                                               "data": {"v": 1, "type": "ack", "ref": "s1", "ok": True}}))
                assert (await next_of(ews, "mentor"))["data"]["ref"] == "s1"
                counters = (await (await http.get(srv.url + "/healthz")).json())["counters"]
                assert counters["mentor_relayed"] == 2 and counters["refused_role"] == 1
                stopping = asyncio.ensure_future(asyncio.to_thread(srv.stop, 30.0))  # clients still connected
                for _ in range(100):
                    if not fake_janus:
                        break
                    await asyncio.sleep(0.02)
                assert not fake_janus  # the server destroyed its sessions' rooms when it began to stop
                for w in (tws, ews, ows, bws):
                    await w.close()
                await stopping

    run(go(), 30)


def test_a_server_destroys_the_rooms_a_killed_server_left_and_notes_its_own(
        tmp_path: Path, fake_janus: dict[int, dict[str, Any]]) -> None:
    """test_mentor_sfu.py kills a real server; here the ledgers are made by hand."""
    sfu = replace(ROOM, source=str(tmp_path / "stack.json"))
    folder = tmp_path / "mentor-rooms"
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no longer runs
    dead = RoomLedger(folder, pid=gone.pid)
    dead.path = folder / f"{gone.pid}-12345.json"
    fake_janus[11] = {"room": 11, "secret": "s11"}
    dead.add(11, "s11")
    dead.add(12, "s12")  # Janus lost it already
    live = RoomLedger(folder, pid=1)  # a server that still runs: its rooms are its own
    fake_janus[21] = {"room": 21, "secret": "s21"}
    live.add(21, "s21")
    assert process_start_ticks(1) and live.path.exists()

    async def go() -> None:
        rooms = SessionRooms(sfu)
        assert await rooms.reclaim() == {"destroyed": 1, "gone": 1, "failed": 0}
        assert 11 not in fake_janus and 21 in fake_janus and not dead.path.exists() and live.path.exists()
        made = await rooms.open("s1")
        assert rooms.ledger is not None
        ours = json.loads(rooms.ledger.path.read_text())
        assert ours["rooms"] == {str(made.room): made.secret} and rooms.ledger.path.stat().st_mode & 0o077 == 0
        await rooms.close("s1")
        assert not rooms.ledger.path.exists()  # nothing left to clean up

    run(go(), 10)


def test_direct_mode_welcome_has_no_sfu(signer: Any, server: Any) -> None:
    async def go() -> None:
        async with aiohttp.ClientSession() as http:
            _, w = await join(http, server.url, signer.issue("d1", "observer"))
            assert w["type"] == "welcome" and "sfu" not in w

    run(go(), 20)


def test_stack_file_errors_name_the_file_and_field(tmp_path: Path) -> None:
    (tmp_path / "stack.json").write_text(json.dumps({"janus_ws": "ws://h:1", "api_secret": "a", "room": 7,
                                                     "pin": "p", "admin_key": "k", "room_secret": "s"}))
    room = load_sfu_room(tmp_path)
    assert (room.admin_key, room.source) == ("k", str(tmp_path / "stack.json"))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"janus_ws": "ws://h:1", "api_secret": "a", "admin_key": 7}))
    with pytest.raises(RemoteError, match=r"bad\.json: field 'admin_key' missing or not a string"):
        load_sfu_room(bad)
    with pytest.raises(RemoteError, match="mentor stack up"):
        load_sfu_room(tmp_path / "nowhere")


def test_cli_refuses_what_cannot_work_before_starting_anything(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from vr_trainer.cli import main

    assert main(["mentor", "serve", "--stack", str(tmp_path)]) == 2
    assert "--stack needs --sfu janus" in capsys.readouterr().err
    assert main(["mentor", "serve", "--sfu", "janus", "--stack", str(tmp_path / "none")]) == 2
    assert "mentor stack up" in capsys.readouterr().err
    # beyond loopback the mentor server needs TLS: refused before Janus or coturn start
    assert main(["mentor", "stack", "up", "--dir", str(tmp_path / "st"), "--bind", "10.77.9.1",
                 "--media-ip", "10.77.9.1", "--serve"]) == 2
    assert "without TLS" in capsys.readouterr().err and not (tmp_path / "st").exists()
    assert main(["mentor", "stack", "up", "--dir", str(tmp_path / "st"), "--tls-cert", "c.pem"]) == 2
    assert "go with --serve" in capsys.readouterr().err


def test_the_trainee_checks_the_role_again_and_answers_through_the_server() -> None:
    from remote.schema import MentorRelayed, PeerInfo, make
    from remote.trainee_sfu import SfuPublisher

    class Owner:
        def __init__(self) -> None:
            self.sent: list[dict[str, Any]] = []
            self.applied: list[tuple[str, str]] = []
            self.synced: list[str] = []

        async def send_server(self, msg: dict[str, Any]) -> None:
            self.sent.append(msg)

        def sync(self, link: Any) -> None:
            self.synced.append(link.peer_id)

        def mentor_message(self, sender: Any, msg: Any) -> None:
            self.applied.append((sender.name, msg.type))

    async def go() -> None:
        owner = Owner()
        sfu = SfuPublisher(None, owner)  # type: ignore[arg-type] - no publishing here
        sfu.add_viewer(PeerInfo(peer_id="e1", role="expert", name="Dr Li"))
        sfu.add_viewer(PeerInfo(peer_id="o1", role="observer", name="student"))
        assert owner.synced == ["e1", "o1"] and sfu.has_expert
        stroke = {"v": 1, "type": "stroke", "id": "s1", "frame_id": 3, "points": [[0.1, 0.1], [0.2, 0.2]]}
        for sender in ("e1", "o1", "stranger"):  # as if the server had let the observer's through
            sfu.on_mentor(make(MentorRelayed, sender=sender, data=stroke))
        sfu.on_mentor(make(MentorRelayed, sender="e1", data={"v": 1, "type": "stroke", "id": "bad"}))
        await asyncio.sleep(0)
        assert owner.applied == [("Dr Li", "stroke")]
        assert owner.sent == [{"type": "mentor", "to": "o1", "data": {
            "v": 1, "type": "ack", "ref": "s1", "ok": False, "reason": "observers can watch but not annotate"}}]
        assert sfu.counters["refused_role"] == 1 and sfu.counters["mentor_unknown_sender"] == 1
        assert sfu.counters["mentor_dropped"] == 1
        assert sfu.remove_viewer("e1") and not sfu.has_expert

    run(go(), 10)
