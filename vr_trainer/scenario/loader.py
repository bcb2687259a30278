"""Load scenario YAML with errors that name the file, line and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from vr_trainer.scenario.schema import Scenario

REPO_ROOT = Path(__file__).resolve().parents[2]


class ScenarioError(ValueError):
    """A scenario file is wrong; the message says where and what to do."""


def default_scenario_path() -> Path:
    return REPO_ROOT / "scenarios" / "pted_l4_l5.yaml"


def _locate(node: yaml.Node, loc: tuple[Any, ...]) -> yaml.Node:
    """Walk the YAML node tree along a pydantic error location."""
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == key:
                    nxt = v
                    break
            if nxt is None:
                return node
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            return node
    return node


def _field_name(loc: tuple[Any, ...]) -> str:
    out = ""
    for k in loc:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else str(k))
    return out or "(top level)"


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file; give a path to a .yaml scenario "
                            f"(the built-in default is {default_scenario_path()})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(f"{path}: cannot read the scenario file ({e})") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e)
        raise ScenarioError(f"{where}: not valid YAML: {problem}; fix the syntax at that line") from None
    if not isinstance(data, dict) or node is None:
        raise ScenarioError(f"{path}:1: a scenario must be a YAML mapping (format_version, id, title, ...)")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors()[:10]:
            loc = tuple(err["loc"])
            # pydantic appends the union/tagged member name for some errors; keep real keys only
            n = _locate(node, loc)
            line = n.start_mark.line + 1
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown field; remove it or check its spelling against the schema (vr-trainer validate --schema)"
            elif err["type"] == "missing":
                msg = "required field is missing; add it"
            lines.append(f"{path}:{line}: field '{_field_name(loc)}': {msg}")
        more = f" (and {len(e.errors()) - 10} more)" if len(e.errors()) > 10 else ""
        raise ScenarioError("\n".join(lines) + more) from None
    _check_references(scenario, path, node)
    scenario_dir = path.resolve().parent
    scenario._source_dir = scenario_dir
    return scenario


def _check_references(s: Scenario, path: Path, node: yaml.Node) -> None:
    inst_ids = {i.id for i in s.instruments}
    target_ids = {t.id for t in s.targets}
    for i, step in enumerate(s.steps):
        for j, inst in enumerate(step.instruments):
            if inst not in inst_ids:
                n = _locate(node, ("steps", i, "instruments", j))
                raise ScenarioError(f"{path}:{n.start_mark.line + 1}: field 'steps[{i}].instruments[{j}]': "
                                    f"'{inst}' is not one of the scenario's instruments {sorted(inst_ids)}")
    rel = s.demo.tool_relative_to
    if rel is not None and rel not in target_ids:
        n = _locate(node, ("demo", "tool_relative_to"))
        raise ScenarioError(f"{path}:{n.start_mark.line + 1}: field 'demo.tool_relative_to': "
                            f"'{rel}' is not one of the scenario's targets {sorted(target_ids)}")


def resolve_bundle_path(s: Scenario) -> Path:
    """The asset bundle folder a scenario names (relative to the file, else under assets/)."""
    src: Path = s._source_dir or REPO_ROOT / "scenarios"
    for cand in (src / s.anatomy.bundle, REPO_ROOT / "assets" / s.anatomy.bundle, Path(s.anatomy.bundle)):
        if (cand / "manifest.json").is_file():
            return cand
    raise ScenarioError(f"scenario '{s.id}': anatomy bundle '{s.anatomy.bundle}' not found "
                        f"(looked in {src} and {REPO_ROOT / 'assets'}); import one with `vr-trainer import`")
