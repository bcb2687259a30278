"""What a mentor changed during a session (pins, strokes, undo, notes) is recorded at the frame it
arrived and re-applied there on replay: the replayed eye images equal the live ones. A run on
the wall clock with uneven frames replays exactly too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vr_trainer.app.bridge import ThreadSafeInbox
from vr_trainer.app.clock import MonotonicClock
from vr_trainer.app.replay import replay_recording
from vr_trainer.app.run import start_recording
from vr_trainer.app.session import build_session
from vr_trainer.render.renderer import SceneRenderer
from vr_trainer.scenario.loader import default_scenario_path
from vr_trainer.scenario.validate import load_validated_scenario
from vr_trainer.session.reader import read_recording
from vr_trainer.sim.annotations import Pin, Stroke
from vr_trainer.xr.headless import HeadlessBackend

pytestmark = pytest.mark.gl
SIZE = (64, 48)


def test_mentor_changes_replay_at_their_frames(tmp_path: Path, mentored_session):
    path = tmp_path / "mentored.mcap"
    with mentored_session(path, default_scenario_path(), SIZE, 40) as s:
        scene, backend, loop, inbox, recorder = s.scene, s.backend, s.loop, s.inbox, s.recorder
        target = next(iter(scene.simulation.targets.values())).point_world_mm
        loop.run(10)
        inbox.put(lambda v: v.annotations.add_pin(Pin("p1", target.copy(), (1.0, 0.2, 0.2, 1.0), v.sim_time_s, "here")))
        inbox.put(lambda v: v.add_mentor_note("Dr Li", "aim lower"))
        loop.run(10)
        inbox.put(lambda v: v.annotations.add_stroke(Stroke("s1", np.array([target, target + 30.0]),
                                                            (0.2, 1.0, 0.2, 1.0), 4.0, v.sim_time_s)))
        loop.run(10)
        inbox.put(lambda v: v.annotations.undo())
        inbox.put(lambda v: v.add_mentor_note("Dr Li", "good"))
        loop.run()
        live_eyes = backend.eye_images()
        recorder.writer.close({"frames": 40})
    rec = read_recording(path)
    assert sorted(rec.inbox) == [10, 20, 30], "each change is recorded at the frame it was applied in"
    assert rec.inbox[10]["mentor_notes"] == [["Dr Li", "aim lower"]] and len(rec.inbox[10]["annotations"]["pins"]) == 1
    out = tmp_path / "replay"
    r = replay_recording(path, out_dir=out, render=True)
    assert r["mentor_notes"] == [["Dr Li", "aim lower"], ["Dr Li", "good"]]
    assert r["annotations"] == {"pins": 1, "strokes": 0, "version": 3}
    from PIL import Image

    for k, live in enumerate(live_eyes):
        np.testing.assert_array_equal(np.asarray(Image.open(out / f"eye{k}.png")), live)


def test_a_wall_clock_run_with_uneven_frames_replays_exactly(tmp_path: Path):
    """Frames of uneven length make the fixed-step accumulator take 0, 1 or several steps per
    frame; the replay reads the recorded clock values and takes the same ones."""
    import time

    scenario_file = default_scenario_path()
    scenario = load_validated_scenario(scenario_file)
    scene, meshes = build_session(scenario)
    backend = HeadlessBackend(scene.track, size=(32, 24), frames=90)
    ctx = backend.open()
    rng = np.random.default_rng(3)
    try:
        renderer = SceneRenderer(ctx)
        scene.upload(renderer, meshes)
        loop = scene.frame_loop(backend, renderer, None, MonotonicClock())
        stall = ThreadSafeInbox(tick=lambda: (lambda v: time.sleep(float(rng.uniform(0.0, 0.03)))))
        loop.inboxes.append(stall)
        path = tmp_path / "wall.mcap"
        recorder = start_recording(path, scenario, scenario_file, scene, loop, backend.name, (32, 24),
                                   renderer.samples, None, None, None, None, 0)
        loop.run()
        assert scene.rules is not None
        live = scene.rules.engine.result().to_summary()
        recorder.writer.close(live)
    finally:
        backend.close()
    rec = read_recording(path)
    steps_per_frame = np.diff([f.clock_s for f in rec.frames]) / loop.fixed_dt_s
    assert steps_per_frame.std() > 0.5, "uneven frames"
    r = replay_recording(path)
    assert r["metric_samples_match"] and all(r["matches_recording"].values())
    assert r["metrics"] == live["metrics"] and r["steps"] == live["steps"]
