"""Assessment reports: recordings to one self-contained HTML file (inline SVG plots and CSS, no
script, no network at view time), in English or Chinese; several recordings give a progress view.

    html = build_report([Path("sessions/a.mcap")], locale="en")   # raises ReportError / RecordingError

What a report reads from a recording: the ``/session`` header (scenario text, bundle name, the
``patient_from_world`` placement, backend, date), the ``/metrics`` samples (live metric values,
the tip in world mm and the signed distance to each risk structure, every 0.25 s), the mentor's
notes (``/inbox``) and the ``/summary`` (score, rubric metrics, steps, events, critical errors).
A recording cut short has no summary: with ``partial`` the report scores the last metric sample
against the rubric and says so; without it the report refuses with the reader's message.
"""

from __future__ import annotations

import functools
import html
import math
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vr_trainer.scenario.loader import load_scenario_checked, resolve_bundle_path
from vr_trainer.scenario.schema import Scenario
from vr_trainer.scenario.scoring import score_rubric
from vr_trainer.session import report_plots as plots
from vr_trainer.session.labels import fail_reason, label, metric_label
from vr_trainer.session.reader import Recording, read_for

class ReportError(ValueError):
    """A report cannot be made; the message says which file and what to do."""


@dataclass
class Attempt:
    """One recording as the report reads it (``summary`` is the recorded one, or one made from the
    last metric sample of a recording cut short)."""

    path: Path
    rec: Recording
    scenario: Scenario | None
    summary: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    @property
    def created(self) -> str:
        return str(self.rec.session.get("created_utc") or "")

    @property
    def resident(self) -> str:
        r = self.rec.session.get("resident")
        return str(r) if r else "—"


def _f(v: Any) -> float:
    """A recorded value as a float ("NaN"/"Infinity" strings included; None is NaN)."""
    if v is None:
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _scenario(rec: Recording) -> tuple[Scenario | None, list[str]]:
    sc = rec.session.get("scenario") or {}
    text, orig = sc.get("text"), Path(sc.get("path") or "scenario.yaml")
    if not isinstance(text, str):
        return None, ["the recording holds no scenario text"]
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / orig.name
        p.write_text(text, encoding="utf-8")
        scenario, issues = load_scenario_checked(p)
    if scenario is None:
        return None, ["the recorded scenario does not load: " + "; ".join(str(i) for i in issues[:3])]
    from vr_trainer.scenario.loader import REPO_ROOT

    scenario._source_dir = orig.parent if orig.parent.is_dir() else REPO_ROOT / "scenarios"
    return scenario, []


def _summary_from_samples(rec: Recording, scenario: Scenario | None) -> dict[str, Any]:
    """What a cut-short recording can still say: the last sample's metrics scored against the rubric."""
    values = {k: _f(v) for k, v in (rec.metrics[-1]["values"] if rec.metrics else {}).items()}
    out: dict[str, Any] = {"metrics": {}, "steps": [], "events": [], "critical_errors": [], "fail_reasons": []}
    if scenario is None:
        return out
    score, per = score_rubric(scenario.rubric, values)
    out.update(score=round(score, 2), passed=None, pass_mark=scenario.rubric.pass_mark)
    from vr_trainer.scenario.metrics import get_metric

    for m in scenario.rubric.metrics:
        v = values.get(m.metric, math.nan)
        d = get_metric(m.metric, scenario.procedure)
        out["metrics"][m.metric] = {"value": v if math.isfinite(v) else None, "unit": d.unit,
                                    "definition": d.definition, "source": d.source, "weight": m.weight,
                                    "score": per[m.metric],
                                    "full_marks_at": m.full_marks_at, "zero_marks_at": m.zero_marks_at}
    return out


