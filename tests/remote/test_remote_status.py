"""Scenario notices from the loop to the mentor console: engine notices become ``status``
messages with the current step, its prompt, the latest hint and the result; hostile text is
cut, never crashes; every viewer gets them over the data channel, a late joiner the
current step. Network tests use the GL-free synthetic host (a BridgeHost like the loop)."""

from __future__ import annotations

import json
import math

import pytest
from fakeviewer import FakeViewer
from remote_helpers import run

from remote.harness import SyntheticFrameThread
from remote.schema import MAX_DATA_MESSAGE_BYTES, MAX_STATUS_NOTICES, MAX_STATUS_TEXT_CHARS, TRAINEE_ADAPTER, encode
from remote.status import NoticeRelay, StatusBoard, sanitize_notice
from vr_trainer.app.bridge import notice_to_dict, run_finished_notice
from vr_trainer.scenario.engine import Notice
from vr_trainer.scenario.schema import LocalizedText

pytestmark = pytest.mark.timeout(60)
STEPS = ["insert_needle", "take_shot", "reach_disc"]
PROMPTS = [LocalizedText(en="Insert the needle at the skin entry point", zh="在皮肤进针点插入穿刺针"),
           LocalizedText(en="Take a lateral C-arm shot", zh="拍摄侧位 C 臂透视"),
           LocalizedText(en="Advance to the disc", zh="推进至椎间盘")]


def started(i: int, t_s: float) -> dict:
    return notice_to_dict(Notice("step_started", t_s, PROMPTS[i], step_id=STEPS[i]), STEPS)


def hint(i: int, t_s: float, en: str, zh: str | None = None) -> dict:
    return notice_to_dict(Notice("hint", t_s, LocalizedText(en=en, zh=zh), step_id=STEPS[i]), STEPS)


def completed(i: int, t_s: float) -> dict:
    return notice_to_dict(Notice("step_completed", t_s, step_id=STEPS[i]), STEPS)


def critical(i: int, t_s: float) -> dict:
    text = LocalizedText(en="The needle touched the exiting nerve root", zh="穿刺针触及出口神经根")
    return notice_to_dict(Notice("critical_error", t_s, text, step_id=STEPS[i], event_id="root_contact",
                                 critical_error="nerve_root_injury"), STEPS)


def decoded(msg) -> dict:
    out = json.loads(encode(msg))
    assert len(encode(msg).encode("utf-8")) <= MAX_DATA_MESSAGE_BYTES
    TRAINEE_ADAPTER.validate_json(encode(msg))  # what is sent is what the schema says
    return out


# ---- the board, without a network --------------------------------------------------
def test_step_prompt_hint_and_result_follow_the_engine_notices():
    board = StatusBoard()
    [m] = board.ingest([started(0, 0.01), hint(0, 5.0, "Aim 10 mm lateral of the midline", "距中线外侧 10 mm")])
    m = decoded(m)
    assert (m["step_index"], m["step_count"], m["step_id"]) == (0, 3, "insert_needle")
    assert m["prompt_en"] == PROMPTS[0].en and m["prompt_zh"] == PROMPTS[0].zh
    assert m["hint_en"] == "Aim 10 mm lateral of the midline" and not m["replay"]
    # the next step replaces the prompt and clears the old step's hint; a late hint of the old step is ignored
    [m] = board.ingest([completed(0, 7.0), started(1, 7.0), hint(0, 7.5, "stale")])
    m = decoded(m)
    assert m["step_index"] == 1 and m["prompt_en"] == PROMPTS[1].en and "hint_en" not in m
    assert [n["kind"] for n in m["notices"]] == ["step_completed", "step_started", "hint"]
    [m] = board.ingest([critical(1, 8.0), completed(1, 9.0), started(2, 9.0), completed(2, 12.0)])
    m = decoded(m)
    assert m["step_index"] == 3 and "prompt_en" not in m, "after the last step there is no current prompt"
    assert m["notices"][0]["critical_error"] == "nerve_root_injury"
    [m] = board.ingest([run_finished_notice(12.5, 41.25, False, 70.0, 3)])
    assert decoded(m)["result"] == {"score": 41.25, "passed": False, "pass_mark": 70.0}
    snap = decoded(board.snapshot())
    assert snap["replay"] and snap["result"]["score"] == 41.25
    kinds = [n["kind"] for n in snap["notices"]]
    assert len(kinds) == MAX_STATUS_NOTICES and kinds[-1] == "run_finished" and "critical_error" in kinds


