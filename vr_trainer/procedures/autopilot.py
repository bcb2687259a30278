"""Autopilot: a timed plan from the routes of :mod:`vr_trainer.procedures.reach`, at a skill level.

``expert`` is skill 1: no errors, brisk straight advances that decelerate near the target and
stop inside its tolerance. ``novice`` is skill 0.15: the same routes with seeded errors. A skill
in between (``--autopilot-skill``) scales every error linearly between the two; ``--seed`` fixes
the random draws, so a (skill, seed) pair always gives the same plan.

Seeded errors (each recorded in ``Plan.errors`` with its size; ``s`` is the skill, 0..1):

* ``slow``: speeds are ``0.35 + 0.65 s`` of the expert's, and the resident hesitates
  ``2.5 (1 - s)`` seconds at each entry point and dwells longer at each target.
* ``aim``: the first advance aims ``7 (1 - s)`` mm off the target, perpendicular to the path, in a
  seeded direction clear of the obstacles; when that misses the tolerance the tip pauses, backs out
  10 mm and re-advances (a correction), else adjusts on the spot; either way it comes to rest
  ``min(0.6 (1 - s) x tolerance, aim error)`` off the target's centre (inside the tolerance: the
  step completes, the target error shows it).
* ``waver``: a lateral wobble of ``4 (1 - s)`` mm amplitude (two seeded sines) on every advance,
  fading out over the last 15 mm before the stop point: a longer path.
* ``detour``: below skill 0.6, once per step, the tip drifts off the path to the nearest risk
  structure, to a signed distance of ``-1.2 + 5 s`` mm from its surface (negative: inside, a
  contact; at skill 0.15 about -0.45 mm), then returns; when no straight line from the path to it
  is clear of other structures, the resident goes for that structure first, along its own clearest
  path, as if it were the target, then comes back to the real one.
* ``overshoot``: the final advance goes ``5 (1 - s)`` mm past the stop point (limited so the tip
  stays outside every risk structure), pauses and withdraws to its resting point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from vr_trainer.procedures.plan import (NEXT_INSTRUMENT, Plan, PlanAction, PlannedError, PlanStep, ToolKey,
                                        vec3)
from vr_trainer.procedures.reach import PlanningContext, Route, StepGoal, TargetPoint, nearest_risk, obstacles_for, \
    plan_routes, route_to

MODES = {"expert": 1.0, "novice": 0.15}
HANDLE_MM = 100.0  # the handle-side point of each keyframe is this far up the shaft
TRANSIT_MM = 150.0  # moves between paths that are not clear go round at this distance from the target


@dataclass(frozen=True)
class SkillProfile:
    """Error sizes and speeds at one skill level (see the module docstring for the formulas)."""

    skill: float

    @property
    def speed_factor(self) -> float:
        return 0.35 + 0.65 * self.skill

    @property
    def hesitation_s(self) -> float:
        return 2.5 * (1.0 - self.skill)

    @property
    def aim_error_mm(self) -> float:
        return 7.0 * (1.0 - self.skill)

    @property
    def waver_mm(self) -> float:
        return 4.0 * (1.0 - self.skill)

    @property
    def detour_clearance_mm(self) -> float | None:
        return -1.2 + 5.0 * self.skill if self.skill < 0.6 else None

    @property
    def residual_fraction(self) -> float:
        """Where the tip finally rests, off the target's centre, as a fraction of its tolerance."""
        return 0.6 * (1.0 - self.skill)

    @property
    def overshoot_mm(self) -> float:
        return 5.0 * (1.0 - self.skill)


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-12 else v


