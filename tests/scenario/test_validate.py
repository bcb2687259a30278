"""Checks against the anatomy bundle, and the `validate` / `metrics` / `run` command lines."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vr_trainer.cli import main
from vr_trainer.scenario.conditions import GRAMMAR_HELP
from vr_trainer.scenario.loader import REPO_ROOT, load_scenario_checked
from vr_trainer.scenario.metrics import metrics_for
from vr_trainer.scenario.validate import validate_file

SCENARIOS = sorted((REPO_ROOT / "scenarios").glob("*.yaml"))
PTED = (Path(__file__).parent / "data" / "pted_two_steps.yaml").read_text(encoding="utf-8")
TKA = (REPO_ROOT / "tests" / "scenario" / "data" / "tka_touch.yaml").read_text(encoding="utf-8")


def line_of(text: str, needle: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), 1) if needle in ln)


def issues_for(tmp_path: Path, text: str, name: str = "s.yaml") -> list:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    scenario, issues = validate_file(p)
    return issues


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_shipped_scenarios_are_consistent_with_their_bundles(path):
    scenario, issues = validate_file(path)
    assert scenario is not None and issues == []


def test_unknown_bundle_structure_gets_the_close_names(tmp_path):
    bad = PTED.replace("structure: nerve_root_L4_exiting_left", "structure: nerve_root_L4_exit_left")
    (issue,) = issues_for(tmp_path, bad)
    assert issue.field == "risk_structures[0].structure" and issue.line == line_of(bad, "nerve_root_L4_exit_left")
    assert issue.message == "the bundle has no structure 'nerve_root_L4_exit_left'"
    assert "'nerve_root_L4_exiting_left'" in issue.hint


def test_missing_landmark_and_hidden_structure(tmp_path):
    bad = PTED.replace("landmark: kambin_triangle_L4_L5_left", "landmark: kambin_L4_L5_left").replace(
        "  patient_orientation: prone", "  patient_orientation: prone\n  hide: [spleen]")
    by_field = {i.field: i for i in issues_for(tmp_path, bad)}
    assert by_field["targets[0].landmark"].message == "the bundle has no landmark 'kambin_L4_L5_left'"
    assert "kambin_triangle_L4_L5_left" in by_field["targets[0].landmark"].hint
    assert by_field["anatomy.hide[0]"].message == "the bundle has no structure 'spleen' to hide"


def test_level_and_side_must_match_the_landmarks(tmp_path):
    bad = PTED.replace("level: L4-L5", "level: L2-L3")
    by_field = {i.field: i for i in issues_for(tmp_path, bad)}
    assert by_field["anatomy.level"].message == "the bundle has no level L2-L3"
    assert by_field["anatomy.level"].hint == "its levels: L3-L4, L4-L5, L5-S1"
    assert "is at level L4-L5, the scenario operates at L2-L3" in by_field["targets[0].landmark"].message
    bad = PTED.replace("landmark: kambin_triangle_L4_L5_left", "landmark: kambin_triangle_L4_L5_right")
    (issue,) = issues_for(tmp_path, bad)
    assert "is on the right side, the scenario operates on the left" in issue.message
    bad = TKA.replace("side: right", "side: left")
    (issue,) = issues_for(tmp_path, bad)
    assert issue.field == "anatomy.side" and "the bundle is a right side" in issue.message


def test_point_target_outside_the_anatomy(tmp_path):
    bad = TKA.replace("point_mm: [0.0, 15.1, 60.0]", "point_mm: [0.0, 151, 60.0]")  # cm typed as mm
    (issue,) = issues_for(tmp_path, bad)
    assert issue.field == "targets[0].point_mm" and issue.line == line_of(bad, "point_mm: [0.0, 151")
    assert issue.message.startswith("the point lies outside the anatomy (y 151 not in [")
    near = TKA.replace("point_mm: [0.0, 15.1, 60.0]", "point_mm: [0.0, 30.0, 60.0]")  # on the skin side: fine
    assert issues_for(tmp_path, near) == []


def test_conditions_naming_bundle_structures(tmp_path):
    fine = PTED.replace('when: "inside(dural_sac)"', 'when: "inside(disc_L4_L5)"')
    assert issues_for(tmp_path, fine) == []
    bad = PTED.replace('when: "inside(dural_sac)"', 'when: "inside(dura)"')
    (issue,) = issues_for(tmp_path, bad)
    assert issue.field == "events[2].when" and "'dura' is not a risk structure" in issue.message
    row = bad.splitlines()[line_of(bad, "inside(dura)") - 1]
    assert issue.col == row.index("dura)") + 1 and "dural_sac" in issue.hint


def test_overlay_names_something_that_exists(tmp_path):
    bad = PTED.replace("      - sound: pain", "      - sound: pain\n      - overlay: {structure: nerve_root_L9}")
    (issue,) = issues_for(tmp_path, bad)
    assert issue.field == "events[0].effects[3].overlay.structure"
    ok = PTED.replace("      - sound: pain", "      - sound: pain\n      - overlay: {structure: exiting_root}")
    assert issues_for(tmp_path, ok) == []


def test_missing_bundle_is_located_on_the_bundle_line(tmp_path):
    bad = PTED.replace("bundle: spine_l3_s1", "bundle: spine_l3_s2")
    (issue,) = issues_for(tmp_path, bad)
    assert (issue.field, issue.line) == ("anatomy.bundle", line_of(bad, "spine_l3_s2"))
    assert "'spine_l3_s1'" in issue.hint


def test_only_the_manifest_is_read(tmp_path):
    """A bundle folder next to the scenario with the manifest and no meshes validates."""
    (tmp_path / "mybundle").mkdir()
    shutil.copy(REPO_ROOT / "assets" / "spine_l3_s1" / "manifest.json", tmp_path / "mybundle" / "manifest.json")
    assert issues_for(tmp_path, PTED.replace("bundle: spine_l3_s1", "bundle: mybundle")) == []


def test_spine_procedure_without_level_is_a_warning_not_an_error(tmp_path, capsys):
    text = PTED.replace("  level: L4-L5\n", "")
    (issue,) = issues_for(tmp_path, text)
    assert issue.severity == "warning" and "should say the level" in issue.message
    assert main(["validate", str(tmp_path / "s.yaml")]) == 0
    out = capsys.readouterr()
    assert "warning: a pted scenario should say the level" in out.err and "ok (pted_l4_l5" in out.out


def test_cli_json_lists_located_issues_of_every_file(tmp_path, capsys):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(PTED.replace('"reached(kambin)"', '"reached(kambim)"'), encoding="utf-8")
    b.write_text(TKA.replace("side: right", "side: left"), encoding="utf-8")
    good = REPO_ROOT / "scenarios" / "tha_hip.yaml"
    assert main(["validate", "--format", "json", str(a), str(good), str(b)]) == 1
    got = json.loads(capsys.readouterr().out)
    assert [(g["file"], g["field"], g["severity"]) for g in got] == [
        (str(a), "steps[0].complete_when", "error"), (str(b), "anatomy.side", "error")]
    assert set(got[0]) == {"file", "line", "col", "field", "message", "hint", "severity"}
    assert got[0]["hint"] == "did you mean 'kambin'?"
    assert main(["validate", "--format", "json", str(good)]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_cli_usage_errors_exit_2_and_help_shows_the_grammar(capsys):
    assert main(["validate"]) == 2
    assert "give one or more scenario files" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["validate", "--format", "xml", "x.yaml"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["validate", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "within [number, number]" in out and "reached(TARGET [, mm])" in out
    assert GRAMMAR_HELP.splitlines()[0] in out


def test_cli_metrics_lists_name_unit_definition_source(capsys):
    assert main(["metrics", "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    names = {m["name"] for m in listed}
    assert {"total_time_s", "path_length_mm", "risk_contacts", "target_error_mm", "fluoro_shots"} <= names
    assert all(m["unit"] and len(m["definition"]) > 20 and len(m["source"]) > 20 for m in listed)
    assert main(["metrics", "--procedure", "tka"]) == 0
    text = capsys.readouterr().out
    for d in metrics_for("tka"):
        assert f"{d.name} [{d.unit}]" in text
    with pytest.raises(SystemExit):
        main(["metrics", "--procedure", "cardiac"])


def test_run_on_an_invalid_scenario_prints_the_same_errors_and_writes_nothing(tmp_path, capsys):
    p = tmp_path / "bad.yaml"
    p.write_text(PTED.replace("tolerance_mm: 3.0", "tolerance_mm: four").replace(
        '"reached(kambin)"', '"reached(kambin"'), encoding="utf-8")
    _, issues = load_scenario_checked(p)
    assert len(issues) == 2
    out = tmp_path / "out"
    assert main(["run", str(p), "--backend", "headless", "--frames", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for issue in issues:
        assert str(issue) in err
    assert not out.exists()
    assert main(["validate", str(p)]) == 1
    assert capsys.readouterr().err.splitlines() == [str(i) for i in issues]


def test_a_landmark_target_needs_a_position(tmp_path):
    tha = (REPO_ROOT / "tests" / "scenario" / "data" / "tha_reach.yaml").read_text(encoding="utf-8")
    bad = tha.replace("point_mm: [88.0, 0.0, 0.0]", "landmark: hip_center_right_mm")
    (issue,) = issues_for(tmp_path, bad)
    assert issue.field == "targets[0].landmark"
    assert issue.message == "landmark 'hip_center_right_mm' has no position (incenter_mm or centroid_mm)"
    assert issue.hint == "give the point instead: point_mm: [88, 0, 0]"


def test_run_refuses_a_scenario_the_bundle_checks_reject(tmp_path, capsys):
    p = tmp_path / "typo.yaml"
    p.write_text(PTED.replace("structure: nerve_root_L4_exiting_left", "structure: nerve_root_L4_exit_left"),
                 encoding="utf-8")
    out = tmp_path / "out"
    assert main(["run", str(p), "--backend", "headless", "--frames", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {p}:{line_of(PTED, 'nerve_root_L4_exiting_left')}:16: risk_structures[0].structure: "
                   "the bundle has no structure 'nerve_root_L4_exit_left' (hint: did you mean "
                   "'nerve_root_L4_exiting_left' or 'nerve_root_L5_exiting_left'?)\n")
    assert not out.exists()


def test_warnings_for_an_unraised_critical_error_and_a_late_hint(tmp_path, capsys):
    text = PTED.replace("      - critical_error: dural_tear\n", "").replace("after_s: 45", "after_s: 150")
    issues = issues_for(tmp_path, text)
    assert [(i.field, i.severity) for i in issues] == [("steps[0].hints[0].after_s", "warning"),
                                                        ("rubric.critical_errors[0].id", "warning")]
    assert issues[1].message == "no event raises critical error 'dural_tear'"
    assert "when the step is already overtime (time_allowance_s: 120)" in issues[0].message
    assert main(["validate", str(tmp_path / "s.yaml")]) == 0  # warnings do not fail validation
    assert "warning: no event raises critical error 'dural_tear'" in capsys.readouterr().err
