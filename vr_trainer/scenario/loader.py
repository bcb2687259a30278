"""Load scenario YAML with errors that name the file, line, column and field.

:func:`load_scenario` checks, in order: the file (exists, at most 1 MiB, UTF-8), the YAML syntax
(with alias, depth and size limits, duplicate keys refused: see :mod:`.source`), the schema
(pydantic, each error located on its YAML node), the conditions (parsed with
:mod:`.conditions`) and the references inside the file (instruments, targets, risk structures,
steps, events, critical errors, rubric metrics in the registry). Every problem found becomes a
:class:`ScenarioIssue`; a :class:`ScenarioError` carries them all. Checks against the anatomy
bundle are in :mod:`.validate`.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from vr_trainer.scenario import conditions
from vr_trainer.scenario.issues import ScenarioError, ScenarioIssue
from vr_trainer.scenario.schema import FORMAT_VERSION, Scenario
from vr_trainer.scenario.source import SourceMap, parse_yaml, read_text

__all__ = ["REPO_ROOT", "ScenarioError", "ScenarioIssue", "default_scenario_path", "load_scenario",
           "load_scenario_checked", "resolve_bundle_path", "source_map"]

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = "scenarios/pted_l4_l5.yaml"
SCHEMA_HINT = "see the schema: vr-trainer validate --schema"


def default_scenario_path() -> Path:
    return REPO_ROOT / "scenarios" / "pted_l4_l5.yaml"


def load_scenario(path: str | Path) -> Scenario:
    """The scenario in ``path``; raises :class:`ScenarioError` listing every located problem."""
    scenario, issues = load_scenario_checked(path)
    if scenario is None or issues:
        raise ScenarioError(issues)
    return scenario


def load_scenario_checked(path: str | Path) -> tuple[Scenario | None, list[ScenarioIssue]]:
    """(scenario or None, issues): like :func:`load_scenario` but returns the problems."""
    path = Path(path)
    file = str(path)
    text, issues = read_text(path)
    if text is None:
        return None, issues
    data, src, issues = parse_yaml(text, file)
    if issues or src is None:
        return None, issues
    if not isinstance(data, dict):
        what = "empty" if data is None else f"a {type(data).__name__}"
        return None, [src.issue((), "a scenario must be a YAML mapping (format_version, id, title, ...); "
                                f"this file is {what}", f"start from {EXAMPLE}")]
    if data.get("format_version") in (1, "1"):
        return None, [src.issue(("format_version",), (
            f"this is a format 1 scenario; this program reads format {FORMAT_VERSION}. Format 2 changed: "
            "each step needs 'complete_when' (a condition such as \"reached(target)\") and an 'instruments' "
            "list instead of 'instrument'; a 'rubric' (metrics with weight, full_marks_at, zero_marks_at; "
            "pass_mark) is required; risk_structures, events and carm are new"),
            f"migrate it by following {EXAMPLE}, set format_version: 2, then run vr-trainer validate on it")]
    issues = _condition_syntax(data, src)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as e:
        issues += [_schema_issue(err, src) for err in e.errors()]
        return None, issues
    if issues:
        return None, issues
    issues = check_references(scenario, src)
    if issues:
        return None, issues
    scenario._source_dir = path.resolve().parent
    scenario._source_map = src
    return scenario, []


def source_map(scenario: Scenario) -> SourceMap:
    """Where the scenario's values are in its file (a blank map for one built in code)."""
    src = scenario._source_map
    return src if isinstance(src, SourceMap) else SourceMap(f"<scenario {scenario.id}>", None)


# ---------------------------------------------------------------- schema errors

