"""The scenario engine driven by synthetic observation streams (no GL, no bundle): an expert run
passes with a high score, a novice run fails and the result says why; hints, events, fail_step
and wrong instruments behave as a resident would see them."""

from __future__ import annotations

import json
from typing import Iterator, Sequence

import numpy as np
from pathlib import Path

import pytest
import yaml

from vr_trainer.scenario.conditions import ScenarioNames
from vr_trainer.scenario.engine import PROMPT_SHOW_S, ScenarioEngine, run_stream
from vr_trainer.scenario.loader import load_scenario
from vr_trainer.scenario.schema import Scenario
from vr_trainer.sim.observation import Observation

TWO_STEPS = Path(__file__).parent / "data" / "pted_two_steps.yaml"  # a frozen two-step PTED scenario

# Synthetic anatomy in the world frame (mm): structures are spheres (centre, radius), targets points.
KAMBIN = np.array([0.0, 0.0, 0.0])
FRAGMENT = np.array([12.0, 0.0, 8.0])
START = np.array([-130.0, -75.0, 5.0])
SPHERES = {
    "nerve_root_L4_exiting_left": (np.array([0.0, 10.0, 0.0]), 4.0),
    "nerve_root_L5_traversing_left": (np.array([6.0, -14.0, 4.0]), 3.0),
    "dural_sac": (np.array([30.0, 0.0, 22.0]), 12.0),
    "herniation_L4_L5": (FRAGMENT, 3.0),
}
TARGETS = {"kambin": KAMBIN, "fragment": FRAGMENT}
ROOT_C, ROOT_R = SPHERES["nerve_root_L4_exiting_left"]
SAC_C, SAC_R = SPHERES["dural_sac"]
Key = tuple[float, np.ndarray, str | None]


def observe(t_s: float, dt_s: float, tip: np.ndarray, instrument: str | None,
            actions: frozenset[str] = frozenset()) -> Observation:
    dist = {n: float(np.linalg.norm(tip - c) - r) for n, (c, r) in SPHERES.items()}
    return Observation(time_s=t_s, dt_s=dt_s, instrument_id=instrument, tip_world_mm=tip.copy(),
                       target_distance_mm={k: float(np.linalg.norm(tip - p)) for k, p in TARGETS.items()},
                       structure_distance_mm=dist, tip_inside=frozenset(n for n, d in dist.items() if d < 0),
                       actions=actions)


def stream(keys: Sequence[Key], dt_s: float) -> Iterator[Observation]:
    """Piecewise-linear tip track through ``keys`` (t_s, tip, instrument held from that key on)."""
    n = int(round(keys[-1][0] / dt_s))
    k = 0
    for i in range(1, n + 1):
        t = i * dt_s
        while k + 2 < len(keys) and keys[k + 1][0] <= t:
            k += 1
        (t0, p0, inst), (t1, p1, _) = keys[k], keys[k + 1]
        a = min(1.0, max(0.0, (t - t0) / (t1 - t0))) if t1 > t0 else 1.0
        yield observe(t, dt_s, p0 + a * (p1 - p0), inst)


def toward(p: np.ndarray, q: np.ndarray, leave_mm: float) -> np.ndarray:
    """The point ``leave_mm`` short of q on the way from p."""
    d = q - p
    return q - d / np.linalg.norm(d) * leave_mm


def expert_keys() -> list[Key]:
    at_kambin = toward(START, KAMBIN, 0.3)
    at_fragment = toward(KAMBIN, FRAGMENT, 0.3)
    return [(0.0, START, "needle"), (10.0, at_kambin, "needle"), (11.0, at_kambin, "cannula"),
            (12.0, KAMBIN, "cannula"), (17.0, at_fragment, "cannula"), (18.0, at_fragment, "cannula")]


def root_touch() -> np.ndarray:
    """A point 0.5 mm inside the exiting root, on the side facing the approach."""
    d = KAMBIN - ROOT_C + np.array([-20.0, -10.0, 0.0])
    return ROOT_C + d / np.linalg.norm(d) * (ROOT_R - 0.5)


