"""Scoring a run against the rubric, and the run result that becomes ``summary.json``.

Each rubric metric scores ``clamp((v - zero_marks_at) / (full_marks_at - zero_marks_at), 0, 1)``
(so either end may be the larger); the score is ``100 * sum(w * s) / sum(w)``; the run passes
when ``score >= pass_mark``, no critical error occurred and (``rubric.require_all_steps``, the
default) every step was completed; :func:`fail_reasons` says which of these failed. A metric that is undefined for the
run (NaN) scores 0; a distance never measured (+inf) scores like a very large distance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from vr_trainer.scenario.schema import Rubric


def metric_score(value: float, full_marks_at: float, zero_marks_at: float) -> float:
    """The 0..1 score of one metric value (NaN scores 0)."""
    if math.isnan(value):
        return 0.0
    s = (value - zero_marks_at) / (full_marks_at - zero_marks_at)
    return 0.0 if math.isnan(s) else min(1.0, max(0.0, s))


def score_rubric(rubric: Rubric, values: Mapping[str, float]) -> tuple[float, dict[str, float]]:
    """(score 0..100, {metric: 0..1}) for the rubric given metric values (a missing one scores 0)."""
    per: dict[str, float] = {}
    total_w = weighted = 0.0
    for m in rubric.metrics:
        s = metric_score(values.get(m.metric, math.nan), m.full_marks_at, m.zero_marks_at)
        per[m.metric] = s
        total_w += m.weight
        weighted += m.weight * s
    return (100.0 * weighted / total_w if total_w > 0 else 0.0), per


def fail_reasons(rubric: Rubric, score: float, steps: "tuple[StepResult, ...]",
                 errors: "tuple[CriticalErrorResult, ...]") -> tuple[str, ...]:
    """Why a run did not pass, in words a resident reads (empty: it passed)."""
    out = [f"critical error {c.id} at {c.time_s:.1f} s: {c.description}" for c in errors]
    if rubric.require_all_steps:
        out += [f"step {s.id} {'failed' if s.failed else 'not completed'}" for s in steps if not s.completed]
    if score < rubric.pass_mark:
        out.append(f"score {score:.1f} is below the pass mark {rubric.pass_mark:g}")
    return tuple(out)


def json_number(v: float | None, digits: int = 3) -> float | None:
    """A plain float rounded to ``digits`` for JSON, or None for NaN/inf/None."""
    if v is None or not math.isfinite(v):
        return None
    r = round(float(v), digits)
    return 0.0 if r == 0 else r  # no -0.0


@dataclass(frozen=True)
class MetricResult:
    name: str
    value: float
    unit: str
    definition: str
    source: str
    weight: float | None = None  # None: not in the rubric (reported only)
    score: float | None = None  # 0..1, None when not in the rubric
    full_marks_at: float | None = None
    zero_marks_at: float | None = None


@dataclass(frozen=True)
class StepResult:
    id: str
    time_s: float  # seconds spent in the step (0 if never started)
    completed: bool
    failed: bool
    overtime_s: float
    started_s: float | None = None  # run seconds
    ended_s: float | None = None


@dataclass(frozen=True)
class EventResult:
    id: str
    time_s: float  # run seconds
    step: str | None  # the step running when it fired


@dataclass(frozen=True)
class CriticalErrorResult:
    id: str
    time_s: float
    description: str


@dataclass(frozen=True)
class RunResult:
    """The outcome of a run: ``score`` 0..100, ``passed``, the metrics behind it, steps, events,
    critical errors. :meth:`to_summary` gives the ``summary.json`` fields."""

    score: float
    passed: bool
    pass_mark: float
    metrics: tuple[MetricResult, ...]
    steps: tuple[StepResult, ...]
    events: tuple[EventResult, ...]
    critical_errors: tuple[CriticalErrorResult, ...]
    fail_reasons: tuple[str, ...] = ()

    def metric(self, name: str) -> MetricResult:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(f"metric {name!r} is not in this result ({', '.join(m.name for m in self.metrics)})")

    def to_summary(self) -> dict[str, Any]:
        """JSON-serialisable: plain floats rounded (values 3 decimals, score 2), None for NaN/inf."""
        return {
            "score": json_number(self.score, 2),
            "passed": self.passed,
            "pass_mark": json_number(self.pass_mark, 2),
            "fail_reasons": list(self.fail_reasons),
            "metrics": {m.name: {"value": json_number(m.value), "unit": m.unit, "definition": m.definition,
                                 "source": m.source, "weight": json_number(m.weight),
                                 "score": json_number(m.score), "full_marks_at": json_number(m.full_marks_at),
                                 "zero_marks_at": json_number(m.zero_marks_at)} for m in self.metrics},
            "steps": [{"id": s.id, "time_s": json_number(s.time_s), "completed": s.completed, "failed": s.failed,
                       "overtime_s": json_number(s.overtime_s), "started_s": json_number(s.started_s),
                       "ended_s": json_number(s.ended_s)} for s in self.steps],
            "events": [{"id": e.id, "time_s": json_number(e.time_s), "step": e.step} for e in self.events],
            "critical_errors": [{"id": c.id, "time_s": json_number(c.time_s), "description": c.description}
                                for c in self.critical_errors],
        }
