"""THA's metrics in the registry (procedure ``tha``), from the values the hip model adds to each
observation (:mod:`vr_trainer.procedures.tha_workflow`): the impacted cup against the scenario's plan
(``tha:`` in the scenario, else the defaults of :class:`~vr_trainer.scenario.schema.ThaPlan`), the
reaming, and what the new hip centre does to the leg.

A metric whose step was never done (no cup impacted, nothing reamed) reads NaN (the rubric scores it
zero), so an unfinished operation cannot score on accuracy.
"""

from __future__ import annotations

from typing import Callable

from vr_trainer.procedures.tka_metrics import _Latest
from vr_trainer.scenario.metrics import MetricContext, MetricDef, register
from vr_trainer.scenario.schema import ThaPlan

MURRAY_1993 = ("Murray DW. The definition and measurement of acetabular orientation. J Bone Joint Surg Br "
               "1993;75(2):228-232 (radiographic inclination and anteversion)")
LEWINNEK_1978 = ("Lewinnek GE, Lewis JL, Tarr R, Compere CL, Zimmerman JR. Dislocations after total "
                 "hip-replacement arthroplasties. J Bone Joint Surg Am 1978;60(2):217-220 (the safe zone: "
                 "inclination 40 +- 10, anteversion 15 +- 10 degrees)")
CHARNLEY_1979 = ("Charnley J. Low Friction Arthroplasty of the Hip: Theory and Practice. Berlin: Springer, 1979 "
                 "(deepening and medialising the acetabulum; the cup's centre against the native hip centre)")
MALONEY_2004 = ("Maloney WJ, Keeney JA. Leg length discrepancy after total hip arthroplasty. J Arthroplasty "
                "2004;19(4 Suppl 1):108-110; and Murray 1993 for the pelvic frame it is measured in")


def _plan(ctx: MetricContext) -> ThaPlan:
    return ctx.scenario.tha or ThaPlan()


def _metric(name: str, unit: str, definition: str, source: str, keys: tuple[str, ...],
            fn: Callable[[ThaPlan], Callable[..., float]]) -> None:
    def factory(ctx: MetricContext) -> _Latest:
        return _Latest(keys, fn(_plan(ctx)))
    register(MetricDef(name, unit, definition, source, ("tha",), factory), replace=True)  # type: ignore[arg-type]


_metric("cup_inclination_error_deg", "deg", "|radiographic inclination (Murray) of the impacted cup in the anterior "
        "pelvic plane frame - the plan's cup_inclination_deg|.", MURRAY_1993, ("impacted_cup_inclination_deg",),
        lambda p: lambda x: abs(x - p.cup_inclination_deg))
_metric("cup_anteversion_error_deg", "deg", "|radiographic anteversion (Murray) of the impacted cup: the angle "
        "between the cup axis and the coronal (anterior pelvic) plane - the plan's cup_anteversion_deg|.",
        MURRAY_1993, ("impacted_cup_anteversion_deg",), lambda p: lambda x: abs(x - p.cup_anteversion_deg))
_metric("cup_in_safe_zone", "0/1", "1 when the impacted cup's radiographic inclination and anteversion both lie "
        "inside the scenario's safe zone (target +- tolerance; by default Lewinnek's 40 +- 10 and 15 +- 10 deg), "
        "else 0.", LEWINNEK_1978, ("cup_in_zone",), lambda p: lambda x: x)
_metric("reaming_depth_error_mm", "mm", "|depth of the deepest reamed centre along the native acetabular axis, "
        "into the pelvis from the native centre (sphere fit) - the plan's reaming_depth_mm|.", CHARNLEY_1979,
        ("reaming_depth_mm",), lambda p: lambda x: abs(x - p.reaming_depth_mm))
_metric("medialisation_mm", "mm", "How far the deepest reamed centre lies medial of the native acetabular centre "
        "(toward the midline, along the anterior pelvic plane's transverse axis); + is medial.", CHARNLEY_1979,
        ("medialisation_mm",), lambda p: lambda x: x)
_metric("medial_wall_mm", "mm", "The thinnest bone left behind the reamer's head while reaming: from its pole to the "
        "inner (pelvic) surface of the uncut hemipelvis, on the line from the native acetabular centre through the "
        "pole; negative when the head went through the medial wall (by that much).", CHARNLEY_1979,
        ("medial_wall_mm",), lambda p: lambda x: x)
_metric("leg_length_change_mm", "mm", "Change of leg length from the hip centre's move (native acetabular centre "
        "-> impacted cup centre) along the pelvic longitudinal axis; + is longer, - shorter (acetabular side "
        "only).", MALONEY_2004, ("leg_length_change_mm",), lambda p: lambda x: x)
_metric("leg_length_discrepancy_mm", "mm", "|leg_length_change_mm|: the leg length the cup's position alone "
        "changed, either way.", MALONEY_2004, ("leg_length_change_mm",), lambda p: lambda x: abs(x))
_metric("offset_change_mm", "mm", "Change of hip offset from the hip centre's move (native centre -> cup centre) "
        "along the pelvic transverse axis; + is more lateral, - medialised (acetabular side only).", MALONEY_2004,
        ("offset_change_mm",), lambda p: lambda x: x)
