"""The metric registry: every metric a rubric may score, with its unit, exact definition and source.

A :class:`MetricDef` names a metric and makes a :class:`MetricAccumulator` for one run; the
engine calls ``update(obs, run)`` after every fixed step and ``value()`` when it needs the
number. Generic metrics (``procedures=("*",)``) are defined here; procedures register their
own at import (``vr_trainer.procedures``), which :func:`metrics_for` and :func:`get_metric`
import lazily so a scenario naming a procedure metric validates. ``vr-trainer metrics``
lists them.

Values are plain floats; NaN means "not defined for this run" (reported as null), +inf for a
distance means "never measured" (also null in JSON).
"""

from __future__ import annotations

import difflib
import importlib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping, Protocol, Sequence

from vr_trainer.sim.observation import Observation

if TYPE_CHECKING:
    from vr_trainer.scenario.conditions import ScenarioNames
    from vr_trainer.scenario.schema import LocalizedText, Scenario

# Sources (real publications and standards; each metric cites the one its definition follows).
UNGI_2012 = ("Ungi T, Sargent D, Moult E, et al. Perk Tutor: an open-source training platform for ultrasound-guided "
             "needle insertions. IEEE Trans Biomed Eng 2012;59(12):3475-3481")
DATTA_2001 = ("Datta V, Mackay S, Mandalia M, Darzi A. The use of electromagnetic motion tracking analysis to "
              "objectively measure open surgical skill in the laboratory-based model. J Am Coll Surg "
              "2001;193(5):479-485")
FENG_2024 = ("Feng L, Li W, Lai J, et al. Validity of a novel simulator for percutaneous transforaminal endoscopic "
             "discectomy. World Neurosurg 2024:e220-e232, doi:10.1016/j.wneu.2024.04.070 (11 experts, 21 novices: "
             "experts beat novices on total operation time, fluoroscopy shots for positioning the working sheath and "
             "spinal risk-region invasions)")
MARTIN_1997 = ("Martin JA, Regehr G, Reznick R, et al. Objective structured assessment of technical skill (OSATS) "
               "for surgical residents. Br J Surg 1997;84(2):273-278 (task-specific checklist)")
FITZPATRICK_1998 = ("Fitzpatrick JM, West JB, Maurer CR Jr. Predicting error in rigid-body point-based registration. "
                    "IEEE Trans Med Imaging 1998;17(5):694-702 (target error); ASTM F2554, positional accuracy of "
                    "computer assisted surgical systems")
GALLAGHER_2005 = ("Gallagher AG, Ritter EM, Champion H, et al. Virtual reality simulation for the operating room: "
                  "proficiency-based training as a paradigm shift in surgical skills training. Ann Surg "
                  "2005;241(2):364-372 (error metrics)")
VASSILIOU_2005 = ("Vassiliou MC, Feldman LS, Andrew CG, et al. A global assessment tool for evaluation of "
                  "intraoperative laparoscopic skills. Am J Surg 2005;190(1):107-113 (GOALS autonomy domain)")
NCRP_168 = ("NCRP Report No. 168: Radiation dose management for fluoroscopically-guided interventional medical "
            "procedures. National Council on Radiation Protection and Measurements, 2010")
LALYS_2014 = ("Lalys F, Jannin P. Surgical process modelling: a review. Int J Comput Assist Radiol Surg "
              "2014;9(3):495-511 (instrument usage as a process element)")

CONTACT_RELEASE_MM = 0.5  # a contact ends once the signed distance exceeds this (no double counts from jitter)


@dataclass
class StepRecord:
    """The engine's record of one step; times are run seconds (from the run's start)."""

    id: str
    allowance_s: float | None = None
    focus_target: str | None = None
    started_s: float | None = None
    ended_s: float | None = None
    completed: bool = False
    failed: bool = False

    def duration_s(self, now_s: float) -> float:
        if self.started_s is None:
            return 0.0
        return (self.ended_s if self.ended_s is not None else now_s) - self.started_s

    def overtime_s(self, now_s: float) -> float:
        return 0.0 if self.allowance_s is None else max(0.0, self.duration_s(now_s) - self.allowance_s)


@dataclass(frozen=True)
class CriticalErrorRecord:
    id: str
    time_s: float
    description: "LocalizedText | None" = None