def load_attempt(path: str | Path, partial: bool = False) -> Attempt:
    """Read one recording for a report. Raises :class:`RecordingError` for a damaged or cut-short file
    unless ``partial`` (then the readable part is reported, with a warning)."""
    rec, warnings = read_for(path, partial, "report", "the report shows that part", frames=False)  # no frame needed
    scenario, w = _scenario(rec)
    warnings += w
    summary = rec.summary if rec.summary is not None else _summary_from_samples(rec, scenario)
    if rec.summary is None and rec.damage is None:
        warnings.append(f"{rec.path} has no summary (the run did not finish); scored from the last metric sample")
    return Attempt(Path(path), rec, scenario, summary, warnings)


# ---------------------------------------------------------------------------------------- series
def _series(a: Attempt) -> dict[str, Any]:
    """Time series from the metric samples: run seconds, risk distances, shots, tip (RAS mm), contacts."""
    ms = a.rec.metrics
    t = np.array([_f(m.get("time_s")) for m in ms])
    risks = [r.id for r in a.scenario.risk_structures] if a.scenario else []
    seen = {k for m in ms for k in m.get("risk_distance_mm", {})}
    risks += sorted(seen - set(risks))
    dist = {rid: np.array([_f(m.get("risk_distance_mm", {}).get(rid)) for m in ms]) for rid in risks if rid in seen}
    shots = np.array([_f(m["values"].get("fluoro_shots")) for m in ms]) if ms else np.zeros(0)
    shots = np.nan_to_num(shots)
    pfw = a.rec.session.get("patient_from_world")
    tip = np.full((len(ms), 3), np.nan)
    if pfw is not None:
        m4 = np.asarray(pfw, float)
        for k, m in enumerate(ms):
            w = m.get("tip_world_mm")
            if w is not None:
                tip[k] = m4[:3, :3] @ np.asarray(w, float) + m4[:3, 3]
    contacts: list[tuple[float, str, float, int]] = []  # (time, risk id, distance, sample index)
    counts = [_f(m["values"].get("risk_contacts")) for m in ms]
    for k in range(1, len(ms)):
        if counts[k] > counts[k - 1] and dist:
            rid = min(dist, key=lambda r: dist[r][k] if math.isfinite(dist[r][k]) else math.inf)
            contacts.append((float(t[k]), rid, float(dist[rid][k]), k))
    names = list(dict.fromkeys(k for m in ms for k in m.get("angles_deg", {})))
    angles = {n: np.array([_f(m.get("angles_deg", {}).get(n)) for m in ms]) for n in names}
    return {"t": t, "dist": dist, "shots": shots, "tip": tip, "contacts": contacts, "angles": angles,
            "instruments": [str(m.get("instrument") or "?") for m in ms]}


ANGLE_RANGE = re.compile(r"angle\(\s*(\w+)\s*\)\s*within\s*\[\s*([-+\d.eE]+)\s*,\s*([-+\d.eE]+)\s*\]")


def angle_targets(scenario: Scenario | None) -> dict[str, tuple[float, float]]:
    """Target ranges (deg) of named angles from the scenario's conditions (``angle(axial) within [25, 45]``)."""
    out: dict[str, tuple[float, float]] = {}
    if scenario is None:
        return out
    for cond in [s.complete_when for s in scenario.steps] + [e.when for e in scenario.events]:
        for name, lo, hi in ANGLE_RANGE.findall(cond):
            out.setdefault(name, (float(lo), float(hi)))
    if scenario.procedure == "tka":  # the knee's cut angles: the plan's target, +- the rubric's full marks
        from vr_trainer.scenario.schema import TkaPlan

        plan = scenario.tka or TkaPlan()
        full = {m.metric: m.full_marks_at for m in scenario.rubric.metrics}
        for angle, target in (("distal_varus", plan.distal_varus_deg), ("distal_flexion", plan.distal_flexion_deg),
                              ("tibial_varus", plan.tibial_varus_deg), ("tibial_slope", plan.tibial_slope_deg),
                              ("femoral_rotation", plan.femoral_rotation_deg)):
            tol = abs(float(full.get(f"{angle}_error_deg", 1.0)))
            out.setdefault(angle, (target - tol, target + tol))
    if scenario.procedure == "tha":  # the reamer's and the cup's Murray angles: the plan's safe zone
        from vr_trainer.scenario.schema import ThaPlan

        hip = scenario.tha or ThaPlan()
        for tool in ("cup", "reamer"):
            out.setdefault(f"{tool}_inclination", (hip.cup_inclination_deg - hip.inclination_tolerance_deg,
                                                   hip.cup_inclination_deg + hip.inclination_tolerance_deg))
            out.setdefault(f"{tool}_anteversion", (hip.cup_anteversion_deg - hip.anteversion_tolerance_deg,
                                                   hip.cup_anteversion_deg + hip.anteversion_tolerance_deg))
    return out


