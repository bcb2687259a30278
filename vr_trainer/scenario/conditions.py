"""Scenario conditions: a small closed grammar over simulation state (no Python, no eval).

A condition is a string such as ``all(reached(kambin, 3), not(contact(exiting_root)))``.
:func:`parse` turns it into an AST of frozen dataclasses (or raises :class:`ConditionError`
with a 1-based column inside the string and a hint; both live in
:mod:`vr_trainer.scenario.condition_syntax` and are re-exported here); :func:`check` validates its references
against :class:`ScenarioNames`; :func:`compile_condition` turns it into a closure the engine
calls every fixed step; :func:`evaluate` does both for one-off use. Evaluation is total: a
distance the simulation did not report counts as +inf (not reached, no contact), never raises.

Units: millimetres, seconds, degrees, percent. The grammar is :data:`GRAMMAR_HELP`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Collection, Iterator, Literal, Mapping

from vr_trainer.scenario.condition_syntax import (BARE_VALUES, BOOL_CALLS, GRAMMAR_HELP, MAX_DEPTH, MAX_LENGTH, OPS,
                                                  VALUE_CALLS, All, AnyOf, Call, Compare, Cond, ConditionError, Not,
                                                  Trigger, Value, Within, _close, parse)
from vr_trainer.sim.observation import Observation

if TYPE_CHECKING:
    from vr_trainer.scenario.schema import Scenario

DEFAULT_ANGLES: tuple[str, ...] = ("axial", "craniocaudal")
PROCEDURE_ANGLES: dict[str, tuple[str, ...]] = {}  # procedure -> the trajectory angles it reports


def register_angles(procedure: str, angles: Collection[str]) -> None:
    """A procedure declares the named angles it puts in ``Observation.angles_deg`` (so angle(NAME)
    in its scenarios validates); call at import of the procedure module."""
    PROCEDURE_ANGLES[procedure] = tuple(dict.fromkeys([*PROCEDURE_ANGLES.get(procedure, ()), *angles]))


def angles_for(procedure: str) -> tuple[str, ...]:
    """The angle names a scenario of ``procedure`` may use: axial, craniocaudal and the procedure's."""
    from vr_trainer.scenario.metrics import load_plugins
    load_plugins()
    return DEFAULT_ANGLES + tuple(a for a in PROCEDURE_ANGLES.get(procedure, ()) if a not in DEFAULT_ANGLES)
DEFAULT_NEAR_MM = 2.0
DEFAULT_TOLERANCE_MM = 3.0


# ---------------------------------------------------------------- names and checking

@dataclass(frozen=True)
class ScenarioNames:
    """What conditions may refer to. ``risk_structures`` maps a risk-structure id to its bundle
    structure; ``target_structures`` maps a target id whose source is a structure to it;
    ``structures`` (bundle structure names), ``metrics``, ``angles`` and ``actions`` are None
    when unknown (then those references are not checked)."""

    targets: Collection[str] = ()
    risk_structures: Mapping[str, str] = field(default_factory=dict)
    structures: Collection[str] | None = None
    steps: Collection[str] = ()
    events: Collection[str] = ()
    instruments: Collection[str] = ()
    metrics: Collection[str] | None = None
    angles: Collection[str] | None = DEFAULT_ANGLES
    target_structures: Mapping[str, str] = field(default_factory=dict)
    target_tolerance_mm: Mapping[str, float] = field(default_factory=dict)
    risk_margin_mm: Mapping[str, float] = field(default_factory=dict)
    actions: Collection[str] | None = None

    @classmethod
    def from_scenario(cls, scenario: "Scenario", structures: Collection[str] | None = None,
                      angles: Collection[str] | None | Literal["procedure"] = "procedure",
                      with_metrics: bool = True) -> "ScenarioNames":
        """The names a scenario declares; ``structures`` are the bundle's (None: unknown);
        ``angles`` default to :func:`angles_for` the scenario's procedure (None: unchecked);
        ``with_metrics`` fills ``metrics`` from the registry for the scenario's procedure."""
        if angles == "procedure":
            angles = angles_for(scenario.procedure)
        metrics: Collection[str] | None = None
        if with_metrics:
            from vr_trainer.scenario.metrics import metrics_for
            metrics = frozenset(m.name for m in metrics_for(scenario.procedure))
        return cls(
            targets=tuple(t.id for t in scenario.targets),
            risk_structures={r.id: r.structure for r in scenario.risk_structures},
            structures=None if structures is None else frozenset(structures),
            steps=tuple(s.id for s in scenario.steps),
            events=tuple(e.id for e in scenario.events),
            instruments=tuple(i.id for i in scenario.instruments),
            metrics=metrics, angles=angles,
            target_structures={t.id: t.structure for t in scenario.targets if t.structure is not None},
            target_tolerance_mm={t.id: t.tolerance_mm for t in scenario.targets},
            risk_margin_mm={r.id: r.margin_mm for r in scenario.risk_structures})

    def resolve_structure(self, name: str) -> str:
        """The bundle structure a STRUCT reference means (risk id, structure target id, or itself)."""
        return self.risk_structures.get(name) or self.target_structures.get(name) or name


