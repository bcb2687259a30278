"""Trainee bridge and aiortc viewers in one process, over the real server and a real
frame loop (EGL): video with frame ids, strokes anchored on the anatomy, roles,
rejoin, heartbeat, packet loss, hostile messages."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fakeviewer import FakeViewer
from remote_helpers import green_mask, run, start_loop

pytestmark = pytest.mark.timeout(90)
STROKE_U = np.linspace(0.2, 0.4, 24)  # across the left eye of the 640x240 mirror
STROKE_V = 0.5
HERE = Path(__file__).resolve().parent


def stroke_msg(mark_id: str, frame_id: int, u=STROKE_U, v=STROKE_V, **kw) -> dict:
    return {"type": "stroke", "id": mark_id, "frame_id": frame_id, "points": [[float(x), v] for x in u],
            "color": [0.0, 1.0, 0.0, 1.0], **kw}


async def ack_for(v: FakeViewer, ref: str, timeout_s: float = 5.0) -> dict:
    got = await v.wait_for(lambda: [a for a in v.of_type("ack") if a.get("ref") == ref], timeout_s, f"ack {ref}")
    return got[-1]


def green_along(img: np.ndarray, xs_px: np.ndarray, ys_px: np.ndarray, slack_px: int = 2) -> float:
    """Fraction of points with a stroke-green pixel within ``slack_px``."""
    g = green_mask(img)
    h, w = g.shape
    hits = 0
    for x, y in zip(xs_px, ys_px):
        x0, y0 = int(round(x)), int(round(y))
        win = g[max(0, y0 - slack_px):min(h, y0 + slack_px + 1), max(0, x0 - slack_px):min(w, x0 + slack_px + 1)]
        hits += bool(win.any())
    return hits / len(xs_px)


def test_video_advances_and_carries_frame_ids(board_loop, make_bridge, server, signer):
    bridge = make_bridge(board_loop, "video-1")

    async def go():
        async with FakeViewer(server.url, signer.issue("video-1", "expert", "dr")) as v:
            await v.wait_frames(20)
            ids = [i for i in v.frame_ids if i is not None]
            assert len(ids) >= 0.9 * len(v.frame_ids)
            assert ids == sorted(ids) and ids[-1] - ids[0] >= 15
            assert v.last_luma.shape == (240, 320), "one eye full size by default"
            hello = v.of_type("hello")[0]
            assert hello["role"] == "expert" and hello["can_annotate"] and hello["frame_code"]["cells"] == 34
            assert hello["frame_code"]["strip_px"] == 16
            assert [x["id"] for x in hello["views"]] == ["eye", "both"] and hello["view"] == "eye"

    run(go(), 40)
    assert bridge.stats()["published"] > 20


def test_viewer_switches_between_one_eye_and_both_eyes(board_loop, make_bridge, server, signer):
    """Each viewer picks its view; the other viewer's picture does not change; ids go on."""
    bridge = make_bridge(board_loop, "views-1")

    async def go():
        async with FakeViewer(server.url, signer.issue("views-1", "expert", "dr")) as a, \
                FakeViewer(server.url, signer.issue("views-1", "observer", "class")) as b:
            await a.wait_frames(5)
            await b.wait_frames(5)
            shown = await a.wait_for(lambda: a.of_type("view"), 5, "the view message")
            assert shown[-1] == {"v": 1, "type": "view", "view": "eye", "rect": [0.0, 0.0, 0.5, 1.0],
                                 "can_annotate": True, "strip_px": 16}
            before = a.latest_id()
            a.send({"type": "view", "view": "both"})
            await a.wait_for(lambda: a.last_luma is not None and a.last_luma.shape == (240, 640), 10, "both eyes")
            assert a.of_type("view")[-1]["view"] == "both" and a.of_type("view")[-1]["rect"] == [0.0, 0.0, 1.0, 1.0]
            await a.wait_frames(5)
            assert a.latest_id() > before, "frame ids go on across the switch"
            await b.wait_frames(5)
            assert b.last_luma.shape == (240, 320), "the other viewer still watches one eye"
            assert b.of_type("view")[-1]["can_annotate"] is False, "an observer never draws"
            a.send({"type": "view", "view": "carm"})  # not offered (yet)
            ack = await a.wait_for(lambda: [m for m in a.of_type("ack") if m.get("ref") == "view"], 5, "refusal")
            assert ack[0]["ok"] is False and "carm" in ack[0]["reason"]
            a.send({"type": "view", "view": "eye"})
            await a.wait_for(lambda: a.last_luma.shape == (240, 320), 10, "one eye again")

    run(go(), 60)
    assert bridge.source.keyframes >= 3


