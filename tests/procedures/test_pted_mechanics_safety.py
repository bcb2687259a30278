"""PTED safety metrics per risk role on a scripted observation stream through the scenario
engine: the closest approach to the traversing root, the dural sac and a segmental vessel, and
the time inside each one's risk region; a role the scenario lists no structure for is null."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from vr_trainer.scenario.engine import run_stream
from vr_trainer.scenario.loader import REPO_ROOT, load_scenario
from vr_trainer.scenario.metrics import get_metric
from vr_trainer.sim.observation import Observation

DT_S = 0.1
VESSEL = "segmental_artery_L4_left"


def scenario(tmp_path: Path, vessel: bool):
    data = yaml.safe_load((REPO_ROOT / "scenarios" / "pted_l4_l5.yaml").read_text(encoding="utf-8"))
    data["risk_structures"] = [r for r in data["risk_structures"] if "artery" not in r["structure"]]
    if vessel:
        data["risk_structures"].append({"id": "segmental_vessel", "structure": VESSEL, "margin_mm": 1.0,
                                        "severity": "major"})
    path = tmp_path / "pted.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load_scenario(path)


def stream(distances: list[dict[str, float]]) -> list[Observation]:
    return [Observation(time_s=(k + 1) * DT_S, dt_s=DT_S, instrument_id="needle", tip_world_mm=np.zeros(3),
                        structure_distance_mm=d) for k, d in enumerate(distances)]


def test_closest_approach_and_time_in_each_risk_region(tmp_path):
    sc = scenario(tmp_path, vessel=True)
    trav = next(r.structure for r in sc.risk_structures if "traversing" in r.id)
    sac = next(r.structure for r in sc.risk_structures if "dural" in r.id)
    path = [{trav: 6.0, sac: 9.0, VESSEL: 5.0}, {trav: 1.5, sac: 4.0, VESSEL: 3.0},  # traversing root: 2 steps
            {trav: 0.8, sac: 3.0, VESSEL: 0.6}, {trav: 3.0, sac: -0.4, VESSEL: 2.0},  # in the sac, the vessel once
            {trav: 5.0, sac: 2.5, VESSEL: 4.0}]
    res = run_stream(sc, stream(path))
    m = {r.name: r.value for r in res.metrics}
    assert m["min_traversing_root_distance_mm"] == pytest.approx(0.8)
    assert m["min_dural_sac_distance_mm"] == pytest.approx(-0.4)
    assert m["min_vessel_distance_mm"] == pytest.approx(0.6)
    margin = {r.structure: r.margin_mm for r in sc.risk_structures}
    for name, s in (("traversing_root_invasion_time_s", trav), ("dural_sac_invasion_time_s", sac),
                    ("vessel_invasion_time_s", VESSEL)):
        expected = DT_S * sum(d[s] < margin[s] for d in path)
        assert m[name] == pytest.approx(expected), name
    assert m["vessel_invasion_time_s"] == pytest.approx(DT_S), "only the step at 0.6 mm is within its 1 mm margin"


def test_a_role_the_scenario_does_not_list_is_null(tmp_path):
    sc = scenario(tmp_path, vessel=False)
    res = run_stream(sc, stream([{VESSEL: -1.0}]))
    m = {r.name: r.value for r in res.metrics}
    assert math.isnan(m["min_vessel_distance_mm"]) and math.isnan(m["vessel_invasion_time_s"])
    d = get_metric("min_vessel_distance_mm", "pted")
    assert d.unit == "mm" and "Feng" in d.source
