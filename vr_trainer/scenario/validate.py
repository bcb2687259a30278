"""Checks of a loaded scenario against its anatomy bundle (the manifest only; no mesh is read).

The bundle's ``manifest.json`` lists every structure with its bounding box (``bbox_mm``, patient
RAS millimetres) and the landmarks; that is all these checks need: structures and landmarks
named by targets, risk structures, overlays, ``anatomy.hide`` and conditions exist; point
targets lie inside the anatomy's bounding box (plus :data:`BOUNDS_MARGIN_MM` and the target's
tolerance); level and side agree with the bundle's landmarks and structure names.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from vr_trainer.scenario import conditions
from vr_trainer.scenario.issues import ScenarioError, ScenarioIssue
from vr_trainer.scenario.loader import REPO_ROOT, find_bundle, load_scenario_checked, metric_names, source_map
from vr_trainer.scenario.schema import Scenario
from vr_trainer.scenario.source import SourceMap

BOUNDS_MARGIN_MM = 10.0   # a point target may lie this far outside the anatomy's box (skin, approach)
MAX_MANIFEST_BYTES = 16 << 20
LEVELS_NEEDED = ("pted",)  # procedures operated at a spinal level and side
_POINT_KEYS = ("incenter_mm", "centroid_mm")  # as vr_trainer.app.session resolves a landmark target
_LEVEL_IN_NAME = re.compile(r"(?:^|_)((?:C[1-7]|T1[0-2]|T[1-9]|L[1-6]|S1)_(?:C[1-7]|T1[0-2]|T[1-9]|L[1-6]|S1))(?:_|$)")
_SIDE_IN_NAME = re.compile(r"(?:^|_)(left|right)(?:_|$)")


@dataclass
class BundleManifest:
    """What validation reads from a bundle: structure names with boxes, and landmarks."""

    path: Path
    boxes_mm: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]] | None]
    landmarks: dict[str, Any] = field(default_factory=dict)

    def bounds_mm(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """The union of the structures' boxes ((xmin, ymin, zmin), (xmax, ymax, zmax)), or None."""
        boxes = [b for b in self.boxes_mm.values() if b is not None]
        if not boxes:
            return None
        return (tuple(min(b[0][k] for b in boxes) for k in range(3)),
                tuple(max(b[1][k] for b in boxes) for k in range(3)))

    def levels(self) -> set[str]:
        """Spinal levels the bundle has (``L4-L5``), from landmark ``level`` fields and structure names."""
        found = {m.group(1) for n in self.boxes_mm if (m := _LEVEL_IN_NAME.search(n))}
        found |= {str(lm["level"]) for lm in self.landmarks.values() if isinstance(lm, dict) and "level" in lm}
        return {lv.replace("_", "-") for lv in found}


def _box(entry: dict[str, Any]) -> tuple[tuple[float, float, float], tuple[float, float, float]] | None:
    b = entry.get("bbox_mm")
    try:
        lo, hi = (tuple(float(v) for v in b[0]), tuple(float(v) for v in b[1]))  # type: ignore[index]
    except (TypeError, ValueError, IndexError, KeyError):
        return None
    if len(lo) != 3 or len(hi) != 3 or not all(map(math.isfinite, lo + hi)):
        return None
    return lo, hi  # type: ignore[return-value]


def read_manifest(bundle_dir: Path) -> BundleManifest:
    """The manifest's structures and landmarks; raises ValueError with a reason when unreadable."""
    mpath = bundle_dir / "manifest.json"
    if mpath.stat().st_size > MAX_MANIFEST_BYTES:
        raise ValueError(f"{mpath} is larger than {MAX_MANIFEST_BYTES >> 20} MiB")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{mpath} is not valid JSON ({e})") from None
    entries = manifest.get("structures") if isinstance(manifest, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"{mpath} has no 'structures' list")
    boxes = {str(e["name"]): _box(e) for e in entries if isinstance(e, dict) and "name" in e}
    landmarks = manifest.get("landmarks") or {}
    return BundleManifest(bundle_dir, boxes, landmarks if isinstance(landmarks, dict) else {})


def landmark_point_mm(value: Any) -> tuple[float, float, float] | None:
    """A target landmark's point (RAS mm) as the session resolves it: the landmark's ``incenter_mm``,
    else its ``centroid_mm``; None when the landmark has neither (e.g. a bare vector or number)."""
    vec = None
    if isinstance(value, dict):
        vec = next((value[k] for k in _POINT_KEYS if value.get(k) is not None), None)
    return _vec3(vec)


def _vec3(vec: Any) -> tuple[float, float, float] | None:
    try:
        p = tuple(float(v) for v in vec)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return p if len(p) == 3 and all(map(math.isfinite, p)) else None  # type: ignore[return-value]


def _did_you_mean(name: str, known: Iterable[str], what: str) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=2, cutoff=0.6)
    if close:
        return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
    shown = ", ".join(known[:20]) + (" ..." if len(known) > 20 else "")
    return f"the bundle's {what}: {shown}" if known else f"the bundle has no {what}"


