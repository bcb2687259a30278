"""PTED's metrics in the registry (procedure ``pted``), from the values the PTED model adds to each
observation (:mod:`vr_trainer.procedures.pted_model`) and the risk structures' distances.

Feng et al. 2024 validated a PTED simulator on puncturing and establishing the working channel:
experts beat novices on total operation time, the number of fluoroscopy shots for positioning
the working sheath and the number of spinal risk-region invasions. Those three are here
(``total_time_s`` is generic) with what Perk Tutor (Ungi et al. 2012) measures of a needle
insertion: passes, path and how straight it went, and the target error.
"""

from __future__ import annotations

import math
from typing import Callable

from vr_trainer.scenario.metrics import FENG_2024, UNGI_2012, MetricContext, MetricDef, RunView, register
from vr_trainer.sim.observation import Observation

KAMBIN_1986 = ("Kambin P, Sampson S. Posterolateral percutaneous suction-excision of herniated lumbar "
               "intervertebral discs. Clin Orthop Relat Res 1986;(207):37-43 (the triangular working zone)")
HOOGLAND_2006 = ("Hoogland T, Schubert M, Miklitz B, Ramirez A. Transforaminal posterolateral endoscopic "
                 "discectomy with or without the combination of a low-dose chymopapain: a prospective randomized "
                 "study in 280 consecutive cases. Spine 2006;31(24):E890-E897 (TESSYS: staged foraminal access)")
RELEASE_MM = 0.5  # leaving a risk region counts once the instrument is this far beyond its margin again


class _Latest:
    """The latest finite value the PTED model reported under ``key`` (NaN until there is one)."""

    __slots__ = ("key", "v")

    def __init__(self, key: str) -> None:
        self.key = key
        self.v = math.nan

    def update(self, obs: Observation, run: RunView) -> None:
        x = obs.values.get(self.key)
        if x is not None and not math.isnan(x):
            self.v = float(x)

    def value(self) -> float:
        return self.v


class _ActionCount:
    __slots__ = ("action", "n")

    def __init__(self, action: str) -> None:
        self.action = action
        self.n = 0

    def update(self, obs: Observation, run: RunView) -> None:
        if self.action in obs.actions:
            self.n += 1

    def value(self) -> float:
        return float(self.n)


class RiskInvasions:
    """Entries into any risk structure's risk region (closer than its margin), and the deepest
    point reached inside a region (mm past the margin)."""

    __slots__ = ("margins", "inside", "count", "depth_mm")

    def __init__(self, ctx: MetricContext) -> None:
        self.margins = tuple(ctx.risk_margin_mm.items())
        self.inside: set[str] = set()
        self.count = 0
        self.depth_mm = 0.0

    def update(self, obs: Observation, run: RunView) -> None:
        dist = obs.structure_distance_mm
        for s, margin in self.margins:
            d = dist.get(s)
            if d is None:
                continue
            if d < margin:
                self.depth_mm = max(self.depth_mm, margin - d)
                if s not in self.inside:
                    self.inside.add(s)
                    self.count += 1
            elif d > margin + RELEASE_MM:
                self.inside.discard(s)


class _InvasionCount(RiskInvasions):
    __slots__ = ()

    def value(self) -> float:
        return float(self.count)


class _InvasionDepth(RiskInvasions):
    __slots__ = ()

    def value(self) -> float:
        return self.depth_mm


class MinExitingRoot:
    """The smallest signed distance to the exiting root(s): the risk structures whose id or bundle
    structure says ``exiting``."""

    __slots__ = ("names", "v")

    def __init__(self, ctx: MetricContext) -> None:
        self.names = tuple(r.structure for r in ctx.scenario.risk_structures
                           if "exiting" in r.id or "exiting" in r.structure)
        self.v = math.inf if self.names else math.nan

    def update(self, obs: Observation, run: RunView) -> None:
        for n in self.names:
            d = obs.structure_distance_mm.get(n)
            if d is not None and d < self.v:
                self.v = d

    def value(self) -> float:
        return self.v


def _pted(name: str, unit: str, definition: str, source: str,
          factory: Callable[[MetricContext], object]) -> None:
    register(MetricDef(name, unit, definition, source, ("pted",), factory), replace=True)  # type: ignore[arg-type]


def _latest(name: str, unit: str, definition: str, source: str, key: str | None = None) -> None:
    """A metric that reports the PTED model's latest ``key`` (default: the metric's name)."""
    _pted(name, unit, definition, source, lambda ctx: _Latest(key or name))


_pted("sheath_fluoro_shots", "count", "C-arm shots taken while a dilator or the working cannula was the active "
      "instrument (positioning the working sheath).", FENG_2024, lambda ctx: _ActionCount("sheath_shot"))
_pted("risk_invasions", "count", "Entries of the active instrument (tip or inserted shaft) into a risk region: "
      "closer to a risk structure than its margin_mm, counted again only after it was 0.5 mm beyond the margin.",
      FENG_2024, _InvasionCount)
_pted("risk_invasion_depth_mm", "mm", "The deepest point reached inside a risk region: the largest margin_mm - "
      "signed distance over the run (0 when no region was entered; the time inside is risk_near_time_s).",
      FENG_2024, _InvasionDepth)
_pted("min_exiting_root_distance_mm", "mm", "The smallest signed distance from the instrument to the exiting "
      "nerve root (risk structures whose id or structure names 'exiting') over the run; negative: inside.",
      FENG_2024, MinExitingRoot)
_latest("needle_passes", "count", "Times the needle tip went in through the skin surface (tissue skin): each "
      "new puncture is a pass.", UNGI_2012)
_latest("needle_redirections", "count", "Times, within one pass, the needle was withdrawn at least 5 mm along its "
      "entry axis and advanced again at least 2 mm (a change of course without leaving the skin).", UNGI_2012)
_latest("bone_contacts", "count", "Times an instrument's tip met bone (a vertebra, the sacrum, the ilium) and "
      "was stopped there.", HOOGLAND_2006)
_latest("skin_entry_lateral_mm", "mm", "Distance of the latest needle pass's skin entry point from the midline "
      "(the dural sac's sagittal plane), measured along the patient's left-right axis.", KAMBIN_1986)
_latest("kambin_entry_error_mm", "mm", "Distance from the Kambin triangle's incentre to the point where the needle "
      "last crossed the triangle's plane coming from the approach side.", KAMBIN_1986)
_latest("kambin_entry_inside", "0/1", "1 when the needle's latest crossing of the Kambin triangle's plane was "
      "inside the triangle, 0 when outside (NaN: it never crossed).", KAMBIN_1986)
_latest("trajectory_axial_error_deg", "deg", "Absolute difference between the needle's axial angle (from the "
      "coronal plane) where it crossed Kambin's triangle and the landmark's planned approach.", UNGI_2012,
        "axial_error_deg")
_latest("trajectory_craniocaudal_error_deg", "deg", "Absolute difference between the needle's cranio-caudal tilt "
      "where it crossed Kambin's triangle and the landmark's planned approach.", UNGI_2012, "craniocaudal_error_deg")
_latest("fragment_removed_pct", "%", "Percent of the herniated fragment's volume taken out with the grasping "
      "forceps (the removed pieces' share).", HOOGLAND_2006)
_latest("grasp_attempts", "count", "Trigger presses with the grasping forceps (each a bite, taking a piece or not).",
      HOOGLAND_2006, "grasps")
_latest("needle_economy_pct", "%", "100 x the straight distance from the first skin entry to the needle tip's "
      "latest position / the tip's path length under the skin (100: one straight pass).", UNGI_2012)
