"""The metric registry and the generic accumulators: documented, cited, found by procedure, unknown
names refused with close matches, and each value computed as its definition says."""

from __future__ import annotations

import math

import numpy as np
from pathlib import Path

import pytest

from vr_trainer.scenario import metrics as M
from vr_trainer.scenario.conditions import ScenarioNames
from vr_trainer.scenario.engine import ScenarioEngine
from vr_trainer.scenario.loader import load_scenario
from vr_trainer.scenario.scoring import metric_score, score_rubric
from vr_trainer.sim.observation import Observation

TWO_STEPS = Path(__file__).parent / "data" / "pted_two_steps.yaml"  # a frozen two-step PTED scenario

GENERIC = ("total_time_s", "steps_completed_pct", "step_overtime_s", "path_length_mm", "target_error_mm",
           "risk_contacts", "risk_near_time_s", "min_risk_distance_mm", "critical_error_count", "hints_shown",
           "fluoro_shots", "fluoro_time_s", "instrument_exchanges")


@pytest.fixture(scope="module")
def pted():
    return load_scenario(TWO_STEPS)


def test_every_generic_metric_is_documented_and_cited():
    defs = {d.name: d for d in M.metrics_for("tka")}
    for name in GENERIC:
        d = defs[name]
        assert d.procedures == ("*",)
        assert d.unit and d.definition.endswith(".") and len(d.definition) > 40, name
        assert any(ch.isdigit() for ch in d.source) and len(d.source) > 30, name  # a year / volume
    assert "Ungi" in defs["path_length_mm"].source and "Datta" in defs["path_length_mm"].source
    assert "Feng" in defs["risk_contacts"].source


def test_unknown_metric_names_close_matches():
    with pytest.raises(M.MetricError) as e:
        M.get_metric("path_lenght_mm")
    assert "did you mean 'path_length_mm'" in str(e.value) and "vr-trainer metrics" in str(e.value)


def test_procedure_metrics_register_for_their_procedure_only():
    defn = M.MetricDef("test_only_cuts_count", "count", "Cuts made.", "none", ("tka",),
                       lambda ctx: M._ObsLatest(lambda o: o.shots))
    M.register(defn)
    try:
        assert defn in M.metrics_for("tka") and defn not in M.metrics_for("pted")
        with pytest.raises(M.MetricError) as e:
            M.get_metric("test_only_cuts_count", "pted")
        assert "belongs to tka" in str(e.value)
        with pytest.raises(M.MetricError):
            M.register(M.MetricDef("test_only_cuts_count", "count", "x.", "y", ("tha",), defn.factory))
    finally:
        del M.REGISTRY["test_only_cuts_count"]


def obs(t: float, tip=None, inst: str | None = "needle", root_mm: float | None = None, kambin_mm=None,
        dt: float = 0.1, targets: dict[str, float] | None = None) -> Observation:
    return Observation(time_s=t, dt_s=dt, instrument_id=inst,
                       tip_world_mm=None if tip is None else np.asarray(tip, float),
                       structure_distance_mm={} if root_mm is None else {"nerve_root_L4_exiting_left": root_mm},
                       target_distance_mm=targets or ({} if kambin_mm is None else {"kambin": kambin_mm}))


def run(pted, observations) -> dict[str, float]:
    engine = ScenarioEngine(pted, ScenarioNames.from_scenario(pted))
    for o in observations:
        engine.update(o)
    return engine.live_metrics()


def test_path_length_skips_instrument_changes_and_gaps(pted):
    v = run(pted, [obs(0.1, (0, 0, 0)), obs(0.2, (3, 4, 0)), obs(0.3, (100, 100, 100), inst="cannula"),
                   obs(0.4, (100, 100, 110), inst="cannula"), obs(0.5, None, inst=None),
                   obs(0.6, (0, 0, 0), inst="cannula")])
    assert v["path_length_mm"] == pytest.approx(5.0 + 10.0)
    assert v["instrument_exchanges"] == 1


def test_risk_contacts_count_entries_with_hysteresis(pted):
    dists = [3.0, 0.0, -0.2, 0.3, -0.1, 2.0, -1.0, 5.0]  # 0.3 mm is not a release (0.5 mm)
    v = run(pted, [obs(0.1 * (i + 1), root_mm=d) for i, d in enumerate(dists)])
    assert v["risk_contacts"] == 2
    assert v["min_risk_distance_mm"] == -1.0
    assert v["risk_near_time_s"] == pytest.approx(0.1 * 5)  # closer than the 2 mm margin: 5 of the 8 steps


def test_target_error_is_the_closest_approach_of_each_step_target(pted):
    track = [(10.0, 30.0), (2.5, 20.0), (0.4, 15.0), (1.0, 5.0)]  # (kambin, fragment) mm
    v = run(pted, [obs(0.1 * (i + 1), targets={"kambin": k, "fragment": f}) for i, (k, f) in enumerate(track)])
    # step 1 completes at 2.5 mm and the tip goes on to 0.4 mm; step 2 (fragment) starts then: closest 5 mm
    assert v["target_error_mm"] == pytest.approx((0.4 + 5.0) / 2)
    assert v["steps_completed_pct"] == 50.0
    v = run(pted, [obs(0.1, kambin_mm=10.0)])
    assert math.isinf(v["target_error_mm"])  # step 2's target never measured


def test_time_metrics_follow_the_run(pted):
    v = run(pted, [obs(0.1 * i, kambin_mm=50.0) for i in range(1, 11)])
    assert v["total_time_s"] == pytest.approx(1.0)
    assert v["steps_completed_pct"] == 0.0 and v["step_overtime_s"] == 0.0


def test_rubric_scoring_is_linear_either_way(pted):
    assert metric_score(0.0, full_marks_at=0, zero_marks_at=3) == 1.0
    assert metric_score(1.5, full_marks_at=0, zero_marks_at=3) == 0.5
    assert metric_score(9.0, full_marks_at=0, zero_marks_at=3) == 0.0
    assert metric_score(50.0, full_marks_at=100, zero_marks_at=0) == 0.5
    assert metric_score(math.nan, 1, 0) == 0.0 and metric_score(math.inf, 2, 0) == 1.0
    values = {m.metric: m.full_marks_at for m in pted.rubric.metrics}
    assert score_rubric(pted.rubric, values)[0] == pytest.approx(100.0)
    values["risk_contacts"] = 3  # weight 3 of 11
    assert score_rubric(pted.rubric, values)[0] == pytest.approx(100.0 * 8 / 11)
