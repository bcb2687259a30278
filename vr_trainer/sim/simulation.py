"""Fixed-step simulation: the instrument follows the active hand, the primary button cycles
instruments, trajectory readouts, and one :class:`~vr_trainer.sim.observation.Observation` per
step (tip, target distances, signed structure distances, angles, actions) for the rules that
run after it (the scenario engine). Step progression is not here: the scenario engine decides
it from the observations and writes the result back into the state (``step_index`` ...).

Pure: (state, input, dt) -> state. Units: millimetres (world frame, y up), seconds, degrees.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vr_trainer.frame import InputState
from vr_trainer.sim.annotations import AnnotationSet
from vr_trainer.sim.instruments import InstrumentState
from vr_trainer.sim.observation import Observation
from vr_trainer.sim.procedure import ProcedureModel
from vr_trainer.sim.proximity import ProximityField, shaft_points

NEXT_INSTRUMENT = "next_instrument"  # the action the primary button takes
CARM_SHOT = "carm_shot"  # a key of this name takes a fluoroscopy shot in the current view
# keys that take one C-arm shot each, and the view they take it in (None: the current view)
CARM_VIEW_KEYS: dict[str, str | None] = {CARM_SHOT: None, "carm_ap": "ap", "carm_lateral": "lateral",
                                         "carm_oblique": "oblique"}
DEFAULT_CARM_VIEW = "ap"


@dataclass(frozen=True)
class Target:
    target_id: str
    point_world_mm: np.ndarray
    tolerance_mm: float


@dataclass(frozen=True)
class HapticRequest:
    hand: int  # 0 left, 1 right; -1 (from a procedure model): the hand holding the active instrument
    amplitude: float
    duration_s: float


@dataclass
class SimState:
    time_s: float = 0.0
    tick: int = 0
    instruments: tuple[InstrumentState, ...] = ()
    active_instrument: int = 0
    active_hand: int = 1  # the hand holding the active instrument (0 left, 1 right)
    # written by the rules after each step (the scenario engine owns step progression)
    step_index: int = 0
    completed_steps: tuple[str, ...] = ()
    focus_target: str | None = None  # the current step's target: what ``tip_to_target_mm`` measures
    tip_to_target_mm: float | None = None
    axial_angle_deg: float | None = None
    craniocaudal_deg: float | None = None
    haptics: tuple[HapticRequest, ...] = ()
    annotations: AnnotationSet = field(default_factory=AnnotationSet)
    primary_was_pressed: bool = False
    keys_down: frozenset[str] = frozenset()
    shots: int = 0
    fluoro_time_s: float = 0.0
    dose_mgy: float = 0.0
    carm_view: str = DEFAULT_CARM_VIEW  # the C-arm's current view (the last shot's)
    procedure_state: Any = None  # the procedure model's own immutable state (sim/procedure.py)
    observation: Observation | None = None  # what this step looked like to the rules
    mentor_notes: list[tuple[str, str]] = field(default_factory=list)  # (author, text), newest last


@dataclass
class Simulation:
    """The rules of the world. ``patient_from_world`` (4x4) turns world points into RAS.

    ``proximity`` (patient frame) measures the structures the scenario refers to; the active
    instrument is sampled at its tip and every ``sample_spacing_mm`` along the first
    ``shaft_sample_mm`` of its shaft, and a structure's distance is the smallest over those
    points less the shaft radius (so 0 is the instrument's surface touching it)."""

    patient_from_world: np.ndarray
    targets: dict[str, Target] = field(default_factory=dict)
    proximity: ProximityField | None = None
    shaft_sample_mm: float = 80.0
    sample_spacing_mm: float = 2.0
    exposure_s: float = 0.5  # fluoroscopy time per shot
    dose_per_shot_mgy: float = 0.1
    procedure: ProcedureModel | None = None  # the procedure's rules (PTED ...), run inside each step

    def initial_procedure_state(self) -> Any:
        return self.procedure.initial_state() if self.procedure is not None else None

    def step(self, s: SimState, inp: InputState, dt_s: float) -> SimState:
        instruments = list(s.instruments)
        active = s.active_instrument
        hand = inp.active
        actions: set[str] = set()
        pressed = bool(hand.primary_pressed) and inp.focused
        if pressed and not s.primary_was_pressed and instruments:
            active = (active + 1) % len(instruments)  # primary button: next instrument
            actions.add(NEXT_INSTRUMENT)
        keys = frozenset(inp.keys) if inp.focused else frozenset()
        actions |= keys - s.keys_down  # a key counts once, when it goes down
        shots, fluoro_s, dose = s.shots, s.fluoro_time_s, s.dose_mgy
        shot_view: str | None = None
        for key in sorted(actions & CARM_VIEW_KEYS.keys()):  # at most one shot per step: the first key
            shot_view = CARM_VIEW_KEYS[key] or s.carm_view
            shots, fluoro_s, dose = shots + 1, fluoro_s + self.exposure_s, dose + self.dose_per_shot_mgy
            break
        if instruments and inp.focused and hand.pose_world_from_hand is not None:
            cur = instruments[active]
            instruments[active] = dataclasses.replace(cur, world_from_tool=np.array(hand.pose_world_from_hand),
                                                      held=True, visible=True)
        haptics: tuple[HapticRequest, ...] = ()
        proc_state = s.procedure_state
        if self.procedure is not None and instruments:
            moved = self.procedure.move(s, tuple(instruments), active, hand, dt_s, frozenset(actions))
            instruments, proc_state = list(moved.instruments), moved.procedure_state
            actions |= moved.actions
            haptics = tuple(HapticRequest(inp.active_hand if h.hand < 0 else h.hand, h.amplitude, h.duration_s)
                            for h in moved.haptics)
        time_s = s.time_s + dt_s
        axial = cc = tip_dist = None
        tip = None
        inst_id = None
        target_d: dict[str, float] = {}
        struct_d: dict[str, float] = {}
        inside: frozenset[str] = frozenset()
        angles: dict[str, float] = {}
        if instruments:
            inst = instruments[active]
            inst_id = inst.instrument_id
            tip = inst.tip_mm
            axis_p = self.patient_from_world[:3, :3] @ inst.axis
            axial = float(np.degrees(np.arctan2(abs(axis_p[1]), abs(axis_p[0]) + 1e-12)))
            cc = float(np.degrees(np.arcsin(np.clip(axis_p[2], -1, 1))))
            angles = {"axial": axial, "craniocaudal": cc}
            target_d = {tid: float(np.linalg.norm(tip - t.point_world_mm)) for tid, t in self.targets.items()}
            focus = s.focus_target if s.focus_target in target_d else next(iter(target_d), None)
            tip_dist = target_d[focus] if focus is not None else None
            if self.proximity is not None and self.proximity.surfaces:
                struct_d, inside = self._structure_distances(inst)
        obs = Observation(time_s=time_s, dt_s=dt_s, instrument_id=inst_id, tip_world_mm=tip,
                          trigger=float(hand.trigger) if inp.focused else 0.0, target_distance_mm=target_d,
                          structure_distance_mm=struct_d, tip_inside=inside, angles_deg=angles, shots=shots,
                          fluoro_time_s=fluoro_s, dose_mgy=dose, actions=frozenset(actions), shot_view=shot_view)
        if self.procedure is not None and instruments:
            obs, proc_state = self.procedure.observe(proc_state, obs, tuple(instruments), active)
        return dataclasses.replace(
            s, time_s=time_s, tick=s.tick + 1, instruments=tuple(instruments), active_instrument=active,
            active_hand=inp.active_hand, tip_to_target_mm=tip_dist, axial_angle_deg=axial, craniocaudal_deg=cc,
            haptics=haptics, primary_was_pressed=pressed, keys_down=keys, shots=shots, fluoro_time_s=fluoro_s,
            dose_mgy=dose, carm_view=shot_view or s.carm_view, procedure_state=proc_state, observation=obs)

    def _structure_distances(self, inst: InstrumentState) -> tuple[dict[str, float], frozenset[str]]:
        """Signed distance (mm) from the instrument's surface to each measured structure, and
        the structures containing the tip."""
        assert self.proximity is not None
        world_from_tool = inst.world_from_tool
        pts_w = shaft_points(world_from_tool, min(self.shaft_sample_mm, inst.spec.shaft_length_mm),
                             self.sample_spacing_mm)
        pts_p = pts_w @ self.patient_from_world[:3, :3].T + self.patient_from_world[:3, 3]
        radius_mm = inst.spec.shaft_diameter_mm / 2.0
        c = self.proximity.clearance(pts_p, contact_mm=radius_mm)  # contact (below the radius) decided exactly
        return {n: d - radius_mm for n, d in c.distance_mm.items()}, c.inside