class RunView(Protocol):
    """The engine's state as metrics see it (read only). Times are run seconds."""

    @property
    def elapsed_s(self) -> float: ...
    @property
    def finished_at_s(self) -> float | None: ...
    @property
    def step_records(self) -> Sequence[StepRecord]: ...
    @property
    def fired_count(self) -> Mapping[str, int]: ...
    @property
    def critical_errors(self) -> Sequence[CriticalErrorRecord]: ...
    @property
    def hints_shown(self) -> int: ...
    @property
    def wrong_instrument_uses(self) -> int: ...


class MetricAccumulator(Protocol):
    def update(self, obs: Observation, run: RunView) -> None: ...
    def value(self) -> float: ...


@dataclass(frozen=True)
class MetricContext:
    """What a metric factory may know of the scenario: ``risk_margin_mm`` maps each risk
    structure's bundle structure name to its margin; ``step_targets`` is each step's focus target."""

    scenario: "Scenario"
    names: "ScenarioNames"
    risk_margin_mm: Mapping[str, float] = field(default_factory=dict)
    step_targets: tuple[str | None, ...] = ()

    @classmethod
    def build(cls, scenario: "Scenario", names: "ScenarioNames") -> "MetricContext":
        from vr_trainer.scenario.conditions import first_reached_target, parse
        margins: dict[str, float] = {}
        for r in scenario.risk_structures:
            margins[r.structure] = max(margins.get(r.structure, 0.0), r.margin_mm)
        targets = tuple(first_reached_target(parse(s.complete_when)) for s in scenario.steps)
        return cls(scenario, names, margins, targets)


@dataclass(frozen=True)
class MetricDef:
    name: str
    unit: str
    definition: str  # one sentence: exactly how it is computed
    source: str  # the literature or standard it follows
    procedures: tuple[str, ...]  # ("*",) for generic, else e.g. ("pted",)
    factory: Callable[[MetricContext], MetricAccumulator]


class MetricError(ValueError):
    """An unknown metric name; the message lists close matches."""


REGISTRY: dict[str, MetricDef] = {}
_procedures_loaded = False


def register(defn: MetricDef, replace: bool = False) -> MetricDef:
    """Add a metric to the registry (procedures call this at import). A name already taken raises
    unless ``replace`` (e.g. a module reloaded)."""
    if defn.name in REGISTRY and not replace and REGISTRY[defn.name] is not defn:
        raise MetricError(f"metric {defn.name!r} is already registered (by {REGISTRY[defn.name].procedures}); "
                          "choose another name or pass replace=True")
    REGISTRY[defn.name] = defn
    return defn


PLUGIN_PACKAGES = ("vr_trainer.procedures",)  # imported by name (a plugin hook, like an entry point)


def load_plugins() -> None:
    """Import the plugin packages once so their metrics are registered (absent: generic only).
    By name, not a static import: the scenario layer does not depend on procedures' code, the
    procedures register into it (the layer above plugs into the layer below)."""
    global _procedures_loaded
    if _procedures_loaded:
        return
    _procedures_loaded = True
    for name in PLUGIN_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError as e:
            if e.name is None or not name.startswith(e.name):  # a broken plugin, not an absent one
                raise


def metrics_for(procedure: str | None = None) -> list[MetricDef]:
    """Metrics a scenario of ``procedure`` may use (generic ones first); None: every metric."""
    load_plugins()
    defs = list(REGISTRY.values())
    if procedure is None:
        return defs
    return [d for d in defs if "*" in d.procedures or procedure in d.procedures]


def get_metric(name: str, procedure: str | None = None) -> MetricDef:
    """The metric called ``name`` (for ``procedure`` when given); raises :class:`MetricError`."""
    known = {d.name: d for d in metrics_for(procedure)}
    if name in known:
        return known[name]
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    other = REGISTRY.get(name)
    why = f" (it belongs to {', '.join(other.procedures)})" if other is not None else ""
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise MetricError(f"unknown metric {name!r}{' for procedure ' + repr(procedure) if procedure else ''}{why}"
                      f"{hint} (list them with `vr-trainer metrics`)")


# ---------------------------------------------------------------- generic accumulators