def nodes(ast: Cond) -> Iterator[Cond | Value]:
    """Every node of the AST, depth first (values of comparisons included)."""
    stack: list[Cond | Value] = [ast]
    while stack:
        n = stack.pop()
        yield n
        if isinstance(n, (All, AnyOf)):
            stack.extend(reversed(n.items))
        elif isinstance(n, Not):
            stack.append(n.item)
        elif isinstance(n, (Compare, Within)):
            stack.append(n.value)


_STRUCT_FNS = ("inside", "contact", "near", "removed")


def _check_struct(name: str, col: int, fn: str, names: ScenarioNames) -> ConditionError | None:
    if name in names.risk_structures or name in names.target_structures:
        return None
    if name in names.targets:
        return ConditionError(f"target {name!r} is a point, not a structure, so {fn}() cannot use it", col,
                              f"use reached({name}) or distance({name}), or give the target a structure")
    if names.structures is None or name in names.structures:
        return None
    choices = list(names.risk_structures) + list(names.target_structures) + list(names.structures)
    return ConditionError(f"{name!r} is not a risk structure, a structure target or a bundle structure", col,
                          _close(name, choices) or "declare it under risk_structures or check the bundle's structures")


def _unknown(kind: str, name: str, col: int, choices: Collection[str], where: str) -> ConditionError:
    known = f"known {kind}s: {', '.join(sorted(choices))}" if choices else f"declare it under {where}"
    hint = _close(name, choices) or known
    return ConditionError(f"unknown {kind} {name!r}", col, hint)


def check(ast: Cond, names: ScenarioNames) -> list[ConditionError]:
    """Check every reference in ``ast`` against ``names``; returns located errors (empty: fine)."""
    errors: list[ConditionError] = []
    for n in nodes(ast):
        err: ConditionError | None = None
        if isinstance(n, Call):
            if n.fn == "reached":
                if n.arg not in names.targets:
                    err = _unknown("target", n.arg, n.arg_col, names.targets, "targets")
            elif n.fn in _STRUCT_FNS:
                err = _check_struct(n.arg, n.arg_col, n.fn, names)
            elif n.fn in ("step_done", "step_failed") and n.arg not in names.steps:
                err = _unknown("step", n.arg, n.arg_col, names.steps, "steps")
            elif n.fn == "fired" and n.arg not in names.events:
                err = _unknown("event", n.arg, n.arg_col, names.events, "events")
            elif n.fn == "holding" and n.arg not in names.instruments:
                err = _unknown("instrument", n.arg, n.arg_col, names.instruments, "instruments")
            elif n.fn == "action" and names.actions is not None and n.arg not in names.actions:
                err = _unknown("action", n.arg, n.arg_col, names.actions, "the procedure's actions")
        elif isinstance(n, Value) and n.arg is not None:
            if n.fn == "distance":
                if n.arg not in names.targets:
                    err = _check_struct(n.arg, n.arg_col, n.fn, names)
            elif n.fn == "removed":
                err = _check_struct(n.arg, n.arg_col, n.fn, names)
            elif n.fn == "count" and n.arg not in names.events:
                err = _unknown("event", n.arg, n.arg_col, names.events, "events")
            elif n.fn == "angle" and names.angles is not None and n.arg not in names.angles:
                err = _unknown("angle", n.arg, n.arg_col, names.angles, "the procedure's angles")
            elif n.fn == "metric" and names.metrics is not None and n.arg not in names.metrics:
                err = _unknown("metric", n.arg, n.arg_col, names.metrics, "the metric registry (vr-trainer metrics)")
        if err is not None:
            errors.append(err)
    return errors


def referenced_targets(ast: Cond, names: ScenarioNames | None = None) -> set[str]:
    """Target ids whose tip distance the condition reads: every reached() argument, and with
    ``names``, every distance() argument that is a target."""
    out: set[str] = set()
    for n in nodes(ast):
        if isinstance(n, Call) and n.fn == "reached":
            out.add(n.arg)
        elif isinstance(n, Value) and n.fn == "distance" and names is not None and n.arg in names.targets:
            out.add(n.arg or "")
    return out


def referenced_structures(ast: Cond, names: ScenarioNames | None = None) -> set[str]:
    """Structures the condition needs distances or removal for: with ``names``, resolved to bundle
    structure names (and distance() of a target counted as a target, not a structure)."""
    out: set[str] = set()
    for n in nodes(ast):
        if not isinstance(n, (Call, Value)) or n.arg is None or not (n.fn in _STRUCT_FNS or n.fn == "distance"):
            continue
        if names is None:
            out.add(n.arg)
        elif not (n.fn == "distance" and n.arg in names.targets):
            out.add(names.resolve_structure(n.arg))
    return out


def first_reached_target(ast: Cond) -> str | None:
    """The first reached() target in reading order (the step's focus target), or None."""
    for n in nodes(ast):
        if isinstance(n, Call) and n.fn == "reached":
            return n.arg
    return None


# ---------------------------------------------------------------- evaluation

