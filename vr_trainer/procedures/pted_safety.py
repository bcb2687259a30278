"""PTED safety per structure: the closest the instruments came to each kind of risk structure
(traversing root, dural sac, segmental vessels; the exiting root is in :mod:`.pted_metrics`), and
how long they stayed in a risk region, registered as metrics of procedure ``pted``.

A risk structure's role is read from the scenario: its ``id`` or bundle ``structure`` name
(``traversing``; ``dural``/``sac``/``dura``; ``artery``/``vessel``/``vein``/``segmental``) or,
when the session gives the bundle's tissue classes to the metric context, its tissue. A role the
scenario has no structure for is NaN (reported as null), so old scenarios stay valid.

The distances are the simulation's: the signed distance from the active instrument's surface
(tip and inserted shaft) to the structure (:class:`~vr_trainer.sim.observation.Observation`,
``structure_distance_mm``), negative inside. Millimetres, seconds.
"""

from __future__ import annotations

import math
from typing import Callable

from vr_trainer.scenario.metrics import (FENG_2024, MetricAccumulator, MetricContext, MetricDef, RiskNearTime,
                                         RunView, register)
from vr_trainer.sim.observation import Observation

ROLES: dict[str, tuple[str, ...]] = {
    "traversing_root": ("traversing",),
    "dural_sac": ("dural", "dura", "sac", "thecal"),
    "vessel": ("artery", "arteries", "vessel", "vein", "segmental"),
}


def role_structures(ctx: MetricContext, role: str) -> tuple[str, ...]:
    """The bundle structures of the scenario's risk structures that play ``role``."""
    words = ROLES[role]
    out = []
    for r in ctx.scenario.risk_structures:
        text = f"{r.id} {r.structure}".lower()
        if any(w in text for w in words) and r.structure not in out:
            out.append(r.structure)
    return tuple(out)


class MinRoleDistance:
    """The smallest signed distance over the run to the risk structures of one role (NaN: the
    scenario has none; +inf: never measured)."""

    __slots__ = ("names", "v")

    def __init__(self, ctx: MetricContext, role: str) -> None:
        self.names = role_structures(ctx, role)
        self.v = math.inf if self.names else math.nan

    def update(self, obs: Observation, run: RunView) -> None:
        dist = obs.structure_distance_mm
        for n in self.names:
            d = dist.get(n)
            if d is not None and d < self.v:
                self.v = d
            if n in obs.tip_inside and self.v > 0.0:
                self.v = 0.0

    def value(self) -> float:
        return self.v


class RoleInvasionTime(RiskNearTime):
    """Seconds with the instrument inside the risk region (closer than ``margin_mm``) of a
    structure of one role (``risk_near_time_s`` for that role's structures; NaN when it has none)."""

    __slots__ = ("defined",)

    def __init__(self, ctx: MetricContext, role: str) -> None:
        super().__init__(ctx)
        names = set(role_structures(ctx, role))
        self.margins = tuple((s, m) for s, m in self.margins if s in names)
        self.defined = bool(self.margins)

    def value(self) -> float:
        return self.t_s if self.defined else math.nan


def _reg(name: str, unit: str, definition: str, factory: Callable[[MetricContext], MetricAccumulator]) -> None:
    register(MetricDef(name, unit, definition, f"risk regions as in {FENG_2024}", ("pted",), factory), replace=True)


def _min_of(role: str) -> Callable[[MetricContext], MetricAccumulator]:
    return lambda ctx: MinRoleDistance(ctx, role)


def _time_in(role: str) -> Callable[[MetricContext], MetricAccumulator]:
    return lambda ctx: RoleInvasionTime(ctx, role)


_WHO = {"traversing_root": "the traversing nerve root(s) (risk structures whose id or structure says 'traversing')",
        "dural_sac": "the dural sac (risk structures whose id or structure says 'dural', 'dura' or 'sac')",
        "vessel": "the segmental vessels (risk structures whose id or structure says 'artery', 'vessel', 'vein' or "
                  "'segmental')"}
for _role, _name in (("traversing_root", "min_traversing_root_distance_mm"), ("dural_sac", "min_dural_sac_distance_mm"),
                     ("vessel", "min_vessel_distance_mm")):
    _reg(_name, "mm", f"The smallest signed distance from the active instrument (tip and inserted shaft) to "
         f"{_WHO[_role]} over the run; negative: inside; null when the scenario lists none.",
         _min_of(_role))
for _role, _name in (("traversing_root", "traversing_root_invasion_time_s"), ("dural_sac", "dural_sac_invasion_time_s"),
                     ("vessel", "vessel_invasion_time_s")):
    _reg(_name, "s", f"Seconds the active instrument spent closer than margin_mm to {_WHO[_role]}; null when the "
         "scenario lists none.", _time_in(_role))
