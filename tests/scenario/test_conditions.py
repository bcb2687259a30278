"""The condition grammar: every documented example parses, mistakes are located, references are
checked with "did you mean" hints, evaluation reads the observation and is total."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vr_trainer.scenario.conditions import (GRAMMAR_HELP, MAX_DEPTH, MAX_LENGTH, Call, Compare, ConditionError,
                                            EvalContext, ScenarioNames, Within, check, evaluate, parse,
                                            referenced_structures, referenced_targets)
from vr_trainer.scenario.loader import REPO_ROOT, load_scenario
from vr_trainer.sim.observation import Observation

NAMES = ScenarioNames(
    targets=("kambin", "fragment", "anterior_cortex"),
    risk_structures={"exiting_root": "nerve_root_L4_exiting_left", "traversing_root": "nerve_root_L5_traversing_left",
                     "dural_sac": "dural_sac"},
    structures=("nerve_root_L4_exiting_left", "nerve_root_L5_traversing_left", "dural_sac", "herniation_L4_L5",
                "vertebra_L4"),
    steps=("needle_to_kambin", "cannula_to_fragment"), events=("root_contact", "root_close", "dural_breach"),
    instruments=("needle", "cannula"), metrics=("path_length_mm", "total_time_s"),
    target_structures={"fragment": "herniation_L4_L5"}, target_tolerance_mm={"kambin": 3.0, "fragment": 4.0},
    risk_margin_mm={"exiting_root": 2.0})


def examples() -> list[str]:
    text = GRAMMAR_HELP.split("Examples:")[1]
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def shipped_conditions() -> list[tuple[str, str]]:
    out = []
    for path in sorted((REPO_ROOT / "scenarios").glob("*.yaml")):
        s = load_scenario(path)
        out += [(path.name, st.complete_when) for st in s.steps] + [(path.name, e.when) for e in s.events]
    return out


@pytest.mark.parametrize("text", examples())
def test_every_grammar_example_parses_and_checks(text):
    assert len(examples()) >= 12
    ast = parse(text)
    assert check(ast, NAMES) == [], text


@pytest.mark.parametrize("name,text", shipped_conditions())
def test_shipped_conditions_parse_and_check(name, text):
    s = load_scenario(REPO_ROOT / "scenarios" / name)
    names = ScenarioNames.from_scenario(s, structures=None)
    assert check(parse(text), names) == []


@pytest.mark.parametrize("text,column,words", [
    ("reachd(kambin)", 1, "did you mean 'reached'"),
    ("all(reached(kambin), contact(exiting_root)", 43, "expected ')'"),
    ("shots >= ", 10, "expected a number"),
    ("shots", 6, "compare it with a number"),
    ("shots = 3", 7, "=="),
    ("reached(kambin) reached(fragment)", 17, "all(a, b)"),
    ("angle(axial) within [45, 25]", 14, "empty"),
    ("reached(kambin, -1)", 17, "negative"),
    ("removed(fragment) >= 1e999", 22, "too large"),
    ("contact(3)", 9, "expected a name"),
    ("", 1, "empty"),
    ("all()", 5, "expected a condition"),
    ("not(trigger, trigger)", 12, "expected ')'"),
    ("elapsed_s > 600 @", 17, "unexpected character '@'"),
])
def test_malformed_conditions_name_the_column(text, column, words):
    with pytest.raises(ConditionError) as e:
        parse(text)
    assert e.value.column == column, str(e.value)
    assert words in str(e.value)


def test_deep_nesting_and_long_conditions_are_refused_clearly():
    deep = "not(" * (MAX_DEPTH + 5) + "trigger" + ")" * (MAX_DEPTH + 5)
    with pytest.raises(ConditionError) as e:
        parse(deep)
    assert f"at most {MAX_DEPTH} deep" in str(e.value)
    assert e.value.column == 4 * MAX_DEPTH + 1
    parse("not(" * (MAX_DEPTH - 1) + "trigger" + ")" * (MAX_DEPTH - 1))  # at the bound: fine
    long = "any(" + ", ".join(["trigger"] * 600) + ")"
    assert len(long) > MAX_LENGTH
    with pytest.raises(ConditionError) as e:
        parse(long)
    assert "at most 4000" in str(e.value)
    huge = "(" * 100000  # never a RecursionError
    with pytest.raises(ConditionError):
        parse(huge)


def test_unknown_references_get_close_matches_at_their_column():
    errs = check(parse("all(reached(kambn), contact(exiting_rot), step_done(needle_to_kambim), holding(neddle))"),
                 NAMES)
    by_col = {e.column: e for e in errs}
    assert set(by_col) == {13, 29, 53, 80}
    assert "did you mean 'kambin'" in by_col[13].hint
    assert "did you mean 'exiting_root'" in by_col[29].hint
    assert "needle_to_kambin" in by_col[53].hint
    assert "needle" in by_col[80].hint
    (err,) = check(parse("metric(path_lenght_mm) > 3"), NAMES)
    assert "unknown metric" in err.message and "path_length_mm" in err.hint
    (err,) = check(parse("contact(kambin)"), ScenarioNames(targets=("kambin",)))
    assert "is a point, not a structure" in err.message
    assert check(parse("contact(vertebra_L4)"), NAMES) == []  # a bundle structure name
    assert check(parse("contact(anything)"), ScenarioNames(structures=None)) == []  # bundle unknown: not checked


def test_referenced_structures_and_targets_resolve_to_bundle_names():
    ast = parse("all(reached(kambin), not(contact(exiting_root)), distance(fragment) < 2, removed(fragment) > 5)")
    assert referenced_targets(ast, NAMES) == {"kambin", "fragment"}
    assert referenced_structures(ast, NAMES) == {"nerve_root_L4_exiting_left", "herniation_L4_L5"}
    assert referenced_structures(ast) == {"exiting_root", "fragment"}


def ctx_for(**obs) -> EvalContext:
    return EvalContext(Observation(time_s=1.0, dt_s=1 / 120, **obs))


def test_evaluation_reads_the_observation():
    near_root = ctx_for(target_distance_mm={"kambin": 2.5}, structure_distance_mm={"nerve_root_L4_exiting_left": 1.2})
    assert evaluate(parse("reached(kambin)"), near_root, NAMES)  # default tolerance 3 mm
    assert not evaluate(parse("reached(kambin, 2)"), near_root, NAMES)
    assert evaluate(parse("near(exiting_root)"), near_root, NAMES)
    assert not evaluate(parse("contact(exiting_root)"), near_root, NAMES)
    assert evaluate(parse("all(near(exiting_root), not(contact(exiting_root)))"), near_root, NAMES)
    touching = ctx_for(structure_distance_mm={"nerve_root_L4_exiting_left": -0.1})
    assert evaluate(parse("any(contact(traversing_root), contact(exiting_root))"), touching, NAMES)
    inside = ctx_for(tip_inside=frozenset({"dural_sac"}))
    assert evaluate(parse("inside(dural_sac)"), inside, NAMES)
    angled = ctx_for(angles_deg={"axial": 30.0}, shots=3, removed_pct={"herniation_L4_L5": 81.0}, trigger=0.9)
    assert evaluate(parse("all(angle(axial) within [25, 45], shots >= 3, removed(fragment) >= 80, trigger)"),
                    angled, NAMES)
    assert not evaluate(parse("angle(axial) within [35, 45]"), angled, NAMES)


def test_missing_values_are_far_and_never_raise():
    empty = ctx_for()
    for text, expected in [("reached(kambin, 100)", False), ("contact(exiting_root)", False),
                           ("near(exiting_root, 50)", False), ("distance(kambin) > 1000", True),
                           ("angle(axial) > 0", False), ("angle(axial) != 0", True), ("removed(fragment) > 0", False),
                           ("count(root_contact) == 0", True), ("metric(path_length_mm) < 5", False)]:
        assert evaluate(parse(text), empty, NAMES) is expected, text


def test_engine_state_references():
    c = ctx_for(instrument_id="needle")
    c.steps_done.add("needle_to_kambin")
    c.fired_count["root_contact"] = 2
    c.step_actions.add("carm_shot")
    c.elapsed_s, c.step_elapsed_s = 700.0, 31.0
    assert evaluate(parse("all(step_done(needle_to_kambin), not(step_failed(needle_to_kambin)), fired(root_contact),"
                          " count(root_contact) >= 2, holding(needle), action(carm_shot), elapsed_s > 600,"
                          " step_elapsed_s > 30)"), c, NAMES)
    assert not evaluate(parse("any(fired(dural_breach), holding(cannula), action(next_instrument))"), c, NAMES)


def test_ast_shapes_and_help_text():
    ast = parse("  distance( exiting_root ) <= 1.5 ")
    assert isinstance(ast, Compare) and ast.op == "<=" and ast.number == 1.5 and ast.value.arg_col == 13
    w = parse("angle(craniocaudal) within [-5, 1e1]")
    assert isinstance(w, Within) and (w.low, w.high) == (-5.0, 10.0)
    c = parse("near(exiting_root, 2.5)")
    assert isinstance(c, Call) and c.number == 2.5
    for fn in ("reached", "inside", "contact", "near", "step_done", "fired", "holding", "action", "trigger",
               "distance", "removed", "angle", "count", "metric", "shots", "fluoro_time_s", "step_elapsed_s"):
        assert re.search(rf"\b{fn}\b", GRAMMAR_HELP), fn


ALPHABET = "()[],<>=!.-+e 0123456789 reached contact all any not within shots angle axial kambin trigger \t\n@;"


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=120) | st.lists(st.sampled_from(
    ["all(", "any(", "not(", "reached(kambin", "contact(exiting_root", ",", ")", "shots", ">=", "3", "within",
     "[", "]", "1e999", "-", "trigger", "angle(axial)", " "]), max_size=40).map("".join))
def test_any_text_parses_or_gives_a_located_error(text):
    try:
        ast = parse(text)
    except ConditionError as e:
        assert 1 <= e.column <= len(text) + 1 and e.message
    else:
        check(ast, NAMES)
        evaluate(ast, ctx_for(), NAMES)


def test_procedure_angles_are_known_to_its_scenarios():
    from vr_trainer.scenario import conditions as C
    s = load_scenario(REPO_ROOT / "scenarios" / "pted_l4_l5.yaml")
    ast = parse("angle(test_only_bevel) within [0, 30]")
    (err,) = check(ast, ScenarioNames.from_scenario(s))
    assert "unknown angle" in err.message and "axial" in err.hint
    saved = dict(C.PROCEDURE_ANGLES)
    C.register_angles("pted", ["test_only_bevel"])
    try:
        assert check(ast, ScenarioNames.from_scenario(s)) == []
        assert "test_only_bevel" not in C.angles_for("tka")
    finally:
        C.PROCEDURE_ANGLES.clear()
        C.PROCEDURE_ANGLES.update(saved)
