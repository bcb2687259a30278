"""PTED autopilot: the staged operation as a timed plan, at a skill level, from the bundle's geometry.

The expert (skill 1) follows the line of :func:`vr_trainer.procedures.pted_plan.plan_trajectory`:

1. the 18G needle from outside the skin entry along the line to Kambin's incentre, slowing
   near it, with an AP shot on the way (medial-lateral position) and a lateral shot at the
   target (depth): 2 shots;
2. ``next_instrument``: the guidewire, on the needle's line, advanced a few millimetres past
   Kambin (into the disc when the step asks for it), then drawn back out of the skin;
3. ``next_instrument``: the dilator, slid along the same line from the skin to the foraminal
   docking point;
4. ``next_instrument``: the working cannula over it at the docking point, settled, and one
   lateral shot to confirm it (Feng 2024: experts need few shots to position the sheath);
5. ``next_instrument``: the endoscope in the cannula, at its tip;
6. ``next_instrument``: the grasping forceps through the scope; for each fragment piece
   (nearest first) the tip moves to the piece's grasp point, the trigger closes (one grasp),
   the forceps comes back to the scope tip.

A novice (skill 0.15) and any skill ``s`` in between (``--autopilot-skill``) carry the same
plan with seeded errors whose sizes scale with ``1 - s`` (as in
:mod:`vr_trainer.procedures.autopilot`, whose :class:`SkillProfile` gives speed, hesitation,
waver, the rest offset and the root contact); each is recorded in ``Plan.errors``:

* ``entry``: the first puncture is ``30 (1 - s)`` mm too medial or too lateral (seeded side) at
  the skin; too lateral it is aimed at Kambin, too medial at the bone nearest Kambin (the facet
  a too-steep line meets); the needle goes in until it meets bone (a bone contact), comes within
  0.5 mm of a risk structure, or is 90% of the way; then it is pulled out and the skin punctured
  again at the planned entry (a second needle pass); skipped when smaller than 3 mm;
* ``redirect``: ``round(3 (1 - s))`` redirections on the correct pass: the tip drifts
  ``aim_error_mm`` off the line, stops, is withdrawn 12 mm and re-advanced on the line;
* ``detour`` (root contact): below skill 0.6 the needle drifts to the risk structure nearest its
  path, to ``-1.2 + 5 s`` mm from its surface (negative: a contact; the patient reports pain),
  and comes back;
* ``shots``: ``round(12 (1 - s))`` extra C-arm shots, half while the needle advances and half
  while the cannula is positioned (each with a small re-positioning of the cannula);
* ``aim``: the needle rests ``0.6 (1 - s)`` of the tolerance off Kambin's incentre;
* ``grasp``: ``round(4 (1 - s))`` grasps close 4 mm short of the piece (nothing taken) and are
  retried;
* ``slow`` and ``waver``: speeds ``0.35 + 0.65 s`` of the expert's, ``2.5 (1 - s)`` s of hesitation
  before each stage, a lateral wobble of ``4 (1 - s)`` mm on the needle's advances.

Everything is deterministic for a (skill, seed) pair. Pure numpy; no GL, device or network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, cast

import numpy as np

from vr_trainer.procedures.autopilot import SkillProfile
from vr_trainer.procedures.plan import (NEXT_INSTRUMENT, ErrorKind, Plan, PlanAction, PlannedError, PlanStep, ToolKey,
                                        vec3)
from vr_trainer.procedures.pted_plan import PtedFrame, PtedStepIds, Trajectory, plan_trajectory, pted_frame, step_ids
from vr_trainer.procedures.pted_plan_fragment import GraspPoint, distances, fragment_pieces, grasp_points, unit
from vr_trainer.procedures.reach import PlanningContext
from vr_trainer.scenario.schema import Scenario

HANDLE_MM = 100.0
NEEDLE_MM_S = (28.0, 3.0)  # expert needle speed far from / at the target
TOOL_MM_S = 22.0  # guidewire, dilator, cannula, scope advances
OUT_MM = 25.0  # the hand starts and exchanges this far outside the skin
NEEDLE_PAST_MM = 0.3  # the needle stops this far past the aim point: through the triangle's plane


@dataclass(frozen=True)
class PtedSkill:
    """Error sizes at one skill level (formulas in the module docstring)."""

    skill: float

    @property
    def base(self) -> SkillProfile:
        return SkillProfile(self.skill)

    @property
    def entry_error_mm(self) -> float:
        return 30.0 * (1.0 - self.skill)

    @property
    def redirections(self) -> int:
        return int(round(3.0 * (1.0 - self.skill)))

    @property
    def extra_shots(self) -> int:
        return int(round(12.0 * (1.0 - self.skill)))

    @property
    def grasp_misses(self) -> int:
        return int(round(4.0 * (1.0 - self.skill)))


class _Track:
    """Tool keyframes (RAS mm) and actions at the pose track's pace."""

    def __init__(self, dt_s: float, tip: np.ndarray, handle_dir: np.ndarray) -> None:
        self.dt = dt_s
        self.t = 0.0
        self.tip = np.asarray(tip, float)
        self.handle = unit(np.asarray(handle_dir, float))
        self.trigger = 0.0
        self.keys: list[ToolKey] = []
        self.actions: list[PlanAction] = []
        self.emit()

    def emit(self) -> None:
        self.keys.append(ToolKey(round(self.t, 6), vec3(self.tip), vec3(self.tip + HANDLE_MM * self.handle),
                                 self.trigger))

    def hold(self, s: float) -> None:
        if s > 0:
            self.t += s
            self.emit()

    def path(self, fn: Callable[[float], tuple[np.ndarray, np.ndarray]], length_mm: float, speed_mm_s: float) -> None:
        """Follow ``fn(u) -> (tip, handle direction)``, u in (0, 1], at ``speed_mm_s``."""
        dur = max(length_mm, 1e-6) / max(speed_mm_s, 1e-6)
        n = max(1, int(np.ceil(dur / self.dt)))
        for i in range(1, n + 1):
            self.tip, h = fn(i / n)
            self.handle = unit(h)
            self.t += dur / n
            self.emit()

    def move(self, to: np.ndarray, speed_mm_s: float, handle: np.ndarray | None = None) -> None:
        a, b = self.tip.copy(), np.asarray(to, float)
        ha, hb = self.handle.copy(), self.handle if handle is None else unit(handle)
        self.path(lambda u: (a + u * (b - a), (1 - u) * ha + u * hb), float(np.linalg.norm(b - a)), speed_mm_s)

    def act(self, name: str, gap_s: float = 0.4) -> None:
        self.actions.append(PlanAction(round(self.t + gap_s / 2, 6), name))
        self.hold(gap_s)

    def squeeze(self) -> None:
        self.trigger = 1.0
        self.hold(self.dt)
        self.hold(0.3)
        self.trigger = 0.0
        self.hold(self.dt)


