"""One fixed simulation step: the instrument follows the hand and the step's Observation says
what the rules need (distances to structures along the inserted shaft, the tip inside, target
distances, angles, discrete actions, C-arm shot accounting). Pure: no GL."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from vr_trainer.frame import HandInput, InputState
from vr_trainer.sim.instruments import CATALOGUE, InstrumentState
from vr_trainer.sim.proximity import ProximityField
from vr_trainer.sim.simulation import CARM_SHOT, NEXT_INSTRUMENT, SimState, Simulation, Target
from vr_trainer.sim.transforms import pose_from_axis

NEEDLE_R_MM = CATALOGUE["spinal_needle"].shaft_diameter_mm / 2


@pytest.fixture(scope="module")
def sim() -> Simulation:
    ball = trimesh.creation.icosphere(4, 10.0)  # a 10 mm "nerve" at the origin
    field = ProximityField.from_meshes({"ball": (ball.vertices, ball.faces)})
    return Simulation(np.eye(4), {"t": Target("t", np.array([0.0, 0.0, 30.0]), 2.0)}, field,
                      exposure_s=0.5, dose_per_shot_mgy=0.2)


def state() -> SimState:
    return SimState(instruments=(InstrumentState("needle", CATALOGUE["spinal_needle"]),
                                 InstrumentState("cannula", CATALOGUE["working_cannula"])))


def hand_at(tip_mm, handle_dir=(0.0, 0.0, 1.0), **kw) -> InputState:
    """The tool tip at ``tip_mm`` with the handle towards ``handle_dir`` (the needle advances the other way)."""
    tip = np.asarray(tip_mm, float)
    pose = pose_from_axis(tip, np.asarray(handle_dir, float))
    return InputState(hands=[HandInput(), HandInput(pose, **kw)])


def test_distance_is_from_the_needle_surface_and_the_tip_is_outside(sim):
    s = sim.step(state(), hand_at([0, 0, 15]), 1 / 120)
    obs = s.observation
    assert obs is not None and obs.instrument_id == "needle"
    np.testing.assert_allclose(obs.tip_world_mm, [0, 0, 15], atol=1e-9)
    assert obs.structure_distance_mm["ball"] == pytest.approx(15 - 10 - NEEDLE_R_MM, abs=0.05)
    assert obs.tip_inside == frozenset()
    assert obs.target_distance_mm == {"t": pytest.approx(15.0)}
    assert s.tip_to_target_mm == pytest.approx(15.0)
    assert obs.angles_deg["craniocaudal"] == pytest.approx(-90.0, abs=1e-6), "advancing straight down (-z)"


def test_tip_inside_a_structure(sim):
    obs = sim.step(state(), hand_at([0, 0, 4]), 1 / 120).observation
    assert obs.tip_inside == frozenset({"ball"})
    assert obs.structure_distance_mm["ball"] == pytest.approx(-(10 - 4) - NEEDLE_R_MM, abs=0.05)


def test_a_shaft_through_a_structure_is_a_contact_even_with_the_tip_past_it(sim):
    obs = sim.step(state(), hand_at([0, 0, -14]), 1 / 120).observation
    assert obs.tip_inside == frozenset()
    assert obs.structure_distance_mm["ball"] < -9.0, "the shaft runs through the ball's centre"


def test_primary_button_cycles_instruments_once_per_press(sim):
    s = state()
    s = sim.step(s, hand_at([0, 0, 40], primary_pressed=True), 1 / 120)
    assert s.active_instrument == 1 and s.observation.actions == frozenset({NEXT_INSTRUMENT})
    assert s.observation.instrument_id == "cannula"
    s = sim.step(s, hand_at([0, 0, 40], primary_pressed=True), 1 / 120)
    assert s.active_instrument == 1 and s.observation.actions == frozenset(), "held: no second change"
    # the wider cannula (7.5 mm) is measured from its own surface
    assert s.observation.structure_distance_mm["ball"] == pytest.approx(40 - 10 - 7.5 / 2, abs=0.05)


def test_carm_shots_are_counted_on_the_key_going_down(sim):
    s = state()
    for keys in ({CARM_SHOT}, {CARM_SHOT}, set(), {CARM_SHOT}):
        inp = hand_at([0, 0, 40])
        inp.keys = frozenset(keys)
        s = sim.step(s, inp, 1 / 120)
    assert s.shots == 2 and s.observation.shots == 2
    assert s.observation.fluoro_time_s == pytest.approx(1.0) and s.observation.dose_mgy == pytest.approx(0.4)
    assert s.observation.actions == frozenset({CARM_SHOT})


def test_without_input_focus_the_instrument_stays(sim):
    s = sim.step(state(), hand_at([0, 0, 40]), 1 / 120)
    inp = hand_at([0, 0, 12])
    inp.focused = False
    s = sim.step(s, inp, 1 / 120)
    np.testing.assert_allclose(s.observation.tip_world_mm, [0, 0, 40], atol=1e-9)
    assert s.time_s == pytest.approx(2 / 120) and s.tick == 2
