"""The published JSON Schema stays what the pydantic models say; shipped files point editors at it."""

from __future__ import annotations

import json

import pytest

from vr_trainer.cli import main
from vr_trainer.scenario.loader import REPO_ROOT
from vr_trainer.scenario.validate import SCHEMA_ID, schema_text

SCHEMA = REPO_ROOT / "scenarios" / "schema.json"
SCENARIOS = sorted((REPO_ROOT / "scenarios").glob("*.yaml"))
MODELINE = "# yaml-language-server: $schema=schema.json"


def test_schema_json_is_current():
    assert SCHEMA.read_text(encoding="utf-8") == schema_text(), (
        "scenarios/schema.json is out of date with vr_trainer/scenario/schema.py; regenerate it with "
        "`vr-trainer validate --schema > scenarios/schema.json`")


def test_schema_json_describes_format_2(capsys):
    doc = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema" and doc["$id"] == SCHEMA_ID
    assert "format_version 2" in doc["title"] and doc["additionalProperties"] is False
    assert {"format_version", "id", "title", "procedure", "anatomy", "steps", "rubric", "demo"} <= set(doc["required"])
    assert doc["properties"]["format_version"]["const"] == 2
    step = doc["$defs"]["Step"]
    assert {"complete_when", "prompt", "id"} <= set(step["required"])
    assert "vr-trainer validate --help" in step["properties"]["complete_when"]["description"]
    assert main(["validate", "--schema"]) == 0
    assert capsys.readouterr().out == schema_text()


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_shipped_scenarios_carry_the_language_server_modeline(path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first == MODELINE, f"{path.name}: the first line must be '{MODELINE}' so editors check it"
    assert (path.parent / "schema.json").is_file()
