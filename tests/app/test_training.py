"""ScenarioRules without GL: synthetic observations of the default scenario through the engine,
and what the resident gets from them (pulses, panel lines in en/zh, highlights, cues)."""

from __future__ import annotations

import numpy as np
import pytest

from vr_trainer.app.training import ScenarioRules
from vr_trainer.scenario.engine import ScenarioEngine
from pathlib import Path

from vr_trainer.scenario.loader import load_scenario
from vr_trainer.scenario.schema import Scenario
from vr_trainer.sim.observation import Observation
from vr_trainer.sim.simulation import SimState

DT = 1 / 120
TWO_STEPS = Path(__file__).parents[1] / "scenario" / "data" / "pted_two_steps.yaml"  # a frozen two-step PTED


def rules_for(scenario: Scenario) -> ScenarioRules:
    return ScenarioRules(scenario, ScenarioEngine(scenario), {r.id: r.structure for r in scenario.risk_structures})


def feed(rules: ScenarioRules, state: SimState, seconds: float, **obs) -> SimState:
    """Run ``seconds`` of fixed steps whose observations carry ``obs``."""
    for _ in range(int(round(seconds / DT))):
        t = state.time_s + DT
        o = Observation(time_s=t, dt_s=DT, instrument_id=obs.get("instrument_id", "needle"),
                        tip_world_mm=np.zeros(3), target_distance_mm=obs.get("targets", {"kambin": 30.0}),
                        structure_distance_mm=obs.get("structures", {}), tip_inside=obs.get("inside", frozenset()))
        state = SimState(time_s=t, tick=state.tick + 1, active_hand=0, observation=o,
                         focus_target=state.focus_target, step_index=state.step_index,
                         completed_steps=state.completed_steps)
        state, _ = rules.after_step(state)
    return state


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return load_scenario(TWO_STEPS)


def test_hint_after_its_delay_and_the_step_pulse_on_the_holding_hand(scenario):
    rules = rules_for(scenario)
    s = feed(rules, SimState(), 44.0)
    assert not any(ln.startswith("Hint:") for ln in rules.prompt_lines(s.time_s, "en"))
    s = feed(rules, s, 2.0)
    lines = rules.prompt_lines(s.time_s, "en")
    assert "Hint: Aim about 30 degrees from the coronal plane, just above the L5 superior articular process" in lines
    assert "提示：与冠状面约成 30 度，紧贴 L5 上关节突上方进针" in rules.prompt_lines(s.time_s, "zh")
    assert s.tip_to_target_mm == pytest.approx(30.0) and s.focus_target == "kambin"
    s = feed(rules, s, DT, targets={"kambin": 1.0, "fragment": 20.0})
    assert s.completed_steps == ("needle_to_kambin",) and s.step_index == 1 and s.focus_target == "fragment"
    assert [(h.hand, h.amplitude) for h in s.haptics] == [(0, 0.8)], "the left hand holds the needle here"
    lines = rules.prompt_lines(s.time_s, "en")
    assert lines[0] == "2/2  Dock the working cannula on the herniated fragment"
    assert not any(ln.startswith("Hint:") for ln in lines), "the new step's hints wait for its own delay"


def test_dural_breach_is_a_critical_error_line_and_an_alert_cue(scenario):
    rules = rules_for(scenario)
    s = feed(rules, SimState(), 1.0, structures={"dural_sac": -1.0}, inside=frozenset({"dural_sac"}))
    lines = rules.prompt_lines(s.time_s, "en")
    assert "✖ Dural tear: an instrument entered the dural sac" in lines
    assert "♪ sound: alert" in lines
    assert rules.cues_summary()[0]["sound"] == "alert" and rules.cues_summary()[0]["event"] == "dural_breach"
    assert rules.engine.result().passed is False
    s = feed(rules, s, 6.0, structures={"dural_sac": 5.0})
    lines = rules.prompt_lines(s.time_s, "en")
    assert not any(ln.startswith(("✖", "!", "♪")) for ln in lines), "messages and cues fade after a few seconds"


def test_overlay_tints_for_its_duration(scenario):
    data = scenario.model_dump(mode="json", exclude_none=True)
    data["events"].append({"id": "glow", "when": "near(traversing_root, 3)", "once": True,
                           "effects": [{"overlay": {"structure": "traversing_root", "duration_s": 1.0}}]})
    rules = rules_for(Scenario.model_validate(data))
    s = feed(rules, SimState(), 0.5, structures={"nerve_root_L5_traversing_left": 2.0})
    assert rules.tints(s.time_s) == {"nerve_root_L5_traversing_left": (1.0, 0.15, 0.1, 0.6)}
    s = feed(rules, s, 1.0, structures={"nerve_root_L5_traversing_left": 2.0})
    assert rules.tints(s.time_s) == {}


def test_wrong_instrument_prompt(scenario):
    rules = rules_for(scenario)
    s = feed(rules, SimState(), 0.5, instrument_id="scope")  # 30 mm from the target: not used yet
    assert not any(ln.startswith("! This step uses") for ln in rules.prompt_lines(s.time_s, "en"))
    s = feed(rules, s, 0.5, instrument_id="scope", targets={"kambin": 12.0})
    assert any(ln.startswith("! This step uses the needle, not the scope") for ln in rules.prompt_lines(s.time_s, "en"))
