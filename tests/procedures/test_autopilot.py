"""The autopilot planner alone (no GL): clear paths from the bundle's own geometry, seeded errors
that a run would show, reproducible per seed, and plans that still work when the anatomy is moved."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import trimesh

from vr_trainer.anatomy.bundle import Bundle, load_bundle
from vr_trainer.procedures.autopilot import SkillProfile, autopilot_plan, make_plan
from vr_trainer.procedures.plan import NEXT_INSTRUMENT, Plan
from vr_trainer.procedures.reach import (PlanningContext, context_from_bundle, plan_routes, up_from_world)
from vr_trainer.scenario.loader import load_scenario, resolve_bundle_path
from vr_trainer.scenario.schema import Scenario

# pted: a two-step copy (needle, cannula) of the shipped default: the staged PTED planner has its own tests
SCENARIOS = {"pted": "tests/scenario/data/pted_two_steps.yaml", "tka": "tests/scenario/data/tka_touch.yaml",
             "tha": "tests/scenario/data/tha_reach.yaml"}


def _load(key: str) -> tuple[Scenario, Bundle]:
    s = load_scenario(SCENARIOS[key])
    return s, load_bundle(resolve_bundle_path(s))


@pytest.fixture(scope="module")
def contexts() -> dict[str, PlanningContext]:
    return {k: context_from_bundle(*_load(k)) for k in SCENARIOS}


def risk_distance_mm(ctx: PlanningContext, plan: Plan) -> dict[str, float]:
    """The tip path's smallest signed distance (mm) to each risk structure, sampled every frame."""
    ts = np.arange(0.0, plan.duration_s, 1.0 / ctx.fps)
    tips = np.array([plan.tip_at(t) for t in ts])
    return {n: float(v.min()) for n, v in ctx.distances(tips, list(ctx.risk_margins())).items()}


def arrival_error_mm(plan: Plan) -> list[float]:
    """Per step: how far the tip, on arrival, is from where the plan stops it (mm)."""
    return [float(np.linalg.norm(plan.tip_at(st.arrive_s) - np.array(st.target_mm))) - st.stop_mm
            for st in plan.steps if st.target_mm is not None]


def assert_inside_tolerance(ctx: PlanningContext, plan: Plan) -> None:
    for st in plan.steps:
        tol = ctx.targets[st.target_id or ""].tolerance_mm
        err = float(np.linalg.norm(plan.tip_at(st.arrive_s) - np.array(st.target_mm)))
        assert err < tol, f"{st.step_id}: the tip stops {err:.2f} mm from the target (tolerance {tol})"


def test_landmark_approach_is_used_and_searched_paths_are_clear(contexts):
    ctx = contexts["pted"]
    routes = {g.step_id: r for g, r in plan_routes(ctx)}
    kambin = routes["needle_to_kambin"]
    lm = ctx.targets["kambin"].landmark
    assert kambin is not None and lm is not None and kambin.source == "landmark"
    np.testing.assert_allclose(kambin.direction, np.asarray(lm["approach_direction"]) /
                               np.linalg.norm(lm["approach_direction"]), atol=1e-9)
    for key in SCENARIOS:
        c = contexts[key]
        for goal, route in plan_routes(c):
            assert route is not None, f"{key}: {goal.step_id} names a target"
            assert route.stop_mm < route.tolerance_mm, "the tip stops inside the tolerance"
            # the straight path from the stop point out to the entry never enters a risk structure
            s = np.linspace(route.stop_mm, route.entry_mm, 200)
            d = c.distances(route.point(s), list(c.risk_margins()))
            for name, v in d.items():
                assert v.min() > route.shaft_radius_mm, f"{key} {goal.step_id}: path touches {name}"
            # nor any bone it does not end on
            bones = [n for n, st in c.structures.items() if st.tissue == "bone"]
            db = c.distances(route.point(s[s > route.tolerance_mm + 3.0]), bones)
            assert min(float(v.min()) for v in db.values()) > 0.0, f"{key} {goal.step_id}: path through bone"


def test_searched_direction_beats_the_median_candidate(contexts):
    """The chosen path is clearer than a typical direction on the same hemisphere."""
    from vr_trainer.procedures.reach import hemisphere_directions, obstacles_for, path_clearance

    ctx = contexts["tha"]
    (goal, route), = plan_routes(ctx)
    assert route is not None and route.source == "search"
    target = ctx.targets[goal.target_id or ""]
    dirs = hemisphere_directions(ctx.up, 200)
    assert 150 <= len(dirs) <= 260 and np.all(dirs @ ctx.up > 0)
    clear = path_clearance(ctx, target, dirs, route.shaft_radius_mm, obstacles_for(ctx, target)).min(axis=1)
    # the closed acetabulum of the hip phantom leaves many directions nearly as clear, so the margin over the
    # median is small; the search must still beat it and be among the clearest tenth
    assert route.clearance_mm > np.median(clear) + 0.5
    assert route.clearance_mm >= np.percentile(clear, 90)