def _schema_issue(err: Any, src: SourceMap) -> ScenarioIssue:
    loc = tuple(err["loc"])
    kind, msg = err["type"], str(err["msg"])
    ctx = err.get("ctx") or {}
    hint = SCHEMA_HINT
    at_key = False
    if kind == "invalid_key":
        issue = src.key_issue(loc[:-1])
        if issue is not None:
            return issue
    if kind == "missing":
        name = next((p for p in reversed(loc) if isinstance(p, str)), "")
        msg, hint = "required field is missing", f"add '{name}:' here ({SCHEMA_HINT})"
    elif kind == "extra_forbidden":
        at_key = True
        allowed = _fields_at(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
        msg = "unknown field"
        hint = (f"did you mean '{close[0]}'?" if close else
                "remove it or check its spelling" + (f"; fields here: {', '.join(allowed)}" if allowed else ""))
    elif kind == "literal_error" and loc == ("format_version",):
        msg = f"format_version must be {FORMAT_VERSION}"
        hint = f"this program reads format {FORMAT_VERSION}; see {EXAMPLE}"
    elif kind == "string_pattern_mismatch":
        msg = "is not a valid identifier" if "A-Za-z" in str(ctx.get("pattern", "")) else msg
        hint = ("an id starts with a letter, then letters, digits, '_' or '-' (at most 64)"
                if "A-Za-z" in str(ctx.get("pattern", "")) else f"it must match {ctx.get('pattern')}")
    elif kind == "finite_number":
        hint = "write a finite number (not .nan, .inf or a number beyond 1e308)"
    elif kind in ("float_parsing", "float_type", "int_parsing", "int_type", "int_from_float"):
        hint = "write a plain number (no units, no quotes), e.g. 3.0"
    elif kind in ("string_type",):
        hint = "put the text in quotes"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        msg = "should be a mapping of fields (key: value lines)"
    elif kind in ("list_type", "tuple_type"):
        hint = "write a list such as [1, 2, 3] or '- item' lines"
    elif kind == "value_error":
        msg = msg.removeprefix("Value error, ")
        hint = "change the values as the message says"
    elif kind in ("too_short", "too_long") and loc and loc[-1] in ("position_mm", "point_mm", "tip_mm",
                                                                      "toward_mm", "look_at_mm"):
        hint = "write three millimetre coordinates [x, y, z]"
    return ScenarioIssue(src.file, *src.position(loc, at_key), src.field_name(loc), msg, hint)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """The field names the model at ``loc`` accepts (for "did you mean")."""
    model: type[BaseModel] | None = Scenario
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        info = model.model_fields.get(str(part))
        model = _model_in(info.annotation) if info is not None else None
    return list(model.model_fields) if model is not None else []


# ---------------------------------------------------------------- conditions and references

def _conditions_in(data: dict[str, Any]) -> Iterable[tuple[tuple[Any, ...], str]]:
    """(location, text) of every condition string in the raw data."""
    for group, key in (("steps", "complete_when"), ("events", "when")):
        items = data.get(group)
        if isinstance(items, list):
            for i, item in enumerate(items):
                if isinstance(item, dict) and isinstance(item.get(key), str):
                    yield (group, i, key), item[key]


def _condition_syntax(data: dict[str, Any], src: SourceMap) -> list[ScenarioIssue]:
    issues = []
    for loc, text in _conditions_in(data):
        if len(text) > conditions.MAX_LENGTH or not text:
            continue  # the schema reports the length
        try:
            conditions.parse(text)
        except conditions.ConditionError as e:
            issues.append(src.string_issue(loc, e.column, f"condition: {e.message}",
                                           e.hint or "see vr-trainer validate --help for the grammar"))
    return issues


def _duplicates(src: SourceMap, group: tuple[Any, ...], ids: list[str], what: str) -> list[ScenarioIssue]:
    seen: dict[str, int] = {}
    out = []
    for i, ident in enumerate(ids):
        if ident in seen:
            out.append(src.issue((*group, i, "id" if what != "metric" else "metric"),
                                 f"{what} '{ident}' is declared twice (first at {group[-1]}[{seen[ident]}])",
                                 f"give each {what} its own id" if what != "metric" else "list each metric once"))
        else:
            seen[ident] = i
    return out


def _unknown(src: SourceMap, loc: tuple[Any, ...], what: str, name: str, known: Iterable[str],
             where: str) -> ScenarioIssue:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else (
        f"declare it under {where}" + (f" (declared: {', '.join(known)})" if known else ""))
    return src.issue(loc, f"'{name}' is not one of the scenario's {what}", hint)


def metric_names(procedure: str) -> set[str]:
    """Names of the registry metrics a scenario of ``procedure`` may score."""
    from vr_trainer.scenario.metrics import metrics_for

    return {m.name for m in metrics_for(procedure)}


def check_references(s: Scenario, src: SourceMap) -> list[ScenarioIssue]:
    """References inside the file: ids unique, instruments declared, conditions naming known
    targets/risk structures/steps/events/instruments/metrics, critical errors declared,
    overlays naming something, demo.tool_relative_to a target, rubric metrics in the registry."""
    issues: list[ScenarioIssue] = []
    groups = (("instruments",), [i.id for i in s.instruments], "instrument"), \
        (("targets",), [t.id for t in s.targets], "target"), \
        (("risk_structures",), [r.id for r in s.risk_structures], "risk structure"), \
        (("steps",), [st.id for st in s.steps], "step"), (("events",), [e.id for e in s.events], "event"), \
        (("rubric", "critical_errors"), [c.id for c in s.rubric.critical_errors], "critical error"), \
        (("rubric", "metrics"), [m.metric for m in s.rubric.metrics], "metric")
    for group, ids, what in groups:
        issues += _duplicates(src, group, ids, what)
    target_ids = {t.id for t in s.targets}
    for i, r in enumerate(s.risk_structures):
        if r.id in target_ids:
            issues.append(src.issue(("risk_structures", i, "id"), f"'{r.id}' is both a target and a risk structure id",
                                    "conditions name both by id: rename one of them"))
    inst_ids = {i.id for i in s.instruments}
    for i, step in enumerate(s.steps):
        for j, inst in enumerate(step.instruments):
            if inst not in inst_ids:
                issues.append(_unknown(src, ("steps", i, "instruments", j), "instruments", inst, inst_ids,
                                       "instruments"))
    known_metrics = metric_names(s.procedure)
    names = conditions.ScenarioNames.from_scenario(s, structures=None, with_metrics=False)
    names = dataclasses.replace(names, metrics=frozenset(known_metrics))
    for loc, text in _conditions_in(s.model_dump(include={"steps", "events"})):
        for err in conditions.check(conditions.parse(text), names):
            issues.append(src.string_issue(loc, err.column, f"condition: {err.message}", err.hint))
    crit = {c.id for c in s.rubric.critical_errors}
    for i, ev in enumerate(s.events):
        for j, eff in enumerate(ev.effects):
            if eff.critical_error is not None and eff.critical_error not in crit:
                issues.append(_unknown(src, ("events", i, "effects", j, "critical_error"), "critical errors",
                                       eff.critical_error, crit, "rubric.critical_errors"))
    rel = s.demo.tool_relative_to
    if rel is not None and rel not in target_ids:
        issues.append(_unknown(src, ("demo", "tool_relative_to"), "targets", rel, target_ids, "targets"))
    for i, m in enumerate(s.rubric.metrics):
        if m.metric not in known_metrics:
            close = difflib.get_close_matches(m.metric, sorted(known_metrics), n=1, cutoff=0.6)
            issues.append(src.issue(("rubric", "metrics", i, "metric"),
                                    f"unknown metric '{m.metric}' for procedure '{s.procedure}'",
                                    (f"did you mean '{close[0]}'? " if close else "")
                                    + f"list them with vr-trainer metrics --procedure {s.procedure}"))
    return issues


def resolve_bundle_path(s: Scenario) -> Path:
    """The asset bundle folder a scenario names (relative to the file, else under assets/)."""
    found = find_bundle(s)
    if found is None:
        src: Path = s._source_dir or REPO_ROOT / "scenarios"
        raise ScenarioError(f"scenario '{s.id}': anatomy bundle '{s.anatomy.bundle}' not found "
                            f"(looked in {src} and {REPO_ROOT / 'assets'}); import one with `vr-trainer import`")
    return found


def find_bundle(s: Scenario) -> Path | None:
    """The bundle folder holding manifest.json, or None."""
    src: Path = s._source_dir or REPO_ROOT / "scenarios"
    for cand in (src / s.anatomy.bundle, REPO_ROOT / "assets" / s.anatomy.bundle, Path(s.anatomy.bundle)):
        try:
            if (cand / "manifest.json").is_file():
                return cand
        except (OSError, ValueError):  # a name too long for the file system, a NUL byte ...
            continue
    return None