def validate_against_bundle(scenario: Scenario) -> list[ScenarioIssue]:
    """Problems between the scenario and its anatomy bundle (empty: consistent)."""
    src = source_map(scenario)
    bundle_dir = find_bundle(scenario)
    if bundle_dir is None:
        have = sorted(p.name for p in (REPO_ROOT / "assets").glob("*") if (p / "manifest.json").is_file())
        return [src.issue(("anatomy", "bundle"), f"anatomy bundle '{scenario.anatomy.bundle}' not found (looked next "
                          f"to the scenario file and in {REPO_ROOT / 'assets'})",
                          (_did_you_mean(scenario.anatomy.bundle, have, "bundles") + " " if have else "")
                          + "(bundles are made with vr-trainer import)")]
    try:
        manifest = read_manifest(bundle_dir)
    except (OSError, ValueError) as e:
        return [src.issue(("anatomy", "bundle"), f"cannot read the bundle's manifest: {e}",
                          "re-run the import that made the bundle")]
    issues: list[ScenarioIssue] = []
    issues += _structures(scenario, manifest, src)
    issues += _targets(scenario, manifest, src)
    issues += _level_and_side(scenario, manifest, src)
    issues += _conditions(scenario, manifest, src)
    return issues


def _structures(s: Scenario, m: BundleManifest, src: SourceMap) -> list[ScenarioIssue]:
    out = []
    names = m.boxes_mm
    for i, r in enumerate(s.risk_structures):
        if r.structure not in names:
            out.append(src.issue(("risk_structures", i, "structure"), f"the bundle has no structure '{r.structure}'",
                                 _did_you_mean(r.structure, names, "structures")))
    for i, h in enumerate(s.anatomy.hide):
        if h not in names:
            out.append(src.issue(("anatomy", "hide", i), f"the bundle has no structure '{h}' to hide",
                                 _did_you_mean(h, names, "structures")))
    ids = {t.id for t in s.targets} | {r.id for r in s.risk_structures}
    for i, ev in enumerate(s.events):
        for j, eff in enumerate(ev.effects):
            if eff.overlay is not None and eff.overlay.structure not in ids and eff.overlay.structure not in names:
                out.append(src.issue(("events", i, "effects", j, "overlay", "structure"),
                                     f"'{eff.overlay.structure}' is not a target, a risk structure or a "
                                     "bundle structure",
                                     _did_you_mean(eff.overlay.structure, list(ids) + list(names), "structures")))
    return out


def _targets(s: Scenario, m: BundleManifest, src: SourceMap) -> list[ScenarioIssue]:
    out = []
    bounds = m.bounds_mm()
    for i, t in enumerate(s.targets):
        if t.structure is not None and t.structure not in m.boxes_mm:
            out.append(src.issue(("targets", i, "structure"), f"the bundle has no structure '{t.structure}'",
                                 _did_you_mean(t.structure, m.boxes_mm, "structures")))
        if t.landmark is not None:
            if t.landmark not in m.landmarks:
                out.append(src.issue(("targets", i, "landmark"), f"the bundle has no landmark '{t.landmark}'",
                                     _did_you_mean(t.landmark, m.landmarks, "landmarks")))
            elif landmark_point_mm(m.landmarks[t.landmark]) is None:
                vec = _vec3(m.landmarks[t.landmark])
                out.append(src.issue(("targets", i, "landmark"),
                                     f"landmark '{t.landmark}' has no position (incenter_mm or centroid_mm)",
                                     f"give the point instead: point_mm: [{', '.join(f'{v:g}' for v in vec)}]"
                                     if vec is not None and t.landmark.endswith("_mm") else
                                     "name a landmark with a position, or give point_mm"))
        if t.point_mm is not None and bounds is not None:
            slack = BOUNDS_MARGIN_MM + t.tolerance_mm
            lo, hi = bounds
            outside = [f"{'xyz'[k]} {t.point_mm[k]:g} not in [{lo[k] - slack:g}, {hi[k] + slack:g}]"
                       for k in range(3) if not lo[k] - slack <= t.point_mm[k] <= hi[k] + slack]
            if outside:
                out.append(src.issue(("targets", i, "point_mm"),
                                     "the point lies outside the anatomy (" + "; ".join(outside) + " mm)",
                                     "point_mm is in the bundle's patient frame (RAS millimetres, +x right, "
                                     "+y anterior, +z superior); check the units and signs"))
    return out