def test_expert_reaches_every_target_without_touching_risk_structures(contexts):
    for key, ctx in contexts.items():
        plan = autopilot_plan(ctx, "expert")
        assert plan.skill == 1.0 and not plan.errors
        assert all(abs(e) < 0.5 for e in arrival_error_mm(plan)), key
        assert_inside_tolerance(ctx, plan)
        assert min(risk_distance_mm(ctx, plan).values()) > 0.5, f"{key}: the expert touches a risk structure"


def test_novice_errors_show_in_the_path(contexts):
    ctx = contexts["pted"]
    expert, novice = autopilot_plan(ctx, "expert"), autopilot_plan(ctx, "novice", seed=7)
    kinds = {e.kind for e in novice.errors}
    assert kinds == {"slow", "aim", "waver", "detour", "overshoot"}
    assert novice.duration_s > 2.5 * expert.duration_s
    assert novice.path_length_mm > 1.2 * expert.path_length_mm
    assert min(risk_distance_mm(ctx, novice).values()) < 0.0, "the detour touches a risk structure"
    assert_inside_tolerance(ctx, novice)  # corrections end inside the tolerance, off the centre
    for st, e in zip(novice.steps, arrival_error_mm(novice)):
        tol = ctx.targets[st.target_id or ""].tolerance_mm
        assert 0.3 * tol < e + st.stop_mm < tol, st.step_id
    # the aim error: the first pass stops off target, outside the tolerance
    first_pass_off = 0
    for st in novice.steps:
        tol = ctx.targets[st.target_id or ""].tolerance_mm
        ts = np.arange(st.start_s, st.arrive_s, 1.0 / ctx.fps)
        dist = np.array([np.linalg.norm(novice.tip_at(t) - np.array(st.target_mm)) for t in ts])
        first_pass_off += int(dist[: int(0.7 * len(dist))].min() > tol)
    assert first_pass_off == len(novice.steps)


def test_every_shipped_scenario_novice_contacts_its_nearest_risk_structure(contexts):
    for key, ctx in contexts.items():
        novice = autopilot_plan(ctx, "novice")
        assert min(risk_distance_mm(ctx, novice).values()) < 0.0, key
        assert novice.duration_s > autopilot_plan(ctx, "expert").duration_s * 2, key


def test_plans_are_reproducible_per_seed(contexts):
    ctx = contexts["tka"]
    a, b = autopilot_plan(ctx, "novice", seed=3), autopilot_plan(ctx, "novice", seed=3)
    assert a == b
    c = autopilot_plan(ctx, "novice", seed=4)
    assert not np.allclose(a.tip_path_mm()[:50], c.tip_path_mm()[:50])
    assert autopilot_plan(ctx, "expert", seed=1) == dataclasses.replace(autopilot_plan(ctx, "expert", seed=2), seed=1)


def test_skill_interpolates_error_sizes_and_time(contexts):
    ctx = contexts["tka"]
    sizes = [SkillProfile(s) for s in (0.0, 0.5, 1.0)]
    assert sizes[0].aim_error_mm == 7.0 and sizes[1].aim_error_mm == 3.5 and sizes[2].aim_error_mm == 0.0
    assert sizes[0].detour_clearance_mm is not None and sizes[0].detour_clearance_mm < 0
    assert sizes[2].detour_clearance_mm is None
    plans = [make_plan(ctx, s, seed=5) for s in (0.15, 0.5, 0.85, 1.0)]
    durations = [p.duration_s for p in plans]
    assert durations == sorted(durations, reverse=True)
    lengths = [p.path_length_mm for p in plans]
    assert lengths[0] > lengths[-1]
    with pytest.raises(ValueError, match="between 0 and 1"):
        make_plan(ctx, 1.5)
    with pytest.raises(ValueError, match="expert, novice"):
        autopilot_plan(ctx, "wizard")


def test_instrument_changes_use_the_primary_button(contexts):
    ctx = contexts["pted"]
    plan = autopilot_plan(ctx, "expert")
    ids = [i.id for i in ctx.scenario.instruments]
    presses = [a for a in plan.actions if a.name == NEXT_INSTRUMENT]
    assert len(presses) == (ids.index("cannula") - ids.index("needle")) % len(ids)
    frames = [round(a.t_s * ctx.fps) for a in presses]
    assert len(set(frames)) == len(frames) and min(np.diff(frames)) >= 2, "separate presses"
    needle, cannula = plan.steps
    assert needle.arrive_s < presses[0].t_s and presses[-1].t_s < cannula.arrive_s
    # the tip is out of the body (past the needle's entry distance) when the instrument changes
    entry = {g.step_id: r for g, r in plan_routes(ctx)}["needle_to_kambin"]
    assert entry is not None
    tip = plan.tip_at(presses[0].t_s)
    assert np.linalg.norm(tip - entry.target_mm) >= entry.entry_mm - 0.5