def test_a_view_from_the_app_joins_the_selector_and_is_not_drawn_on(board_loop, make_bridge, server, signer):
    """The hook for the C-arm monitor / endoscope (issue #10): a picture that is not part of
    the mirror, offered with its labels; a viewer may watch it but strokes have no rect."""
    from remote.schema import TRAINEE_ADAPTER
    from remote.views import StreamView

    monitor = np.zeros((300, 400, 3), np.uint8)
    monitor[100:200, 150:250] = 200
    carm = StreamView("carm", "C-arm monitor", "C臂监视器", lambda frame: (monitor, None))
    make_bridge(board_loop, "views-2", extra_views=[carm])

    async def go():
        async with FakeViewer(server.url, signer.issue("views-2", "expert", "dr")) as v:
            await v.wait_frames(3)
            hello = v.of_type("hello")[0]
            assert hello["views"][-1] == {"id": "carm", "label_en": "C-arm monitor", "label_zh": "C臂监视器"}
            v.send({"type": "view", "view": "carm"})
            await v.wait_for(lambda: v.last_luma is not None and v.last_luma.shape == (300, 400), 10, "the monitor")
            shown = v.of_type("view")[-1]
            assert shown["view"] == "carm" and shown.get("rect") is None and shown["can_annotate"] is False
            TRAINEE_ADAPTER.validate_python(shown)  # what is sent is what the schema says
            assert shown["strip_px"] == 16
            assert abs(float(v.last_luma[150, 200]) - float(v.last_luma[10, 10])) > 100, "the monitor's picture"
            await v.wait_frames(3)
            assert v.latest_id() is not None, "frame ids are read from this view too"

    run(go(), 40)