def _level_and_side(s: Scenario, m: BundleManifest, src: SourceMap) -> list[ScenarioIssue]:
    out = []
    level, side = s.anatomy.level, s.anatomy.side
    if s.procedure in LEVELS_NEEDED:
        for key, value in (("level", level), ("side", side)):
            if value is None:
                out.append(src.issue(("anatomy",), f"a {s.procedure} scenario should say the {key} operated on",
                                     f"add anatomy.{key} (e.g. {'L4-L5' if key == 'level' else 'left'})",
                                     severity="warning"))
    have = m.levels()
    if level is not None:
        if not have:
            out.append(src.issue(("anatomy", "level"), "the bundle does not say which spinal levels it holds, "
                                 f"so level {level} cannot be checked", "use a spine bundle, or drop anatomy.level",
                                 severity="warning"))
        elif level not in have:
            out.append(src.issue(("anatomy", "level"), f"the bundle has no level {level}",
                                 f"its levels: {', '.join(sorted(have))}"))
    bundle_side = m.landmarks.get("side")
    if side is not None and isinstance(bundle_side, str) and bundle_side in ("left", "right") and bundle_side != side:
        out.append(src.issue(("anatomy", "side"), f"the bundle is a {bundle_side} side but the scenario says {side}",
                             f"set side: {bundle_side}, or use a {side} bundle"))
    for i, t in enumerate(s.targets):
        lm = m.landmarks.get(t.landmark) if t.landmark else None
        if not isinstance(lm, dict):
            continue
        lm_level = str(lm.get("level", "")).replace("_", "-") or None
        if level is not None and lm_level is not None and lm_level != level:
            out.append(src.issue(("targets", i, "landmark"), f"landmark '{t.landmark}' is at level {lm_level}, "
                                 f"the scenario operates at {level}", "pick the landmark of the scenario's level"))
        if side is not None and lm.get("side") in ("left", "right") and lm.get("side") != side:
            out.append(src.issue(("targets", i, "landmark"),
                                 f"landmark '{t.landmark}' is on the {lm.get('side')} side, "
                                 f"the scenario operates on the {side}", "pick the landmark of the scenario's side"))
    if side is not None:
        other = "right" if side == "left" else "left"
        for i, r in enumerate(s.risk_structures):
            hit = _SIDE_IN_NAME.search(r.structure)
            if hit and hit.group(1) == other:
                out.append(src.issue(("risk_structures", i, "structure"), f"'{r.structure}' is on the {other} side; "
                                     f"the scenario operates on the {side}",
                                     "intended for a contralateral check? otherwise pick the structure of the "
                                     "operated side", severity="warning"))
    return out


def _conditions(s: Scenario, m: BundleManifest, src: SourceMap) -> list[ScenarioIssue]:
    """Conditions again, now with the bundle's structure names known."""
    names = conditions.ScenarioNames.from_scenario(s, structures=list(m.boxes_mm), with_metrics=False)
    names = dataclasses.replace(names, metrics=frozenset(metric_names(s.procedure)))
    out = []
    for group, key, texts in (("steps", "complete_when", [st.complete_when for st in s.steps]),
                              ("events", "when", [e.when for e in s.events])):
        for i, text in enumerate(texts):
            for err in conditions.check(conditions.parse(text), names):
                out.append(src.string_issue((group, i, key), err.column, f"condition: {err.message}", err.hint))
    return out


SCHEMA_ID = "urn:vr-trainer:scenario:format-2"


def schema_document() -> dict[str, Any]:
    """The published JSON Schema (``scenarios/schema.json``): the pydantic models' schema with
    ``$schema``, ``$id`` and ``title``."""
    body = Scenario.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            "title": "vr_trainer scenario (format_version 2)", **{k: v for k, v in body.items() if k != "title"}}


def schema_text() -> str:
    """:func:`schema_document` as the exact text of ``scenarios/schema.json``."""
    return json.dumps(schema_document(), indent=2, ensure_ascii=False) + "\n"


def lint_scenario(s: Scenario) -> list[ScenarioIssue]:
    """Warnings about a valid scenario that probably does not say what its author meant."""
    src = source_map(s)
    out = []
    raised = {eff.critical_error for ev in s.events for eff in ev.effects if eff.critical_error is not None}
    for i, c in enumerate(s.rubric.critical_errors):
        if c.id not in raised:
            out.append(src.issue(("rubric", "critical_errors", i, "id"), f"no event raises critical error '{c.id}'",
                                 f"add an effect '- critical_error: {c.id}' to the event that should fail the run",
                                 severity="warning"))
    for i, st in enumerate(s.steps):
        for j, h in enumerate(st.hints):
            if st.time_allowance_s is not None and h.after_s >= st.time_allowance_s:
                out.append(src.issue(("steps", i, "hints", j, "after_s"),
                                     f"the hint shows after {h.after_s:g} s, when the step is already overtime "
                                     f"(time_allowance_s: {st.time_allowance_s:g})",
                                     "show hints before the allowance runs out", severity="warning"))
    return out


def validate_file(path: str | Path) -> tuple[Scenario | None, list[ScenarioIssue]]:
    """Everything ``vr-trainer validate`` checks for one file: (scenario or None, issues)."""
    scenario, issues = load_scenario_checked(path)
    if scenario is None:
        return None, issues
    found = issues + validate_against_bundle(scenario) + lint_scenario(scenario)
    return scenario, sorted(found, key=lambda i: (i.line, i.col))


def load_validated_scenario(path: str | Path) -> Scenario:
    """:func:`~vr_trainer.scenario.loader.load_scenario` plus the bundle checks, as ``vr-trainer run``
    needs it: raises :class:`ScenarioError` with every located error (warnings do not stop a run)."""
    scenario, issues = validate_file(path)
    errors = [i for i in issues if i.severity == "error"]
    if scenario is None or errors:
        raise ScenarioError(errors or issues)
    return scenario