@dataclass
class EvalContext:
    """What a condition reads: the latest observation plus the engine's state. The engine keeps
    one and updates it in place every fixed step (no allocation per step)."""

    obs: Observation
    elapsed_s: float = 0.0
    step_elapsed_s: float = 0.0
    steps_done: set[str] = field(default_factory=set)
    steps_failed: set[str] = field(default_factory=set)
    fired_count: dict[str, int] = field(default_factory=dict)
    step_actions: set[str] = field(default_factory=set)
    metric_value: Callable[[str], float] = lambda name: math.nan


INF = math.inf
_CMP: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b}

Pred = Callable[[EvalContext], bool]
Num = Callable[[EvalContext], float]


def _compile_value(v: Value, names: ScenarioNames) -> Num:
    arg = v.arg or ""
    if v.fn == "distance":
        if arg in names.targets:
            return lambda c: c.obs.target_distance_mm.get(arg, INF)
        s = names.resolve_structure(arg)
        return lambda c: c.obs.structure_distance_mm.get(s, INF)
    if v.fn == "removed":
        s = names.resolve_structure(arg)
        return lambda c: c.obs.removed_pct.get(s, 0.0)
    if v.fn == "angle":
        return lambda c: c.obs.angles_deg.get(arg, math.nan)
    if v.fn == "count":
        return lambda c: float(c.fired_count.get(arg, 0))
    if v.fn == "metric":
        return lambda c: c.metric_value(arg)
    bare: dict[str, Num] = {
        "shots": lambda c: float(c.obs.shots), "fluoro_time_s": lambda c: c.obs.fluoro_time_s,
        "dose_mgy": lambda c: c.obs.dose_mgy, "elapsed_s": lambda c: c.elapsed_s,
        "step_elapsed_s": lambda c: c.step_elapsed_s}
    return bare[v.fn]


def compile_condition(ast: Cond, names: ScenarioNames) -> Pred:
    """Turn a checked AST into a predicate over an :class:`EvalContext` (references resolved once).
    NaN values (e.g. an angle not reported) make every comparison false except ``!=``."""
    if isinstance(ast, (All, AnyOf)):
        parts = tuple(compile_condition(i, names) for i in ast.items)
        if isinstance(ast, All):
            return lambda c: all(p(c) for p in parts)
        return lambda c: any(p(c) for p in parts)
    if isinstance(ast, Not):
        inner = compile_condition(ast.item, names)
        return lambda c: not inner(c)
    if isinstance(ast, Trigger):
        return lambda c: c.obs.trigger > 0.5
    if isinstance(ast, Compare):
        val, cmp, num = _compile_value(ast.value, names), _CMP[ast.op], ast.number
        return lambda c: cmp(val(c), num)
    if isinstance(ast, Within):
        val, lo, hi = _compile_value(ast.value, names), ast.low, ast.high
        return lambda c: lo <= val(c) <= hi
    arg = ast.arg
    if ast.fn == "reached":
        tol = ast.number if ast.number is not None else names.target_tolerance_mm.get(arg, DEFAULT_TOLERANCE_MM)
        return lambda c: c.obs.target_distance_mm.get(arg, INF) <= tol
    if ast.fn == "inside":
        s = names.resolve_structure(arg)
        return lambda c: s in c.obs.tip_inside
    if ast.fn == "contact":
        s = names.resolve_structure(arg)
        return lambda c: c.obs.structure_distance_mm.get(s, INF) <= 0.0 or s in c.obs.tip_inside
    if ast.fn == "near":
        s = names.resolve_structure(arg)
        mm = ast.number if ast.number is not None else names.risk_margin_mm.get(arg, DEFAULT_NEAR_MM)
        return lambda c: c.obs.structure_distance_mm.get(s, INF) < mm
    if ast.fn == "step_done":
        return lambda c: arg in c.steps_done
    if ast.fn == "step_failed":
        return lambda c: arg in c.steps_failed
    if ast.fn == "fired":
        return lambda c: c.fired_count.get(arg, 0) > 0
    if ast.fn == "holding":
        return lambda c: c.obs.instrument_id == arg
    if ast.fn == "action":
        return lambda c: arg in c.step_actions or arg in c.obs.actions
    raise AssertionError(f"unhandled condition node {ast!r}")  # the parser makes no other node


def evaluate(ast: Cond, ctx: EvalContext, names: ScenarioNames | None = None) -> bool:
    """Evaluate once (compiles every call; the engine keeps compiled predicates instead)."""
    return compile_condition(ast, names or ScenarioNames())(ctx)


__all__ = ["BARE_VALUES", "BOOL_CALLS", "GRAMMAR_HELP", "MAX_DEPTH", "MAX_LENGTH", "OPS", "VALUE_CALLS", "All", "AnyOf",
           "Call", "Compare", "Cond", "ConditionError", "Not", "Trigger", "Value", "Within", "parse",
           "ScenarioNames", "check", "compile_condition", "evaluate", "EvalContext", "Pred", "nodes",
           "referenced_structures", "referenced_targets", "first_reached_target", "register_angles", "angles_for",
           "DEFAULT_NEAR_MM", "DEFAULT_TOLERANCE_MM"]
