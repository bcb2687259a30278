"""The hip arthroplasty as a resident does it (scenarios/tha_hip.yaml on the hip phantom, supine,
anterior approach): the reamer stopped by the bone and reaming with the trigger, the reamed socket a
watertight boolean subtraction that the scene draws, live Murray angles of the cup, the impaction
against the safe zone, the native acetabulum found from the bone alone, and the scores of the
scripted expert, novice and the skill levels between."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import trimesh
import yaml

from vr_trainer.anatomy.bundle import load_bundle
from vr_trainer.app.autopilot import plan_to_track, planning_context
from vr_trainer.app.autopilot_cohort import run_autopilot_unrendered
from vr_trainer.app.clock import FakeClock
from vr_trainer.app.session import build_session
from vr_trainer.frame import Frame, HandInput, InputState
from vr_trainer.procedures.autopilot import autopilot_plan
from vr_trainer.procedures.tha import hip_setup
from vr_trainer.procedures.tha_pelvis import cup_angles_deg, cup_axis, reaming
from vr_trainer.procedures.tha_workflow import ThaState
from vr_trainer.scenario.validate import load_validated_scenario
from vr_trainer.sim.scene import SceneSnapshot
from vr_trainer.sim.transforms import pose_from_axis
from vr_trainer.xr.headless import HeadlessBackend

REPO = Path(__file__).resolve().parents[2]
SCENARIO = REPO / "scenarios" / "tha_hip.yaml"
DT = 1.0 / 120.0


@pytest.fixture(scope="module")
def scenario10(tmp_path_factory) -> Path:
    """The shipped scenario at a 10 Hz pose track (fewer frames, the same operation), without its risk
    structure (the sacrum, far from the acetabulum and in no rubric metric: its distance grids would
    take most of each session's build)."""
    src = yaml.safe_load(SCENARIO.read_text())
    src["demo"]["fps"] = 10
    assert [r["id"] for r in src["risk_structures"]] == ["sacrum"]
    src["risk_structures"] = []
    src["anatomy"]["bundle"] = str(REPO / "assets" / "hip")
    p = tmp_path_factory.mktemp("tha") / "tha10.yaml"
    p.write_text(yaml.safe_dump(src, allow_unicode=True))
    return p


@pytest.fixture(scope="module")
def scene(scenario10):
    return build_session(load_validated_scenario(scenario10))[0]


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


def _inst(scene, kind: str):
    return next(i for i in scene.initial_state.instruments if i.spec.kind == kind)


def _step(scene, st, inst, pose_w: np.ndarray, trigger: float):
    """One fixed step of the model with ``inst`` (the only instrument, active) held at ``pose_w``."""
    prev = dataclasses.replace(scene.initial_state, procedure_state=st)
    moved = dataclasses.replace(inst, world_from_tool=pose_w)
    res = scene.procedure.move(prev, (moved,), 0, HandInput(pose_w, trigger=trigger), DT, frozenset())
    obs = dataclasses.replace(scene.initial_state.observation or _blank_obs(), values={}, angles_deg={})
    obs, st2 = scene.procedure.observe(res.procedure_state, obs, res.instruments, 0)
    return res, obs, st2


def _blank_obs():
    from vr_trainer.sim.observation import Observation

    return Observation(time_s=0.0, dt_s=DT)


def _pose(scene, centre_p: np.ndarray, cup_axis_p: np.ndarray) -> np.ndarray:
    """A tool pose (room) with its tip at ``centre_p`` and +z (toward the handle) along ``cup_axis_p``."""
    w = scene.world_from_patient
    return pose_from_axis((w @ np.append(centre_p, 1.0))[:3], w[:3, :3] @ cup_axis_p)


def test_expert_reams_a_watertight_socket_that_the_scene_draws(expert_run):
    scene, state, _ = expert_run
    model = scene.procedure
    st = state.procedure_state
    cut = model.cut_bones(st)
    assert set(cut) == {"hip_right", "cartilage_acetabular_right"}
    hemi = cut["hip_right"].mesh
    assert hemi.is_watertight and hemi.volume < model.meshes["hemipelvis"].volume - 500.0  # bone was taken
    # nothing of the bone is left inside the reamer's head at the deepest reamed centre
    c, r = st.deepest_mm, model.reamer_radius_mm
    d = np.asarray(hemi.vertices) - c
    advance = -st.cup.axis  # the expert reams along the cup's (planned) axis
    dome = (d @ advance) > 0.0
    assert np.linalg.norm(d[dome], axis=1).min() > r - 0.3
    snap = scene.snapshot(state, Frame(1, state.time_s, [], InputState()))
    drawn = {it.mesh_id for it in snap.items}
    uploads = {u.mesh_id: u for u in snap.uploads}
    mid = f"anatomy:hip_right@cut{cut['hip_right'].version}"
    assert mid in drawn and "anatomy:hip_right" not in drawn
    assert len(uploads[mid].faces) == len(hemi.faces)
    read = next(p for p in snap.panels if p.panel_id == "readouts").lines
    assert any(ln.startswith("Reamed: depth 2.0 mm") for ln in read), read
    assert any(ln.startswith("Cup: inclination 40.0°  anteversion 15.0°  (in safe zone)") for ln in read), read


@pytest.mark.parametrize("inc, av, zone", [(40.0, 15.0, True), (47.5, 22.0, True), (55.0, 5.0, False),
                                           (35.0, -2.0, False), (31.0, 8.0, True)])
def test_cup_readouts_match_constructed_axes_and_the_impaction_records_them(scene, inc, av, zone):
    model = scene.procedure
    seat = model.native.centre_mm - 2.0 * model.native.axis
    st = ThaState(depth_mm=model.depth_of(seat), deepest_mm=seat)
    axis = cup_axis(inc, av, model.frame, model.side)
    # held 9 mm off the socket: the cup drops into it, its angles read live
    res, obs, st = _step(scene, st, _inst(scene, "cup_impactor"), _pose(scene, seat + 9.0 * axis, axis), 0.0)
    tip = np.linalg.inv(scene.world_from_patient) @ np.append(res.instruments[0].world_from_tool[:3, 3], 1.0)
    assert np.linalg.norm(tip[:3] - seat) < 1e-6
    assert abs(obs.angles_deg["cup_inclination"] - inc) < 0.1 and abs(obs.angles_deg["cup_anteversion"] - av) < 0.1
    assert not res.actions
    res, obs, st = _step(scene, st, _inst(scene, "cup_impactor"), _pose(scene, seat + 9.0 * axis, axis), 1.0)
    assert res.actions == {"cup_impacted", "cup_in_zone" if zone else "cup_outside_zone"}
    assert abs(obs.values["impacted_cup_inclination_deg"] - inc) < 0.1
    assert abs(obs.values["impacted_cup_anteversion_deg"] - av) < 0.1
    assert obs.values["cup_in_zone"] == float(zone)
    move = seat - model.native.centre_mm
    assert abs(obs.values["leg_length_change_mm"] + float(move @ model.frame.superior)) < 1e-6
    assert abs(obs.values["offset_change_mm"] - float(move @ model.frame.right)) < 1e-6
    done = dataclasses.replace(scene.initial_state, observation=obs)
    assert any(ln.startswith(f"Cup: inclination {inc:.1f}°") for ln in model.readout_lines(done, "en"))
    assert any(ln.startswith(f"髋臼杯: 外展 {inc:.1f}°") for ln in model.readout_lines(done, "zh"))


def test_the_bone_stops_the_reamer_and_the_trigger_reams_to_the_hand(scene):
    model = scene.procedure
    reamer = _inst(scene, "acetabular_reamer")
    axis = cup_axis(40.0, 15.0, model.frame, model.side)
    n = model.native
    # 3 mm of depth along the native axis, reached moving along the planned axis
    t = 3.0 / float(axis @ n.axis)
    target = n.centre_mm - t * axis
    pose = _pose(scene, target, axis)
    st = ThaState()
    res, obs, st = _step(scene, st, reamer, pose, 0.0)  # pushed in without the trigger: the bone holds it
    held = np.linalg.inv(scene.world_from_patient) @ np.append(res.instruments[0].world_from_tool[:3, 3], 1.0)
    assert abs(model.depth_of(held[:3])) < 1e-6 and "reaming_depth_mm" not in obs.values
    steps = 0
    while steps < 200:  # running, it reams at the plan's rate (4 mm/s) until it is where the hand is
        res, obs, st = _step(scene, st, reamer, pose, 1.0)
        steps += 1
        if abs(obs.values["reaming_depth_mm"] - 3.0) < 1e-9:
            break
    assert abs(steps * DT - 3.0 / model.reaming_rate_mm_s) < 2 * DT
    assert abs(obs.values["reaming_depth_mm"] - 3.0) < 0.1
    want = reaming(n, target, model.frame, model.side)
    assert abs(obs.values["medialisation_mm"] - want.medialisation_mm) < 0.1
    assert abs(obs.values["reamer_depth_mm"] - 3.0) < 0.1
    assert abs(obs.angles_deg["reamer_inclination"] - 40.0) < 0.1
    res, obs, st = _step(scene, st, reamer, pose, 0.0)
    assert "reamed" in res.actions and not st.reaming
    assert st.bones["hemipelvis"].mesh.is_watertight


def test_the_acetabulum_comes_from_the_bone_of_a_moved_pelvis_without_femur_or_landmarks(scenario10):
    b = load_bundle(REPO / "assets" / "hip")
    scenario = load_validated_scenario(scenario10)
    ref = hip_setup(scenario, b, np.eye(4)).model
    assert ref.seed_source == "femoral head"
    tr = trimesh.transformations.rotation_matrix(np.radians(12.0), [1.0, 0.2, 0.0])
    tr[:3, 3] = [15.0, -40.0, 25.0]
    pelvis = [SimpleNamespace(name=n, tissue="bone", mesh=b[n].mesh.copy().apply_transform(tr))
              for n in ("hip_right", "hip_left", "sacrum")]
    moved = hip_setup(scenario, SimpleNamespace(structures=pelvis, landmarks={}), np.eye(4)).model
    assert moved.seed_source == "cavity search"
    centre = trimesh.transform_points(ref.native.centre_mm[None], tr)[0]
    assert np.linalg.norm(moved.native.centre_mm - centre) < 0.5
    assert abs(moved.native.radius_mm - ref.native.radius_mm) < 0.3
    axis = tr[:3, :3] @ ref.native.axis  # the opening is found on a fixed sampling of directions (about 1 deg)
    assert np.degrees(np.arccos(np.clip(moved.native.axis @ axis, -1.0, 1.0))) < 2.0
    # the cup angles are the pelvis's own: the same cup reads the same in the moved pelvis
    cup = cup_axis(40.0, 15.0, ref.frame, "right")
    got = cup_angles_deg(tr[:3, :3] @ cup, moved.frame, "right")
    assert abs(got[0] - 40.0) < 0.5 and abs(got[1] - 15.0) < 0.5


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
    assert _m(e, "cup_inclination_error_deg") < 0.5 and _m(e, "cup_anteversion_error_deg") < 0.5
    assert _m(e, "cup_in_safe_zone") == 1.0 and _m(e, "reaming_depth_error_mm") < 0.5
    assert n["passed"] is False and n["score"] <= 60, n["score"]
    assert _m(n, "cup_inclination_error_deg") > 12.0 and _m(n, "cup_anteversion_error_deg") > 9.0
    assert _m(n, "cup_in_safe_zone") == 0.0 and any(ev["id"] == "cup_outside_zone" for ev in n["events"])
    assert _m(n, "reaming_depth_error_mm") > 4.0 and _m(n, "medialisation_mm") > _m(e, "medialisation_mm") + 4.0
    assert _m(n, "total_time_s") > 2.0 * _m(e, "total_time_s")
    assert any("below the pass mark" in r for r in n["fail_reasons"]), n["fail_reasons"]


def test_scores_fall_monotonically_with_skill(skill_runs):
    scores = [skill_runs[s]["score"] for s in sorted(skill_runs, reverse=True)]
    assert scores == sorted(scores, reverse=True), scores
    assert scores[0] - scores[-1] > 40


def test_the_medial_wall_behind_the_head_and_a_breach_through_it():
    """A block with a spherical socket (r 25) whose floor is 5 mm thick: reaming 7 mm deeper goes through."""
    from vr_trainer.procedures.tha_pelvis import Acetabulum, PelvicFrame
    from vr_trainer.procedures.tha_reaming import inner_wall_mm
    from vr_trainer.procedures.tha_workflow import ThaModel
    from vr_trainer.sim.cutting import from_manifold, to_manifold

    block = to_manifold(trimesh.creation.box(extents=(90.0, 90.0, 90.0)))
    ball = to_manifold(trimesh.creation.icosphere(subdivisions=5, radius=25.0).apply_translation([0, 0, -15.0]))
    bone = from_manifold(block - ball)
    centre = np.array([0.0, 0.0, -15.0])
    assert abs(inner_wall_mm(bone, centre, [0.0, 0.0, 1.0]) - 60.0) < 0.2  # up through the block's body
    assert abs(inner_wall_mm(bone, centre, [0.0, 0.0, -1.0]) - 30.0) < 0.2  # the 5 mm floor
    e = np.eye(3)
    frame = PelvicFrame(np.zeros(3), e[0], e[1], e[2], *(np.zeros(3),) * 4)
    model = ThaModel(np.eye(4), frame, Acetabulum(centre, 25.0, np.array([0.0, 0.0, 1.0]), 0.0), "right",
                     {"hemipelvis": bone}, {"hemipelvis": "block"}, reamer_radius_mm=25.0, reaming_rate_mm_s=1e3)
    st = ThaState()
    got = []
    for depth in (0.0, 2.0, 4.0, 7.0):
        st, actions = model._wall(dataclasses.replace(st), centre - [0.0, 0.0, depth], np.array([0.0, 0.0, -1.0]))
        got.append((round(st.wall_mm, 1), actions))
    assert got == [(5.0, set()), (3.0, set()), (1.0, set()), (-2.0, {"medial_wall_breach"})]


def test_the_left_hip_is_the_same_operation_mirrored(scenario10, tmp_path):
    src = yaml.safe_load(scenario10.read_text())
    src["anatomy"].update(side="left", hide=["femur_left", "cartilage_femoral_head_left"])
    src["targets"][0]["point_mm"] = [-88.0, 0.0, 0.0]
    p = tmp_path / "tha_left.yaml"
    p.write_text(yaml.safe_dump(src, allow_unicode=True))
    e = run_autopilot_unrendered(p, "expert")
    assert e["passed"] and e["score"] >= 90, e["score"]
    assert _m(e, "cup_inclination_error_deg") < 0.5 and _m(e, "cup_anteversion_error_deg") < 0.5
    assert _m(e, "medialisation_mm") > 0.0  # toward the midline: -x on the left


def test_a_tha_scenario_of_reach_steps_runs_without_the_hip_model():
    reach = load_validated_scenario(REPO / "tests" / "scenario" / "data" / "tha_reach.yaml")
    assert build_session(reach)[0].procedure is None


def test_the_report_plots_the_cup_angles_against_the_safe_zone(skill_runs, tmp_path):
    from vr_trainer.cli import main

    out = tmp_path / "report.html"
    assert main(["report", skill_runs[1.0]["recording"], "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    plot = html[html.index("id=plot-angles"):]
    plot = plot[:plot.index("</figure>")]
    for angle in ("cup_inclination", "cup_anteversion", "reamer_inclination"):
        assert angle in plot, angle
    assert "[30, 50]" in plot and "[5, 25]" in plot  # Lewinnek's zone: 40 +- 10 and 15 +- 10 degrees


def test_the_reamer_and_cup_are_drawn_at_the_plans_sizes(scenario10, tmp_path):
    """A 48 mm last reamer and a 50 mm cup are what the resident sees in the hand, not the catalogue's 54 mm."""
    src = yaml.safe_load(scenario10.read_text())
    src["tha"]["reamer_diameter_mm"], src["tha"]["cup_diameter_mm"] = 48, 50
    p = tmp_path / "tha_sized.yaml"
    p.write_text(yaml.safe_dump(src, allow_unicode=True))
    scene, meshes = build_session(load_validated_scenario(p))
    snap = scene.snapshot(scene.initial_state, Frame(1, 0.0, [], InputState()))
    for kind, want_mm in (("acetabular_reamer", 48.0), ("cup_impactor", 50.0)):
        inst = next(i for i in scene.initial_state.instruments if i.spec.kind == kind)
        mid = next(m for m in meshes if m.startswith(f"instrument:{kind}"))
        v = meshes[mid].vertices_mm
        head = v[v[:, 2] < 0.0]  # the dome below the tip (the handle runs up +z)
        width = float(head[:, :2].max(0).min() - head[:, :2].min(0).max())
        assert abs(width - want_mm) < 1.0, f"{kind}: head drawn {width:.1f} mm across, planned {want_mm}"
        assert inst.spec.head_diameter_mm == want_mm
    drawn = {it.mesh_id for it in snap.items}
    assert all(m in meshes for m in drawn if m.startswith("instrument:")), "every drawn instrument mesh exists"