class _Planner:
    def __init__(self, ctx: PlanningContext, skill: float, seed: int) -> None:
        self.ctx = ctx
        self.sk = PtedSkill(skill)
        self.prof = self.sk.base
        self.rng = np.random.default_rng(int(seed))
        self.ids: PtedStepIds = step_ids(ctx)
        self.frame: PtedFrame = pted_frame(ctx, self.ids)
        self.traj: Trajectory = plan_trajectory(ctx, self.ids)
        self.errors: list[PlannedError] = []
        t = self.traj
        self.notes: list[str] = [f"line: {t.source}; axial {t.axial_deg:.1f} deg, cranio-caudal "
                                 f"{t.craniocaudal_deg:.1f} deg; skin entry {t.entry_lateral_mm:.0f} mm "
                                 f"from the midline; dock {t.dock_s_mm:.1f} mm out from Kambin"]
        self.steps: list[PlanStep] = []
        f = self.prof.speed_factor
        self.v_needle, self.v_min, self.v_tool = NEEDLE_MM_S[0] * f, NEEDLE_MM_S[1] * f, TOOL_MM_S * f
        d = self.traj.direction
        self.tr = _Track(1.0 / ctx.fps, self.traj.point(self.traj.skin_s_mm + OUT_MM), d)
        self.instruments = [i.id for i in ctx.scenario.instruments]
        self.active = 0
        self.extra_needle = (self.sk.extra_shots + 1) // 2
        self.extra_sheath = self.sk.extra_shots - self.extra_needle
        self.risk = list(ctx.risk_margins())
        self.hard = [n for n, s in ctx.structures.items() if s.tissue in ("bone", "cortical_bone")]

    def error(self, kind: str, step: str, size: float, unit_: str, detail: str) -> None:
        self.errors.append(PlannedError(cast(ErrorKind, kind), step, round(self.tr.t, 6), float(size), unit_, detail))

    # ------------------------------------------------------------------ helpers
    def select(self, instrument: str | None) -> None:
        if instrument is None or instrument not in self.instruments:
            return
        need = self.instruments.index(instrument)
        for _ in range((need - self.active) % len(self.instruments)):
            self.tr.act(NEXT_INSTRUMENT, 0.5)
        self.active = need

    def hesitate(self, step: str) -> None:
        h = self.prof.hesitation_s
        if h > 0:
            self.tr.hold(h)
            self.error("slow", step, h, "s", f"hesitates; moves at {self.prof.speed_factor:.2f} of the expert's speed")

    def along(self, s_from: float, s_to: float, v_max: float, v_min: float,
              offset: Callable[[float], np.ndarray] | None = None, slow_mm: float = 15.0) -> None:
        """Tip along the line from ``s_from`` to ``s_to`` (mm from Kambin), slowing over the last
        ``slow_mm``; ``offset(s)`` is added (aim errors, waver)."""
        t = self.traj
        s = s_from
        sign = -1.0 if s_to < s_from else 1.0
        while abs(s - s_to) > 1e-9:
            v = float(np.clip(v_max * abs(s - s_to) / slow_mm, v_min, v_max))
            step = min(v * self.tr.dt, abs(s - s_to))
            if abs(s - s_to) - step < v_min * self.tr.dt * 0.5:
                step = abs(s - s_to)
            s += sign * step
            self.tr.tip = t.point(s) + (offset(s) if offset is not None else 0.0)
            self.tr.handle = t.direction
            self.tr.t += self.tr.dt
            self.tr.emit()

    def s_of(self, p: np.ndarray) -> float:
        return float((np.asarray(p) - self.traj.target_mm) @ self.traj.direction)

    def perp(self) -> tuple[np.ndarray, np.ndarray]:
        d = self.traj.direction
        u = self.frame.lateral - (self.frame.lateral @ d) * d
        u = unit(u) if np.linalg.norm(u) > 1e-6 else unit(np.cross(d, self.frame.cranial))
        return u, np.cross(d, u)

    def clear_risk(self, pts: np.ndarray, r: float) -> float:
        if not self.risk:
            return np.inf
        d = distances(self.ctx, pts, self.risk)
        return float(min(v.min() for v in d.values())) - r

    def shot(self, view: str) -> None:
        self.tr.act(view, 0.6)

    def record(self, step: str, inst: str | None, start: float, arrive: float, target: str | None,
               point: np.ndarray | None, stop_mm: float = 0.0) -> None:
        t = self.traj
        self.steps.append(PlanStep(step, inst, target, round(start, 6), round(arrive, 6), round(self.tr.t, 6),
                                   vec3(point) if point is not None else None, vec3(t.direction), t.source,
                                   round(t.needle_clearance_mm, 3), round(stop_mm, 3)))

    # ------------------------------------------------------------------ stages
    def needle(self, step: str, inst: str | None) -> None:
        t, tr, sk, prof = self.traj, self.tr, self.sk, self.prof
        start = tr.t
        self.select(inst)
        self.hesitate(step)
        r_needle = 0.64
        if sk.entry_error_mm >= 3.0:
            self.wrong_entry(step, r_needle)
        u1, u2 = self.perp()
        amp = prof.waver_mm
        lam, ph = self.rng.uniform(25.0, 45.0, 2), self.rng.uniform(0.0, 2 * np.pi, 2)

        def waver(s: float) -> np.ndarray:
            fade = float(np.clip((s - 8.0) / 15.0, 0.0, 1.0))
            return amp * fade * (np.sin(2 * np.pi * s / lam[0] + ph[0]) * u1 + 0.6 * np.sin(2 * np.pi * s / lam[1]
                                                                                        + ph[1]) * u2)
        if amp > 0:
            self.error("waver", step, amp, "mm", "lateral wobble along the needle's advance")
        tr.move(t.point(t.skin_s_mm + 2.0), self.v_tool, t.direction)
        # stations along the line: redirections, the root detour, the AP shot, extra shots
        s_skin = t.skin_s_mm
        det = prof.detour_clearance_mm if self.risk else None
        det_at = self.detour_site(r_needle) if det is not None else None
        reds = [s_skin - (k + 1) * (s_skin - 8.0) / (sk.redirections + 1) for k in range(sk.redirections)]
        shots_at = [s_skin - (k + 1) * (s_skin - 5.0) / (self.extra_needle + 1) for k in range(self.extra_needle)]
        ap_at = min(25.0, 0.5 * s_skin)
        events = sorted([(s, "redirect") for s in reds] + [(s, "shot") for s in shots_at] + [(ap_at, "ap")]
                        + ([(det_at[0], "detour")] if det_at is not None else []), key=lambda e: -e[0])
        s = s_skin + 2.0
        aim = prof.aim_error_mm
        for s_ev, what in events:
            if what == "redirect":
                ang = self.rng.uniform(0, 2 * np.pi)
                off = max(aim, 2.0) * (np.cos(ang) * u1 + np.sin(ang) * u2)
                off = self.safe_offset(s_ev, off, r_needle)
                s0 = s

                def drift(x: float, s0: float = s0, s1: float = s_ev, off: np.ndarray = off) -> np.ndarray:
                    return off * float(np.clip((s0 - x) / max(s0 - s1, 1e-6), 0, 1)) + waver(x)
                self.along(s, s_ev, self.v_needle, self.v_min, drift, slow_mm=6.0)
                tr.hold(0.5)
                back = min(s_ev + 12.0, s_skin)
                tr.move(t.point(back) + 0.3 * off, 0.6 * self.v_needle)
                self.error("redirect", step, float(np.linalg.norm(off)), "mm",
                           "drifts off the line, withdraws 12 mm and re-advances on it")
                s = back
                self.along(s, s_ev, self.v_needle, self.v_min, waver, slow_mm=6.0)
                s = s_ev
                continue
            self.along(s, s_ev, self.v_needle, self.v_min, waver, slow_mm=6.0)
            s = s_ev
            if what == "ap":
                self.shot("carm_ap")
            elif what == "shot":
                self.shot("carm_ap" if self.rng.uniform() < 0.5 else "carm_lateral")
                self.error("shots", step, 1, "shot", "an extra check shot on the way in")
            elif what == "detour" and det_at is not None and det is not None:
                here = tr.tip.copy()
                tr.move(det_at[1], 0.4 * self.v_needle)
                self.error("detour", step, det, "mm", f"drifts onto {det_at[2]} (signed distance from its surface; "
                                                      "negative: a contact)")
                tr.hold(0.4)
                tr.move(here, 0.4 * self.v_needle)
        # the last millimetres; the rest point off the centre by the residual
        res = prof.residual_fraction * self.ctx.targets[self.ids.kambin_target].tolerance_mm
        ang = self.rng.uniform(0, 2 * np.pi)
        rest = self.safe_offset(0.0, res * (np.cos(ang) * u1 + np.sin(ang) * u2), r_needle) if res > 0.05 \
            else np.zeros(3)
        s0 = s

        def settle(x: float) -> np.ndarray:
            return rest * float(np.clip((s0 - x) / max(s0, 1e-6), 0, 1)) + waver(x)
        self.along(s, -NEEDLE_PAST_MM, self.v_needle, self.v_min, settle)
        if res > 0.05:
            self.error("aim", step, float(np.linalg.norm(rest)), "mm", "the needle rests off Kambin's incentre")
        arrive = tr.t
        self.shot("carm_lateral")
        tr.hold(0.6 + (1.0 - prof.skill))
        self.record(step, inst, start, arrive, self.ids.kambin_target, t.target_mm)

    def wrong_entry(self, step: str, r: float) -> None:
        """The first pass from a skin entry too medial or too lateral (see the module docstring)."""
        t, tr = self.traj, self.tr
        side = 1.0 if self.rng.uniform() < 0.5 else -1.0
        u1, _ = self.perp()
        e = self.sk.entry_error_mm
        entry = t.skin_entry_mm + side * e * u1
        aim = t.target_mm
        if side < 0 and self.hard:  # too medial: the line meets the facet (the bone nearest Kambin)
            from vr_trainer.procedures.reach import closest_surface_point

            db0 = distances(self.ctx, aim[None], self.hard)
            bone = min(self.hard, key=lambda n: float(db0[n][0]))
            surf = closest_surface_point(self.ctx, bone, aim)
            aim = surf + 1.0 * unit(surf - aim)
        d = unit(entry - aim)
        length = float(np.linalg.norm(entry - aim))
        s = np.arange(length, 0.0 if side < 0 else 0.1 * length, -0.5)
        pts = aim + s[:, None] * d
        stop = s[-1]
        if self.hard:
            db = distances(self.ctx, pts, self.hard)
            bone = np.min(np.stack([db[n] for n in self.hard]), axis=0)  # the tip point, as bone stops it
            hit = np.nonzero((bone <= 0.0) & (s < length - 5.0))[0]
            if len(hit):
                stop = s[hit[0]] - 0.5  # 0.5 mm on into the bone: the needle meets it
        if self.risk:
            dr = distances(self.ctx, pts, self.risk)
            near = np.min(np.stack([dr[n] for n in self.risk]), axis=0) - r
            bad = np.nonzero((near <= 0.5) & (s >= stop))[0]
            if len(bad):
                stop = s[max(bad[0] - 1, 0)]
        tr.move(entry + OUT_MM * d, self.v_tool, d)
        tr.move(entry + 2.0 * d, self.v_tool, d)
        tr.move(aim + stop * d, 0.8 * self.v_needle, d)
        tr.hold(0.8)
        which = "lateral" if side > 0 else "medial"
        self.error("entry", step, e, "mm", f"first puncture {e:.0f} mm too {which}: the needle meets bone or "
                                           "strays, is pulled out and the skin punctured again")
        tr.move(entry + OUT_MM * d, self.v_tool, d)
        tr.move(t.point(t.skin_s_mm + OUT_MM), self.v_tool, t.direction)

    def safe_offset(self, s: float, off: np.ndarray, r: float) -> np.ndarray:
        """``off`` scaled down until the tip at ``s`` (shifted by it) keeps 0.5 mm beyond the risk margins."""
        p0 = self.traj.point(s)
        margins = self.ctx.risk_margins()
        for k in np.linspace(1.0, 0.0, 6):
            p = p0 + k * off
            if not self.risk:
                return k * off
            d = distances(self.ctx, p[None], self.risk)
            if all(float(d[n][0]) - r - margins[n] >= 0.05 for n in self.risk):
                return k * off
        return np.zeros(3)

    def detour_site(self, r: float) -> tuple[float, np.ndarray, str] | None:
        """Where the needle leaves the line for the nearest risk structure, the point it goes to
        and the structure; None when bone lies between."""
        from vr_trainer.procedures.reach import closest_surface_point

        det = self.prof.detour_clearance_mm
        if det is None or not self.risk:
            return None
        tol = self.ctx.targets[self.ids.kambin_target].tolerance_mm
        s = np.arange(tol + 3.0, min(45.0, self.traj.skin_s_mm - 5.0), 1.0)
        if not len(s):
            return None
        pts = self.traj.point(s)
        d = distances(self.ctx, pts, self.risk)
        order = sorted(((float(d[n][i]), i, n) for n in self.risk for i in range(len(s))))
        for _, i, n in order[:40:4]:
            p = pts[i]
            surf = closest_surface_point(self.ctx, n, p)
            goal = surf + (det + r) * unit(p - surf)
            seg = p + np.linspace(0, 1, 16)[:, None] * (goal - p)
            others = [o for o in self.risk if o != n]
            ok_bone = not self.hard or min(float(v.min()) for v in distances(self.ctx, seg, self.hard).values()) > r
            ok_other = not others or self.clear_risk(seg, r) > -10 and all(
                float(v.min()) - r > 0.3 for v in distances(self.ctx, seg, others).values())
            if ok_bone and ok_other:
                return float(s[i]), goal, n
        return None

    def slide(self, step: str, inst: str | None, s_stop: float, target: str | None, shots: int = 0,
              from_outside: bool = False) -> None:
        """An instrument along the line to ``s_stop`` (mm from Kambin)."""
        t, tr = self.traj, self.tr
        start = tr.t
        if from_outside:
            tr.move(t.point(t.skin_s_mm + OUT_MM * 0.4), self.v_tool, t.direction)
        self.select(inst)
        self.hesitate(step)
        self.along(self.s_of(tr.tip), s_stop, self.v_tool, max(self.v_min, 2.0), slow_mm=10.0)
        arrive = tr.t
        for k in range(shots):
            self.shot("carm_lateral" if k % 2 == 0 else "carm_ap")
        tr.hold(0.5 + 0.8 * (1.0 - self.prof.skill))
        self.record(step, inst, start, arrive, target, t.point(s_stop), s_stop)

    def cannula(self, step: str, inst: str | None) -> None:
        t, tr = self.traj, self.tr
        start = tr.t
        self.select(inst)
        self.hesitate(step)
        dock = t.dock_s_mm
        self.along(self.s_of(tr.tip), dock, self.v_tool, 2.0, slow_mm=8.0)
        arrive = tr.t
        for k in range(self.extra_sheath):  # re-positioning between extra shots
            self.along(dock, dock + 2.0, 6.0, 2.0, slow_mm=2.0)
            self.shot("carm_ap" if k % 2 else "carm_lateral")
            self.along(dock + 2.0, dock, 6.0, 2.0, slow_mm=2.0)
            self.error("shots", step, 1, "shot", "an extra shot while positioning the working cannula")
        self.shot("carm_lateral")
        tr.hold(0.5 + 0.8 * (1.0 - self.prof.skill))
        self.record(step, inst, start, arrive, None, t.point(dock), dock)

    def forceps(self, step: str, inst: str | None) -> None:
        t, tr = self.traj, self.tr
        start = tr.t
        self.select(inst)
        self.hesitate(step)
        scope_tip = t.point(t.dock_s_mm)
        tr.move(scope_tip, self.v_tool, t.direction)
        grasps: list[GraspPoint] = grasp_points(self.ctx, scope_tip, t.direction,
                                                fragment_pieces(self.ctx, self.ids.fragment_structure))
        if not grasps:
            self.notes.append(f"step {step}: no fragment pieces to grasp")
        misses = self.sk.grasp_misses
        pivot = t.point(t.dock_s_mm + HANDLE_MM)
        v = 0.5 * self.v_tool
        for k, g in enumerate(grasps):
            if k < misses:
                short = g.point_mm + 4.0 * unit(scope_tip - g.point_mm)
                tr.move(short, v, pivot - short)
                tr.squeeze()
                self.error("grasp", step, 4.0, "mm", f"closes 4 mm short of piece {g.piece}: nothing taken")
                tr.move(scope_tip, v, t.direction)
            tr.move(g.point_mm, v, pivot - g.point_mm)
            tr.hold(0.2)
            tr.squeeze()
            tr.move(scope_tip, v, t.direction)
        tr.hold(0.5)
        self.record(step, inst, start, tr.t, self.ids.fragment_target, None)