def novice_keys() -> list[Key]:
    """Slow; three touches of the exiting root (seconds apart); then into the dural sac."""
    mid = toward(START, KAMBIN, 30.0)
    keys: list[Key] = [(0.0, START, "needle"), (20.0, mid, "needle")]
    for t in (25.0, 40.0, 55.0):
        keys += [(t, root_touch(), "needle"), (t + 5.0, mid, "needle")]
    at_kambin = toward(mid, KAMBIN, 1.0)
    wander = np.array([0.0, -5.0, 40.0])  # well clear of the fragment
    into_sac = SAC_C + (wander - SAC_C) / np.linalg.norm(wander - SAC_C) * (SAC_R - 2.0)
    keys += [(90.0, at_kambin, "needle"), (95.0, at_kambin, "cannula"), (120.0, wander, "cannula"),
             (150.0, into_sac, "cannula"),
             (170.0, into_sac, "cannula"), (260.0, toward(into_sac, FRAGMENT, 1.5), "cannula"),
             (265.0, toward(into_sac, FRAGMENT, 1.5), "cannula")]
    return keys


@pytest.fixture(scope="module")
def pted() -> Scenario:
    return load_scenario(TWO_STEPS)


def names_for(s: Scenario) -> ScenarioNames:
    return ScenarioNames.from_scenario(s, structures=SPHERES)


def variant(s: Scenario, **changes) -> Scenario:
    data = yaml.safe_load(TWO_STEPS.read_text(encoding="utf-8"))
    data.update(changes)
    return Scenario.model_validate(data)


def test_expert_run_passes_with_a_high_score(pted):
    result = run_stream(pted, stream(expert_keys(), 1 / 120), names_for(pted))
    assert result.passed and result.score >= 90, result.to_summary()
    assert [s.completed for s in result.steps] == [True, True]
    d = float(np.linalg.norm(START - KAMBIN))
    assert result.steps[0].time_s == pytest.approx(10.0 * (d - 3.0) / (d - 0.3), abs=0.01)  # 3 mm tolerance
    assert result.metric("risk_contacts").value == 0
    assert result.metric("min_risk_distance_mm").value > 2.0
    assert result.metric("target_error_mm").value < 1.0
    assert result.metric("path_length_mm").value == pytest.approx(
        np.linalg.norm(START - KAMBIN) + np.linalg.norm(FRAGMENT - KAMBIN) - 0.3, abs=2.0)
    assert result.critical_errors == () and result.metric("critical_error_count").value == 0


def test_novice_run_fails_and_says_why(pted):
    engine = ScenarioEngine(pted, names_for(pted))
    notices = [n for obs in stream(novice_keys(), 1 / 60) for n in engine.update(obs)]
    result = engine.result()
    assert not result.passed
    assert [c.id for c in result.critical_errors] == ["dural_tear"]
    assert "Dural tear" in result.critical_errors[0].description
    assert result.metric("risk_contacts").value >= 3 and result.metric("risk_contacts").score == 0.0
    assert result.metric("min_risk_distance_mm").value < 0
    assert [e.id for e in result.events].count("root_contact") == 3
    assert [e.id for e in result.events].count("dural_breach") == 1  # once: true
    assert result.steps[1].completed and result.steps[1].ended_s > 200  # slow: the fragment only at the end
    assert result.metric("total_time_s").value > 200
    kinds = [n.kind for n in notices]
    assert kinds.count("haptic") == 3 and "critical_error" in kinds
    assert any(n.kind == "sound" and n.sound == "pain" for n in notices)
    summary = result.to_summary()
    assert summary["passed"] is False and summary["critical_errors"][0]["id"] == "dural_tear"
    assert summary["metrics"]["risk_contacts"]["unit"] == "count"


def test_hint_appears_after_its_delay_and_goes_with_the_step(pted):
    engine = ScenarioEngine(pted, names_for(pted))
    hint_en = pted.steps[0].hints[0].text.en
    seen: dict[float, bool] = {}
    for obs in stream(novice_keys(), 1 / 60):
        engine.update(obs)
        for t in (44.0, 46.0, 100.0):
            if abs(obs.time_s - t) < 1e-6:
                seen[t] = any(m.kind == "hint" and m.text and m.text.en == hint_en for m in engine.messages(t))
        if obs.time_s >= 100.0:
            break
    assert seen == {44.0: False, 46.0: True, 100.0: False}  # step 1 ended at ~90 s
    assert engine.live_metrics()["hints_shown"] == 1


