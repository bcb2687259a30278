"""Message schema: valid messages pass; malformed, oversized, unknown are dropped and counted."""

from __future__ import annotations

import json

from hostile_messages import hostile_messages

from remote.gate import MessageGate, TokenBucket
from remote.schema import (
    MAX_DATA_MESSAGE_BYTES,
    PinMsg,
    StrokeMsg,
    encode,
    json_schema,
)


def msg(**kw):
    return json.dumps({"v": 1, **kw})


def gate_without_limits() -> MessageGate:
    return MessageGate.for_console({})


def test_valid_console_messages_pass():
    g = gate_without_limits()
    s = g.admit(msg(type="stroke", id="a-1", frame_id=12, points=[[0, 0], [1, 1]], color=[1, 0, 0, 1]))
    assert isinstance(s, StrokeMsg) and s.points[1] == (1.0, 1.0) and s.width_px == 4.0
    assert isinstance(g.admit(msg(type="pin", id="p", frame_id=3, point=[0.5, 0.5], label="L4 pedicle")), PinMsg)
    for m in (msg(type="laser", frame_id=3, point=None), msg(type="undo"), msg(type="clear"), msg(type="sync"),
              msg(type="note", id="n", text="慢一点"), msg(type="hb", seq=1, t_ms=5.0), msg(type="hold", frame_id=4)):
        assert g.admit(m) is not None, m
    assert g.counters["accepted"] == 9 and g.dropped == 0


def test_each_kind_of_bad_message_is_counted():
    g = gate_without_limits()
    assert g.admit(b"\x00\x01") is None
    assert g.admit("x" * (MAX_DATA_MESSAGE_BYTES + 1)) is None
    assert g.admit("{not json") is None
    assert g.admit(msg(type="rm -rf")) is None
    assert g.admit(json.dumps({"v": 2, "type": "undo"})) is None
    assert g.admit(json.dumps({"v": True, "type": "undo"})) is None
    assert g.admit(msg(type="stroke", id="a", frame_id=1, points=[[0.1, 2.0], [0, 0]])) is None
    assert g.admit(msg(type="undo", sneaky=1)) is None
    c = g.counters
    assert (c["binary"], c["oversized"], c["unknown_type"], c["bad_version"]) == (1, 1, 1, 2)
    assert c["malformed"] == 3 and c["accepted"] == 0 and g.dropped == 8


def test_rate_limits_per_type_and_overall():
    g = MessageGate.for_console({"*": (1000.0, 1000.0), "laser": (40.0, 60.0)})
    laser = msg(type="laser", frame_id=1, point=[0.5, 0.5])
    passed = sum(g.admit(laser, now_s=100.0) is not None for _ in range(100))
    assert passed == 60 and g.counters["rate_limited"] == 40
    assert g.admit(laser, now_s=100.5) is not None  # refilled at 40/s
    flood = MessageGate.for_console()
    n = sum(flood.admit(msg(type="sync"), now_s=5.0) is not None for _ in range(1000))
    assert n == 5 and flood.counters["rate_limited"] == 995


def test_token_bucket_refills():
    b = TokenBucket(10.0, 2.0)
    assert b.take(0.0) and b.take(0.0) and not b.take(0.0)
    assert b.take(0.1) and not b.take(0.1)


def test_ten_thousand_hostile_messages_never_raise():
    g = gate_without_limits()
    n = 0
    for m in hostile_messages(10_000):
        g.admit(m)
        n += 1
    c = g.counters
    assert n == 10_000 and c["received"] == 10_000
    assert c["malformed"] > 3000 and c["oversized"] > 200 and c["unknown_type"] > 200 and c["binary"] > 200
    assert c["bad_version"] > 200 and 0 < c["accepted"] < 2000


def test_encode_and_published_schema():
    assert json.loads(encode({"type": "ack", "ok": True})) == {"v": 1, "type": "ack", "ok": True}
    s = json_schema()
    assert s["version"] == 1 and "stroke" in json.dumps(s["console"]) and "join" in json.dumps(s["signal"])
