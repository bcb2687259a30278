"""The staged PTED autopilot, in silico construct validity: the expert's plan is computed from the
bundle (a clean, near-miss-free run that passes with >= 90), the novice fails with the metrics
saying why, and over six skill levels the score falls as the skill falls (Spearman >= 0.9).

Runs simulate and score every fixed step without drawing (as ``vr-trainer replay --no-render``
and the cohort runs do), so the whole procedure runs in a few seconds."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from vr_trainer.app.autopilot import plan_to_track, planning_context
from vr_trainer.app.clock import FakeClock
from vr_trainer.app.session import build_session
from vr_trainer.procedures.autopilot import autopilot_plan
from vr_trainer.procedures.plan import NEXT_INSTRUMENT, Plan
from vr_trainer.procedures.pted_autopilot import PtedSkill, is_staged
from vr_trainer.procedures.pted_plan import plan_trajectory
from vr_trainer.procedures.reach import PlanningContext
from vr_trainer.scenario.scoring import RunResult
from vr_trainer.scenario.validate import load_validated_scenario
from vr_trainer.sim.scene import SceneSnapshot
from vr_trainer.xr.headless import HeadlessBackend

SCENARIOS = ["scenarios/pted_l4_l5.yaml", "scenarios/pted_l5_s1.yaml"]
SHOT_ACTIONS = ("carm_ap", "carm_lateral", "carm_oblique", "carm_shot")


def _existing() -> list[str]:
    from pathlib import Path

    return [s for s in SCENARIOS if Path(s).exists()]


@pytest.fixture(scope="module")
def contexts() -> dict[str, PlanningContext]:
    out = {}
    for path in _existing():
        scene, _ = build_session(load_validated_scenario(path))
        out[path] = planning_context(scene)
    return out


def run_plan(path: str, plan: Plan, fixed_dt_s: float | None = None) -> RunResult:
    """Simulate and score ``plan`` on a fresh session of ``path`` without drawing; ``fixed_dt_s``
    (default: the frame loop's 1/120 s) coarser for the skill sweep (one step per 30 Hz frame:
    the plan moves at most about 1 mm per step, and bone stops sample the motion)."""
    scene, _ = build_session(load_validated_scenario(path))
    scene.track = plan_to_track(plan, scene.world_from_patient, scene.track)
    backend = HeadlessBackend(scene.track, (16, 12))
    backend.open()
    try:
        loop = scene.frame_loop(backend, None, None, FakeClock(0.0, 1.0 / scene.track.fps))  # type: ignore[arg-type]
        loop.snapshot_fn = lambda state, frame: SceneSnapshot(state.time_s, frame.index, (), (), state.annotations)
        if fixed_dt_s is not None:
            loop.fixed_dt_s = fixed_dt_s
        loop.run()
    finally:
        backend.close()
    assert scene.rules is not None
    return scene.rules.engine.result()


@pytest.fixture(scope="module")
def runs(contexts) -> dict[tuple[str, float], tuple[Plan, RunResult]]:
    """Expert and novice per scenario, as `vr-trainer run --autopilot expert|novice` runs them."""
    out = {}
    for path, ctx in contexts.items():
        for mode in ("expert", "novice"):
            plan = autopilot_plan(ctx, mode, seed=3)
            out[(path, plan.skill)] = (plan, run_plan(path, plan))
    return out


@pytest.fixture(scope="module")
def sweep(contexts) -> dict[tuple[str, float], RunResult]:
    """Six skills per scenario (seed 3), one simulation step per frame."""
    return {(path, skill): run_plan(path, autopilot_plan(ctx, "novice", skill, seed=3), 1.0 / ctx.fps)
            for path, ctx in contexts.items() for skill in SKILLS}


SKILLS = (1.0, 0.85, 0.7, 0.5, 0.3, 0.15)


def metric(r: RunResult, name: str) -> float:
    return float(r.metric(name).value)


def shots_of(plan: Plan) -> list[str]:
    return [a.name for a in plan.actions if a.name in SHOT_ACTIONS]


def tip_risk_distance_mm(ctx: PlanningContext, plan: Plan) -> float:
    """The planned tip path's smallest signed distance (mm) to any risk structure, every frame."""
    ts = np.arange(0.0, plan.duration_s, 1.0 / ctx.fps)
    tips = np.array([plan.tip_at(t) for t in ts])
    return min(float(v.min()) for v in ctx.distances(tips, list(ctx.risk_margins())).values())


@pytest.mark.parametrize("path", SCENARIOS)
def test_expert_plan_is_the_staged_operation_on_one_safe_line(contexts, path):
    if path not in contexts:
        pytest.skip(f"{path} is not there yet")
    ctx = contexts[path]
    assert is_staged(ctx.scenario)
    plan = autopilot_plan(ctx, "expert")
    traj = plan_trajectory(ctx)
    assert plan.errors == () and plan.skill == 1.0
    # an expert's 2-4 shots, AP and lateral among them; one exchange per stage
    shots = shots_of(plan)
    assert 2 <= len(shots) <= 4 and {"carm_ap", "carm_lateral"} <= set(shots), shots
    n_inst = len(ctx.scenario.instruments)
    assert sum(a.name == NEXT_INSTRUMENT for a in plan.actions) == n_inst - 1
    # every step's planned point lies on the one line (exchanges keep the trajectory)
    for st in plan.steps:
        if st.target_mm is None or st.step_id == "remove_fragment":
            continue
        p = np.asarray(st.target_mm) - traj.target_mm
        off_line = np.linalg.norm(p - (p @ traj.direction) * traj.direction)
        assert off_line < 1e-6, st.step_id
    # the whole tip path keeps the risk margins (no near miss), and the line passes no bone
    margin = min(ctx.risk_margins().values())
    assert tip_risk_distance_mm(ctx, plan) > margin, "the expert comes within a risk margin"
    bones = [n for n, s in ctx.structures.items() if s.tissue == "bone"]
    s = np.linspace(ctx.targets["kambin"].tolerance_mm + 2.0, traj.skin_s_mm, 120)
    db = ctx.distances(traj.point(s), bones)
    assert min(float(v.min()) for v in db.values()) > 0.0, "the planned line crosses bone"
    if any(st.tissue == "skin" for st in ctx.structures.values()):
        assert 80.0 <= traj.entry_lateral_mm <= 150.0, traj.entry_lateral_mm


