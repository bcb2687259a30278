"""The knee arthroplasty as a resident does it (scenarios/tka_knee.yaml on the shipped Knee Grand
Challenge bundle): blocks pinned by the readouts, the saw held in the slot, real cuts that leave
watertight bones and are drawn, gaps, releases, and the scores of the scripted expert and novice."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

from vr_trainer.app.autopilot import plan_to_track, planning_context
from vr_trainer.app.autopilot_cohort import run_autopilot_unrendered
from vr_trainer.app.clock import FakeClock
from vr_trainer.app.session import build_session
from vr_trainer.frame import Frame, HandInput, InputState
from vr_trainer.procedures.autopilot import autopilot_plan
from vr_trainer.procedures.tka_readouts import distal_femoral
from vr_trainer.scenario.validate import load_validated_scenario
from vr_trainer.sim.scene import SceneSnapshot
from vr_trainer.xr.headless import HeadlessBackend

REPO = Path(__file__).resolve().parents[2]
SCENARIO = REPO / "scenarios" / "tka_knee.yaml"


@pytest.fixture(scope="module")
def scenario10(tmp_path_factory) -> Path:
    """The shipped scenario at a 10 Hz pose track (fewer frames, the same operation)."""
    src = yaml.safe_load(SCENARIO.read_text())
    src["demo"]["fps"] = 10
    src["anatomy"]["bundle"] = str(REPO / "assets" / "knee_tka")
    p = tmp_path_factory.mktemp("tka") / "tka10.yaml"
    p.write_text(yaml.safe_dump(src, allow_unicode=True))
    return p


@pytest.fixture(scope="module")
def expert_run(scenario10):
    """The expert plan through the frame loop (nothing drawn); returns (scene, final state, plan)."""
    scene, _ = build_session(load_validated_scenario(scenario10))
    plan = autopilot_plan(planning_context(scene), "expert")
    scene.track = plan_to_track(plan, scene.world_from_patient, scene.track)
    backend = HeadlessBackend(scene.track, (16, 12))
    backend.open()
    try:
        loop = scene.frame_loop(backend, None, None, FakeClock(0.0, 1.0 / scene.track.fps))  # type: ignore[arg-type]
        loop.snapshot_fn = lambda state, frame: SceneSnapshot(state.time_s, frame.index, (), (), state.annotations)
        loop.run()
    finally:
        backend.close()
    return scene, loop.state, plan


def test_expert_cuts_leave_watertight_bones_that_the_scene_draws(expert_run):
    scene, state, _ = expert_run
    cut = scene.procedure.cut_bones(state.procedure_state)
    assert set(cut) == {"femur", "tibia"}
    assert cut["femur"].version == 5 and cut["tibia"].version == 1  # distal + four 4-in-1 cuts; one tibial
    for name, bone in cut.items():
        assert bone.mesh.is_watertight, name
        assert bone.mesh.volume < scene.procedure.meshes[name].volume - 1000.0, name  # bone was taken
    snap = scene.snapshot(state, Frame(1, state.time_s, [], InputState()))
    drawn = {it.mesh_id for it in snap.items}
    uploads = {u.mesh_id: u for u in snap.uploads}
    assert "anatomy:femur@cut5" in drawn and "anatomy:femur" not in drawn
    assert len(uploads["anatomy:femur@cut5"].faces) == len(cut["femur"].mesh.faces)
    # the run ends on the trial in flexion: the tibia (and what moves with it) is drawn turned 90 degrees
    tibia_item = next(it for it in snap.items if it.mesh_id.startswith("anatomy:tibia"))
    femur_item = next(it for it in snap.items if it.mesh_id.startswith("anatomy:femur"))
    assert np.allclose(femur_item.world_from_model, scene.world_from_patient)
    turned = np.linalg.inv(scene.world_from_patient) @ tibia_item.world_from_model
    assert abs(np.degrees(np.arccos(np.clip((np.trace(turned[:3, :3]) - 1) / 2, -1, 1))) - 90.0) < 0.5
    # the readouts panel tells what was cut
    read = next(p for p in snap.panels if p.panel_id == "readouts").lines
    assert any("Extension gap" in ln for ln in read) and any("Flexion gap" in ln for ln in read), read


def test_the_distal_cut_lies_where_the_pinned_block_was(expert_run):
    scene, state, _ = expert_run
    st = state.procedure_state
    plane = st.cuts["distal"]
    femur = scene.procedure.bone(st, "femur")
    # the kept femur lies on the plane's kept side, and its cut face is on the plane
    d = plane.signed_distance_mm(np.asarray(femur.vertices))
    assert d.min() > -0.01
    r = distal_femoral(plane, scene.procedure.femur)
    assert abs(r.varus_deg) < 0.05 and abs(r.flexion_deg - 3.0) < 0.05
    assert abs(max(r.medial_resection_mm, r.lateral_resection_mm) - 11.0) < 0.05


def test_the_saw_is_held_in_the_slot_and_cuts_only_a_swept_section(expert_run):
    scene, _, _ = expert_run
    model = scene.procedure
    st = model.initial_state()
    block = next(i for i in scene.initial_state.instruments if i.spec.kind == "distal_femoral_block")
    saw = next(i for i in scene.initial_state.instruments if i.spec.kind == "saw_blade")
    w = scene.world_from_patient
    f = model.femur
    tip_p = f.knee_centre_mm + 40.0 * f.frame.anterior
    up_w = w[:3, :3] @ f.frame.superior
    from vr_trainer.sim.transforms import pose_from_axis

    pose = pose_from_axis((w @ np.append(tip_p, 1.0))[:3], up_w)
    prev = dataclasses.replace(scene.initial_state, procedure_state=st)
    res = model.move(prev, (dataclasses.replace(block, world_from_tool=pose), saw), 0, HandInput(pose, trigger=1.0),
                     1 / 90, frozenset())
    assert "pinned_distal_femoral_block" in res.actions
    prev = dataclasses.replace(prev, procedure_state=res.procedure_state)
    # the saw held 6 mm off the slot, tilted: it is put into the slot plane
    off = pose.copy()
    off[:3, 3] += 6.0 * up_w + 80.0 * (w[:3, :3] @ f.frame.anterior)
    tilt = pose_from_axis(off[:3, 3], w[:3, :3] @ (f.frame.anterior + 0.3 * f.frame.superior))
    res2 = model.move(prev, (res.instruments[0], dataclasses.replace(saw, world_from_tool=tilt)), 1,
                      HandInput(tilt, trigger=1.0), 1 / 90, frozenset())
    held = res2.instruments[1].world_from_tool
    plane = res.procedure_state.slots["distal"]
    tip_held = (np.linalg.inv(w) @ np.append(held[:3, 3], 1.0))[:3]
    assert abs(plane.signed_distance_mm(tip_held)[0]) < 1e-6
    assert abs(float((np.linalg.inv(w)[:3, :3] @ held[:3, 2]) @ plane.normal)) < 1e-6  # the blade in the plane
    assert not res2.actions and not res2.procedure_state.cuts  # outside the bone: nothing cut yet


@pytest.fixture(scope="module")
def skill_runs(scenario10):
    """Six skill levels; the expert's attempt is recorded (``runs[1.0]["recording"]``)."""
    levels = (1.0, 0.9, 0.75, 0.55, 0.35, 0.15)
    ctx: list = []
    rec = scenario10.parent / "expert.mcap"
    return {s: run_autopilot_unrendered(scenario10, "expert", s, shared_ctx=ctx, record=rec if s == 1.0 else None)
            for s in levels}


