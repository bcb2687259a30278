"""The frame loop: phase order, fixed-step simulation independent of the render rate, inbox safety."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from vr_trainer.app.bridge import ThreadSafeInbox
from vr_trainer.app.clock import FakeClock
from vr_trainer.app.loop import PHASES, FrameLoop
from vr_trainer.render.mirror import MirrorCompositor
from vr_trainer.render.renderer import SceneRenderer
from vr_trainer.sim.instruments import CATALOGUE, InstrumentState
from vr_trainer.sim.scene import DrawItem, SceneSnapshot
from vr_trainer.sim.simulation import SimState, Simulation, Target
from vr_trainer.xr.headless import HeadlessBackend
from vr_trainer.xr.posetrack import PoseTrack

pytestmark = pytest.mark.gl


def make_loop(frames: int, clock_step_s: float, fixed_dt_s: float = 1 / 120, tool_keys=None, sim=None, rules=()):
    track = PoseTrack.from_keys([{"t_s": 0, "position_mm": [0, 300, 500], "look_at_mm": [0, 0, 0]}],
                                tool_keys or [], 30)
    backend = HeadlessBackend(track, (64, 48), frames=frames)
    ctx = backend.open()
    r = SceneRenderer(ctx)
    s = trimesh.creation.icosphere(2, 80.0)
    r.add_mesh("s", s.vertices, s.faces, "bone")

    def snap(st, fr):
        return SceneSnapshot(st.time_s, fr.index, (DrawItem("s", np.eye(4)),), (), st.annotations)

    state = SimState(instruments=(InstrumentState("needle", CATALOGUE["spinal_needle"]),))
    loop = FrameLoop(backend, r, sim or Simulation(np.eye(4)), state, snap, MirrorCompositor(ctx, (128, 48)),
                     FakeClock(0.0, clock_step_s), fixed_dt_s)
    loop.rules.extend(rules)
    return loop, backend


def test_phases_run_in_order_each_frame():
    loop, backend = make_loop(3, 1 / 30)
    seen: list[tuple[str, int]] = []
    loop.trace = lambda name, i: seen.append((name, i))
    try:
        assert loop.step() and loop.step() and loop.step()
        assert not loop.step(), "the backend's frames are exhausted"
    finally:
        backend.close()
    assert seen == [(p, i) for i in range(3) for p in PHASES]


@pytest.mark.parametrize("render_hz", [20.0, 30.0, 90.0])
def test_simulation_time_follows_the_clock_not_the_frame_rate(render_hz):
    loop, backend = make_loop(10, 1 / render_hz)
    try:
        n = loop.run()
    finally:
        backend.close()
    assert n == 10
    elapsed = 9 / render_hz  # the first frame only starts the clock
    assert loop.state.time_s == pytest.approx(elapsed, abs=1 / 120 + 1e-9)
    assert loop.state.tick == int(round(loop.state.time_s * 120))


def test_inbox_items_run_once_and_bad_ones_are_counted():
    loop, backend = make_loop(2, 1 / 30)
    inbox = ThreadSafeInbox()
    loop.inboxes.append(inbox)
    hits = []
    inbox.put(lambda lp: hits.append(lp.state.tick))
    inbox.put(lambda lp: 1 / 0)
    try:
        loop.run()
    finally:
        backend.close()
    assert hits == [0] and loop.inbox_errors == 1


def test_instrument_follows_hand_and_reaching_target_completes_step_with_haptic():
    target = np.array([0.0, 0.0, 0.0])
    keys = [{"t_s": 0.0, "tip_mm": [0, 100, 0], "toward_mm": [0, 200, 0]},
            {"t_s": 1.0, "tip_mm": [0, 0, 0], "toward_mm": [0, 100, 0]}]
    from vr_trainer.app.training import ScenarioRules
    from vr_trainer.scenario.engine import ScenarioEngine
    from vr_trainer.scenario.schema import Scenario

    scn = Scenario.model_validate({
        "format_version": 2, "id": "reach", "title": {"en": "Reach"}, "procedure": "other",
        "anatomy": {"bundle": "none"}, "instruments": [{"id": "needle", "kind": "spinal_needle"}],
        "targets": [{"id": "t", "point_mm": [0, 0, 0], "tolerance_mm": 2.0}],
        "steps": [{"id": "reach", "prompt": {"en": "Reach"}, "instruments": ["needle"], "complete_when": "reached(t)"}],
        "rubric": {"metrics": [{"metric": "steps_completed_pct", "weight": 1, "full_marks_at": 100,
                                "zero_marks_at": 0}]},
        "demo": {"head": [{"t_s": 0, "position_mm": [0, 300, 500], "look_at_mm": [0, 0, 0]}]}})
    sim = Simulation(np.eye(4), {"t": Target("t", target, 2.0)})
    rules = ScenarioRules(scn, ScenarioEngine(scn), {})
    loop, backend = make_loop(40, 1 / 30, tool_keys=keys, sim=sim, rules=[rules])
    try:
        loop.run()
    finally:
        backend.close()
    st = loop.state
    assert np.allclose(st.instruments[0].tip_mm, [0, 0, 0], atol=1e-6)
    assert st.tip_to_target_mm == pytest.approx(0.0, abs=1e-6)
    assert st.completed_steps == ("reach",), "the scenario engine completed the step"
    assert [n.kind for n in loop.notices] == ["step_started", "step_completed"], "the loop keeps the notices"
    assert backend.haptics and backend.haptics[0][0] == 1, "a haptic pulse on the active hand"
    # needle pointing straight down (posterior->anterior in this frame): 90 deg from the axial reference
    assert st.axial_angle_deg == pytest.approx(90.0, abs=0.5)


def test_mirror_frames_reach_a_sink_with_depth():
    loop, backend = make_loop(4, 1 / 30)

    class Sink:
        wants_depth = True

        def __init__(self):
            self.got = []

        def publish(self, f):
            self.got.append(f)

    sink = Sink()
    loop.sinks.append(sink)
    try:
        loop.run()
    finally:
        backend.close()
    # a software rasteriser hands each frame over at once; a GPU one frame late
    assert [f.frame_id for f in sink.got] == ([0, 1, 2, 3] if loop.mirror.immediate else [0, 1, 2])
    f = sink.got[-1]
    assert f.rgb.shape == (48, 128, 3) and f.depth.shape == (48, 128)
    assert f.depth.min() < 1.0, "the sphere is in the depth image"
    assert len(f.views) == 2 and f.views[1].rect_px == (64, 0, 64, 48)
    assert loop.recent_frame(1) is not None


def test_live_headless_is_paced_and_replays_the_track():
    import time

    track = PoseTrack.from_keys([{"t_s": 0, "position_mm": [0, 300, 500], "look_at_mm": [0, 0, 0]},
                                 {"t_s": 0.1, "position_mm": [100, 300, 500], "look_at_mm": [0, 0, 0]}], [], 30)
    b = HeadlessBackend(track, (32, 24), frames=12, paced=True, loop_track=True)
    b.open()
    try:
        t0 = time.perf_counter()
        heads = [f.views[0].pose_world_from_eye[0, 3] for f in b.frames()]
        elapsed = time.perf_counter() - t0
    finally:
        b.close()
    assert len(heads) == 12
    assert elapsed >= 11 / 30 - 0.01, "one frame per 1/30 s of wall time"
    assert heads[0] == pytest.approx(heads[4]) and heads[3] > heads[0], "the 4-frame track replays"