def test_event_prompt_shows_for_a_few_seconds(pted):
    engine = ScenarioEngine(pted, names_for(pted))
    contact_t = None
    for obs in stream(novice_keys(), 1 / 60):
        for n in engine.update(obs):
            if n.event_id == "root_contact" and n.kind == "prompt" and contact_t is None:
                contact_t = n.time_s
        if contact_t is not None and obs.time_s > contact_t + PROMPT_SHOW_S + 1:
            break
    assert contact_t is not None

    def showing(t: float) -> bool:
        return any(m.event_id == "root_contact" for m in engine.messages(t))
    assert showing(contact_t + 1.0) and not showing(contact_t + PROMPT_SHOW_S + 0.5)
    assert engine.messages(contact_t + 1.0)[0].text == pted.steps[0].prompt  # the step prompt comes first


def touches(times: Sequence[float], hold_s: float, dt_s: float = 0.01) -> Iterator[Observation]:
    """The needle rests 5 mm from the root and touches it at ``times`` for ``hold_s`` each."""
    away = toward(root_touch(), ROOT_C, -5.5)
    end = max(times) + 1.0
    for i in range(1, int(round(end / dt_s)) + 1):
        t = i * dt_s
        on = any(t0 <= t < t0 + hold_s for t0 in times)
        yield observe(t, dt_s, root_touch() if on else away, "needle")


def test_event_cooldown_and_once_are_honoured(pted):
    times = [1.0, 1.5, 2.0, 5.0, 5.6, 9.0]
    result = run_stream(pted, touches(times, 0.2), names_for(pted))
    fired = [round(e.time_s, 2) for e in result.events if e.id == "root_contact"]
    assert fired == [1.0, 5.0, 9.0]  # cooldown 2 s drops the touches at 1.5, 2.0 and 5.6
    assert result.metric("risk_contacts").value == len(times)  # the metric counts every contact
    data = yaml.safe_load(TWO_STEPS.read_text(encoding="utf-8"))
    data["events"][0]["once"] = True
    once = Scenario.model_validate(data)
    result = run_stream(once, touches(times, 0.2), names_for(once))
    assert [e.id for e in result.events].count("root_contact") == 1


def test_fail_step_fails_the_step_and_moves_on(pted):
    data = yaml.safe_load(TWO_STEPS.read_text(encoding="utf-8"))
    data["events"].append({"id": "too_slow", "when": "all(step_elapsed_s > 30, not(step_done(needle_to_kambin)))",
                           "once": True, "effects": [{"fail_step": True}, {"prompt": {"en": "Time is up"}}]})
    s = Scenario.model_validate(data)
    engine = ScenarioEngine(s, names_for(s))
    notices = [n for obs in stream(novice_keys(), 1 / 60) for n in engine.update(obs)]
    failed = [n for n in notices if n.kind == "step_failed"]
    assert [n.step_id for n in failed] == ["needle_to_kambin"]
    assert failed[0].time_s == pytest.approx(30.0, abs=0.05)
    started = [n.step_id for n in notices if n.kind == "step_started"]
    assert started == ["needle_to_kambin", "cannula_to_fragment"]
    result = engine.result()
    assert result.steps[0].failed and not result.steps[0].completed
    assert result.steps[1].completed  # the cannula still reached the fragment
    assert result.metric("steps_completed_pct").value == 50.0


def test_wrong_instrument_is_counted_and_prompted(pted):
    """Taking up a tool far from the target (cycling through the tray) is no error; bringing a tool the
    step does not allow to within 20 mm of the step's target is, once per taking-up."""
    engine = ScenarioEngine(pted, names_for(pted))
    near = toward(START, KAMBIN, 15.0)  # 15 mm short of Kambin's triangle
    keys: list[Key] = [(0.0, START, "needle"), (2.0, START, "guidewire"), (3.0, START, "dilator"),
                       (5.0, near, "dilator"), (6.0, START, "dilator"), (7.0, near, "dilator"),
                       (8.0, START, "needle"), (9.0, START, "needle")]
    texts: list[str] = []
    for obs in stream(keys, 0.05):
        engine.update(obs)
        if abs(obs.time_s - 3.0) < 1e-6:
            assert engine.live_metrics()["wrong_instrument_uses"] == 0  # the guidewire never came near
        if abs(obs.time_s - 5.5) < 1e-6:
            texts = [m.text.en for m in engine.messages(5.5) if m.text]
    assert engine.live_metrics()["wrong_instrument_uses"] == 1  # the dilator's two approaches: one taking-up
    assert "This step uses the needle, not the dilator" in texts
    assert engine.live_metrics()["instrument_exchanges"] == 3