def _perpendiculars(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.array([1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = _unit(np.cross(d, a))
    return u, np.cross(d, u)


class _Motion:
    """Accumulates tool keyframes (RAS mm) and actions at a fixed key interval."""

    def __init__(self, dt_s: float, tip: np.ndarray, handle_dir: np.ndarray) -> None:
        self.dt = dt_s
        self.t = 0.0
        self.tip = np.asarray(tip, float)
        self.handle_dir = _unit(np.asarray(handle_dir, float))
        self.pivot: np.ndarray | None = None  # the shaft pivots about this point (the skin entry)
        self.pivot_dir = self.handle_dir
        self.trigger = 0.0
        self.keys: list[ToolKey] = []
        self.actions: list[PlanAction] = []
        self._emit()

    def _handle(self) -> np.ndarray:
        if self.pivot is None:
            return self.handle_dir
        return _unit(self.pivot + HANDLE_MM * self.pivot_dir - self.tip)

    def _emit(self) -> None:
        self.keys.append(ToolKey(round(self.t, 6), vec3(self.tip), vec3(self.tip + HANDLE_MM * self._handle()),
                                 self.trigger))

    def hold(self, duration_s: float) -> None:
        if duration_s <= 0:
            return
        self.t += duration_s
        self._emit()

    def along(self, points: Callable[[float], np.ndarray], length_mm: float, speed_mm_s: float) -> None:
        """Follow ``points(u)``, u in [0, 1], at about ``speed_mm_s`` (keys every ``dt``)."""
        n = max(1, int(np.ceil(length_mm / max(speed_mm_s, 1e-6) / self.dt)))
        for i in range(1, n + 1):
            self.tip = points(i / n)
            self.t += length_mm / max(speed_mm_s, 1e-6) / n
            self._emit()

    def line(self, to: np.ndarray, speed_mm_s: float) -> None:
        a, b = self.tip.copy(), np.asarray(to, float)
        self.along(lambda u: a + u * (b - a), float(np.linalg.norm(b - a)), speed_mm_s)

    def act(self, name: str, gap_s: float = 0.2) -> None:
        self.actions.append(PlanAction(round(self.t + gap_s / 2, 6), name))
        self.hold(gap_s)


def _advance(m: _Motion, route: Route, s_from: float, s_to: float, v_max: float, v_min: float,
             offset: Callable[[float], np.ndarray], s_slow_mm: float = 20.0) -> None:
    """Advance the tip along the route from ``s_from`` to ``s_to`` (mm from the target),
    decelerating over the last ``s_slow_mm`` (speed proportional to the distance left, at least
    ``v_min``); ``offset(s)`` (3,) is added to the path point (aim error, waver)."""
    s = s_from
    while s > s_to + 1e-9:
        v = float(np.clip(v_max * (s - s_to) / s_slow_mm, v_min, v_max))
        s = max(s_to, s - v * m.dt)
        if s - s_to < v_min * m.dt * 0.5:
            s = s_to
        m.tip = route.point(s) + offset(s)
        m.t += m.dt
        m._emit()


def _clear_of(ctx: PlanningContext, points: np.ndarray, names: list[str], min_mm: float) -> bool:
    if not names:
        return True
    d = ctx.distances(points, names)
    return all(float(v.min()) >= min_mm for v in d.values())


def _obstacle_names(ctx: PlanningContext, route: Route) -> list[str]:
    """The obstacles of ``route`` that count all along it (not the structure its target lies on)."""
    obs = obstacles_for(ctx, ctx.targets[route.target_id])
    return [n for n, start in zip(obs.names, obs.start_mm) if start == 0.0]


def make_plan(ctx: PlanningContext, skill: float, seed: int = 0, mode: str | None = None) -> Plan:
    """The plan for ``ctx``'s scenario at ``skill`` (0..1) with random draws from ``seed``."""
    if not 0.0 <= skill <= 1.0 or not np.isfinite(skill):
        raise ValueError(f"--autopilot-skill must be between 0 and 1 (got {skill})")
    prof = SkillProfile(float(skill))
    rng = np.random.default_rng(int(seed))
    routes = plan_routes(ctx)
    f = prof.speed_factor
    v_max, v_min, v_out = 50.0 * f, 1.5 * f, 90.0 * f
    first = next((r for _, r in routes if r is not None), None)
    ids = [i.id for i in ctx.scenario.instruments]
    if first is not None:
        m = _Motion(1.0 / ctx.fps, first.entry_point, first.direction)
    else:
        centre = np.mean([s.vertices_mm.mean(0) for s in ctx.structures.values()], axis=0)
        m = _Motion(1.0 / ctx.fps, centre + 150.0 * ctx.up, ctx.up)
    m.hold(0.5)
    active = 0
    errors: list[PlannedError] = []
    notes: list[str] = []
    steps: list[PlanStep] = []
    cur: Route | None = None
    for goal, route in routes:
        start = m.t
        need = ids.index(goal.instrument_id) if goal.instrument_id in ids else active
        if route is not None and cur is not None and cur is not route:
            m.line(cur.entry_point, v_out)  # out of the body before changing anything
        if need != active:
            for _ in range((need - active) % len(ids)):
                m.act(NEXT_INSTRUMENT)
            active = need
        if route is None:
            m.hold(0.5)
            notes.append(f"step {goal.step_id}: no target to reach; only its actions are taken")
            _finish_step(m, goal, prof)
            steps.append(PlanStep(goal.step_id, goal.instrument_id, None, start, m.t, m.t))
            continue
        if float(np.linalg.norm(m.tip - route.entry_point)) > 0.5:
            _transit(m, ctx, cur, route, v_out)
        m.pivot, m.pivot_dir = route.entry_point, route.direction
        cur = route
        if prof.hesitation_s > 0:
            m.hold(prof.hesitation_s)
            errors.append(PlannedError("slow", goal.step_id, m.t, prof.hesitation_s, "s",
                                       f"hesitates at the entry; moves at {f:.2f} of the expert's speed"))
        arrive = _reach(ctx, m, route, goal, prof, rng, v_max, v_min, v_out, errors, notes)
        _finish_step(m, goal, prof)
        steps.append(PlanStep(goal.step_id, goal.instrument_id, route.target_id, start, arrive, m.t,
                              vec3(route.target_mm), vec3(route.direction), route.source,
                              round(route.clearance_mm, 3), round(route.stop_mm, 3)))
    m.hold(1.0)
    return Plan(ctx.scenario.id, mode or ("expert" if skill == 1.0 else "novice" if skill == MODES["novice"]
                                          else "skill"),
                float(skill), int(seed), tuple(m.keys), tuple(m.actions), tuple(steps), tuple(errors), tuple(notes))


def _finish_step(m: _Motion, goal: StepGoal, prof: SkillProfile) -> None:
    m.hold(0.6 + 1.0 * (1.0 - prof.skill))  # dwell: the engine sees the target reached
    for a in goal.actions:
        m.act(a, 0.5)
    if goal.trigger:
        m.trigger = 1.0
        m.hold(m.dt)
        m.hold(0.5)
        m.trigger = 0.0
        m.hold(m.dt)


def _transit(m: _Motion, ctx: PlanningContext, old: Route | None, new: Route, speed: float) -> None:
    """From the tip (outside the body) to ``new``'s entry point: straight when that line keeps
    10 mm clear of every structure; else out along the old path to ``TRANSIT_MM``, round an arc
    of that radius about the new target, and in along the new path. The shaft points at the
    new target on the way."""
    t = new.target_mm
    m.pivot = None
    seg = m.tip + np.linspace(0.0, 1.0, 32)[:, None] * (new.entry_point - m.tip)
    if _clear_of(ctx, seg, list(ctx.structures), 10.0):
        a = m.tip.copy()
        da, db = m.handle_dir.copy(), new.direction

        def straight(u: float) -> np.ndarray:
            m.handle_dir = _unit((1 - u) * da + u * db)
            return a + u * (new.entry_point - a)

        m.along(straight, float(np.linalg.norm(new.entry_point - a)), speed)
        return
    if old is not None:
        m.handle_dir = old.direction
        m.line(old.target_mm + TRANSIT_MM * old.direction, speed)
    a = m.tip - t
    ra = float(np.linalg.norm(a))
    da, db = _unit(a), new.direction
    ang = float(np.arccos(np.clip(da @ db, -1.0, 1.0)))

    def arc(u: float) -> np.ndarray:
        d = db if ang < 1e-6 else (np.sin((1 - u) * ang) * da + np.sin(u * ang) * db) / np.sin(ang)
        m.handle_dir = _unit(d)
        return t + d * ((1 - u) * ra + u * TRANSIT_MM)

    m.along(arc, max(ang * max(ra, TRANSIT_MM) + abs(ra - TRANSIT_MM), 1.0), speed)
    m.handle_dir = db
    m.line(new.entry_point, speed)


def _reach(ctx: PlanningContext, m: _Motion, route: Route, goal: StepGoal, prof: SkillProfile,
           rng: np.random.Generator, v_max: float, v_min: float, v_out: float, errors: list[PlannedError],
           notes: list[str]) -> float:
    """Advance from the entry to the stop point with the profile's errors; returns the time the
    tip first reaches the stop point."""
    d = route.direction
    u1, u2 = _perpendiculars(d)
    stop, entry = route.stop_mm, route.entry_mm
    risk = list(ctx.risk_margins())
    obstacles = _obstacle_names(ctx, route)
    # waver: two seeded sines across the path, fading over the last 15 mm
    amp = prof.waver_mm
    lam = rng.uniform(25.0, 45.0, 2)
    phase = rng.uniform(0.0, 2 * np.pi, 2)

    def waver(s: float) -> np.ndarray:
        if amp <= 0:
            return np.zeros(3)
        fade = float(np.clip((s - stop - 5.0) / 15.0, 0.0, 1.0))
        return amp * fade * (np.sin(2 * np.pi * s / lam[0] + phase[0]) * u1
                             + 0.6 * np.sin(2 * np.pi * s / lam[1] + phase[1]) * u2)

    if amp > 0:
        errors.append(PlannedError("waver", goal.step_id, m.t, amp, "mm", "lateral wobble along the advance"))
    # aim error: a seeded direction across the path whose aim point is clear of the obstacles
    aim = _clear_offset(ctx, route, prof.aim_error_mm, rng, obstacles)
    if prof.aim_error_mm > 0.3:
        errors.append(PlannedError("aim", goal.step_id, m.t, prof.aim_error_mm, "mm",
                                   "first advance aims off the target, across the path"))
    corrects = float(np.linalg.norm(aim)) > 0.8 * route.tolerance_mm  # the first pass misses: back out
    # where the tip finally rests: off the centre by the residual (the aim error when that is smaller)
    res_mm = min(prof.residual_fraction * route.tolerance_mm, float(np.linalg.norm(aim)))
    final = _clear_offset(ctx, route, res_mm, rng, obstacles)
    if res_mm > 0.05:
        errors.append(PlannedError("aim", goal.step_id, m.t, res_mm, "mm",
                                   "after the corrections the tip rests off the target's centre (inside its "
                                   "tolerance)"))
    span = max(entry - stop, 1e-6)

    def first_pass(s: float) -> np.ndarray:
        return aim * float(np.clip((entry - s) / span, 0.0, 1.0)) + waver(s)

    # detour to the nearest risk structure, part way in (or, failing a clear line, a wrong target first)
    det = prof.detour_clearance_mm
    side = _detour_point(ctx, route, det, obstacles) if det is not None and risk else None
    if det is not None and risk and side is None:
        wrong = _wrong_target_route(ctx, route, det)
        if wrong is None:
            notes.append(f"step {goal.step_id}: no risk structure to detour to")
        else:
            _transit(m, ctx, route, wrong, v_out)
            m.pivot, m.pivot_dir = wrong.entry_point, wrong.direction
            _advance(m, wrong, wrong.entry_mm, wrong.stop_mm, v_max, v_min, waver)
            errors.append(PlannedError("detour", goal.step_id, m.t, det, "mm",
                                       f"no straight line from the path: goes for the risk structure "
                                       f"{wrong.target_id} instead of the target (signed distance from its surface)"))
            m.hold(0.5)
            m.line(wrong.entry_point, v_max)
            _transit(m, ctx, wrong, route, v_out)
            m.pivot, m.pivot_dir = route.entry_point, route.direction
    if det is not None and side is not None:
        s_det, det_point = side
        _advance(m, route, entry, s_det, v_max, v_min, first_pass, s_slow_mm=8.0)
        back = m.tip.copy()
        m.line(det_point, 0.5 * v_max)
        errors.append(PlannedError("detour", goal.step_id, m.t, det, "mm",
                                   "drifts to the nearest risk structure (signed distance from its surface)"))
        m.hold(0.3)
        m.line(back, 0.5 * v_max)
        _advance(m, route, s_det, stop, v_max, v_min, first_pass)
    else:
        _advance(m, route, entry, stop, v_max, v_min, first_pass)
    arrive = m.t
    if corrects:
        m.hold(0.8)
        back_s = stop + 10.0
        m.line(route.point(back_s) + aim, 0.5 * v_max)

        def correcting(s: float) -> np.ndarray:
            c = float(np.clip((s - stop) / 10.0, 0.0, 1.0))
            return aim * c + final * (1.0 - c)

        _advance(m, route, back_s, stop, v_max, v_min, correcting, s_slow_mm=10.0)
        arrive = m.t
    elif float(np.linalg.norm(aim - final)) > 0.05:  # near enough: a small adjustment on the spot
        m.hold(0.4)
        m.line(route.stop_point + final, 0.1 * v_max)
        arrive = m.t
    over = _overshoot_mm(ctx, route, prof.overshoot_mm, risk)
    if over > 0.2:
        m.line(route.point(stop - over) + final, 0.4 * v_max)
        m.hold(0.4)
        m.line(route.stop_point + final, 0.4 * v_max)
        errors.append(PlannedError("overshoot", goal.step_id, m.t, over, "mm", "passes the target, then withdraws"))
    return arrive


def _clear_offset(ctx: PlanningContext, route: Route, magnitude_mm: float, rng: np.random.Generator,
                  obstacles: list[str]) -> np.ndarray:
    """A seeded offset (3,) of ``magnitude_mm`` across the path whose last 15 mm, shifted by it,
    stay clear of the obstacles (the clearest of 24 draws when none is 0.5 mm clear)."""
    if magnitude_mm <= 0.05:
        return np.zeros(3)
    u1, u2 = _perpendiculars(route.direction)
    best, best_clear = np.zeros(3), -np.inf
    for ang in rng.uniform(0.0, 2 * np.pi, 24):
        e = magnitude_mm * (np.cos(ang) * u1 + np.sin(ang) * u2)
        pts = route.point(np.linspace(route.stop_mm, route.stop_mm + 15.0, 16)) + e
        dd = ctx.distances(pts, obstacles) if obstacles else {}
        c = min([float(v.min()) - route.shaft_radius_mm for v in dd.values()] + [np.inf])
        if c >= 0.5:
            return e
        if c > best_clear:
            best, best_clear = e, c
    return best


def _detour_point(ctx: PlanningContext, route: Route, clearance_mm: float,
                  obstacles: list[str]) -> tuple[float, np.ndarray] | None:
    """Where on the path the detour leaves (mm from the target) and the point it goes to, or None
    when no straight line from the path to the nearest risk structure is clear of other structures."""
    lo = route.stop_mm + route.tolerance_mm + 3.0
    hi = route.entry_mm - 5.0
    for _ in range(3):
        found = nearest_risk(ctx, route, (lo, hi))
        if found is None:
            break
        name, s, p, surf = found
        n = _unit(p - surf)
        goal = surf + clearance_mm * n
        others = [o for o in obstacles if o != name]
        seg = p + np.linspace(0.0, 1.0, 24)[:, None] * (goal - p)
        if _clear_of(ctx, seg, others, 0.0):
            return s, goal
        hi = s - 2.0  # blocked: look nearer the target
        if hi <= lo:
            break
    return None


def _wrong_target_route(ctx: PlanningContext, route: Route, clearance_mm: float) -> Route | None:
    """A route to the risk structure nearest the target, ending ``clearance_mm`` from its surface."""
    found = nearest_risk(ctx, route, (route.stop_mm, route.entry_mm))
    if found is None:
        return None
    name, _, p, surf = found
    point = surf + clearance_mm * _unit(p - surf)
    t = TargetPoint(name, point, 1.0, on_structure=name)
    return route_to(ctx, t, route.step_id, route.instrument_id, 1.0)


def _overshoot_mm(ctx: PlanningContext, route: Route, want_mm: float, risk: list[str]) -> float:
    """How far past the stop point the tip may go (up to ``want_mm``) staying outside the risk structures."""
    if want_mm <= 0.2:
        return 0.0
    s = np.linspace(0.0, want_mm, 11)
    pts = route.point(route.stop_mm - s)
    if not risk:
        return float(want_mm)
    d = np.min(np.stack([v for v in ctx.distances(pts, risk).values()]), axis=0)
    ok = d >= 0.3
    if ok.all():
        return float(want_mm)
    first_bad = int(np.argmin(ok))
    return float(s[max(first_bad - 1, 0)])


def autopilot_plan(ctx: PlanningContext, mode: str = "expert", skill: float | None = None, seed: int = 0) -> Plan:
    """``mode`` expert|novice; ``skill`` (0..1) overrides the mode's level. PTED scenarios get the
    staged planner of :mod:`vr_trainer.procedures.pted_autopilot` (same skill scheme) when
    their steps are the staged operation's; a PTED scenario of plain reach steps keeps this one.
    Likewise TKA scenarios with cutting blocks get :mod:`.tka_autopilot`, THA scenarios with the
    reamer or the cup impactor :mod:`.tha_autopilot`."""
    if mode not in MODES:
        raise ValueError(f"--autopilot must be one of {', '.join(MODES)} (got {mode!r})")
    level = MODES[mode] if skill is None else float(skill)
    name = mode if skill is None else f"{mode}@{level:g}"
    if ctx.scenario.procedure == "pted":
        from vr_trainer.procedures.pted_autopilot import is_staged, pted_plan

        if is_staged(ctx.scenario):  # the staged operation (needle, guidewire ... forceps)
            return pted_plan(ctx, level, seed, name)
    if ctx.scenario.procedure == "tka" and any(i.kind.endswith("_block") for i in ctx.scenario.instruments):
        from vr_trainer.procedures.tka_autopilot import tka_plan

        return tka_plan(ctx, level, seed, name)
    if ctx.scenario.procedure == "tha" and any(i.kind in ("acetabular_reamer", "cup_impactor")
                                               for i in ctx.scenario.instruments):
        from vr_trainer.procedures.tha_autopilot import tha_plan

        return tha_plan(ctx, level, seed, name)
    return make_plan(ctx, level, seed, name)
