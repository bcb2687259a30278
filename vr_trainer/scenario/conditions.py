"""Scenario conditions: a small closed grammar over simulation state (no Python, no eval).

A condition is a string such as ``all(reached(kambin, 3), not(contact(exiting_root)))``.
:func:`parse` turns it into an AST of frozen dataclasses (or raises :class:`ConditionError`
with a 1-based column inside the string and a hint); :func:`check` validates its references
against :class:`ScenarioNames`; :func:`compile_condition` turns it into a closure the engine
calls every fixed step; :func:`evaluate` does both for one-off use. Evaluation is total: a
distance the simulation did not report counts as +inf (not reached, no contact), never raises.

Units: millimetres, seconds, degrees, percent. The grammar is :data:`GRAMMAR_HELP`.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Collection, Iterator, Literal, Mapping, Union

from vr_trainer.sim.observation import Observation

if TYPE_CHECKING:
    from vr_trainer.scenario.schema import Scenario

MAX_LENGTH = 4000
MAX_DEPTH = 32
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

GRAMMAR_HELP = """\
Conditions (steps[].complete_when, events[].when) are strings in a small closed grammar.
Whitespace is ignored; identifiers are [A-Za-z][A-Za-z0-9_-]*; numbers are finite decimals
(-3, 2.5, 1e3). Units: mm, s, degrees, percent.

  cond    := call | compare
  compare := value OP number | value within [number, number]
  OP      := <  <=  >  >=  ==  !=

