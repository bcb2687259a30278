"""A scored run: the scenario engine runs in the frame loop. The default headless run writes a
summary with a score and the metrics behind it; touching a nerve root fires the scenario's
event, pulses the hand holding the needle, and its message, sound cue and highlight reach the
resident (panels, backend, renderer)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from vr_trainer.app.clock import FakeClock
from vr_trainer.app.loop import FrameLoop
from vr_trainer.app.session import build_session
from vr_trainer.render.mirror import MirrorCompositor
from vr_trainer.render.renderer import SceneRenderer
from vr_trainer.scenario.loader import default_scenario_path, load_scenario
from vr_trainer.scenario.schema import Scenario
from vr_trainer.xr.headless import HeadlessBackend
from tests.conftest import root_contact_track

pytestmark = pytest.mark.gl
ROOT = "nerve_root_L4_exiting_left"
TWO_STEPS = Path(__file__).parents[1] / "scenario" / "data" / "pted_two_steps.yaml"  # a frozen two-step PTED
HIGHLIGHT = (1.0, 0.15, 0.1, 0.6)


@pytest.fixture(scope="module")
def default_run(pted_attempts):
    """The default scenario as `vr-trainer run` plays it (its demo: the expert autopilot), shared
    with the recording and report tests (conftest ``pted_attempts``)."""
    _, summary = pted_attempts["expert"]
    out = pted_attempts["run_dir"]
    return summary, json.loads((out / "summary.json").read_text()), out


def test_default_run_writes_a_score_and_the_metrics_behind_it(default_run):
    """The default scenario with no autopilot asked for: its demo has the expert autopilot play the
    whole staged PTED, its C-arm shots are radiographs on disk, and the score and its metrics are
    in summary.json."""
    summary, written, _ = default_run
    assert written == json.loads(json.dumps(summary)), "summary.json is what run_session returned"
    s = written
    scenario = load_scenario(default_scenario_path())
    assert s["backend"] == "headless" and s["autopilot"]["mode"] == "expert"
    assert s["steps_completed"] == [st.id for st in scenario.steps], "every stage of the operation"
    assert s["passed"] is True and s["score"] >= 90.0 and s["fail_reasons"] == []
    for name in (m.metric for m in scenario.rubric.metrics):
        m = s["metrics"][name]
        assert m["unit"] and m["definition"] and m["source"] and m["weight"] > 0 and 0.0 <= m["score"] <= 1.0
    assert s["metrics"]["risk_contacts"]["value"] == 0 and s["critical_errors"] == []
    assert 2 <= s["metrics"]["fluoro_shots"]["value"] <= 4, "the shots an expert takes"
    assert s["fluoro"]["shots_imaged"] == s["metrics"]["fluoro_shots"]["value"] and not s["fluoro"]["errors"]
    assert 100.0 <= s["metrics"]["skin_entry_lateral_mm"]["value"] <= 140.0, "10-14 cm from the midline"
    assert s["metrics"]["kambin_entry_inside"]["value"] == 1.0


def test_default_run_writes_each_shot_as_a_radiograph_with_its_geometry(default_run):
    summary, _, out = default_run
    shots = sorted(Path(out).glob("fluoro/*.png"))
    assert len(shots) == summary["metrics"]["fluoro_shots"]["value"]
    for png in shots:
        meta = json.loads(png.with_suffix(".json").read_text())
        assert png.name.startswith(f"{meta['shot']:03d}_{meta['view']}")
        g = meta["geometry"]
        assert g["sad_mm"] > 0 and g["sid_mm"] > g["sad_mm"] and len(g["source_ras_mm"]) == 3
        img = np.asarray(Image.open(png).convert("L"), float)
        assert img.std() > 10.0, f"{png.name}: a picture, not a blank"


def with_root_highlight(scenario: Scenario) -> Scenario:
    """The default scenario, its root-contact event also highlighting the root."""
    data = scenario.model_dump(mode="json", exclude_none=True)
    ev = next(e for e in data["events"] if e["id"] == "root_contact")
    ev["effects"].append({"overlay": {"structure": "exiting_root", "rgba": list(HIGHLIGHT), "duration_s": 3.0}})
    out = Scenario.model_validate(data)
    out._source_dir = scenario._source_dir
    return out


class MentorConsoleSink:
    """Collects what the loop forwards to a mentor console (a NoticeSink)."""

    def __init__(self) -> None:
        self.got: list[dict] = []

    def publish_notice(self, notice: dict) -> None:
        self.got.append(notice)


@pytest.fixture(scope="module")
def contact_run():
    scenario = with_root_highlight(load_scenario(TWO_STEPS))
    scene, meshes = build_session(scenario)
    track = root_contact_track(scenario, scene, meshes, ROOT)
    backend = HeadlessBackend(track, (64, 48))
    console = MentorConsoleSink()
    ctx = backend.open()
    try:
        renderer = SceneRenderer(ctx)
        scene.upload(renderer, meshes)
        loop = FrameLoop(backend, renderer, scene.simulation, scene.initial_state, scene.snapshot,
                         MirrorCompositor(ctx, (128, 48)), FakeClock(0.0, 1 / 30))
        loop.rules.append(scene.rules)
        loop.notice_sinks.append(console)
        loop.run()
    finally:
        backend.close()
    return scene, loop, backend, console


def test_touching_the_root_fires_the_event_and_counts_a_contact(contact_run):
    scene, loop, _, _ = contact_run
    obs = loop.state.observation
    assert obs.structure_distance_mm[ROOT] < 0 and ROOT in obs.tip_inside
    result = scene.rules.engine.result().to_summary()
    assert [e["id"] for e in result["events"]].count("root_contact") == 1, "fired once: the contact persists"
    assert result["metrics"]["risk_contacts"]["value"] == 1
    assert result["metrics"]["risk_contacts"]["score"] == pytest.approx(2 / 3, abs=1e-3)
    kinds = [n.kind for n in loop.notices]
    assert {"event", "prompt", "haptic", "sound", "overlay"} <= set(kinds), "the loop keeps the notices"


def test_the_pulse_reaches_the_hand_holding_the_needle(contact_run):
    _, _, backend, _ = contact_run
    assert (1, 1.0, 0.3, 0.0) in backend.haptics, "the event's 1.0 / 0.3 s pulse on the right (active) hand"


def test_the_panels_show_the_message_the_cue_and_the_nearest_risk(contact_run):
    scene, loop, _, _ = contact_run
    prompt, readouts = loop.last_snapshot.panels
    assert prompt.lines[1].startswith("1/2  Advance the needle into Kambin's triangle")
    assert any(ln.startswith("! Patient: sharp pain down the leg!") for ln in prompt.lines), prompt.lines
    assert "♪ sound: patient in pain" in prompt.lines
    assert any(ln.startswith("Nearest risk: Exiting root L4 (left)") and ln.endswith("(contact)")
               for ln in readouts.lines), readouts.lines
    assert any(ln.startswith("Tip to Kambin's triangle L4-L5 (left)") for ln in readouts.lines)
    zh = scene.rules.prompt_lines(loop.state.time_s, "zh")
    assert zh[0].startswith("1/2  穿刺针进入") and any("患者：腿部剧痛！" in ln for ln in zh), zh
    assert "♪ 声音提示：患者疼痛" in zh


def test_the_mentor_console_gets_the_notices(contact_run):
    console = contact_run[3]
    kinds = [n["kind"] for n in console.got]
    assert kinds[0] == "step_started" and console.got[0]["step_index"] == 0 and console.got[0]["step_count"] == 2
    pain = [n for n in console.got if n["kind"] == "prompt" and n["event_id"] == "root_contact"]
    assert len(pain) == 1 and pain[0]["text_en"].startswith("Patient: sharp pain") and pain[0]["text_zh"]
    json.dumps(console.got)  # JSON-ready


def test_the_overlay_highlights_the_root_in_the_picture(contact_run, gl_ctx):
    scene, loop, _, _ = contact_run
    snap = loop.last_snapshot
    tinted = {it.mesh_id: it.tint_rgba for it in snap.items if it.tint_rgba is not None}
    assert tinted == {f"anatomy:{ROOT}": HIGHLIGHT}
    # the renderer blends the structure towards the tint: the same sphere, plain and highlighted
    from vr_trainer.frame import Fov, View
    from vr_trainer.sim.scene import DrawItem, SceneSnapshot
    from vr_trainer.sim.transforms import look_at_pose
    from vr_trainer.xr.base import read_rgb

    r = SceneRenderer(gl_ctx, samples=0)
    ball = trimesh.creation.icosphere(3, 40.0)
    r.add_mesh("ball", ball.vertices, ball.faces, "nerve")
    fb = gl_ctx.framebuffer(color_attachments=[gl_ctx.texture((48, 48), 4)],
                            depth_attachment=gl_ctx.depth_renderbuffer((48, 48)))
    view = View(0, look_at_pose(np.array([0.0, 0.0, 300.0]), np.zeros(3)), Fov.symmetric(40.0, 1.0), 48, 48)
    imgs = []
    for tint in (None, HIGHLIGHT):
        r.render(view, SceneSnapshot(0.0, 0, (DrawItem("ball", np.eye(4), tint_rgba=tint),)), fb)
        imgs.append(read_rgb(fb)[20:28, 20:28].astype(float).mean((0, 1)))
    plain, lit = imgs
    assert lit[0] - lit[1] > plain[0] - plain[1] + 40, f"redder when highlighted: {plain} -> {lit}"