class _RunMetric:
    """A metric computed from the engine's state when asked (``fn(run)``)."""

    __slots__ = ("fn", "run")

    def __init__(self, fn: Callable[[RunView], float]) -> None:
        self.fn = fn
        self.run: RunView | None = None

    def update(self, obs: Observation, run: RunView) -> None:
        self.run = run

    def value(self) -> float:
        return self.fn(self.run) if self.run is not None else 0.0


class _ObsLatest:
    """The latest value of a cumulative observation field."""

    __slots__ = ("get", "v")

    def __init__(self, get: Callable[[Observation], float]) -> None:
        self.get = get
        self.v = 0.0

    def update(self, obs: Observation, run: RunView) -> None:
        self.v = float(self.get(obs))

    def value(self) -> float:
        return self.v


class PathLength:
    __slots__ = ("total_mm", "last", "last_instrument")

    def __init__(self, ctx: MetricContext) -> None:
        self.total_mm = 0.0
        self.last: tuple[float, float, float] | None = None
        self.last_instrument: str | None = None

    def update(self, obs: Observation, run: RunView) -> None:
        tip = obs.tip_world_mm
        if tip is None or obs.instrument_id is None:
            self.last = None
            return
        p = (float(tip[0]), float(tip[1]), float(tip[2]))
        if self.last is not None and obs.instrument_id == self.last_instrument:
            self.total_mm += math.dist(p, self.last)
        self.last, self.last_instrument = p, obs.instrument_id

    def value(self) -> float:
        return self.total_mm


class TargetError:
    __slots__ = ("targets", "best_mm")

    def __init__(self, ctx: MetricContext) -> None:
        self.targets = ctx.step_targets
        self.best_mm = [math.inf] * len(self.targets)

    def update(self, obs: Observation, run: RunView) -> None:
        recs = run.step_records
        dist = obs.target_distance_mm
        for i, t in enumerate(self.targets):
            if t is not None and recs[i].started_s is not None:
                d = dist.get(t)
                if d is not None and d < self.best_mm[i]:
                    self.best_mm[i] = d

    def value(self) -> float:
        vals = [b for b, t in zip(self.best_mm, self.targets) if t is not None]
        if not vals:
            return math.nan
        return sum(vals) / len(vals)


class RiskContacts:
    __slots__ = ("structures", "touching", "count")

    def __init__(self, ctx: MetricContext) -> None:
        self.structures = tuple(ctx.risk_margin_mm)
        self.touching = dict.fromkeys(self.structures, False)
        self.count = 0

    def update(self, obs: Observation, run: RunView) -> None:
        dist = obs.structure_distance_mm
        for s in self.structures:
            d = dist.get(s, math.inf)
            if s in obs.tip_inside:
                d = min(d, 0.0)
            if not self.touching[s] and d <= 0.0:
                self.touching[s] = True
                self.count += 1
            elif self.touching[s] and d > CONTACT_RELEASE_MM:
                self.touching[s] = False

    def value(self) -> float:
        return float(self.count)


class RiskNearTime:
    __slots__ = ("margins", "t_s")

    def __init__(self, ctx: MetricContext) -> None:
        self.margins = tuple(ctx.risk_margin_mm.items())
        self.t_s = 0.0

    def update(self, obs: Observation, run: RunView) -> None:
        dist = obs.structure_distance_mm
        for s, margin in self.margins:
            if dist.get(s, math.inf) < margin or s in obs.tip_inside:
                self.t_s += obs.dt_s
                return

    def value(self) -> float:
        return self.t_s


class MinRiskDistance:
    __slots__ = ("structures", "min_mm")

    def __init__(self, ctx: MetricContext) -> None:
        self.structures = tuple(ctx.risk_margin_mm)
        self.min_mm = math.inf

    def update(self, obs: Observation, run: RunView) -> None:
        dist = obs.structure_distance_mm
        for s in self.structures:
            d = dist.get(s, math.inf)
            if d < self.min_mm:
                self.min_mm = d

    def value(self) -> float:
        return self.min_mm


class InstrumentExchanges:
    __slots__ = ("last", "count")

    def __init__(self, ctx: MetricContext) -> None:
        self.last: str | None = None
        self.count = 0

    def update(self, obs: Observation, run: RunView) -> None:
        cur = obs.instrument_id
        if cur is not None:
            if self.last is not None and cur != self.last:
                self.count += 1
            self.last = cur

    def value(self) -> float:
        return float(self.count)