def test_up_direction_follows_the_patient_orientation():
    prone = np.array([[0, 0, 1, 0], [0, -1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)
    np.testing.assert_allclose(up_from_world(prone), [0, -1, 0])  # the back faces the ceiling
    supine = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [-1, 0, 0, 0], [0, 0, 0, 1]], float)
    np.testing.assert_allclose(up_from_world(supine), [0, 1, 0])


# ------------------------------------------------------------ a bundle moved in its own frame


def _rigid(angle_deg: float, axis: list[float], shift_mm: list[float]) -> np.ndarray:
    m = trimesh.transformations.rotation_matrix(np.radians(angle_deg), axis)
    m[:3, 3] = shift_mm
    return m


def _moved(scenario: Scenario, bundle: Bundle, m: np.ndarray, move_bundle) -> tuple[Scenario, Bundle]:
    """The scenario and bundle with every coordinate (meshes, landmarks, target points) moved by ``m``."""
    r, t = m[:3, :3], m[:3, 3]
    targets = [t_.model_copy(update={"point_mm": tuple(r @ np.asarray(t_.point_mm, float) + t)})
               if t_.point_mm is not None else t_ for t_ in scenario.targets]
    return scenario.model_copy(update={"targets": targets}), move_bundle(bundle, m)


@pytest.mark.parametrize("key,angle_deg,axis", [("pted", 35.0, [0.2, 1.0, 0.1]), ("tka", -30.0, [0.0, 1.0, 0.3]),
                                                ("tha", 25.0, [1.0, 0.2, 0.0])])
def test_plans_work_on_a_moved_bundle(contexts, move_bundle, key, angle_deg, axis):
    """Rotated and shifted coordinates: the plans still reach every target along clear paths, the
    expert touches nothing and the novice still makes its contact: nothing is tuned to the files."""
    m = _rigid(angle_deg, axis, [37.0, -52.0, 81.0])
    scenario, bundle = _moved(*_load(key), m, move_bundle)
    ctx = context_from_bundle(scenario, bundle)
    orig = contexts[key]
    for tid, tp in ctx.targets.items():
        np.testing.assert_allclose(tp.point_mm, m[:3, :3] @ orig.targets[tid].point_mm + m[:3, 3], atol=1e-6)
    expert = autopilot_plan(ctx, "expert")
    assert len(expert.steps) == len(scenario.steps)
    assert all(abs(e) < 0.5 for e in arrival_error_mm(expert))
    assert_inside_tolerance(ctx, expert)
    assert min(risk_distance_mm(ctx, expert).values()) > 0.5
    for _, route in plan_routes(ctx):  # each advance starts clear of the (moved) anatomy
        assert route is not None
        # (distances beyond the planner's exact range are lower bounds: at least 10 mm clear)
        assert min(float(v[0]) for v in ctx.distances(route.entry_point[None]).values()) >= 10.0
        np.testing.assert_allclose(expert.tip_at(next(st.arrive_s for st in expert.steps
                                                      if st.step_id == route.step_id)), route.stop_point, atol=0.5)
    if key == "pted":  # the landmark's direction moved with it
        (g, kambin), _ = plan_routes(ctx)
        assert kambin is not None and kambin.source == "landmark"
        np.testing.assert_allclose(kambin.direction, m[:3, :3] @ plan_routes(orig)[0][1].direction, atol=1e-9)
    novice = autopilot_plan(ctx, "novice")
    assert min(risk_distance_mm(ctx, novice).values()) < 0.0
    assert_inside_tolerance(ctx, novice)


def test_actions_the_condition_counts_are_taken_on_the_target(contexts):
    """A step that also asks for C-arm shots and the trigger gets them once the tip is there."""
    ctx = contexts["pted"]
    steps = [ctx.scenario.steps[0].model_copy(update={"complete_when": "all(reached(kambin, 2), shots >= 2, trigger)"})]
    sc = ctx.scenario.model_copy(update={"steps": steps})
    c = PlanningContext(sc, ctx.structures, ctx.targets, ctx.up, ctx.fps)
    plan = autopilot_plan(c, "expert")
    (st,) = plan.steps
    shots = [a for a in plan.actions if a.name == "carm_shot"]
    assert len(shots) == 2 and all(st.arrive_s < a.t_s <= st.end_s for a in shots)
    assert round(shots[1].t_s * c.fps) - round(shots[0].t_s * c.fps) >= 2, "two separate key presses"
    pressed = [k for k in plan.tool if k.trigger > 0.5]
    assert pressed and all(k.t_s > st.arrive_s for k in pressed)
    assert float(np.linalg.norm(plan.tip_at(st.arrive_s) - np.array(st.target_mm))) < 2.0, "reached(kambin, 2)"