Boolean calls:
  all(cond, cond, ...)    every condition holds        any(cond, ...)   at least one holds
  not(cond)               the condition does not hold
  reached(TARGET [, mm])  the tip is within mm of the target (default: its tolerance_mm)
  inside(STRUCT)          the tip is inside STRUCT
  contact(STRUCT)         the instrument touches or is inside STRUCT (signed distance <= 0)
  near(STRUCT [, mm])     signed distance < mm (default: the risk structure's margin_mm, else 2)
  step_done(STEP)         that step was completed      step_failed(STEP)  that step was failed
  fired(EVENT)            that event fired at least once
  holding(INSTRUMENT)     the active instrument is INSTRUMENT (an instrument id)
  action(NAME)            the resident took action NAME (carm_shot, ...) since the current step began
  trigger                 the active hand's trigger is pressed (> 0.5)
Values (compare them with a number):
  distance(STRUCT|TARGET) mm: signed for structures (negative inside), tip distance for targets
  removed(STRUCT)         percent of STRUCT removed
  angle(NAME)             degrees (axial, craniocaudal, or a procedure's)
  count(EVENT)            times EVENT fired
  metric(NAME)            the live value of a registry metric (vr-trainer metrics)
  shots  fluoro_time_s  dose_mgy  elapsed_s  step_elapsed_s      (bare names)

STRUCT is a risk-structure id, a target id whose source is a structure, or a bundle
structure name. A distance the simulation does not report counts as +inf.

Examples:
  reached(kambin)
  reached(kambin, 2.5)
  all(reached(fragment), not(contact(exiting_root)))
  any(contact(exiting_root), contact(traversing_root))
  all(near(exiting_root), not(contact(exiting_root)))
  inside(dural_sac)
  removed(fragment) >= 80
  shots >= 3
  angle(axial) within [25, 45]
  elapsed_s > 600
  all(step_done(needle_to_kambin), step_elapsed_s > 30)
  count(root_contact) >= 2
  distance(exiting_root) < 1.5
  metric(path_length_mm) > 1500
  all(holding(needle), trigger, action(carm_shot))
"""

BOOL_CALLS = ("all", "any", "not", "reached", "inside", "contact", "near", "step_done", "step_failed",
              "fired", "holding", "action", "trigger")
VALUE_CALLS = ("distance", "removed", "angle", "count", "metric")
BARE_VALUES = ("shots", "fluoro_time_s", "dose_mgy", "elapsed_s", "step_elapsed_s")
OPS = ("<", "<=", ">", ">=", "==", "!=")


class ConditionError(ValueError):
    """A condition is malformed or names something unknown. ``column`` is 1-based within the
    condition string; ``hint`` says what to do."""

    def __init__(self, message: str, column: int, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.column = column
        self.hint = hint

    def __str__(self) -> str:
        return f"column {self.column}: {self.message}" + (f" (hint: {self.hint})" if self.hint else "")


# ---------------------------------------------------------------- AST (col: 1-based column of the node)

@dataclass(frozen=True)
class All:
    items: tuple["Cond", ...]
    col: int = 1


@dataclass(frozen=True)
class AnyOf:
    items: tuple["Cond", ...]
    col: int = 1


@dataclass(frozen=True)
class Not:
    item: "Cond"
    col: int = 1


@dataclass(frozen=True)
class Call:
    """A boolean call on one reference: reached/inside/contact/near/step_done/step_failed/fired/
    holding/action. ``number`` is the optional mm argument of reached/near; ``arg_col`` locates ``arg``."""

    fn: str
    arg: str
    number: float | None = None
    col: int = 1
    arg_col: int = 1


@dataclass(frozen=True)
class Trigger:
    col: int = 1


@dataclass(frozen=True)
class Value:
    """A value: ``fn`` is a value call (distance, removed, angle, count, metric) with ``arg``,
    or a bare name (shots, elapsed_s, ...) with ``arg`` None."""

    fn: str
    arg: str | None = None
    col: int = 1
    arg_col: int = 1


@dataclass(frozen=True)
class Compare:
    value: Value
    op: str
    number: float
    col: int = 1


@dataclass(frozen=True)
class Within:
    value: Value
    low: float
    high: float
    col: int = 1


Cond = Union[All, AnyOf, Not, Call, Trigger, Compare, Within]


# ---------------------------------------------------------------- tokenizer and parser

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z][A-Za-z0-9_\-]*)
  | (?P<op><=|>=|==|!=|<|>)
  | (?P<punct>[(),\[\]])
""", re.VERBOSE)


@dataclass(frozen=True)
class _Tok:
    kind: str  # num ident op punct end
    text: str
    col: int


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:  # reported when the parser reaches it, so earlier mistakes come first
            out.append(_Tok("bad", text[pos], pos + 1))
            break
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append(_Tok(kind, m.group(), pos + 1))
        pos = m.end()
    out.append(_Tok("end", "", len(text) + 1))
    return out


def _close(word: str, choices: Collection[str]) -> str:
    """A "did you mean" hint for an unknown name ('' when nothing is close)."""
    found = difflib.get_close_matches(word, sorted(set(choices)), n=3, cutoff=0.6)
    if not found:
        low = {c.lower(): c for c in choices}
        if word.lower() in low:
            found = [low[word.lower()]]
    return ("did you mean " + " or ".join(repr(f) for f in found) + "?") if found else ""


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> _Tok:
        tok = self.toks[self.i]
        if tok.kind == "bad":
            hint = "write == for equality and != for inequality" if tok.text in "=!" else \
                "use ( ) [ ] , and the comparison operators < <= > >= == !="
            raise ConditionError(f"unexpected character {tok.text!r}", tok.col, hint)
        return tok

    def take(self) -> _Tok:
        tok = self.peek()
        if tok.kind != "end":
            self.i += 1
        return tok

    def expect(self, text: str, what: str) -> _Tok:
        tok = self.peek()
        if tok.text != text or tok.kind not in ("punct", "ident"):
            got = "the end of the condition" if tok.kind == "end" else repr(tok.text)
            raise ConditionError(f"expected {text!r} {what}, got {got}", tok.col, f"write {text!r} here")
        return self.take()

    def number(self, what: str) -> float:
        tok = self.peek()
        if tok.kind != "num":
            got = "the end of the condition" if tok.kind == "end" else repr(tok.text)
            raise ConditionError(f"expected a number {what}, got {got}", tok.col, "write a decimal such as 2.5")
        self.take()
        v = float(tok.text)
        if not math.isfinite(v):
            raise ConditionError(f"number {tok.text} is too large", tok.col, "use a finite number")
        return v

    def ident(self, what: str) -> _Tok:
        tok = self.peek()
        if tok.kind != "ident":
            got = "the end of the condition" if tok.kind == "end" else repr(tok.text)
            raise ConditionError(f"expected {what}, got {got}", tok.col,
                                 "identifiers start with a letter, then letters, digits, '_' or '-'")
        return self.take()

    def cond(self, depth: int) -> Cond:
        tok = self.peek()
        if depth > MAX_DEPTH:
            raise ConditionError(f"conditions nest at most {MAX_DEPTH} deep", tok.col,
                                 "split the condition into simpler ones (e.g. an event and fired(...))")
        if tok.kind != "ident":
            got = "the end of the condition" if tok.kind == "end" else repr(tok.text)
            raise ConditionError(f"expected a condition, got {got}", tok.col,
                                 "start with a call such as reached(target) or a value such as shots >= 3")
        name = tok.text
        if name in VALUE_CALLS or name in BARE_VALUES:
            return self.compare(depth)
        if name not in BOOL_CALLS:
            hint = _close(name, BOOL_CALLS + VALUE_CALLS + BARE_VALUES) or "see vr-trainer validate --help"
            raise ConditionError(f"unknown function or value {name!r}", tok.col, hint)
        self.take()
        if name == "trigger":
            return Trigger(tok.col)
        self.expect("(", f"after {name}")
        if name in ("all", "any"):
            items = [self.cond(depth + 1)]
            while self.peek().text == ",":
                self.take()
                items.append(self.cond(depth + 1))
            self.expect(")", f"to close {name}(")
            return All(tuple(items), tok.col) if name == "all" else AnyOf(tuple(items), tok.col)
        if name == "not":
            item = self.cond(depth + 1)
            self.expect(")", "to close not(")
            return Not(item, tok.col)
        arg = self.ident(f"a name inside {name}(...)")
        number: float | None = None
        if name in ("reached", "near") and self.peek().text == ",":
            self.take()
            number = self.number(f"(millimetres) as the second argument of {name}")
            if number < 0:
                raise ConditionError(f"{name}'s distance must not be negative", self.toks[self.i - 1].col,
                                     "give a distance in millimetres >= 0")
        takes = "; it takes a name and an optional mm" if name in ("reached", "near") else ""
        self.expect(")", f"to close {name}(" + takes)
        return Call(name, arg.text, number, tok.col, arg.col)

    def compare(self, depth: int) -> Cond:
        tok = self.take()
        if tok.text in VALUE_CALLS:
            self.expect("(", f"after {tok.text}")
            arg = self.ident(f"a name inside {tok.text}(...)")
            self.expect(")", f"to close {tok.text}(")
            value = Value(tok.text, arg.text, tok.col, arg.col)
        else:
            value = Value(tok.text, None, tok.col, tok.col)
        op = self.peek()
        if op.kind == "op":
            self.take()
            return Compare(value, op.text, self.number(f"after {op.text}"), tok.col)
        if op.kind == "ident" and op.text == "within":
            self.take()
            self.expect("[", "after within")
            low = self.number("(the lower bound)")
            self.expect(",", "between the bounds")
            high = self.number("(the upper bound)")
            self.expect("]", "to close the range")
            if low > high:
                raise ConditionError(f"range [{low:g}, {high:g}] is empty", op.col, "write the lower bound first")
            return Within(value, low, high, tok.col)
        raise ConditionError(f"{tok.text} is a value; compare it with a number", op.col,
                             f"e.g. {tok.text}{'(' + value.arg + ')' if value.arg else ''} >= 3 or ... within [a, b]")


def parse(text: str) -> Cond:
    """Parse a condition string; raises :class:`ConditionError` (1-based column, hint)."""
    if len(text) > MAX_LENGTH:
        raise ConditionError(f"condition is {len(text)} characters; at most {MAX_LENGTH} are allowed",
                             MAX_LENGTH + 1, "split it into several events or steps")
    if not text.strip():
        raise ConditionError("empty condition", 1, "write e.g. reached(target)")
    p = _Parser(text)
    ast = p.cond(1)
    tok = p.peek()
    if tok.kind != "end":
        hint = "combine conditions with all(a, b) or any(a, b)" if tok.kind == "ident" else "remove it"
        raise ConditionError(f"unexpected {tok.text!r} after the condition", tok.col, hint)
    return ast


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
