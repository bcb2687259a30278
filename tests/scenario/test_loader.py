"""Scenario files: the shipped ones load; mistakes are reported with file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from vr_trainer.cli import main
from vr_trainer.scenario.loader import ScenarioError, default_scenario_path, load_scenario

GOOD = default_scenario_path().read_text(encoding="utf-8")


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_default_scenario_loads():
    s = load_scenario(default_scenario_path())
    assert s.procedure == "pted" and s.steps and s.demo.head


def line_of(text: str, needle: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), 1) if needle in ln)


def test_wrong_type_names_file_line_and_field(tmp_path):
    bad = GOOD.replace("tolerance_mm: 3.0", "tolerance_mm: four")
    p = write(tmp_path, bad)
    with pytest.raises(ScenarioError) as e:
        load_scenario(p)
    msg = str(e.value)
    assert f"{p}:{line_of(bad, 'tolerance_mm: four')}:" in msg
    assert "targets[0].tolerance_mm" in msg


def test_unknown_field_and_missing_field(tmp_path):
    bad = GOOD.replace("procedure: pted", "procedure: pted\ncolour: blue").replace("format_version: 2\n", "")
    p = write(tmp_path, bad)
    with pytest.raises(ScenarioError) as e:
        load_scenario(p)
    msg = str(e.value)
    assert f":{line_of(bad, 'colour: blue')}: field 'colour': unknown field" in msg
    assert "field 'format_version': required field is missing" in msg


def test_yaml_syntax_error_has_line(tmp_path):
    bad = GOOD.replace("  en: \"PTED L4-L5", "  en: [\"PTED L4-L5")
    p = write(tmp_path, bad)
    with pytest.raises(ScenarioError, match=rf"{p}:\d+: not valid YAML"):
        load_scenario(p)


def test_step_referring_to_unknown_instrument(tmp_path):
    bad = GOOD.replace("instrument: needle", "instrument: scalpel")
    p = write(tmp_path, bad)
    with pytest.raises(ScenarioError) as e:
        load_scenario(p)
    assert f"{p}:{line_of(bad, 'instrument: scalpel')}: field 'steps[0].instrument'" in str(e.value)


def test_cli_validate_reports_without_traceback(tmp_path, capsys):
    p = write(tmp_path, GOOD.replace("fps: 30", "fps: -3"))
    assert main(["validate", str(p)]) == 1
    err = capsys.readouterr().err
    assert "demo.fps" in err and "Traceback" not in err
    assert main(["validate", str(default_scenario_path())]) == 0


def test_cli_run_bad_scenario_exits_2_with_one_clear_message(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.yaml"), "--backend", "headless", "--frames", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no such scenario file" in err