def test_stroke_is_placed_on_the_anatomy_and_seen_by_both_eyes_and_the_expert(board_loop, make_bridge, server,
                                                                              signer):
    from vr_trainer.sim.unproject import project_points

    make_bridge(board_loop, "stroke-1")

    async def go():
        async with FakeViewer(server.url, signer.issue("stroke-1", "expert", "dr")) as v:
            await v.wait_frames(5)
            v.send(stroke_msg("s1", v.latest_id()))
            ack = await ack_for(v, "s1")
            assert ack["ok"], ack
            marks = await v.wait_for(lambda: [m for m in v.of_type("marks") if m["marks"]], 5, "marks")
            assert marks[-1]["marks"][0] == {"id": "dr/s1", "kind": "stroke", "author": "dr", "points": 24}
            v.keep_rgb = True
            await v.wait_frames(6)
            # the expert's video (one eye: the view's rect maps mirror points onto it) shows the mark where it was drawn
            img = v.last_rgb
            h, w = img.shape[:2]
            x0, y0, rw, rh = v.of_type("view")[-1]["rect"]
            assert (x0, y0, rw, rh) == (0.0, 0.0, 0.5, 1.0)
            xs, ys = (STROKE_U - x0) / rw * w, np.full(len(STROKE_U), (STROKE_V - y0) / rh * h)
            assert green_along(img, xs, ys) > 0.8

    run(go(), 40)
    img, views, strokes = board_loop.call(
        lambda loop: (loop.mirror.read_now(), loop.mirror.views,
                      [s.points_mm.copy() for s in loop.state.annotations.strokes]))
    h, w = img.shape[:2]
    # left eye: where it was drawn; nowhere else on that row band
    assert green_along(img, STROKE_U * w, np.full(len(STROKE_U), STROKE_V * h)) > 0.9
    band = green_mask(img)[int(0.2 * h):int(0.35 * h), :w // 2]
    assert not band.any(), "green found away from the stroke"
    # on the board's front face (z = +10 mm), and the right eye shows it at its own projection
    pts = strokes[0]
    np.testing.assert_allclose(pts[:, 2], 10.0, atol=1.5)
    right_px, _ = project_points(pts, views[1])
    assert green_along(img, right_px[:, 0], right_px[:, 1]) > 0.9
    assert right_px[:, 0].min() > w // 2


def test_pin_laser_undo_clear_and_notes(board_loop, make_bridge, server, signer):
    make_bridge(board_loop, "tools-1")

    def counts(loop):
        ann = loop.state.annotations
        return len(ann.strokes), len([p for p in ann.pins if not p.author.startswith("laser:")]), \
            len([p for p in ann.pins if p.author.startswith("laser:")])

    async def go():
        async with FakeViewer(server.url, signer.issue("tools-1", "expert", "dr")) as v:
            await v.wait_frames(3)
            fid = v.latest_id()
            v.send({"type": "pin", "id": "p1", "frame_id": fid, "point": [0.3, 0.5], "label": "L4/5 foramen"})
            assert (await ack_for(v, "p1"))["ok"]
            v.send(stroke_msg("s1", fid))
            assert (await ack_for(v, "s1"))["ok"]
            v.send({"type": "pin", "id": "p2", "frame_id": fid, "point": [0.01, 0.02]})  # over empty space
            bad = await ack_for(v, "p2")
            assert not bad["ok"] and "no anatomy" in bad["reason"]
            v.send({"type": "laser", "frame_id": fid, "point": [0.3, 0.4]})
            await v.wait_for(lambda: board_loop.call(counts)[2] == 1, 3, "laser shown")
            await v.wait_for(lambda: board_loop.call(counts)[2] == 0, 3, "laser expired")
            assert board_loop.call(counts) == (1, 1, 0)
            v.send({"type": "undo"})
            assert (await ack_for(v, "undo"))["ok"]
            assert board_loop.call(counts) == (0, 1, 0)  # the stroke was the newest
            v.send({"type": "note", "id": "n1", "text": "go more lateral"})
            notes = await v.wait_for(lambda: [m for m in v.of_type("notes") if m["notes"]], 5, "notes")
            assert notes[-1]["notes"][0]["text"] == "go more lateral"
            v.send({"type": "clear"})
            assert (await ack_for(v, "clear"))["ok"]
            assert board_loop.call(counts) == (0, 0, 0)

    run(go(), 40)


def test_observer_cannot_annotate(board_loop, make_bridge, server, signer):
    bridge = make_bridge(board_loop, "obs-1")

    async def go():
        async with FakeViewer(server.url, signer.issue("obs-1", "observer", "student")) as v:
            await v.wait_frames(3)
            assert not v.of_type("hello")[0]["can_annotate"]
            for m in (stroke_msg("s1", v.latest_id()), {"type": "clear"}, {"type": "undo"},
                      {"type": "pin", "id": "p", "frame_id": v.latest_id(), "point": [0.3, 0.5]}):
                v.send(m)
            refused = await v.wait_for(lambda: len(v.of_type("ack")) >= 4 and v.of_type("ack"), 5, "refusals")
            assert all(not a["ok"] and "observers" in a["reason"] for a in refused)

    run(go(), 30)
    assert board_loop.call(lambda loop: len(loop.state.annotations.strokes) + len(loop.state.annotations.pins)) == 0
    assert bridge.stats().get("msg_refused_role", 0) >= 4


def test_expert_reload_restores_marks_and_session_goes_on(board_loop, make_bridge, server, signer):
    bridge = make_bridge(board_loop, "rejoin-1")

    async def go():
        async with FakeViewer(server.url, signer.issue("rejoin-1", "expert", "dr")) as v1:
            await v1.wait_frames(3)
            v1.send(stroke_msg("s1", v1.latest_id()))
            assert (await ack_for(v1, "s1"))["ok"]
            await v1.close(bye=False)  # a reload: no goodbye
        published = bridge.source.published
        async with FakeViewer(server.url, signer.issue("rejoin-1", "expert", "dr")) as v2:
            marks = await v2.wait_for(lambda: v2.of_type("marks"), 5, "marks on rejoin")
            assert [m["id"] for m in marks[0]["marks"]] == ["dr/s1"]
            await v2.wait_frames(5)
            assert bridge.source.published > published  # the resident's loop never stopped
            v2.send({"type": "undo"})  # the same expert may undo what they drew before the reload
            assert (await ack_for(v2, "undo"))["ok"]

    run(go(), 40)


def test_dead_peer_detected_within_5_s(board_loop, make_bridge, server, signer):
    bridge = make_bridge(board_loop, "dead-1")

    async def go():
        async with FakeViewer(server.url, signer.issue("dead-1", "expert", "dr")) as v:
            await v.wait_frames(3)
            dead_before = bridge.counters["dead_peers"]
            v.silent = True  # the network to the expert goes dark: no bye, nothing
            t0 = time.monotonic()
            await v.wait_for(lambda: bridge.counters["dead_peers"] > dead_before, 6.0, "dead peer detected")
            took = time.monotonic() - t0
            assert took < 5.0, took
            assert not bridge.links
            await v.close(bye=False)
        return took

    run(go(), 30)


LOSS_RNG = np.random.default_rng(1)
LOSS_PATTERNS = {
    "random-5pct": lambda n: LOSS_RNG.random() < 0.05,
    "every-10th": lambda n: n % 10 == 0,
    "burst-40": lambda n: 30 <= n < 70,
}


@pytest.mark.parametrize("pattern", list(LOSS_PATTERNS))
def test_video_and_marks_survive_packet_loss(board_loop, make_bridge, server, signer, pattern):
    make_bridge(board_loop, f"loss-{pattern}")

    async def go():
        token = signer.issue(f"loss-{pattern}", "expert", "dr")
        async with FakeViewer(server.url, token, rtp_drop=LOSS_PATTERNS[pattern]) as v:
            await v.wait_frames(60, timeout_s=20)
            assert v.rtp_dropped > 0
            tail = v.frame_ids[-20:]
            readable = [i for i in tail if i is not None]
            assert len(readable) >= 15 and readable == sorted(readable)  # recovered: fresh, in order
            v.send(stroke_msg("s1", v.latest_id()))
            assert (await ack_for(v, "s1"))["ok"]

    run(go(), 45)


def test_ten_thousand_hostile_messages_do_not_crash_or_stall(board_loop, make_bridge, server, signer):
    """An expert's browser (here a process of its own) floods the data channel."""
    bridge = make_bridge(board_loop, "hostile-1", console_rates={})
    errors_before = board_loop.loop.inbox_errors
    board_loop.reset_timing()
    out = subprocess.run([sys.executable, str(HERE / "viewer_process.py"), "hostile", server.url,
                          signer.issue("hostile-1", "expert", "mallory"), "10000"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["sent"] == 10_000 and res["after_ok"], res  # a valid stroke still works afterwards
    st = bridge.stats()
    assert st["msg_received"] >= 10_001
    dropped = sum(st.get(f"msg_{k}", 0) for k in ("malformed", "oversized", "unknown_type", "bad_version", "binary"))
    assert dropped > 8000, st
    assert board_loop.loop.inbox_errors == errors_before
    assert board_loop.frame_ms and max(board_loop.frame_ms) < 150  # tight bound: the reconnect-cycle test


def test_held_frame_outlives_the_history(board_loop, make_bridge, server, signer):
    make_bridge(board_loop, "hold-1")
    old_len = board_loop.call(lambda loop: loop.history_len)
    board_loop.call(lambda loop: setattr(loop, "history_len", 10))
    try:
        async def go():
            async with FakeViewer(server.url, signer.issue("hold-1", "expert", "dr")) as v:
                await v.wait_frames(3)
                frozen, other = v.latest_id(), v.latest_id() - 1
                v.send({"type": "hold", "frame_id": frozen})
                assert (await ack_for(v, f"hold:{frozen}"))["ok"]
                await asyncio.sleep(0.8)  # > 10 frames: both left the loop's history
                v.send(stroke_msg("late", frozen))
                assert (await ack_for(v, "late"))["ok"]
                v.send(stroke_msg("gone", other))
                gone = await ack_for(v, "gone")
                assert not gone["ok"] and "no longer available" in gone["reason"]

        run(go(), 30)
    finally:
        board_loop.call(lambda loop: setattr(loop, "history_len", old_len))


def test_mark_stays_on_the_anatomy_when_the_resident_moves(make_bridge, server, signer):
    """Drawn on frame F while the head moves; later, from elsewhere, it is still on the
    same spot of the board. Expected places come from the pose track, not the loop."""
    from vr_trainer.sim.transforms import projection_from_fov, rigid_inverse
    from vr_trainer.sim.unproject import project_points
    from vr_trainer.xr.headless import headset_fov
    from vr_trainer.xr.posetrack import PoseTrack, eye_poses

    keys = [{"t_s": 0.0, "position_mm": [-120.0, 20.0, 600.0], "look_at_mm": [-120.0, 20.0, 0]},
            {"t_s": 2.5, "position_mm": [120.0, -20.0, 560.0], "look_at_mm": [120.0, -20.0, 0]}]
    lt = start_loop(eye_size=(320, 240), fps=30.0, head_keys=keys)
    try:
        make_bridge(lt, "anchor-1")
        track = PoseTrack.from_keys(keys, [], fps=30.0)

        async def go():
            async with FakeViewer(server.url, signer.issue("anchor-1", "expert", "dr")) as v:
                await v.wait_frames(3)
                fid = v.latest_id()
                assert fid / 30.0 < 2.3, "head should still be moving when drawing"
                v.send(stroke_msg("s1", fid))
                assert (await ack_for(v, "s1"))["ok"]
            return fid

        fid = run(go(), 30)

        class View:
            def __init__(self, t_s: float):
                self.rect_px = (0, 0, 320, 240)
                self.view_from_world = rigid_inverse(eye_poses(track.head_pose(t_s))[0])
                f = headset_fov(0, 320, 240)
                self.projection = projection_from_fov(f.angle_left, f.angle_right, f.angle_up, f.angle_down,
                                                      30.0, 20000.0)

        drawn = View(fid / 30.0)
        px = np.stack([STROKE_U * 640, np.full(len(STROKE_U), STROKE_V * 240)], 1)
        inv = np.linalg.inv(drawn.projection @ drawn.view_from_world)
        ndc = np.c_[2 * px[:, 0] / 320 - 1, 1 - 2 * px[:, 1] / 240]
        near = np.c_[ndc, -np.ones(len(px)), np.ones(len(px))] @ inv.T
        far = np.c_[ndc, np.ones(len(px)), np.ones(len(px))] @ inv.T
        near, far = near[:, :3] / near[:, 3:], far[:, :3] / far[:, 3:]
        t = (10.0 - near[:, 2]) / (far[:, 2] - near[:, 2])
        expected = near + (far - near) * t[:, None]  # ray through the drawn pixel meets the board face
        stored = lt.call(lambda loop: loop.state.annotations.strokes[0].points_mm.copy())
        np.testing.assert_allclose(stored, expected, atol=2.0)

        deadline = time.monotonic() + 10
        while lt.call(lambda loop: loop.last_frame.index) < 2.8 * 30 and time.monotonic() < deadline:
            time.sleep(0.1)
        img, idx = lt.call(lambda loop: (loop.mirror.read_now(), loop.last_frame.index))
        later_px, _ = project_points(expected, View(idx / 30.0))
        assert np.abs(later_px - px).max() > 20, "the head should have moved the picture"
        assert green_along(img, later_px[:, 0], later_px[:, 1]) > 0.9
    finally:
        lt.stop()


def test_two_viewers_share_one_encode_and_a_newcomer_gets_a_key_frame(board_loop, make_bridge, server, signer):
    bridge = make_bridge(board_loop, "share-1")

    async def go():
        async with FakeViewer(server.url, signer.issue("share-1", "expert", "dr")) as a:
            await a.wait_frames(10)
            keys = bridge.source.keyframes
            async with FakeViewer(server.url, signer.issue("share-1", "observer", "student")) as b:
                await b.wait_frames(10)
                assert bridge.source.keyframes > keys, "the newcomer starts from a key frame"
                enc0, a0, b0 = bridge.source.encoded_frames, len(a.frame_ids), len(b.frame_ids)
                await a.wait_frames(30)
                encoded = bridge.source.encoded_frames - enc0
                got_a, got_b = len(a.frame_ids) - a0, len(b.frame_ids) - b0
                assert got_a >= 25 and got_b >= 25
                assert encoded <= max(got_a, got_b) + 3, "one encode serves both viewers"
                assert b.latest_id() is not None and abs(a.latest_id() - b.latest_id()) <= 3

    run(go(), 40)


def test_h264_through_aiortcs_own_encoder(board_loop, make_bridge, server, signer):
    from remote.publisher import StreamConfig

    make_bridge(board_loop, "h264-1", stream=StreamConfig(codec="H264"))

    async def go():
        async with FakeViewer(server.url, signer.issue("h264-1", "expert", "dr")) as v:
            await v.wait_frames(15)
            sdp = v.pc.remoteDescription.sdp
            assert "H264/90000" in sdp and "VP8/90000" not in sdp
            ids = [i for i in v.frame_ids if i is not None]
            assert len(ids) >= 10 and ids == sorted(ids)

    run(go(), 40)
