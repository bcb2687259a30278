"""The knee arthroplasty autopilot: a timed plan of the whole TKA (blocks, saw passes, gaps,
releases, 4-in-1 cuts, trial) planned from the bundle's landmarks and the scenario's plan, at a skill
level (the same scheme as :mod:`vr_trainer.procedures.autopilot`: ``s`` = 1 expert, 0.15 novice;
every error is ``(1 - s)`` times its full size, signs drawn from ``--seed``).

Seeded errors (each in ``Plan.errors``):

* ``slow``: every move and sweep at ``0.35 + 0.65 s`` of the expert's speed, ``2 (1 - s)`` s of
  hesitation before each pin;
* ``cut``: each block pinned off the plan: distal femoral varus/valgus ``4 (1 - s)`` deg, flexion
  ``5 (1 - s)`` deg and ``3 (1 - s)`` mm too deep; tibial varus/valgus ``4 (1 - s)`` deg, slope
  ``5 (1 - s)`` deg too steep, ``3 (1 - s)`` mm too deep;
* ``rotation``: the 4-in-1 block ``6 (1 - s)`` deg internally rotated ;
* ``release``: ``round(2 (1 - s))`` fewer releases than the gaps need (an unbalanced knee stalls
  the balancing step);
* ``plunge``: below skill 0.6, one push of the tibial pass at the midline goes through the posterior
  cortex into the first risk structure behind it (the popliteal artery, about 9 mm back), ``1.2 - 2 s``
  mm deep (as the generic autopilot's detours into a risk structure).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import trimesh

from vr_trainer.procedures.plan import NEXT_INSTRUMENT, Plan, PlanAction, PlannedError, PlanStep, ToolKey, vec3
from vr_trainer.procedures.tka import KneeSetup, knee_setup
from vr_trainer.procedures.tka_slots import (cross_section, femur_ap_mm, finishing_limit, four_in_one_planes,
                                             in_plane_basis)
from vr_trainer.procedures.tka_workflow import TkaState
from vr_trainer.sim.cutting import Plane, bounded_cut, plane_cut

HANDLE_MM = 100.0
SPEED_MM_S = 60.0  # expert moves in the air
SWEEP_MM_S = 35.0  # expert saw advance
LANE_MM = 14.0


@dataclass
class _Struct:
    name: str
    tissue: str
    mesh: trimesh.Trimesh


class _BundleView:
    """The planning context's structures, shaped as the bundle :func:`knee_setup` reads."""

    def __init__(self, structures: dict[str, Any]) -> None:
        self.structures = [_Struct(s.name, s.tissue, trimesh.Trimesh(s.vertices_mm, s.faces, process=False))
                           for s in structures.values()]


def _unit(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, float) / float(np.linalg.norm(v))


def _rot(v: np.ndarray, axis: np.ndarray, deg: float) -> np.ndarray:
    return np.asarray(trimesh.transformations.rotation_matrix(math.radians(deg), axis)[:3, :3] @ v)


class _Track:
    """Keyframes and actions as the pose track plays them."""

    def __init__(self, start_tip: np.ndarray, toward: np.ndarray, speed: float, order: list[str]) -> None:
        self.t = 0.0
        self.tip = np.asarray(start_tip, float)
        self.toward = _unit(toward)
        self.trigger = 0.0
        self.speed = speed
        self.keys: list[ToolKey] = []
        self.actions: list[PlanAction] = []
        self.order = order
        self.active = 0
        self._emit()

    def _emit(self) -> None:
        self.keys.append(ToolKey(round(self.t, 4), vec3(self.tip), vec3(self.tip + HANDLE_MM * self.toward),
                                 self.trigger))

    def hold(self, s: float) -> None:
        self.t += s
        self._emit()

    def move(self, tip: np.ndarray, toward: np.ndarray | None = None, speed: float | None = None,
             min_s: float = 0.3) -> None:
        d = float(np.linalg.norm(np.asarray(tip) - self.tip))
        self.t += max(min_s, d / ((speed or SPEED_MM_S) * self.speed))
        self.tip = np.asarray(tip, float)
        if toward is not None:
            self.toward = _unit(toward)
        self._emit()

    def set_trigger(self, v: float) -> None:
        self.t += 0.05
        self.trigger = v
        self._emit()

    def pulse(self) -> None:
        self.set_trigger(1.0)
        self.hold(0.2)
        self.set_trigger(0.0)
        self.hold(0.2)

    def take(self, instrument_id: str) -> None:
        want = self.order.index(instrument_id)
        while self.active != want:
            self.t += 0.3
            self.actions.append(PlanAction(round(self.t, 4), NEXT_INSTRUMENT))
            self.active = (self.active + 1) % len(self.order)
        self.hold(0.3)