def _m(s: dict, name: str) -> float:
    return s["metrics"][name]["value"]


def test_expert_passes_and_novice_fails_for_the_reasons_the_metrics_give(skill_runs):
    e, n = skill_runs[1.0], skill_runs[0.15]
    assert e["passed"] and e["score"] >= 90, e["score"]
    assert all(st["completed"] for st in e["steps"])
    for name in ("distal_varus_error_deg", "tibial_varus_error_deg", "tibial_slope_error_deg",
                 "femoral_rotation_error_deg"):
        assert _m(e, name) < 0.5, name
    assert _m(e, "extension_gap_imbalance_mm") <= 2.0 and _m(e, "flexion_extension_mismatch_mm") <= 2.0
    assert n["passed"] is False and n["score"] <= 60, n["score"]
    assert _m(n, "distal_varus_error_deg") > 2.5 and _m(n, "tibial_varus_error_deg") > 2.5
    assert _m(n, "extension_gap_imbalance_mm") > 2.0  # under-released: the balancing step never completes
    assert any("balance" in r for r in n["fail_reasons"]), n["fail_reasons"]
    # the novice's saw went through the posterior tibial cortex into the popliteal artery; the expert's did not
    assert _m(e, "risk_contacts") == 0 and _m(n, "risk_contacts") >= 1
    assert any("popliteal" in r for r in n["fail_reasons"]), n["fail_reasons"]


def test_scores_fall_monotonically_with_skill(skill_runs):
    scores = [skill_runs[s]["score"] for s in sorted(skill_runs, reverse=True)]
    assert scores == sorted(scores, reverse=True), scores
    assert scores[0] - scores[-1] > 40


def test_a_run_exports_the_cutting_guides_into_out(tmp_path, scenario10):
    from vr_trainer.app.run import export_knee_guides

    scene, _ = build_session(load_validated_scenario(scenario10))
    got = export_knee_guides(scene, tmp_path / "guides")
    assert sorted(got["written"]) == ["guides/distal_femoral_guide.3mf", "guides/distal_femoral_guide.stl",
                                      "guides/proximal_tibial_guide.3mf", "guides/proximal_tibial_guide.stl"]
    import trimesh

    g = trimesh.load(tmp_path / "guides" / "distal_femoral_guide.stl")
    assert g.is_watertight and g.volume > 1000.0


def test_the_report_plots_the_cut_angles_against_the_plan(skill_runs, tmp_path):
    from vr_trainer.cli import main

    out = tmp_path / "report.html"
    assert main(["report", skill_runs[1.0]["recording"], "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    plot = html[html.index("id=plot-angles"):]
    plot = plot[:plot.index("</figure>")]
    for angle in ("distal_varus", "tibial_slope", "femoral_rotation"):
        assert angle in plot, angle
    assert "[2.5, 3.5]" in plot  # the 3 degree slope and flexion targets, +- the rubric's 0.5 degree full marks