@pytest.mark.parametrize("path", SCENARIOS)
def test_expert_passes_clean_and_novice_fails_with_reasons(runs, contexts, path):
    if path not in contexts:
        pytest.skip(f"{path} is not there yet")
    _, e = runs[(path, 1.0)]
    novice_plan, n = runs[(path, 0.15)]
    summary: dict[str, Any] = e.to_summary()
    assert e.passed and e.score >= 90, (e.score, e.fail_reasons, summary["metrics"])
    assert all(st.completed for st in e.steps), [(st.id, st.completed) for st in e.steps]
    fired = {ev.id for ev in e.events}
    assert not fired & {"root_contact", "near_miss", "dural_breach"}, fired
    assert metric(e, "risk_contacts") == 0 and metric(e, "risk_near_time_s") == 0
    assert not n.passed and n.score <= 60, (n.score, n.to_summary()["metrics"])
    assert any("below the pass mark" in r for r in n.fail_reasons), n.fail_reasons
    # the metrics say why: a root contact (the patient's pain), slower, more shots, a longer path
    assert metric(n, "risk_contacts") >= 1 and n.metric("risk_contacts").score == 0.0
    assert "root_contact" in {ev.id for ev in n.events}
    assert metric(n, "total_time_s") > 2 * metric(e, "total_time_s")
    assert len(shots_of(novice_plan)) >= len(shots_of(runs[(path, 1.0)][0])) + 8
    assert metric(n, "path_length_mm") > metric(e, "path_length_mm")
    kinds = {err.kind for err in novice_plan.errors}
    assert {"entry", "redirect", "detour", "shots", "slow"} <= kinds, kinds


def _spearman(x: list[float], y: list[float]) -> float:
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


@pytest.mark.parametrize("path", SCENARIOS)
def test_score_falls_with_skill(sweep, contexts, path):
    if path not in contexts:
        pytest.skip(f"{path} is not there yet")
    scores = [sweep[(path, s)].score for s in SKILLS]
    rho = _spearman(list(SKILLS), scores)
    assert rho >= 0.9, list(zip(SKILLS, np.round(scores, 1)))
    assert scores[0] >= 90 and scores[-1] <= 60 and scores[0] - scores[-1] > 30, scores


def test_error_sizes_scale_with_skill_and_plans_repeat_per_seed(contexts):
    ctx = contexts[SCENARIOS[0]]
    lo, mid, hi = PtedSkill(0.0), PtedSkill(0.5), PtedSkill(1.0)
    assert lo.entry_error_mm == 30.0 and mid.entry_error_mm == 15.0 and hi.entry_error_mm == 0.0
    assert (lo.redirections, lo.extra_shots, lo.grasp_misses) == (3, 12, 4)
    assert (hi.redirections, hi.extra_shots, hi.grasp_misses) == (0, 0, 0)
    a, b = autopilot_plan(ctx, "novice", seed=5), autopilot_plan(ctx, "novice", seed=5)
    assert a == b
    c = autopilot_plan(ctx, "novice", seed=6)
    pa, pc = a.tip_path_mm(), c.tip_path_mm()
    assert pa.shape != pc.shape or not np.allclose(pa, pc)
    with pytest.raises(ValueError, match="between 0 and 1"):
        autopilot_plan(ctx, "novice", skill=1.5)


def test_the_line_moves_with_the_anatomy(contexts, move_bundle):
    """The bundle rotated 30 degrees and shifted (meshes and landmarks): the planner finds the same
    line in the moved coordinates (nothing is tuned to the shipped phantom's)."""
    import trimesh

    from vr_trainer.anatomy.bundle import load_bundle
    from vr_trainer.procedures.reach import context_from_bundle
    from vr_trainer.scenario.loader import resolve_bundle_path

    ctx = contexts[SCENARIOS[0]]
    m = trimesh.transformations.rotation_matrix(np.radians(30.0), [0.3, 1.0, 0.2])
    m[:3, 3] = [45.0, -30.0, 70.0]
    moved = move_bundle(load_bundle(resolve_bundle_path(ctx.scenario)), m)
    world_from_patient = np.eye(4)
    world_from_patient[:3, :3] = np.array([[0, 0, 1], [0, -1, 0], [1, 0, 0]], float) @ m[:3, :3].T  # same room up
    mctx = context_from_bundle(ctx.scenario, moved, world_from_patient)
    a, b = plan_trajectory(ctx), plan_trajectory(mctx)
    r = m[:3, :3]
    np.testing.assert_allclose(b.target_mm, r @ a.target_mm + m[:3, 3], atol=1e-6)
    assert np.degrees(np.arccos(np.clip(b.direction @ (r @ a.direction), -1, 1))) < 3.0
    assert abs(b.dock_s_mm - a.dock_s_mm) < 1.5 and abs(b.skin_s_mm - a.skin_s_mm) < 8.0
    expert = autopilot_plan(mctx, "expert")
    assert tip_risk_distance_mm(mctx, expert) > min(mctx.risk_margins().values())