def test_no_status_before_the_first_notice_and_silent_kinds_are_not_replayed():
    board = StatusBoard()
    assert board.snapshot() is None and board.ingest([]) == []
    board.ingest([started(0, 0.0)] + [notice_to_dict(Notice(k, 1.0, step_id=STEPS[0], event_id="buzz"), STEPS)
                                      for k in ("event", "haptic", "sound", "overlay")])
    snap = decoded(board.snapshot())
    assert [n["kind"] for n in snap["notices"]] == ["step_started"]
    assert snap["step_index"] == 0 and snap["prompt_en"] == PROMPTS[0].en


HOSTILE = [
    {"kind": "hint", "time_s": 1.0, "text_en": "A" * 1_000_000, "step_id": "x"},
    {"kind": "prompt", "time_s": 1.0, "text_en": "\ud800bad\udfff \x00\x07 zero\u202eRTL\u200b",
     "text_zh": "慢" * 5000},
    {"kind": "prompt", "time_s": math.nan, "text_en": 12345, "text_zh": {"nested": ["x"]}, "step_id": ["list"]},
    {"kind": "step_started", "time_s": math.inf, "step_index": True, "step_count": -3, "text_en": "ok"},
    {"kind": "step_started", "time_s": 1e300, "step_index": 10 ** 12, "step_count": 2 ** 70, "text_en": "big"},
    {"kind": "run_finished", "score": 1e9, "passed": "yes", "pass_mark": -5},
    {"kind": "critical_error", "critical_error": "e" * 10_000, "event_id": "\n\n\n", "text_en": "   "},
    {"kind": "drop_tables"}, {"kind": None}, {}, None, 42, "step_started", ["kind", "hint"],
    {"kind": "hint", "text_en": "🙂" * 3000, "text_zh": "\U0010fffd" * 3000},
]
REFUSED = 7  # unknown or missing kinds, and what is not a mapping at all


def test_hostile_notices_are_cut_or_refused_never_raise():
    board = StatusBoard()
    msgs = board.ingest(HOSTILE)  # must not raise
    assert board.counters["refused"] == REFUSED and board.counters["accepted"] == len(HOSTILE) - REFUSED
    notices = [n for m in msgs for n in decoded(m)["notices"]]
    assert len(notices) == len(HOSTILE) - REFUSED
    first = notices[0]["text_en"]
    assert len(first) == MAX_STATUS_TEXT_CHARS and first.endswith("…") and first.startswith("AAAA")
    assert notices[1]["text_en"] == "bad  zeroRTL", "control, surrogate and format characters are removed"
    assert len(notices[1]["text_zh"]) == MAX_STATUS_TEXT_CHARS and notices[1]["text_zh"].startswith("慢慢")
    wrong_types = notices[2]
    assert wrong_types["time_s"] == 0.0 and "text_en" not in wrong_types and "step_id" not in wrong_types
    assert "step_index" not in notices[3] and "step_count" not in notices[3]
    assert "score" not in notices[5] and "passed" not in notices[5]
    assert len(notices[6]["critical_error"]) == 64 and "text_en" not in notices[6] and "event_id" not in notices[6]
    assert board.result is None, "a result without a valid score and verdict is not a result"
    for s in (sanitize_notice(h) for h in HOSTILE):
        assert s is None or all(len(v) <= MAX_STATUS_TEXT_CHARS for v in (s.text_en, s.text_zh) if v)


