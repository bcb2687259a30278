"""TKA's metrics in the registry (procedure ``tka``), from the values the knee model adds to each
observation (:mod:`vr_trainer.procedures.tka_workflow`): the executed cuts against the scenario's
plan (``tka:`` in the scenario, else the defaults of :class:`~vr_trainer.scenario.schema.TkaPlan`),
the gaps after the cuts and releases, and the trial.

A metric whose cut was never made reads NaN (the rubric scores it zero), so an unfinished
procedure cannot score on accuracy.
"""

from __future__ import annotations

import math
from typing import Callable

from vr_trainer.procedures.tka_constants import BALANCED_MM
from vr_trainer.scenario.metrics import MetricContext, MetricDef, RunView, register
from vr_trainer.scenario.schema import TkaPlan
from vr_trainer.sim.observation import Observation

INSALL_1989 = ("Insall JN, Dorr LD, Scott RD, Scott WN. Rationale of the Knee Society clinical rating system. "
               "Clin Orthop Relat Res 1989;(248):13-14; and the navigation targets of mechanical alignment: "
               "cuts perpendicular to the mechanical axes within 3 degrees (Jeffery RS et al., J Bone Joint Surg Br "
               "1991;73(5):709-714)")
GAP_BALANCING = ("Sheth NP, Husain A, Nelson CL. Surgical techniques for total knee arthroplasty: measured "
                 "resection, gap balancing, and hybrid. J Am Acad Orthop Surg 2017;25(7):499-508 (rectangular, "
                 "equal extension and flexion gaps)")
BERGER_1998 = ("Berger RA, Crossett LS, Jacobs JJ, Rubash HE. Malrotation causing patellofemoral complications "
               "after total knee arthroplasty. Clin Orthop Relat Res 1998;(356):144-153 (femoral rotation against "
               "the transepicondylar axis)")


class _Latest:
    """The latest finite value under ``key``, mapped by ``fn`` (NaN until there is one)."""

    __slots__ = ("keys", "fn", "v")

    def __init__(self, keys: tuple[str, ...], fn: Callable[..., float]) -> None:
        self.keys, self.fn, self.v = keys, fn, math.nan

    def update(self, obs: Observation, run: RunView) -> None:
        xs = [obs.values.get(k) for k in self.keys]
        if all(x is not None and not math.isnan(x) for x in xs):
            self.v = float(self.fn(*xs))

    def value(self) -> float:
        return self.v


def _plan(ctx: MetricContext) -> TkaPlan:
    return ctx.scenario.tka or TkaPlan()


def _metric(name: str, unit: str, definition: str, source: str, keys: tuple[str, ...],
            fn: Callable[[TkaPlan], Callable[..., float]]) -> None:
    def factory(ctx: MetricContext) -> _Latest:
        return _Latest(keys, fn(_plan(ctx)))
    register(MetricDef(name, unit, definition, source, ("tka",), factory), replace=True)  # type: ignore[arg-type]


_metric("distal_varus_error_deg", "deg", "|varus/valgus of the executed distal femoral cut - the plan's| against "
        "the femoral mechanical axis (cut_distal_varus_deg).", INSALL_1989, ("cut_distal_varus_deg",),
        lambda p: lambda x: abs(x - p.distal_varus_deg))
_metric("distal_flexion_error_deg", "deg", "|flexion of the executed distal femoral cut - the plan's| in the "
        "sagittal plane of the femoral mechanical axis.", INSALL_1989, ("cut_distal_flexion_deg",),
        lambda p: lambda x: abs(x - p.distal_flexion_deg))
_metric("distal_resection_error_mm", "mm", "|resection of the more prominent distal condyle by the executed cut - "
        "the plan's distal_resection_mm|.", INSALL_1989,
        ("cut_distal_medial_resection_mm", "cut_distal_lateral_resection_mm"),
        lambda p: lambda m, lat: abs(max(m, lat) - p.distal_resection_mm))
_metric("tibial_varus_error_deg", "deg", "|varus/valgus of the executed tibial cut - the plan's| against the "
        "tibial mechanical axis.", INSALL_1989, ("cut_tibial_varus_deg",),
        lambda p: lambda x: abs(x - p.tibial_varus_deg))
_metric("tibial_slope_error_deg", "deg", "|posterior slope of the executed tibial cut - the plan's|.", INSALL_1989,
        ("cut_tibial_slope_deg",), lambda p: lambda x: abs(x - p.tibial_slope_deg))
_metric("tibial_resection_error_mm", "mm", "|resection below the higher (less worn) plateau by the executed cut - "
        "the plan's tibial_resection_mm|.", INSALL_1989,
        ("cut_tibial_medial_resection_mm", "cut_tibial_lateral_resection_mm"),
        lambda p: lambda m, lat: abs(max(m, lat) - p.tibial_resection_mm))
_metric("femoral_rotation_error_deg", "deg", "|external rotation of the executed posterior femoral cut against the "
        "transepicondylar axis - the plan's femoral_rotation_deg|.", BERGER_1998, ("cut_femoral_rotation_deg",),
        lambda p: lambda x: abs(x - p.femoral_rotation_deg))
_metric("extension_gap_imbalance_mm", "mm", "|medial - lateral extension gap| (100 N distraction per side, the "
        "collateral ligament model of tka_gaps) at the last measurement or release.", GAP_BALANCING,
        ("extension_gap_imbalance_mm",), lambda p: lambda x: x)
_metric("flexion_gap_imbalance_mm", "mm", "|medial - lateral flexion gap at 90 degrees| at the last measurement.",
        GAP_BALANCING, ("flexion_gap_imbalance_mm",), lambda p: lambda x: x)
_metric("flexion_extension_mismatch_mm", "mm", "The larger, over both compartments, of |flexion gap - extension "
        "gap| (equal gaps: one insert fits both).", GAP_BALANCING, ("flexion_extension_mismatch_mm",),
        lambda p: lambda x: x)
_metric("trial_laxity_mm", "mm", "With the trial insert (the thickest of the scenario's table that the tightest "
        "gap takes): the larger of the extension and flexion laxity of the looser compartment.", GAP_BALANCING,
        ("trial_extension_laxity_mm", "trial_flexion_laxity_mm"), lambda p: lambda e, f: max(e, f))
_metric("gaps_balanced", "0/1", f"1 when both measured gaps are rectangular (|medial - lateral| <= {BALANCED_MM:g} "
        "mm) and flexion equals extension within that on each side, else 0.", GAP_BALANCING,
        ("extension_gap_imbalance_mm", "flexion_gap_imbalance_mm", "flexion_extension_mismatch_mm"),
        lambda p: lambda e, f, m: float(e <= BALANCED_MM and f <= BALANCED_MM and m <= BALANCED_MM))
_metric("ligament_released_mm", "mm", "Total slack length added to the collateral ligaments by releases.",
        GAP_BALANCING, ("released_mm",), lambda p: lambda x: x)
