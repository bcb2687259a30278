"""Every shipped scenario validates and renders its anatomy; an imported bundle renders too."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vr_trainer.cli import main

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((REPO / "scenarios").glob("*.yaml"))
pytestmark = pytest.mark.gl


def bone_fraction(path: Path) -> float:
    e = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return float(((e[..., 0] > 150) & (e[..., 1] > 140) & (e[..., 2] > 100)).mean())


def test_all_shipped_scenarios_validate(capsys):
    assert len(SCENARIOS) >= 3
    assert main(["validate", *map(str, SCENARIOS)]) == 0


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_shipped_scenario_demo_completes_its_first_step(scenario, tmp_path):
    p = subprocess.run([sys.executable, "-m", "vr_trainer", "run", str(scenario), "--backend", "headless",
                        "--size", "96x72", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["steps_completed"], "the scripted demo reaches the first target"
    assert bone_fraction(tmp_path / "eye0.png") > 0.01


def test_imported_mesh_bundle_renders_in_a_scenario(shared_data, tmp_path):
    femur = shared_data / "meshes" / "tka-grand-challenge" / "Femur.stl"
    bundle = tmp_path / "femur_bundle"
    assert main(["import", "mesh", str(femur), "--tissue", "bone", "--units", "auto", "--out", str(bundle)]) == 0
    scen = (REPO / "tests" / "scenario" / "data" / "tka_touch.yaml").read_text()
    scen = scen.replace("bundle: knee", f"bundle: {bundle}").replace("point_mm: [0.0, 15.1, 60.0]",
                                                                        "structure: Femur")
    scen = scen.replace("structure: tibia", "structure: Femur")  # run validates: the bundle has no tibia
    # the whole femur is 467 mm long: step back to see it
    scen = scen.replace("[-80, 1250, -300]", "[-40, 1250, -420]").replace("[40, 1230, -260]", "[40, 1250, -420]")
    sp = tmp_path / "femur.yaml"
    sp.write_text(scen)
    out = tmp_path / "out"
    assert main(["run", str(sp), "--backend", "headless", "--frames", "3", "--size", "128x96", "--out", str(out)]) == 0
    assert bone_fraction(out / "eye0.png") > 0.01, "the imported femur is visible"
