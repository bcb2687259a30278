"""Cohort learning curves: ``vr-trainer report --cohort DIR --out OUT``.

From the index of a folder of recordings (:mod:`vr_trainer.session.index`) it writes
``OUT/cohort.csv`` (one row per attempt, in attempt order), ``OUT/residents.csv`` (one row per
resident and scenario) and ``OUT/cohort.html`` (self-contained: charts are embedded PNGs, no
script, no link to anything outside the file), in English or Chinese.

Attempts are numbered per resident and scenario in order of their start time. Learning curves
plot score, total time, fluoroscopy shots and risk-structure contacts (invasions) against the
attempt number, and two CUSUM charts of failure (an attempt fails when it is not passed):

* the learning-curve CUSUM ``S_n = sum_{i<=n} (x_i - p0)``, ``x_i`` 1 for a failed attempt and
  0 for a passed one, ``p0`` the acceptable failure rate (default 0.2): it rises while the
  failure rate is above ``p0`` and turns down once the resident passes more often (Williams SM,
  Parry BR, Schlup MM. Quality control: an application of the cusum. BMJ 1992;304:1359-1361);
* the decision-limit CUSUM used to judge trainee competence (Kestin IG. A statistical approach
  to measuring the competence of anaesthetic trainees at practical procedures. Br J Anaesth
  1995;75:805-809; Bolsin S, Colson M. The use of the Cusum technique in the assessment of
  trainee competence in new procedures. Int J Qual Health Care 2000;12(5):433-438), whose limits
  are those of Wald's sequential probability ratio test (Wald A. Sequential tests of statistical
  hypotheses. Ann Math Stat 1945;16(2):117-186): with ``P = ln(p1/p0)``, ``Q = ln((1-p0)/(1-p1))``,
  a failure adds ``1 - s`` and a success subtracts ``s``, ``s = Q/(P+Q)``; the limits are
  ``h0 = ln((1-alpha)/beta)/(P+Q)`` below and ``h1 = ln((1-beta)/alpha)/(P+Q)`` above. Crossing
  ``-h0`` (measured from the last decision) says the failure rate is acceptable (``p0``, with
  error ``beta``); crossing ``+h1`` says it is unacceptable (``p1``, error ``alpha``); after a
  decision the test starts again from the current value (a series of Wald tests).

Recordings without a resident id (``vr-trainer run --resident``) are grouped as ``unassigned``;
recordings without a score (cut short) are listed but not plotted; unreadable ones are listed
with their error and never stop the report.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from vr_trainer.session.index import IndexStats, indexed_rows, update_index

log = logging.getLogger("vr_trainer.session.cohort")


@dataclass(frozen=True)
class CusumSettings:
    """Failure rates (0..1) and test errors of the CUSUM charts (defaults: p0 0.2, p1 0.4, alpha = beta = 0.1)."""

    p0: float = 0.2  # acceptable failure rate
    p1: float = 0.4  # unacceptable failure rate
    alpha: float = 0.1  # chance of calling an acceptable rate unacceptable
    beta: float = 0.1  # chance of calling an unacceptable rate acceptable

    def check(self) -> None:
        if not (0.0 < self.p0 < self.p1 < 1.0):
            raise ValueError(f"CUSUM rates: need 0 < p0 < p1 < 1 (got p0 {self.p0}, p1 {self.p1})")
        if not (0.0 < self.alpha < 0.5 and 0.0 < self.beta < 0.5):
            raise ValueError(f"CUSUM errors: alpha and beta must be in (0, 0.5) (got {self.alpha}, {self.beta})")

    def limits(self) -> tuple[float, float, float]:
        """``(s, h0, h1)`` of the decision-limit CUSUM (Wald's SPRT for a Bernoulli failure rate)."""
        p = math.log(self.p1 / self.p0)
        q = math.log((1.0 - self.p0) / (1.0 - self.p1))
        return (q / (p + q), math.log((1.0 - self.alpha) / self.beta) / (p + q),
                math.log((1.0 - self.beta) / self.alpha) / (p + q))


def learning_cusum(failed: Sequence[bool], p0: float) -> list[float]:
    """``S_n = sum (x_i - p0)`` after each attempt (x_i 1 when attempt i failed)."""
    out, s = [], 0.0
    for f in failed:
        s += (1.0 if f else 0.0) - p0
        out.append(s)
    return out


@dataclass
class SprtCusum:
    """The decision-limit CUSUM after each attempt and the attempts (1-based) where it decided."""

    values: list[float]
    s: float
    h0: float
    h1: float
    refs: list[float] = field(default_factory=list)  # the level each attempt's test is measured from
    acceptable_at: list[int] = field(default_factory=list)
    unacceptable_at: list[int] = field(default_factory=list)


def sprt_cusum(failed: Sequence[bool], settings: CusumSettings) -> SprtCusum:
    """The decision-limit CUSUM of ``failed`` (see the module docstring)."""
    s, h0, h1 = settings.limits()
    out = SprtCusum([], s, h0, h1)
    value = ref = 0.0
    for n, f in enumerate(failed, 1):
        value += (1.0 - s) if f else -s
        out.values.append(value)
        out.refs.append(ref)
        if value - ref <= -h0:
            out.acceptable_at.append(n)
            ref = value
        elif value - ref >= h1:
            out.unacceptable_at.append(n)
            ref = value
    return out


# ---- the attempts ---------------------------------------------------------------------------
ATTEMPT_COLUMNS = ("resident", "scenario_id", "attempt", "started_utc", "status", "score", "passed", "pass_mark",
                   "total_time_s", "fluoro_shots", "risk_contacts", "critical_errors", "duration_s",
                   "cusum_failures", "cusum_decision", "autopilot_skill", "autopilot_seed", "scenario_sha256",
                   "path", "error")
RESIDENT_COLUMNS = ("resident", "scenario_id", "attempts", "scored_attempts", "passed_attempts", "last_score",
                    "best_score", "attempts_to_first_pass", "cusum_acceptable_at", "cusum_unacceptable_at",
                    "p0", "p1", "alpha", "beta", "h0", "h1")


@dataclass
class Curve:
    """One resident's attempts at one scenario, in attempt order, with their CUSUMs."""

    resident: str
    scenario_id: str
    rows: list[dict[str, Any]]  # every readable attempt, numbered
    scored: list[dict[str, Any]]  # those with a score (what the charts plot)
    cusum: list[float]
    sprt: SprtCusum


def _utc(t: float | None) -> str:
    return "" if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def build_curves(rows: list[dict[str, Any]], settings: CusumSettings) -> list[Curve]:
    """Group the index rows by resident and scenario, number them by start time, add the CUSUMs."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if r["status"] != "unreadable":
            groups.setdefault((r["resident"], r["scenario_id"] or "?"), []).append(dict(r))
    curves = []
    for (resident, scen), rs in sorted(groups.items()):
        rs.sort(key=lambda r: (r["started_unix_s"] if r["started_unix_s"] is not None else math.inf, r["path"]))
        for k, r in enumerate(rs, 1):
            r["attempt"] = k
            r["started_utc"] = _utc(r["started_unix_s"])
        scored = [r for r in rs if r["status"] == "ok" and r["passed"] is not None]
        failed = [not r["passed"] for r in scored]
        cus = learning_cusum(failed, settings.p0)
        sp = sprt_cusum(failed, settings)
        for j, r in enumerate(scored):
            r["cusum_failures"] = round(cus[j], 4)
            n = j + 1
            r["cusum_decision"] = ("acceptable" if n in sp.acceptable_at else
                                   "unacceptable" if n in sp.unacceptable_at else "")
        curves.append(Curve(resident, scen, rs, scored, cus, sp))
    return curves


def _num(v: Any) -> Any:
    return "" if v is None else (round(v, 3) if isinstance(v, float) else v)


def write_csvs(curves: list[Curve], unreadable: list[tuple[str, str]], out: Path, settings: CusumSettings) -> None:
    """``cohort.csv`` (one row per attempt; unreadable files last, with their error) and ``residents.csv``."""
    _s, h0, h1 = settings.limits()
    with open(out / "cohort.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(ATTEMPT_COLUMNS)
        for c in curves:
            for r in c.rows:
                w.writerow([_num(r.get(k)) for k in ATTEMPT_COLUMNS])
        for path, err in unreadable:
            bad = {"status": "unreadable", "path": path, "error": err}
            w.writerow([bad.get(k, "") for k in ATTEMPT_COLUMNS])
    with open(out / "residents.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(RESIDENT_COLUMNS)
        for c in curves:
            w.writerow([_num(v) for v in resident_summary(c, settings, h0, h1).values()])


def resident_summary(c: Curve, settings: CusumSettings, h0: float, h1: float) -> dict[str, Any]:
    """One ``residents.csv`` row: attempts, last and best score, attempts to the first pass, CUSUM decisions."""
    first_pass = next((r["attempt"] for r in c.rows if r.get("passed")), None)
    scores = [r["score"] for r in c.scored if r["score"] is not None]
    return {"resident": c.resident, "scenario_id": c.scenario_id, "attempts": len(c.rows),
            "scored_attempts": len(c.scored), "passed_attempts": sum(1 for r in c.scored if r["passed"]),
            "last_score": scores[-1] if scores else None, "best_score": max(scores) if scores else None,
            "attempts_to_first_pass": first_pass,
            "cusum_acceptable_at": _attempt_of(c, c.sprt.acceptable_at),
            "cusum_unacceptable_at": _attempt_of(c, c.sprt.unacceptable_at),
            "p0": settings.p0, "p1": settings.p1, "alpha": settings.alpha, "beta": settings.beta,
            "h0": round(h0, 3), "h1": round(h1, 3)}


def _attempt_of(c: Curve, scored_numbers: list[int]) -> int | None:
    """The attempt number of the first decision (counted over scored attempts) in the resident's numbering."""
    return c.scored[scored_numbers[0] - 1]["attempt"] if scored_numbers else None


# ---- the report -----------------------------------------------------------------------------
def build_cohort(dir: Path, out: Path, locale: str = "en", settings: CusumSettings | None = None) -> dict[str, Any]:
    """Index ``dir`` (reading only new or changed recordings) and write ``cohort.csv``,
    ``residents.csv`` and ``cohort.html`` into ``out``. Returns what was written and done."""
    from vr_trainer.session.cohort_html import write_html

    settings = settings or CusumSettings()
    settings.check()
    if locale not in ("en", "zh"):
        raise ValueError(f"--locale must be en or zh (got {locale!r})")
    dir, out = Path(dir), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stats: IndexStats = update_index(dir, out)
    if stats.unreadable:
        log.warning("%d unreadable recording(s) left out of the cohort:\n%s", len(stats.unreadable),
                    "\n".join(f"  {dir / p}: {e}" for p, e in stats.unreadable))
    rows = indexed_rows(stats.index_path)
    curves = build_curves(rows, settings)
    write_csvs(curves, stats.unreadable, out, settings)
    t0 = time.perf_counter()
    write_html(curves, stats.unreadable, out / "cohort.html", locale, settings, str(dir))
    residents = sorted({c.resident for c in curves})
    return {"cohort": str(dir), "out": str(out), "index": str(stats.index_path),
            "recordings": len(rows), "read": stats.read, "unchanged": stats.unchanged, "removed": stats.removed,
            "index_s": round(stats.seconds, 3), "html_s": round(time.perf_counter() - t0, 3),
            "residents": residents, "attempts": sum(len(c.rows) for c in curves),
            "unreadable": [{"path": p, "error": e} for p, e in stats.unreadable],
            "files": [str(out / n) for n in ("cohort.csv", "residents.csv", "cohort.html")]}


def png_data_uri(fig: Any) -> str:
    """A matplotlib figure as an embedded ``data:image/png;base64,...`` URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def esc(text: Any) -> str:
    return html.escape("" if text is None else str(text))
