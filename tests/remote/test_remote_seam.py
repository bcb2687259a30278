"""The narrow seam between the remote bridge and a running session, without GL: the
synthetic frame source is a BridgeHost like the frame loop, inbox items only use the
LoopView, and the bridge detaches and stops when its `with` block ends."""

from __future__ import annotations

import time

import pytest

from remote.annotate import AnnotationApplier, Sender
from remote.harness import SyntheticFrameThread
from remote.schema import SERVER_ADAPTER, NoteMsg, PinMsg, make
from vr_trainer.app.bridge import ThreadSafeInbox
from vr_trainer.frame import MirrorFrame

pytestmark = pytest.mark.timeout(60)


class CollectingSink:
    wants_depth = False

    def __init__(self) -> None:
        self.frames: list[MirrorFrame] = []

    def publish(self, frame: MirrorFrame) -> None:
        self.frames.append(frame)


def wait(pred, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_synthetic_host_runs_inbox_items_with_itself_as_the_loop_view():
    host = SyntheticFrameThread((64, 48), fps=60.0)
    replies: list[dict] = []
    applier = AnnotationApplier(lambda peer_id, msg: replies.append(msg), lambda marks: None)
    inbox = ThreadSafeInbox(tick=applier.tick)
    sink = CollectingSink()
    host.sinks.append(sink)
    host.inboxes.append(inbox)
    host.start()
    try:
        wait(lambda: len(sink.frames) >= 3, 10, "frames")
        dr = Sender("p1", "dr", "expert")
        inbox.put(applier.make(dr, make(NoteMsg, id="n1", text="go more lateral")))
        fid = sink.frames[-1].frame_id
        inbox.put(applier.make(dr, make(PinMsg, id="p1", frame_id=fid, point=(0.5, 0.5))))
        wait(lambda: replies, 5, "the pin's ack")
    finally:
        host.stop()
    assert host.mentor_notes == [("dr", "go more lateral")]
    ack = replies[-1]
    assert ack["ref"] == "p1" and not ack["ok"] and "no depth" in ack["reason"]
    assert host.inbox_errors == 0 and len(host.annotations.pins) == 0


def test_bridge_as_a_context_manager_detaches_from_its_host(server, signer):
    from remote.peer import IceOptions
    from remote.trainee import BridgeConfig, TraineeBridge

    host = SyntheticFrameThread((64, 48), fps=30.0)
    with TraineeBridge(server.url, signer.issue("seam-1", "trainee", "resident"),
                       BridgeConfig(ice=IceOptions(loopback_only=True), audio="none")) as bridge:
        bridge.attach(host)
        assert bridge.session_id == "seam-1"
        assert host.sinks == [bridge.source] and host.inboxes == [bridge.inbox]
    assert host.sinks == [] and host.inboxes == []
    assert not bridge._thread.is_alive()


def test_server_messages_are_validated_models():
    ok = SERVER_ADAPTER.validate_json('{"v":1,"type":"peer-left","peer_id":"abc"}')
    assert ok.peer_id == "abc"
    relayed = SERVER_ADAPTER.validate_json('{"v":1,"type":"signal","from":"x1","data":{"kind":"end-of-candidates"}}')
    assert relayed.sender == "x1"
    for bad in ('{"v":1,"type":"peer-left","peer_id":"../etc"}', '{"v":1,"type":"welcome"}',
                '{"v":2,"type":"pong"}', '{"v":1,"type":"pong","extra":1}'):
        with pytest.raises(ValueError):
            SERVER_ADAPTER.validate_json(bad)