def test_the_tool_in_hand_when_a_step_begins_is_no_wrong_use(pted):
    """The needle reaching Kambin's triangle ends step 1 next to the fragment (step 2 wants the cannula):
    no error until the needle is put down and taken up again."""
    result = run_stream(pted, stream(expert_keys(), 1 / 120), names_for(pted))
    assert result.metric("wrong_instrument_uses").value == 0
    at_kambin = toward(START, KAMBIN, 0.3)
    keys = expert_keys()[:2] + [(10.5, at_kambin, "scope"), (11.0, at_kambin, "needle"), (12.0, at_kambin, "needle")]
    assert run_stream(pted, stream(keys, 1 / 120), names_for(pted)).metric("wrong_instrument_uses").value == 2


def test_overtime_and_focus_target(pted):
    engine = ScenarioEngine(pted, names_for(pted))
    assert engine.focus_target is None or engine.focus_target == "kambin"
    for obs in stream([(0.0, START, "needle"), (150.0, START, "needle")], 0.1):
        engine.update(obs)
    assert engine.focus_target == "kambin" and engine.current_step is pted.steps[0] and not engine.finished
    result = engine.result()
    assert result.steps[0].overtime_s == pytest.approx(30.0, abs=0.11)  # allowance 120 s
    assert result.metric("step_overtime_s").value == pytest.approx(30.0, abs=0.11)
    assert result.metric("steps_completed_pct").score == 0.0 and not result.passed


def test_same_stream_gives_identical_json_summary(pted):
    a = run_stream(pted, stream(novice_keys(), 1 / 30), names_for(pted)).to_summary()
    b = run_stream(pted, stream(novice_keys(), 1 / 30), names_for(pted)).to_summary()
    text = json.dumps(a, allow_nan=False, sort_keys=True)
    assert text == json.dumps(b, allow_nan=False, sort_keys=True)
    assert isinstance(a["score"], float) and 0 <= a["score"] <= 100
    m = a["metrics"]["path_length_mm"]
    assert {"value", "unit", "definition", "source", "weight", "score"} <= set(m)
    assert a["steps"][0].keys() >= {"id", "time_s", "completed", "failed", "overtime_s"}
    assert a["events"][0].keys() == {"id", "time_s", "step"}


def test_empty_run_summary_has_no_nan(pted):
    engine = ScenarioEngine(pted, names_for(pted))
    summary = engine.result().to_summary()
    json.dumps(summary, allow_nan=False)
    assert summary["metrics"]["min_risk_distance_mm"]["value"] is None  # never measured
    assert summary["score"] is not None and summary["passed"] is False


def test_the_engine_says_which_distances_the_simulation_must_report(pted):
    engine = ScenarioEngine(pted, names_for(pted))
    assert engine.needed_structures == {"nerve_root_L4_exiting_left", "nerve_root_L5_traversing_left", "dural_sac"}
    assert engine.needed_targets == {"kambin", "fragment"}


def test_a_run_that_stops_half_way_does_not_pass_and_says_which_step(pted):
    """A good score is not enough: every step must be completed (rubric.require_all_steps, the default)."""
    half = [k for k in expert_keys() if k[0] <= 11.0]
    result = run_stream(pted, stream(half, 1 / 120), names_for(pted))
    assert result.score >= pted.rubric.pass_mark, result.to_summary()  # fast and clean so far
    assert not result.passed
    assert result.fail_reasons == ("step cannula_to_fragment not completed",)
    lenient = variant(pted, rubric={**pted.rubric.model_dump(), "require_all_steps": False})
    assert run_stream(lenient, stream(half, 1 / 120), names_for(lenient)).passed


def test_fail_reasons_name_the_critical_error_and_the_low_score(pted):
    summary = run_stream(pted, stream(novice_keys(), 1 / 60), names_for(pted)).to_summary()
    reasons = summary["fail_reasons"]
    assert reasons[0].startswith("critical error dural_tear at ") and "Dural tear" in reasons[0]
    assert any(r.startswith("score ") and "below the pass mark 70" in r for r in reasons), reasons