STAGES = ("needle_to_kambin", "guidewire", "dilate", "dock_cannula", "endoscope", "remove_fragment")


def is_staged(scenario: Scenario) -> bool:
    """Whether the scenario's steps are the staged operation (step ids of ``STAGES`` beyond the needle)."""
    ids = {st.id for st in scenario.steps}
    return "needle_to_kambin" in ids and bool(ids & set(STAGES[1:]))


def pted_plan(ctx: PlanningContext, skill: float, seed: int = 0, mode: str | None = None) -> Plan:
    """The staged PTED plan for ``ctx``'s scenario at ``skill`` (0..1) with draws from ``seed``."""
    if not 0.0 <= skill <= 1.0 or not np.isfinite(skill):
        raise ValueError(f"--autopilot-skill must be between 0 and 1 (got {skill})")
    p = _Planner(ctx, float(skill), seed)
    p.tr.hold(0.5)
    t = p.traj
    for step, inst in p.ids.steps:
        if step == "needle_to_kambin":
            p.needle(step, inst)
        elif step == "guidewire":
            p.slide(step, inst, t.guidewire_s_mm, None)
            p.tr.move(t.point(t.skin_s_mm + 0.4 * OUT_MM), p.v_tool, t.direction)  # drawn out for the dilator
        elif step == "dilate":
            p.slide(step, inst, t.dock_s_mm, None)
        elif step == "dock_cannula":
            p.cannula(step, inst)
        elif step == "endoscope":
            p.slide(step, inst, t.dock_s_mm, None)
        elif step == "remove_fragment":
            p.forceps(step, inst)
        else:
            p.notes.append(f"step {step}: not a PTED stage this planner knows; held")
            p.tr.hold(1.0)
    p.tr.hold(1.0)
    name = mode or ("expert" if skill == 1.0 else "novice" if skill == 0.15 else "skill")
    return Plan(ctx.scenario.id, name, float(skill), int(seed), tuple(p.tr.keys), tuple(p.tr.actions),
                tuple(p.steps), tuple(p.errors), tuple(p.notes))