def _tilted(plane: Plane, axis: np.ndarray, deg: float, depth_mm: float, about: np.ndarray) -> Plane:
    """``plane`` turned ``deg`` about ``axis`` through ``about`` and moved ``depth_mm`` against its normal."""
    n = _rot(plane.normal, axis, deg)
    o = about - float((about - plane.origin_mm) @ plane.normal) * plane.normal  # about, on the plane
    return Plane.make(o - depth_mm * n, n)


def _sweep(tr: _Track, bone: trimesh.Trimesh, plane: Plane, outward: np.ndarray,
           plunge: Callable[[np.ndarray, np.ndarray], float | None] | None = None,
           within: Plane | None = None, plunge_at: np.ndarray | None = None) -> None:
    """Saw passes covering ``bone``'s section in ``plane``, entering from ``outward``; with ``plunge``
    (far cortex point, direction -> mm) one more push at ``plunge_at`` (the midline) goes that far past
    the far cortex."""
    sec = cross_section(bone, plane, within=within)
    u, w = in_plane_basis(plane, outward)
    pts = sec.points_mm
    if len(pts) == 0:
        pts = plane.origin_mm[None]
    o = plane.origin_mm
    cu, cw = (pts - o) @ u, (pts - o) @ w
    entry_w = float(cw.max()) + 20.0
    span = float(cu.max() - cu.min())
    n_lanes = max(1, int(math.ceil(max(span - 16.0, 0.0) / LANE_MM)) + 1)
    lanes = np.linspace(cu.min() + 8.0, cu.max() - 8.0, n_lanes) if n_lanes > 1 else np.array([cu.mean()])
    start = o + lanes[0] * u + (entry_w + 40.0) * w
    tr.move(start, w)
    tr.set_trigger(1.0)
    strokes = []
    for lu in lanes:
        band = np.abs(cu - lu) < LANE_MM / 2.0 + 1.0
        strokes.append((lu, (float(cw[band].min()) if band.any() else float(cw.min())) + 4.0))
    if plunge is not None:  # one push through the far cortex, nearest the midline where it meets something
        mid = float((plunge_at - o) @ u) if plunge_at is not None else float(lanes.mean())
        for at in sorted(np.arange(cu.min(), cu.max(), 1.0), key=lambda x: abs(x - mid)):
            band = np.abs(cu - at) < 1.5
            if not band.any():
                continue
            far = float(cw[band].min())
            depth = plunge(o + at * u + far * w, -w)
            if depth is not None:
                strokes.append((float(at), far - depth))
                break
    for lu, stop in strokes:
        tr.move(o + lu * u + entry_w * w, w)
        tr.move(o + lu * u + stop * w, w, SWEEP_MM_S)
        tr.move(o + lu * u + entry_w * w, w, SWEEP_MM_S * 2)
    tr.set_trigger(0.0)
    tr.move(o + strokes[-1][0] * u + (entry_w + 60.0) * w, w)


def _behind(ctx: Any, point: np.ndarray, direction: np.ndarray) -> float | None:
    """How far along ``direction`` from ``point`` the nearest of the scenario's risk structures begins (mm)."""
    best = None
    for r in ctx.scenario.risk_structures:
        st = ctx.structures.get(r.structure)
        if st is None:
            continue
        mesh = trimesh.Trimesh(st.vertices_mm, st.faces, process=False)
        locs, _, _ = mesh.ray.intersects_location(point[None], direction[None], multiple_hits=False)
        for p in locs:
            d = float((p - point) @ direction)
            best = d if best is None or d < best else best
    return best