def _total_time(run: RunView) -> float:
    return run.finished_at_s if run.finished_at_s is not None else run.elapsed_s


def _steps_completed(run: RunView) -> float:
    recs = run.step_records
    return 100.0 * sum(r.completed for r in recs) / len(recs) if recs else 0.0


def _overtime(run: RunView) -> float:
    return sum(r.overtime_s(run.elapsed_s) for r in run.step_records)


def _generic(name: str, unit: str, definition: str, source: str,
             factory: Callable[[MetricContext], MetricAccumulator]) -> None:
    register(MetricDef(name, unit, definition, source, ("*",), factory))


_generic("total_time_s", "s", "Seconds from the run's first fixed step until every step was completed or failed "
         "(while steps remain: the time so far).", f"{UNGI_2012}; {FENG_2024}",
         lambda c: _RunMetric(_total_time))
_generic("steps_completed_pct", "%", "100 x the steps completed / the steps in the scenario (failed and unfinished "
         "steps count as not completed).", MARTIN_1997, lambda c: _RunMetric(_steps_completed))
_generic("step_overtime_s", "s", "Sum over steps with a time_allowance_s of max(0, seconds in the step - the "
         "allowance); a running step counts its time so far.", f"task time as in {UNGI_2012}",
         lambda c: _RunMetric(_overtime))
_generic("path_length_mm", "mm", "Sum of the distances between the instrument tip's world positions at consecutive "
         "fixed steps, skipping steps where the active instrument changed or was absent.",
         f"{DATTA_2001}; {UNGI_2012}", PathLength)
_generic("target_error_mm", "mm", "For each step whose completion condition names a target (its first reached()), "
         "the smallest tip-to-target distance observed from the step's start to the end of the run; the mean over "
         "those steps (null when no step names a target).", FITZPATRICK_1998, TargetError)
_generic("risk_contacts", "count", "Number of contacts with risk structures, counted per structure: a contact "
         f"begins when the signed distance becomes <= 0 mm (or the tip is inside) and ends once it exceeds "
         f"{CONTACT_RELEASE_MM} mm.", FENG_2024, RiskContacts)
_generic("risk_near_time_s", "s", "Seconds during which the instrument was closer to any risk structure than that "
         "structure's margin_mm (contacts included).", f"risk-region invasions as in {FENG_2024}, timed",
         RiskNearTime)
_generic("min_risk_distance_mm", "mm", "The smallest signed distance from the instrument to any risk structure over "
         "the run (negative: inside; null when none was measured).", f"risk regions as in {FENG_2024}",
         MinRiskDistance)
_generic("critical_error_count", "count", "Number of critical-error effects that occurred (rubric.critical_errors "
         "triggered by events).", GALLAGHER_2005, lambda c: _RunMetric(lambda r: float(len(r.critical_errors))))
_generic("hints_shown", "count", "Number of step hints shown because the resident was still on the step when the "
         "hint's after_s delay elapsed.", VASSILIOU_2005, lambda c: _RunMetric(lambda r: float(r.hints_shown)))
_generic("fluoro_shots", "count", "C-arm shots taken: the simulation's cumulative shot count at the latest step.",
         f"{FENG_2024}; {NCRP_168}", lambda c: _ObsLatest(lambda o: o.shots))
_generic("fluoro_time_s", "s", "Cumulative fluoroscopy time reported by the simulation (shots x carm.exposure_s).",
         NCRP_168, lambda c: _ObsLatest(lambda o: o.fluoro_time_s))
_generic("fluoro_dose_mgy", "mGy", "Cumulative entrance dose estimate reported by the simulation "
         "(shots x carm.dose_per_shot_mgy).", NCRP_168, lambda c: _ObsLatest(lambda o: o.dose_mgy))
_generic("instrument_exchanges", "count", "Number of times the active instrument changed to a different instrument "
         "(taking up the first one is not counted).", LALYS_2014, InstrumentExchanges)
_generic("wrong_instrument_uses", "count", "Number of times, during a step that lists instruments, the resident "
         "brought an instrument the step does not allow within 20 mm of the step's target (when the step names none: "
         "took it up); each taking-up of a disallowed instrument counts at most once, and the previous step's "
         "instrument, still in hand as a step begins, only once taken up again.",
         GALLAGHER_2005, lambda c: _RunMetric(lambda r: float(r.wrong_instrument_uses)))
