"""`vr-trainer new-scenario`: valid, commented scenarios from each shipped bundle's own geometry;
clear errors (exit 2, nothing written) when the bundle or the options cannot make one."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from vr_trainer.anatomy.bundle import load_bundle
from vr_trainer.cli import main
from vr_trainer.scenario.conditions import ScenarioNames, parse, referenced_structures
from vr_trainer.scenario.loader import load_scenario

REPO = Path(__file__).resolve().parents[2]
SPINE = str(REPO / "assets/spine_l3_s1")
CASES = {
    "pted_left": ["--procedure", "pted", "--bundle", SPINE, "--level", "L4-L5", "--side", "left"],
    "pted_right": ["--procedure", "pted", "--bundle", SPINE, "--level", "L4-L5", "--side", "right"],
    "tka": ["--procedure", "tka", "--bundle", str(REPO / "assets/knee")],
    "tha": ["--procedure", "tha", "--bundle", "hip", "--side", "right"],  # a name under assets/ works too
}


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("authored")
    out = {}
    for name, args in CASES.items():
        p = d / "sub" / f"{name}.yaml"
        assert main(["new-scenario", *args, "--out", str(p)]) == 0
        out[name] = p
    return out


def _bundle(path: Path):
    s = load_scenario(path)
    from vr_trainer.scenario.loader import resolve_bundle_path

    return s, load_bundle(resolve_bundle_path(s))


@pytest.mark.parametrize("case", list(CASES))
def test_written_scenario_loads_and_names_only_what_the_bundle_has(written, case):
    s, b = _bundle(written[case])
    names = set(b.names())
    assert {r.structure for r in s.risk_structures} <= names
    assert {t.structure for t in s.targets if t.structure} <= names
    assert {t.landmark for t in s.targets if t.landmark} <= set(b.landmarks)
    assert set(s.anatomy.hide) <= names
    sn = ScenarioNames.from_scenario(s, structures=names, with_metrics=False)
    for cond in [st.complete_when for st in s.steps] + [e.when for e in s.events]:
        assert referenced_structures(parse(cond), sn) <= names, cond
    assert len(s.steps) >= 2 and all(st.hints for st in s.steps)
    assert any(any(eff.haptic for eff in e.effects) and any(eff.prompt for eff in e.effects) for e in s.events)


@pytest.mark.parametrize("case", list(CASES))
def test_rubric_names_registered_metrics(written, case):
    metrics = pytest.importorskip("vr_trainer.scenario.metrics")
    s = load_scenario(written[case])
    known = {m.name for m in metrics.metrics_for(s.procedure)}
    assert {m.metric for m in s.rubric.metrics} <= known


def test_pted_roots_follow_level_and_side(written):
    left, _ = _bundle(written["pted_left"])
    right, _ = _bundle(written["pted_right"])
    for s, side in ((left, "left"), (right, "right")):
        assert {r.structure for r in s.risk_structures} == {
            f"nerve_root_L4_exiting_{side}", f"nerve_root_L5_traversing_{side}", "dural_sac"}
    assert [t.landmark for t in left.targets][0] == "kambin_triangle_L4_L5_left"
    assert [t.landmark for t in right.targets][0] == "kambin_triangle_L4_L5_right"
    # the bundle's herniation lies on the left: the left approach targets it, the right one the disc
    assert left.targets[1].structure == "herniation_L4_L5"
    assert right.targets[1].structure == "disc_L4_L5"
    # the resident stands on the approach side: patient's left is room -z when prone
    assert left.demo.head[0].position_mm[2] < -150 < 150 < right.demo.head[0].position_mm[2]


def test_tka_workflow_from_any_knee_bundle_is_run_by_its_expert(written, tmp_path):
    """The phantom knee (capsule bones, no soft tissue) gets the whole gap-balanced workflow, and the
    expert autopilot, planned from its own bones, passes it."""
    from vr_trainer.app.autopilot_cohort import run_autopilot_unrendered

    s, b = _bundle(written["tka"])
    assert s.procedure == "tka" and s.tka is not None and s.anatomy.side == "right"
    assert [st.id for st in s.steps][:2] == ["distal_block", "distal_cut"] and len(s.steps) == 10
    assert not s.risk_structures  # the phantom has no derived soft tissue: none invented
    assert "tka_bundle" in written["tka"].read_text(encoding="utf-8")  # the comment says how to derive it
    fast = tmp_path / "tka10.yaml"
    data = yaml.safe_load(written["tka"].read_text(encoding="utf-8"))
    data["demo"]["fps"] = 10
    data["anatomy"]["bundle"] = str(REPO / "assets" / "knee")
    fast.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    e = run_autopilot_unrendered(fast, "expert")
    assert e["passed"] and e["score"] >= 90 and all(st["completed"] for st in e["steps"]), e["fail_reasons"]


def test_tha_workflow_from_a_hip_bundle_is_run_by_its_expert(written, tmp_path):
    """The hip phantom gets the reaming and cup workflow, sized and aimed from its own bones (with or
    without its landmarks), and the expert autopilot, planned from the bones, passes it."""
    from vr_trainer.app.autopilot_cohort import run_autopilot_unrendered

    s, b = _bundle(written["tha"])
    assert s.procedure == "tha" and s.tha is not None and s.anatomy.side == "right"
    assert [st.id for st in s.steps] == ["ream", "impact_cup"]
    assert {i.kind for i in s.instruments} == {"acetabular_reamer", "cup_impactor"}
    assert set(s.anatomy.hide) == {"femur_right", "cartilage_femoral_head_right"}
    centre = np.asarray(b.landmarks["hip_center_right_mm"])
    assert np.linalg.norm(np.subtract(s.targets[0].point_mm, centre)) < 0.5  # the fitted native centre
    assert 50 <= s.tha.reamer_diameter_mm == s.tha.cup_diameter_mm <= 60
    # without the landmarks the same scenario comes from the bone alone
    bare = tmp_path / "hip_bare"
    shutil.copytree(REPO / "assets/hip", bare)
    m = json.loads((bare / "manifest.json").read_text())
    m.pop("landmarks")
    (bare / "manifest.json").write_text(json.dumps(m))
    out = tmp_path / "fit.yaml"
    assert main(["new-scenario", "--procedure", "tha", "--bundle", str(bare), "--side", "right",
                 "--out", str(out)]) == 0
    fit = load_scenario(out)
    assert np.linalg.norm(np.subtract(fit.targets[0].point_mm, s.targets[0].point_mm)) < 0.2
    fast = tmp_path / "tha10.yaml"
    data = yaml.safe_load(written["tha"].read_text(encoding="utf-8"))
    data["demo"]["fps"] = 10
    data["anatomy"]["bundle"] = str(REPO / "assets" / "hip")
    data["risk_structures"] = []  # the sacrum's distance grids: most of a build, in no rubric metric
    fast.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    e = run_autopilot_unrendered(fast, "expert")
    assert e["passed"] and e["score"] >= 90 and all(st["completed"] for st in e["steps"]), e["fail_reasons"]


def test_file_is_commented_with_the_schema_modeline(written):
    p = written["pted_left"]
    lines = p.read_text(encoding="utf-8").splitlines()
    m = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", lines[0])
    assert m, lines[0]
    assert (p.parent / m.group(1)).resolve() == (REPO / "scenarios" / "schema.json").resolve()
    top = [i for i, line in enumerate(lines) if re.match(r"^(anatomy|instruments|targets|risk_structures|steps|events|"
                                                          r"rubric|carm|demo):", line)]
    assert len(top) == 9
    for i in top:
        assert lines[i - 1].startswith("#"), f"no comment before {lines[i]!r}"
    data = yaml.safe_load(p.read_text(encoding="utf-8"))
    assert data["anatomy"]["bundle"] == "spine_l3_s1"


def test_demo_completes_the_first_step(written, tmp_path):
    assert main(["run", str(written["pted_right"]), "--backend", "headless", "--size", "32x24",
                 "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "needle_to_kambin" in summary["steps_completed"]


@pytest.mark.parametrize("case", ["pted_left", "tka", "tha"])
def test_runs_headless(written, case, tmp_path):
    assert main(["run", str(written[case]), "--backend", "headless", "--frames", "3", "--size", "32x24",
                 "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "summary.json").read_text())["frames"] == 3


def _err(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_bundle_without_roots_is_a_clear_error(tmp_path, capsys):
    b = tmp_path / "spine_no_roots"
    shutil.copytree(REPO / "assets/spine_l3_s1", b)
    m = json.loads((b / "manifest.json").read_text())
    m["structures"] = [s for s in m["structures"] if not s["name"].startswith("nerve_root")]
    (b / "manifest.json").write_text(json.dumps(m))
    out = tmp_path / "x.yaml"
    err = _err(capsys, ["new-scenario", "--procedure", "pted", "--bundle", str(b), "--level", "L4-L5",
                        "--side", "left", "--out", str(out)])
    assert "lacks the left nerve roots of L4-L5" in err
    assert "nerve_root_L4_exiting_left" in err and "nerve_root_L5_traversing_left" in err
    assert "--spine" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".x*"))


@pytest.mark.parametrize("argv, words", [
    (["--procedure", "pted", "--bundle", "/nonexistent/bundle"], "not an asset bundle"),
    (["--procedure", "pted", "--bundle", "spine_l3_s1", "--level", "L4L5", "--side", "left"], "write it like L4-L5"),
    (["--procedure", "pted", "--bundle", "spine_l3_s1", "--level", "L3-L5", "--side", "left"], "adjacent"),
    (["--procedure", "pted", "--bundle", "spine_l3_s1", "--level", "L2-L3", "--side", "left"],
     "the disc or herniation of L2-L3 not found"),
    (["--procedure", "pted", "--bundle", "knee"], "no Kambin triangle landmarks"),
    (["--procedure", "tha", "--bundle", "hip"], "choose the operated hip with --side"),
    (["--procedure", "tka", "--bundle", "hip"], "the femur and tibia not found"),
    (["--procedure", "tka", "--bundle", "knee", "--level", "L4-L5"], "spine procedures only"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, argv, words):
    out = tmp_path / "s.yaml"
    err = _err(capsys, ["new-scenario", *argv, "--out", str(out)])
    assert words in err and "Traceback" not in err
    assert not out.exists() and not any(tmp_path.iterdir())


def test_existing_file_needs_force(written, tmp_path, capsys):
    out = tmp_path / "mine.yaml"
    out.write_text("my own notes\n")
    err = _err(capsys, ["new-scenario", *CASES["tka"], "--out", str(out)])
    assert "pass --force" in err
    assert out.read_text() == "my own notes\n"
    assert main(["new-scenario", *CASES["tka"], "--out", str(out), "--force"]) == 0
    assert load_scenario(out).procedure == "tka"
    assert [p.name for p in tmp_path.iterdir()] == ["mine.yaml"], "no temporary file left behind"
