"""The hip arthroplasty autopilot: a timed plan of acetabular reaming and cup impaction planned from
the bundle's pelvis (the same :class:`~vr_trainer.procedures.tha.HipSetup` the session's model is
made from) and the scenario's ``tha`` plan, at a skill level (the scheme of
:mod:`vr_trainer.procedures.autopilot`: ``s`` = 1 expert, 0.15 novice; every error is ``(1 - s)``
times its full size, signs drawn from ``--seed``).

The expert reams along the planned cup axis until the reamed centre is the plan's depth into the
pelvis (along the native acetabular axis), then seats the cup in the socket and impacts it at the
planned inclination and anteversion. Seeded errors (each in ``Plan.errors``):

* ``slow``: every move at ``0.35 + 0.65 s`` of the expert's speed, the reaming advance too, and
  ``2 (1 - s)`` s of hesitation before the impaction;
* ``aim``: the cup (and the reamer's axis) ``18 (1 - s)`` deg too vertical (inclination) and
  ``14 (1 - s)`` deg off in anteversion (sign from the seed): about 15 and 12 deg for the novice;
* ``overshoot``: reamed ``6 (1 - s)`` mm deeper than the plan and ``3 (1 - s)`` mm further medial.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vr_trainer.procedures.plan import Plan, PlannedError, PlanStep, vec3
from vr_trainer.procedures.tha import HipSetup, hip_setup
from vr_trainer.procedures.tha_pelvis import cup_axis
from vr_trainer.procedures.tka_autopilot import _Track

REAM_MM_S = 2.0  # the expert's reaming advance (the reamer cuts at the plan's reaming_rate_mm_s at most)
APPROACH_MM = 120.0  # where an instrument comes in from, along its axis
SEAT_ABOVE_MM = 8.0  # the reamer's head this far out of the native sphere before it starts


def _setup(ctx: Any) -> HipSetup:
    """The session's hip setup, from the scenario's own bundle (hidden structures included)."""
    from vr_trainer.anatomy.bundle import load_bundle
    from vr_trainer.scenario.loader import resolve_bundle_path

    return hip_setup(ctx.scenario, load_bundle(resolve_bundle_path(ctx.scenario)), np.eye(4))


def tha_plan(ctx: Any, skill: float, seed: int = 0, mode: str = "expert") -> Plan:
    """Reaming and cup impaction at ``skill`` (0..1) for ``ctx`` (a
    :class:`~vr_trainer.procedures.reach.PlanningContext`)."""
    setup = _setup(ctx)
    m, plan = setup.model, setup.plan
    e = 1.0 - float(skill)
    rng = np.random.default_rng(seed)
    sign = float(rng.choice([-1.0, 1.0]))
    errors: list[PlannedError] = []
    order = [i.id for i in ctx.scenario.instruments]
    by_kind = {i.kind: i.id for i in ctx.scenario.instruments}
    speed = 0.35 + 0.65 * float(skill)
    inc = plan.cup_inclination_deg + 18.0 * e
    av = plan.cup_anteversion_deg + sign * 14.0 * e
    axis = cup_axis(inc, av, m.frame, m.side)  # the cup axis (out of the opening) this resident aims at
    native = m.native
    depth = plan.reaming_depth_mm + 6.0 * e
    medial = -m.frame.lateral(m.side)
    # along the aimed axis into the pelvis until the depth (on the native axis) is reached, then medial
    t_in = depth / max(float(axis @ native.axis), 0.2)
    final = native.centre_mm - t_in * axis + 3.0 * e * medial
    start = native.centre_mm + 2.5 * APPROACH_MM * axis
    tr = _Track(start, axis, speed, order)
    steps: list[PlanStep] = []

    def err(kind: str, step_id: str, mag: float, unit: str, detail: str) -> None:
        if mag > 1e-9:
            errors.append(PlannedError(kind, step_id, round(tr.t, 3), round(mag, 3), unit, detail))  # type: ignore[arg-type]

    if e > 0:
        err("slow", "all", speed, "x", "speed factor of every move, the reaming advance too")
    reamer = by_kind.get("acetabular_reamer")
    if reamer:
        t0 = tr.t
        tr.take(reamer)
        err("aim", "ream", 18.0 * e, "deg", f"reamer and cup {18.0 * e:.1f} deg too vertical, "
            f"{14.0 * e:.1f} deg {'more' if sign > 0 else 'less'} anteverted than the plan")
        err("overshoot", "ream", 6.0 * e, "mm", f"reamed {6.0 * e:.1f} mm deeper and {3.0 * e:.1f} mm more "
            "medial than the plan")
        above = native.centre_mm + SEAT_ABOVE_MM * axis
        tr.move(native.centre_mm + APPROACH_MM * axis, axis)
        tr.move(above, axis, 40.0)
        arrive = tr.t
        tr.set_trigger(1.0)
        tr.move(final, axis, REAM_MM_S)
        tr.hold(0.5)
        tr.set_trigger(0.0)
        tr.hold(0.2)
        tr.move(final + APPROACH_MM * axis, axis)
        steps.append(PlanStep("ream", reamer, None, t0, arrive, tr.t, target_mm=vec3(final)))
    impactor = by_kind.get("cup_impactor")
    if impactor:
        t0 = tr.t
        tr.take(impactor)
        tr.move(final + APPROACH_MM * axis, axis)
        tr.move(final + 4.0 * axis, axis, 40.0)
        arrive = tr.t
        tr.hold(0.5 + 2.0 * e)
        tr.pulse()
        tr.hold(0.5)
        steps.append(PlanStep("impact_cup", impactor, None, t0, arrive, tr.t))
    tr.hold(1.0)
    notes = (f"planned from the bundle's pelvis: native acetabulum (seeded by the {m.seed_source}) r "
             f"{native.radius_mm:.1f} mm; cup aimed at {inc:.1f} / {av:.1f} deg, reamed to {depth:.1f} mm",)
    return Plan(ctx.scenario.id, mode, float(skill), seed, tuple(tr.keys), tuple(tr.actions), tuple(steps),
                tuple(errors), notes)