@functools.lru_cache(maxsize=4)
def _bundle_triangles(bundle_dir: str) -> tuple[tuple[str, str, np.ndarray], ...]:
    """(structure, tissue, triangles (n, 3, 3) RAS mm) of each structure in the bundle (loaded once per report run)."""
    from vr_trainer.anatomy.bundle import load_bundle

    return tuple((s.name, s.tissue, _outline_triangles(np.asarray(s.mesh.vertices, float), np.asarray(s.mesh.faces)))
                 for s in load_bundle(bundle_dir).structures)


OUTLINE_FACES = 2500  # per structure: a plot 9 inches wide shows no more detail; the full meshes cost seconds


def _outline_triangles(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(n, 3, 3) triangles of a structure for its projected outline, decimated to about
    :data:`OUTLINE_FACES` (fast-simplification's quadric decimation keeps the silhouette)."""
    if len(faces) > OUTLINE_FACES:
        import fast_simplification

        vertices, faces = fast_simplification.simplify(vertices, faces, 1.0 - OUTLINE_FACES / len(faces))
    return np.asarray(vertices, float)[np.asarray(faces)]


def _outlines(a: Attempt, warnings: list[str]) -> list[tuple[str, str, np.ndarray]]:
    """The bundle's triangles (RAS mm) per structure, for the trajectory plot (hidden structures left out)."""
    if a.scenario is None:
        return []
    try:
        found = _bundle_triangles(str(resolve_bundle_path(a.scenario)))
    except Exception as e:  # noqa: BLE001 - a missing or broken bundle only costs the outline
        warnings.append(f"the anatomy outline is missing: {e}")
        return []
    hidden = set(a.scenario.anatomy.hide)
    return [o for o in found if o[0] not in hidden]


# ---------------------------------------------------------------------------------------- HTML
CSS = """
body{font-family:"DejaVu Sans","WenQuanYi Micro Hei","Noto Sans CJK SC",sans-serif;margin:24px auto;max-width:1000px;
color:#222;font-size:14px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ccc;padding-bottom:3px}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #e3e3e3;padding:4px 6px;text-align:left;
vertical-align:top}th{background:#f4f4f4}.num{text-align:right;white-space:nowrap}
.small{font-size:11px;color:#555}.bar{background:#eee;width:110px;height:12px;display:inline-block;vertical-align:middle}
.bar>span{display:block;height:12px;background:#2b8a3e}.bar.low>span{background:#c92a2a}
.pass{color:#2b8a3e;font-weight:bold}.fail{color:#c92a2a;font-weight:bold}.warn{background:#fff3bf;padding:6px 10px;
border-left:4px solid #f59f00;margin:8px 0}.facts td{border:none;padding:2px 12px 2px 0}figure{margin:8px 0}
svg{max-width:100%;height:auto}#key-images{display:flex;flex-wrap:wrap;gap:10px}figure.key{width:220px}
figure.key img{width:220px;height:auto;border:1px solid #888}figure.key figcaption{font-size:12px}
@media print{h2{break-after:avoid}figure,table{break-inside:avoid}}
"""


def _e(v: Any) -> str:
    return html.escape(str(v))


def _num(v: Any, digits: int = 2) -> str:
    x = _f(v)
    if not math.isfinite(x):
        return "—"
    text = f"{x:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text  # 50 stays 50


def _header(a: Attempt, loc: str) -> str:
    s, sess = a.summary, a.rec.session
    title = a.scenario.title.text(loc) if a.scenario else str(sess.get("scenario", {}).get("id", "?"))
    passed = s.get("passed")
    verdict = (f'<span class="pass">{_e(label("passed", loc))}</span>' if passed
               else f'<span class="fail">{_e(label("failed", loc))}</span>' if passed is False
               else f'<span>{_e(label("unfinished", loc))}</span>')
    rows = [("resident", a.resident), ("date", a.created.replace("T", " ").replace("Z", " UTC")),
            ("duration", f"{a.rec.duration_s:.1f} s"), ("backend", sess.get("backend", "—")),
            ("recording", a.path.name)]
    facts = "".join(f"<tr><td>{_e(label(k, loc))}</td><td>{_e(v)}</td></tr>" for k, v in rows)
    reasons = "".join(f"<li>{_e(fail_reason(r, loc))}</li>" for r in s.get("fail_reasons") or [])
    warn = "".join(f'<div class="warn">{_e(w)}</div>' for w in a.warnings)
    return (f"<h1>{_e(title)}</h1>{warn}<table class=facts>{facts}</table>"
            f'<p style="font-size:18px">{_e(label("score", loc))}: <b id="score">{_num(s.get("score"))}</b> / 100 '
            f'&nbsp;({_e(label("pass_mark", loc))} {_num(s.get("pass_mark"))}) &nbsp; {verdict}</p>'
            + (f"<p>{_e(label('fail_reasons', loc))}:</p><ul>{reasons}</ul>" if reasons else ""))


def _rubric(a: Attempt, loc: str) -> str:
    rows = []
    for name, m in (a.summary.get("metrics") or {}).items():
        if m.get("weight") is None:
            continue
        sc = _f(m.get("score"))
        pct = 0 if not math.isfinite(sc) else int(round(100 * sc))
        rows.append(f"<tr><td><b>{_e(metric_label(name, loc))}</b><br><span class=small>{_e(name)}</span></td>"
                    f"<td class=num>{_num(m.get('value'))} {_e(m.get('unit') or '')}</td>"
                    f"<td class=num>{_num(m.get('weight'))}</td>"
                    f"<td><span class='bar{' low' if pct < 50 else ''}'><span style='width:{pct}%'></span></span> "
                    f"{_num(sc)}</td><td class=num>{_num(m.get('full_marks_at'))} / {_num(m.get('zero_marks_at'))}</td>"
                    f"<td class=small>{_e(m.get('definition') or '')}<br><i>{_e(m.get('source') or '')}</i></td></tr>")
    head = "".join(f"<th>{_e(label(k, loc))}</th>" for k in ("metric", "value", "weight", "metric_score",
                                                              "full_zero", "definition"))
    return f"<h2>{_e(label('rubric', loc))}</h2><table id=rubric><tr>{head}</tr>{''.join(rows)}</table>"


def _steps(a: Attempt, loc: str, series: dict[str, Any]) -> str:
    allow = {s.id: s.time_allowance_s for s in a.scenario.steps} if a.scenario else {}
    rows = []
    for s in a.summary.get("steps") or []:
        state = label("completed" if s.get("completed") else "failed" if s.get("failed") else "not_completed", loc)
        rows.append(f"<tr><td>{_e(s['id'])}</td><td class=num>{_num(s.get('started_s'), 1)}</td>"
                    f"<td class=num>{_num(s.get('time_s'), 1)}</td><td class=num>{_num(allow.get(s['id']), 0)}</td>"
                    f"<td class=num>{_num(s.get('overtime_s'), 1)}</td><td>{_e(state)}</td></tr>")
    head = "".join(f"<th>{_e(label(k, loc))}</th>" for k in ("step", "start_s", "time_s", "allowance_s",
                                                              "overtime_s", "state"))
    end_s = max([float(series["t"][-1]) if len(series["t"]) else 0.0, a.rec.duration_s])
    svg = plots.timeline_svg(a.summary.get("steps") or [], a.summary.get("events") or [],
                             a.summary.get("critical_errors") or [], end_s, lambda k: label(k, loc))
    errs = "".join(f"<li><b>{_e(c['id'])}</b> {_num(c.get('time_s'), 1)} s: {_e(c.get('description', ''))}</li>"
                   for c in a.summary.get("critical_errors") or [])
    return (f"<h2>{_e(label('steps', loc))}</h2><table id=steps><tr>{head}</tr>{''.join(rows)}</table>"
            f"<figure class=plot id=plot-timeline>{svg}</figure>"
            + (f"<p class=fail>{_e(label('critical_errors', loc))}</p><ul>{errs}</ul>" if errs else ""))


def _plots(a: Attempt, loc: str, series: dict[str, Any]) -> str:
    L = lambda k: label(k, loc)  # noqa: E731 - a short label lookup for the plots
    sc = a.scenario
    names = {r.id: (r.label.text(loc) if r.label else r.id) for r in sc.risk_structures} if sc else {}
    margins = {r.id: r.margin_mm for r in sc.risk_structures} if sc else {}
    end_s = float(series["t"][-1]) if len(series["t"]) else a.rec.duration_s
    dist = plots.distance_svg(series["t"], series["dist"], names, margins,
                              [(t, r, d) for t, r, d, _ in series["contacts"]], L)
    shots = plots.shots_svg(series["t"], series["shots"], end_s, L)
    tip = series["tip"]
    contacts = np.array([tip[k] for *_, k in series["contacts"]]).reshape(-1, 3)
    risky = {r.structure for r in sc.risk_structures} if sc else set()
    traj = plots.trajectory_svg(tip, series["instruments"], _outlines(a, a.warnings), risky, contacts, L)
    angles = plots.angles_svg(series["t"], series["angles"], angle_targets(sc), L)
    n_shots = int(series["shots"].max()) if len(series["shots"]) else 0
    return (f"<h2>{_e(L('distances'))}</h2><figure class=plot id=plot-distance>{dist}</figure>"
            f"<h2>{_e(L('fluoro'))} ({n_shots})</h2><figure class=plot id=plot-shots>{shots}</figure>"
            f"<h2>{_e(L('trajectory'))}</h2><figure class=plot id=plot-trajectory>{traj}</figure>"
            f"<h2>{_e(L('angles'))}</h2><figure class=plot id=plot-angles>{angles}</figure>")


def _notes(a: Attempt, loc: str) -> str:
    notes: list[tuple[float, str, str]] = []
    seen: set[tuple[str, str]] = set()
    for _, msg in sorted(a.rec.inbox.items()):
        for author, text in msg.get("mentor_notes", []):
            if (author, text) not in seen:
                seen.add((author, text))
                notes.append((_f(msg.get("time_s")), author, text))
    items = "".join(f"<li>{_num(t, 1)} s — <b>{_e(au)}</b>: {_e(tx)}</li>" for t, au, tx in notes)
    return f"<h2>{_e(label('notes', loc))}</h2>" + (f"<ul id=notes>{items}</ul>" if items
                                                    else f"<p class=small>{_e(label('no_notes', loc))}</p>")


KEY_IMAGES_MAX = 12  # pictures shown per attempt (C-arm shots first in time order, then the endoscope)


def _keyframes(a: Attempt, loc: str) -> str:
    """The key images the recording holds (``/images``): C-arm shots and the endoscope at fragment
    removal, inline as data URIs (the page stays self-contained)."""
    L = lambda k: label(k, loc)  # noqa: E731
    imgs = [m for m in a.rec.images if m.get("format") == "png" and isinstance(m.get("data"), str)]
    if not imgs:
        return f"<h2>{_e(L('key_images'))}</h2><p class=small>{_e(L('no_images'))}</p>"
    carm = [m for m in imgs if m.get("kind") == "carm"]
    scope = [m for m in imgs if m.get("kind") == "endoscope"]
    shown = (carm[:KEY_IMAGES_MAX - min(len(scope), 4)] + scope[:4])[:KEY_IMAGES_MAX]
    cells = []
    for m in shown:
        if m.get("kind") == "carm":
            cap = f"{L('carm_shot')} {m.get('shot', '')} · {L(str(m.get('view', '')))}"
        else:
            pct = m.get("removed_pct")
            cap = L("endoscope") + (f" · {L('removed')} {_num(pct, 0)} %" if pct is not None else "")
        cells.append(f"<figure class=key><img alt=\"{_e(cap)}\" src=\"data:image/png;base64,{m['data']}\">"
                     f"<figcaption>{_e(cap)} · {_num(m.get('time_s'), 1)} s</figcaption></figure>")
    more = len(imgs) - len(shown)
    extra = f"<p class=small>{more} {_e(L('more_images'))}</p>" if more > 0 else ""
    return f"<h2>{_e(L('key_images'))} ({len(imgs)})</h2><div id=key-images>{''.join(cells)}</div>{extra}"


def _progress(attempts: Sequence[Attempt], loc: str) -> str:
    L = lambda k: label(k, loc)  # noqa: E731
    scores = [_f(a.summary.get("score")) for a in attempts]
    times = [_f((a.summary.get("metrics") or {}).get("total_time_s", {}).get("value")) for a in attempts]
    pm = _f(attempts[-1].summary.get("pass_mark"))
    svg = plots.progress_svg([a.path.name for a in attempts], [None if math.isnan(s) else s for s in scores],
                             [None if math.isnan(t) else t for t in times], None if math.isnan(pm) else pm, L)
    rows = "".join(f"<tr><td class=num>{k}</td><td>{_e(a.created)}</td><td>{_e(a.path.name)}</td>"
                   f"<td class=num>{_num(a.summary.get('score'))}</td><td class=num>{_num(times[k - 1], 1)}</td>"
                   f"<td>{_e(L('passed') if a.summary.get('passed') else L('failed'))}</td></tr>"
                   for k, a in enumerate(attempts, 1))
    head = "".join(f"<th>{_e(L(k))}</th>" for k in ("attempt", "date", "recording", "score", "time_s", "state"))
    residents = sorted({a.resident for a in attempts} - {"—"})
    who = f" — {', '.join(residents)}" if residents else ""
    if len(residents) > 1:
        attempts[-1].warnings.append(f"these {len(attempts)} attempts are by {len(residents)} residents "
                                     f"({', '.join(residents)}): the progress view mixes them")
    return (f"<h2>{_e(L('progress'))}{_e(who)}</h2><table id=progress><tr>{head}</tr>{rows}"
            f"</table><figure class=plot id=plot-progress>{svg}</figure>")


def build_report(paths: Sequence[str | Path], locale: str = "en", partial: bool = False) -> str:
    """The HTML report of ``paths`` (one attempt, or several in recording order with a progress view)."""
    if not paths:
        raise ReportError("give at least one recording (sessions/*.mcap)")
    if locale not in ("en", "zh"):
        raise ReportError(f"--locale {locale}: use en or zh")
    attempts = sorted((load_attempt(p, partial) for p in paths), key=lambda a: (a.created, str(a.path)))
    parts = []
    if len(attempts) > 1:
        parts.append(_progress(attempts, locale))
    for k, a in enumerate(reversed(attempts)):  # newest first
        series = _series(a)
        body = _plots(a, locale, series)  # before the header: it may add warnings (missing outline)
        parts.append(("<hr style='margin:36px 0'>" if k else "") + _header(a, locale) + _rubric(a, locale)
                     + _steps(a, locale, series) + body + _keyframes(a, locale) + _notes(a, locale))
    title = label("report_title", locale)
    return (f"<!DOCTYPE html><html lang=\"{'zh-CN' if locale == 'zh' else 'en'}\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
            f"<p class=small>{_e(title)}</p>{''.join(parts)}</body></html>")