def test_the_largest_status_message_fits_the_data_channel():
    wide = "\U0001f600" * 5000  # four UTF-8 bytes each
    board = StatusBoard()
    board.ingest([{"kind": "step_started", "time_s": 0.0, "text_en": wide, "text_zh": wide, "step_id": "s" * 99,
                   "step_index": 0, "step_count": 1},
                  {"kind": "hint", "time_s": 0.0, "text_en": wide, "text_zh": wide, "step_id": "s" * 99}])
    msgs = board.ingest([{"kind": "prompt", "time_s": -1e9, "text_en": '"\\' * 500, "text_zh": wide,
                          "step_id": "\U0001f600" * 64, "event_id": "\U0001f600" * 64,
                          "critical_error": "\U0001f600" * 64} for _ in range(3 * MAX_STATUS_NOTICES)])
    assert len(msgs) == 3 and board.counters["cut_for_size"] == 0
    for m in msgs:
        size = len(encode(m).encode("utf-8"))
        assert 20_000 < size <= MAX_DATA_MESSAGE_BYTES, size
        assert decoded(m)["hint_zh"].endswith("…")


def test_relay_is_bounded_drops_the_oldest_and_keeps_the_step_and_result():
    wakes: list[int] = []
    relay = NoticeRelay(lambda: wakes.append(1), maxlen=4)
    relay.publish_notice(started(0, 0.0))
    relay.publish_notice(completed(0, 0.5))
    relay.publish_notice(started(1, 0.5))
    assert len(wakes) == 1, "one wake-up per batch, not one per notice"
    assert [g["kind"] for g in relay.drain()] == ["step_started", "step_completed", "step_started"]
    assert relay.dropped == 0, "nothing is dropped below the bound"
    relay.publish_notice(started(2, 1.0))
    for k in range(10):
        relay.publish_notice(hint(2, 1.0 + k, f"hint {k}"))
    relay.publish_notice(run_finished_notice(20.0, 90.0, True, 60.0, 3))
    assert len(wakes) == 2
    got = relay.drain()
    assert [g["kind"] for g in got] == ["step_started", "hint", "hint", "run_finished"]
    assert [g["text_en"] for g in got[1:3]] == ["hint 8", "hint 9"], "the oldest hints went first"
    assert relay.dropped == 8 and relay.published == 15
    for i in range(6):  # only step notices waiting: the oldest of them goes
        relay.publish_notice(started(i % 3, 30.0 + i))
    assert [g["time_s"] for g in relay.drain()] == [32.0, 33.0, 34.0, 35.0] and relay.dropped == 10


# ---- over the network --------------------------------------------------------------
@pytest.fixture
def host_bridge(server, signer):
    """A synthetic host (GL-free, 15 fps) with a trainee bridge attached."""
    from remote.peer import IceOptions
    from remote.trainee import BridgeConfig, TraineeBridge

    made = []

    def make(session: str):
        host = SyntheticFrameThread((320, 240), fps=15.0).start()
        bridge = TraineeBridge(server.url, signer.issue(session, "trainee", "resident"),
                               BridgeConfig(ice=IceOptions(loopback_only=True), audio="none"))
        made.append((host, bridge))
        bridge.attach(host)
        assert bridge.session_id == session and host.notice_sinks == [bridge.notices]
        return host, bridge

    yield make
    for host, bridge in made:
        bridge.close()
        host.stop()
        assert host.notice_sinks == []


def statuses(v: FakeViewer) -> list[dict]:
    return v.of_type("status")


