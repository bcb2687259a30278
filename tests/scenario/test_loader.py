"""Scenario files: the shipped ones load; mistakes are reported as file:line:col: field: message (hint)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vr_trainer.cli import main
from vr_trainer.scenario.issues import MAX_ISSUES
from vr_trainer.scenario.loader import ScenarioError, default_scenario_path, load_scenario
from vr_trainer.scenario.source import MAX_DEPTH, MAX_NODES

TWO_STEPS = Path(__file__).parent / "data" / "pted_two_steps.yaml"  # a frozen two-step PTED scenario

GOOD = TWO_STEPS.read_text(encoding="utf-8")


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def errors_of(tmp_path: Path, text: str) -> ScenarioError:
    p = write(tmp_path, text)
    with pytest.raises(ScenarioError) as e:
        load_scenario(p)
    assert e.value.issues, "a file problem must come with located issues"
    return e.value


def line_of(text: str, needle: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), 1) if needle in ln)


def col_of(text: str, needle: str) -> int:
    """1-based column where ``needle`` starts on its line."""
    return text.splitlines()[line_of(text, needle) - 1].index(needle) + 1


def test_default_scenario_loads():
    s = load_scenario(default_scenario_path())
    assert s.procedure == "pted" and s.steps and s.demo.head
    assert s.steps[0].complete_when == "reached(kambin)" and s.rubric.metrics
    assert [st.id for st in s.steps][:2] == ["needle_to_kambin", "guidewire"]


def test_wrong_type_names_file_line_col_and_field(tmp_path):
    bad = GOOD.replace("tolerance_mm: 3.0", "tolerance_mm: four")
    err = errors_of(tmp_path, bad)
    p = tmp_path / "s.yaml"
    line, col = line_of(bad, "tolerance_mm: four"), col_of(bad, "four")
    assert f"{p}:{line}:{col}: targets[0].tolerance_mm: Input should be a valid number" in str(err)
    assert "(hint: write a plain number" in str(err)
    (issue,) = err.issues
    assert (issue.line, issue.col, issue.field) == (line, col, "targets[0].tolerance_mm")


def test_unknown_field_and_missing_field_both_reported(tmp_path):
    bad = GOOD.replace("procedure: pted", "procedure: pted\ncolour: blue").replace("format_version: 2\n", "")
    msg = str(errors_of(tmp_path, bad))
    assert f":{line_of(bad, 'colour: blue')}:1: colour: unknown field" in msg
    assert "format_version: required field is missing (hint: add 'format_version:'" in msg


def test_misspelt_field_gets_a_did_you_mean(tmp_path):
    bad = GOOD.replace("    cooldown_s: 5", "    cooldwn_s: 5")
    (issue,) = errors_of(tmp_path, bad).issues
    assert issue.field == "events[1].cooldwn_s" and issue.line == line_of(bad, "cooldwn_s")
    assert issue.hint == "did you mean 'cooldown_s'?"


def test_yaml_syntax_error_has_line_and_col(tmp_path):
    bad = GOOD.replace("  en: \"PTED L4-L5", "  en: [\"PTED L4-L5")
    p = write(tmp_path, bad)
    with pytest.raises(ScenarioError, match=rf"{p}:\d+:\d+: \(syntax\): not valid YAML") as e:
        load_scenario(p)
    assert e.value.issues[0].line >= line_of(bad, '["PTED L4-L5')


def test_tab_indentation_says_use_spaces(tmp_path):
    bad = GOOD.replace("  level: L4-L5", "\tlevel: L4-L5")
    (issue,) = errors_of(tmp_path, bad).issues
    assert issue.line == line_of(bad, "\tlevel") and "spaces, not tabs" in issue.hint


def test_step_referring_to_unknown_instrument(tmp_path):
    bad = GOOD.replace("instruments: [needle]", "instruments: [scalpel]")
    p = tmp_path / "s.yaml"
    msg = str(errors_of(tmp_path, bad))
    assert (f"{p}:{line_of(bad, '[scalpel]')}:{col_of(bad, 'scalpel')}: steps[0].instruments[0]: "
            "'scalpel' is not one of the scenario's instruments") in msg


def test_every_problem_is_reported_not_just_the_first(tmp_path):
    bad = (GOOD.replace("tolerance_mm: 3.0", "tolerance_mm: four")
           .replace("severity: critical", "severity: fatal", 1)
           .replace("fps: 30", "fps: -3"))
    fields = {i.field for i in errors_of(tmp_path, bad).issues}
    assert {"targets[0].tolerance_mm", "risk_structures[0].severity", "demo.fps"} <= fields


def test_issues_are_capped_with_a_count(tmp_path):
    keys = "".join(f"    - {{t_s: {i}, position_mm: [0, 0], look_at_mm: [0, 0, 0]}}\n" for i in range(200))
    bad = GOOD.replace("  head:\n", "  head:\n" + keys, 1)
    issues = errors_of(tmp_path, bad).issues
    assert len(issues) == MAX_ISSUES
    assert issues[-1].field == "(more)" and "more problems are not shown" in issues[-1].message


def test_condition_error_column_points_inside_the_string(tmp_path):
    bad = GOOD.replace('complete_when: "reached(kambin)"', 'complete_when: "reached(kambim)"')
    (issue,) = errors_of(tmp_path, bad).issues
    assert (issue.line, issue.col) == (line_of(bad, "kambim"), col_of(bad, "kambim"))
    assert issue.field == "steps[0].complete_when" and "unknown target 'kambim'" in issue.message
    assert issue.hint == "did you mean 'kambin'?"


def test_condition_syntax_error_in_a_plain_scalar(tmp_path):
    bad = GOOD.replace('when: "inside(dural_sac)"', "when: inside(dural_sac) >")
    (issue,) = errors_of(tmp_path, bad).issues
    assert issue.field == "events[2].when" and issue.line == line_of(bad, "inside(dural_sac) >")
    assert issue.col == col_of(bad, ">") and "unexpected '>'" in issue.message


def test_undeclared_critical_error_and_unknown_metric(tmp_path):
    bad = GOOD.replace("critical_error: dural_tear", "critical_error: dural_teer").replace(
        "metric: path_length_mm", "metric: path_lenght_mm")
    by_field = {i.field: i for i in errors_of(tmp_path, bad).issues}
    crit = by_field["events[2].effects[2].critical_error"]
    assert "'dural_teer' is not one of the scenario's critical errors" in crit.message
    metric = by_field["rubric.metrics[5].metric"]
    assert metric.message == "unknown metric 'path_lenght_mm' for procedure 'pted'"
    assert metric.hint.startswith("did you mean 'path_length_mm'?") and "vr-trainer metrics" in metric.hint


def test_duplicate_ids_and_duplicate_keys(tmp_path):
    scope = "  - {id: scope, kind: endoscope}"
    bad = GOOD.replace(scope, scope + "\n  - {id: needle, kind: drill}")
    (issue,) = errors_of(tmp_path, bad).issues
    assert issue.field == "instruments[5].id" and "declared twice" in issue.message
    bad = GOOD.replace("procedure: pted", "procedure: pted\nprocedure: tka")
    (issue,) = errors_of(tmp_path, bad).issues
    assert issue.line == line_of(bad, "procedure: tka") and issue.field == "procedure"
    assert f"given twice (first at line {line_of(bad, 'procedure: pted')})" in issue.message


def test_format_1_file_gets_one_migration_message(tmp_path):
    bad = GOOD.replace("format_version: 2", "format_version: 1")
    (issue,) = errors_of(tmp_path, bad).issues
    assert issue.field == "format_version" and issue.line == line_of(bad, "format_version: 1")
    assert "format 1" in issue.message and "complete_when" in issue.message and "rubric" in issue.message
    assert "scenarios/pted_l4_l5.yaml" in issue.hint


def test_nan_and_overflowing_numbers_are_refused(tmp_path):
    for text in (".nan", "1e999", "-.inf"):
        bad = GOOD.replace("margin_mm: 2.0", f"margin_mm: {text}", 1)
        (issue,) = errors_of(tmp_path, bad).issues
        assert issue.field == "risk_structures[0].margin_mm" and "finite" in issue.message
    bad = GOOD.replace("margin_mm: 2.0", "margin_mm: " + "9" * 5000, 1)
    (issue,) = errors_of(tmp_path, bad).issues
    assert issue.field == "risk_structures[0].margin_mm" and "5000 digits" in issue.message


def test_limits_big_file_alias_bomb_recursion_depth(tmp_path):
    big = GOOD + "#" * (1 << 20)
    (issue,) = errors_of(tmp_path, big).issues
    assert (issue.line, issue.field) == (1, "(file)") and "limited to 1 MiB" in issue.message
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    (issue,) = errors_of(tmp_path, "\n".join(lines)).issues
    assert issue.field == "(limits)" and f"more than {MAX_NODES} values" in issue.message and issue.line <= 6
    (issue,) = errors_of(tmp_path, "a: &a [1, *a]\n").issues
    assert "recursive alias" in issue.message
    deep = "a:\n" + "".join("  " * (d + 1) + f"k{d}:\n" for d in range(MAX_DEPTH + 5))
    (issue,) = errors_of(tmp_path, deep).issues
    assert f"more than {MAX_DEPTH} levels deep" in issue.message


def test_not_a_mapping_and_not_utf8(tmp_path):
    (issue,) = errors_of(tmp_path, "- a\n- b\n").issues
    assert "must be a YAML mapping" in issue.message and "a list" in issue.message
    p = tmp_path / "s.yaml"
    p.write_bytes(GOOD.encode().replace(b"author: vr_trainer", "author: J\xfcrgen".encode("latin-1")))
    with pytest.raises(ScenarioError) as e:
        load_scenario(p)
    (issue,) = e.value.issues
    assert (issue.line, issue.col) == (line_of(GOOD, "author:"), len("author: J") + 1)
    assert "not UTF-8" in issue.message


def test_cli_validate_reports_without_traceback(tmp_path, capsys):
    p = write(tmp_path, GOOD.replace("fps: 30", "fps: -3"))
    assert main(["validate", str(p)]) == 1
    err = capsys.readouterr().err
    assert f"{p}:{line_of(GOOD, 'fps: 30')}:8: demo.fps: Input should be greater than 0" in err
    assert "Traceback" not in err
    assert main(["validate", str(default_scenario_path())]) == 0


def test_cli_run_missing_scenario_exits_2_with_one_clear_message(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.yaml"), "--backend", "headless", "--frames", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no such scenario file" in err and err.count("\n") == 1


def test_key_that_yaml_reads_as_a_number_or_boolean(tmp_path):
    for key, kind in (("1", "an integer"), ("yes", "a boolean (true/false)")):
        bad = GOOD.replace("procedure: pted", f"procedure: pted\n{key}: x")
        (issue,) = errors_of(tmp_path, bad).issues
        assert (issue.line, issue.col, issue.field) == (line_of(bad, f"{key}: x"), 1, key)
        assert issue.message == f"key '{key}' is read as {kind}, not a field name"


def test_condition_column_inside_a_literal_block(tmp_path):
    bad = GOOD.replace('when: "inside(dural_sac)"',
                       "when: |\n      any(\n        inside(dural_sac),\n        fired(root_contct))")
    (issue,) = errors_of(tmp_path, bad).issues
    assert (issue.line, issue.col) == (line_of(bad, "root_contct)"), col_of(bad, "root_contct)"))
    assert issue.message == "condition: unknown event 'root_contct'"


def test_anchors_and_merge_keys_are_plain_yaml_and_allowed(tmp_path):
    text = GOOD.replace("  - id: needle_to_kambin\n", "  - &first\n    id: needle_to_kambin\n").replace(
        "  - id: cannula_to_fragment\n", "  - <<: *first\n    id: cannula_to_fragment\n")
    p = write(tmp_path, text)
    s = load_scenario(p)
    assert [st.id for st in s.steps] == ["needle_to_kambin", "cannula_to_fragment"]
    assert s.steps[1].complete_when == "reached(fragment)"


def test_tagged_values_yaml_cannot_build_are_located(tmp_path):
    for tag, message in (("!!bool maybe", "cannot read 'maybe' as bool"),
                         ("!!timestamp abc", "cannot read 'abc' as timestamp"),
                         ("!!python/object:os.system x", "could not determine a constructor")):
        bad = GOOD.replace("author: vr_trainer", f"author: {tag}")
        (issue,) = errors_of(tmp_path, bad).issues
        assert (issue.line, issue.col, issue.field) == (line_of(bad, tag), col_of(bad, "!!"), "author")
        assert issue.message.startswith(message)


def test_the_old_shipped_format_1_file_gets_exactly_the_migration_message():
    old = Path(__file__).parent / "data" / "pted_format1.yaml"  # scenarios/pted_l4_l5.yaml before format 2
    with pytest.raises(ScenarioError) as e:
        load_scenario(old)
    (issue,) = e.value.issues
    assert issue.field == "format_version" and issue.line == line_of(old.read_text(encoding="utf-8"), "format_version")
    assert str(e.value).startswith(f"{old}:{issue.line}:17: format_version: this is a format 1 scenario")


def test_condition_column_counts_escapes_in_a_double_quoted_string(tmp_path):
    bad = GOOD.replace('complete_when: "reached(kambin)"', 'complete_when: "\\u0072eached(kambim)"')
    (issue,) = errors_of(tmp_path, bad).issues
    assert (issue.line, issue.col) == (line_of(bad, "kambim"), col_of(bad, "kambim"))
