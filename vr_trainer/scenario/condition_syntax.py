"""The syntax of scenario conditions: vocabulary, AST, tokenizer and parser (no eval).

:func:`parse` turns a condition string such as ``all(reached(kambin, 3), not(contact(root)))``
into an AST of frozen dataclasses, or raises :class:`ConditionError` with a 1-based column
inside the string and a hint. Names are checked and the AST compiled in
:mod:`vr_trainer.scenario.conditions`, which re-exports what is defined here.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Collection, Union

MAX_LENGTH = 4000
MAX_DEPTH = 32

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