def test_expert_and_observer_get_status_after_the_loop_publishes(host_bridge, server, signer):
    host, bridge = host_bridge("status-1")

    async def go():
        async with FakeViewer(server.url, signer.issue("status-1", "expert", "dr")) as dr, \
                FakeViewer(server.url, signer.issue("status-1", "observer", "student")) as student:
            assert not statuses(dr) and not statuses(student), "nothing to report before the scenario starts"
            host.post_notices([started(0, 0.01)])
            for v in (dr, student):
                got = await v.wait_for(lambda v=v: statuses(v), 5, "first status")
                assert got[0]["prompt_en"] == PROMPTS[0].en and got[0]["step_index"] == 0
            host.post_notices([hint(0, 5.0, "Aim lateral"), completed(0, 6.0), started(1, 6.0), critical(1, 6.5)])
            for v in (dr, student):
                def kinds(v: FakeViewer = v) -> list[str]:
                    return [n["kind"] for m in statuses(v) for n in m["notices"]]

                await v.wait_for(lambda: "critical_error" in kinds(), 5, "the critical error")
                assert kinds() == ["step_started", "hint", "step_completed", "step_started", "critical_error"]
                last = statuses(v)[-1]
                assert last["step_index"] == 1 and last["prompt_zh"] == PROMPTS[1].zh
                assert last["notices"][-1]["text_en"] == "The needle touched the exiting nerve root"
            host.post_notices([run_finished_notice(9.0, 88.5, True, 70.0, 3)])
            res = await student.wait_for(lambda: [m for m in statuses(student) if m.get("result")], 5, "result")
            assert res[-1]["result"] == {"score": 88.5, "passed": True, "pass_mark": 70.0}
            assert res[-1]["step_index"] == 3

    run(go(), 40)
    st = bridge.stats()
    assert st["notices_published"] == 6 and st["notices_accepted"] == 6 and st["notices_dropped"] == 0


def test_a_rejoining_viewer_gets_the_current_step_and_the_latest_notices(host_bridge, server, signer):
    host, bridge = host_bridge("status-2")

    async def go():
        async with FakeViewer(server.url, signer.issue("status-2", "expert", "dr")) as v1:
            host.post_notices([started(0, 0.0), completed(0, 3.0), started(1, 3.0),
                               hint(1, 8.0, "Lateral view: the tip should be at the posterior line")])
            await v1.wait_for(lambda: [m for m in statuses(v1) if m.get("hint_en")], 5, "hint")
            await v1.close(bye=False)  # a reload: no goodbye
        async with FakeViewer(server.url, signer.issue("status-2", "expert", "dr")) as v2:
            got = await v2.wait_for(lambda: statuses(v2), 5, "status on rejoin")
            first = got[0]
            assert first["replay"] and first["step_index"] == 1 and first["step_count"] == 3
            assert first["prompt_en"] == PROMPTS[1].en and first["hint_en"].startswith("Lateral view")
            assert [n["kind"] for n in first["notices"]] == ["step_started", "step_completed", "step_started", "hint"]
            v2.send({"type": "sync"})  # asking again gives the same picture
            await v2.wait_for(lambda: len(statuses(v2)) >= 2, 5, "status after sync")
            assert statuses(v2)[1]["step_id"] == "take_shot"

    run(go(), 40)


def test_hostile_notices_reach_the_viewer_cut_and_the_bridge_goes_on(host_bridge, server, signer):
    host, bridge = host_bridge("status-3")

    async def go():
        async with FakeViewer(server.url, signer.issue("status-3", "expert", "dr")) as v:
            host.post_notices(HOSTILE + [started(2, 1.0)])
            # (the notices may come in more than one status message; the earlier ones name no step yet)
            await v.wait_for(lambda: [m for m in statuses(v) if m.get("step_id") == "reach_disc"], 5, "status")
            notices = [n for m in statuses(v) for n in m["notices"]]
            assert len(notices) == len(HOSTILE) - REFUSED + 1
            assert all(len(n.get("text_en", "")) <= MAX_STATUS_TEXT_CHARS for n in notices)
            assert notices[0]["text_en"].endswith("…")
            await v.wait_frames(3)  # video still flows
            host.post_notices([hint(2, 2.0, "still here")])
            await v.wait_for(lambda: statuses(v)[-1].get("hint_en") == "still here", 5, "a later notice")

    run(go(), 40)
    st = bridge.stats()
    assert st["notices_refused"] == REFUSED and host.inbox_errors == 0 and st.get("msg_handler_errors", 0) == 0