def tka_plan(ctx: Any, skill: float, seed: int = 0, mode: str = "expert") -> Plan:
    """The whole TKA at ``skill`` (0..1) for ``ctx`` (a :class:`~vr_trainer.procedures.reach.PlanningContext`)."""
    setup: KneeSetup = knee_setup(ctx.scenario, _BundleView(ctx.structures), np.eye(4))
    m, planned = setup.model, setup.planned
    f, t = m.femur, m.tibia
    e = 1.0 - float(skill)
    rng = np.random.default_rng(seed)
    sign = float(rng.choice([-1.0, 1.0]))
    errors: list[PlannedError] = []
    order = [i.id for i in ctx.scenario.instruments]
    by_kind = {i.kind: i.id for i in ctx.scenario.instruments}
    ant = f.frame.anterior
    start = f.knee_centre_mm + 250.0 * ant + 100.0 * f.frame.superior
    tr = _Track(start, ant, 0.35 + 0.65 * skill, order)
    steps: list[PlanStep] = []

    def step(step_id: str, inst: str, t0: float) -> None:
        steps.append(PlanStep(step_id, inst, None, t0, tr.t, tr.t))

    def err(kind: str, step_id: str, mag: float, unit: str, detail: str) -> None:
        if mag > 1e-9:
            errors.append(PlannedError(kind, step_id, round(tr.t, 3), round(mag, 3), unit, detail))  # type: ignore[arg-type]

    if e > 0:
        err("slow", "all", 0.35 + 0.65 * skill, "x", "speed factor of every move")
    femur, tibia = m.meshes["femur"], m.meshes["tibia"]
    # 1. distal femoral block
    distal = _tilted(planned.distal, f.frame.anterior, sign * 4.0 * e, -3.0 * e, f.knee_centre_mm)
    distal = _tilted(distal, f.frame.lateral, 5.0 * e, 0.0, f.knee_centre_mm)
    err("cut", "distal_block", 4.0 * e, "deg", "distal femoral varus/valgus off the plan (and 5 deg flexion, 3 mm)")
    block = by_kind.get("distal_femoral_block")
    if block:
        t0 = tr.t
        tr.take(block)
        tip = f.knee_centre_mm + 40.0 * ant
        tip = tip - float(distal.signed_distance_mm(tip)[0]) * distal.normal
        tr.move(tip + 80.0 * ant, distal.normal)
        tr.move(tip, distal.normal, 40.0)
        tr.hold(0.4 + 2.0 * e)
        tr.pulse()
        tr.move(tip + 120.0 * ant, distal.normal)  # the hand leaves the pinned block
        step("distal_block", block, t0)
    saw = by_kind.get("saw_blade")
    if saw:
        t0 = tr.t
        tr.take(saw)
        _sweep(tr, femur, distal, ant)
        step("distal_cut", saw, t0)
    femur_cut = plane_cut(femur, distal).mesh
    # 2. tibial block
    tib = _tilted(planned.tibial, t.frame.anterior, sign * 4.0 * e, -3.0 * e, t.knee_centre_mm)
    tib = _tilted(tib, t.frame.lateral, 5.0 * e, 0.0, t.knee_centre_mm)
    err("cut", "tibial_block", 4.0 * e, "deg", "tibial varus/valgus off the plan (and 5 deg slope, 3 mm deeper)")
    block = by_kind.get("tibial_block")
    if block:
        t0 = tr.t
        tr.take(block)
        tip = t.knee_centre_mm + 45.0 * t.frame.anterior
        tip = tip - float(tib.signed_distance_mm(tip)[0]) * tib.normal
        tr.move(tip + 80.0 * t.frame.anterior, -tib.normal)
        tr.move(tip, -tib.normal, 40.0)
        tr.hold(0.4 + 2.0 * e)
        tr.pulse()
        tr.move(tip + 120.0 * t.frame.anterior, -tib.normal)
        step("tibial_block", block, t0)
    if saw:
        t0 = tr.t
        tr.take(saw)
        into = 1.2 - 2.0 * float(skill)  # mm inside what lies behind (below skill 0.6)
        plunged: list[float] = []

        def plunge(far: np.ndarray, direction: np.ndarray) -> float | None:
            hit = _behind(ctx, far, direction)
            if hit is None or hit > 40.0:
                return None
            plunged.append(hit + into)
            return plunged[-1]
        _sweep(tr, tibia, tib, t.frame.anterior - 0.3 * t.frame.lateral, plunge if skill < 0.6 else None,
               plunge_at=t.knee_centre_mm)  # from anteromedial
        if plunged:
            err("plunge", "tibial_cut", plunged[0], "mm", "one push of the blade past the posterior tibial cortex, "
                f"{into:.1f} mm into what lies behind it")
        step("tibial_cut", saw, t0)
    joint = 0.5 * (f.knee_centre_mm + t.knee_centre_mm)
    spacer = by_kind.get("spacer_block")

    def in_joint(inst: str, step_id: str, pulses: int = 1) -> None:
        t0 = tr.t
        tr.take(inst)
        tr.move(joint + 90.0 * ant, ant)
        tr.move(joint, ant, 40.0)
        for _ in range(pulses):
            tr.pulse()
        tr.move(joint + 90.0 * ant, ant)
        step(step_id, inst, t0)
    if spacer:
        in_joint(spacer, "extension_gap")
    # 3. releases: as many as the expected gaps need, fewer for a novice
    st = TkaState(cuts={"distal": distal, "tibial": tib})
    ext = m.current_balance(st).extension_gaps(distal, tib)
    side, mm = m.balance.release_to_balance(ext)
    need = int(round(mm / m.release_step_mm)) if not ext.rectangular else 0
    skipped = min(need, int(round(2.0 * e)))
    err("release", "balance", float(skipped), "releases", f"{skipped} fewer {side} releases than the gaps need")
    scalpel = by_kind.get("scalpel")
    if scalpel and need - skipped > 0:
        t0 = tr.t
        tr.take(scalpel)
        a, b = m.ligament_lines()["mcl" if side == "medial" else "lcl"]
        mid = 0.5 * (a + b)
        out = _unit(mid - joint)
        tr.move(mid + 60.0 * out + 30.0 * ant, out)
        tr.move(mid + 2.0 * out, out, 30.0)
        for _ in range(need - skipped):
            tr.pulse()
            tr.hold(0.3)
        tr.move(mid + 60.0 * out + 30.0 * ant, out)
        step("balance", scalpel, t0)
    # 4. the 4-in-1 block on the distal cut at the plan's rotation and posterior resection
    d = distal.normal
    posterior = planned.posterior
    a_dir = posterior.normal - float(posterior.normal @ d) * d
    a_dir = _unit(_rot(a_dir, d, -sign * 6.0 * e if f.side == "right" else sign * 6.0 * e))
    err("rotation", "four_in_one", 6.0 * e, "deg", "the 4-in-1 block internally rotated")
    q = f.knee_centre_mm - float(distal.signed_distance_mm(f.knee_centre_mm)[0]) * d
    q = q + float((posterior.origin_mm - q) @ a_dir) * a_dir
    block = by_kind.get("four_in_one_block")
    if block:
        t0 = tr.t
        tr.take(block)
        tr.move(q - 60.0 * d + 30.0 * a_dir, a_dir)
        tr.move(q, a_dir, 40.0)
        tr.hold(0.4 + 2.0 * e)
        tr.pulse()
        tr.move(q - 100.0 * d + 120.0 * a_dir, a_dir)
        step("four_in_one", block, t0)
        post = four_in_one_planes(q, a_dir, distal, 50.0)["posterior"]
        ap = femur_ap_mm(femur_cut, post, distal)
        box = min((s[1] for s in m.sizes), key=lambda s: abs(s - ap))
        planes = four_in_one_planes(q, a_dir, distal, box)
        if saw:
            t0 = tr.t
            tr.take(saw)
            bone = femur_cut
            for name in ("anterior", "posterior", "anterior_chamfer", "posterior_chamfer"):
                # from the front of the knee: distal for the anterior and posterior cuts, anterior-distal
                # for the posterior chamfer, anterior-proximal for the anterior chamfer
                limit = finishing_limit(distal, box)
                _sweep(tr, bone, planes[name], a_dir + d if name == "anterior_chamfer" else a_dir - d, within=limit)
                bone = bounded_cut(bone, planes[name], limit).mesh
            step("femoral_cuts", saw, t0)
    if spacer:
        in_joint(spacer, "flexion_gap")
    trial = by_kind.get("trial_insert")
    if trial:
        in_joint(trial, "trial")
    tr.hold(1.0)
    notes = (f"planned from the bundle's landmarks: {len(m.sizes)} femoral sizes, release side {side}, "
             f"{need} release(s) of {m.release_step_mm:g} mm expected",)
    return Plan(ctx.scenario.id, mode, float(skill), seed, tuple(tr.keys), tuple(tr.actions), tuple(steps),
                tuple(errors), notes)
