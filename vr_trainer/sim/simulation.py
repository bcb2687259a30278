"""Fixed-step simulation: instrument follows the active hand, trajectory readouts,
target checks and procedure-step progression. Pure: (state, input, dt) -> state."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from vr_trainer.frame import InputState
from vr_trainer.sim.annotations import AnnotationSet
from vr_trainer.sim.instruments import InstrumentState


@dataclass(frozen=True)
class Target:
    target_id: str
    point_world_mm: np.ndarray
    tolerance_mm: float


@dataclass(frozen=True)
class StepDef:
    step_id: str
    prompt: str
    instrument_id: str | None
    target_id: str | None


@dataclass(frozen=True)
class HapticRequest:
    hand: int
    amplitude: float
    duration_s: float


@dataclass
class SimState:
    time_s: float = 0.0
    tick: int = 0
    instruments: tuple[InstrumentState, ...] = ()
    active_instrument: int = 0
    step_index: int = 0
    completed_steps: tuple[str, ...] = ()
    tip_to_target_mm: float | None = None
    axial_angle_deg: float | None = None
    craniocaudal_deg: float | None = None
    haptics: tuple[HapticRequest, ...] = ()
    annotations: AnnotationSet = field(default_factory=AnnotationSet)
    primary_was_pressed: bool = False
    mentor_notes: list[tuple[str, str]] = field(default_factory=list)  # (author, text), newest last


@dataclass
class Simulation:
    """The rules of the world. ``patient_from_world`` (4x4) turns world vectors into RAS."""

    patient_from_world: np.ndarray
    targets: dict[str, Target] = field(default_factory=dict)
    steps: tuple[StepDef, ...] = ()

    def step(self, s: SimState, inp: InputState, dt_s: float) -> SimState:
        instruments = list(s.instruments)
        active = s.active_instrument
        hand = inp.active
        pressed = bool(hand.primary_pressed) and inp.focused
        if pressed and not s.primary_was_pressed and instruments:
            active = (active + 1) % len(instruments)  # primary button: next instrument
        if instruments and inp.focused and hand.pose_world_from_hand is not None:
            cur = instruments[active]
            instruments[active] = dataclasses.replace(cur, world_from_tool=np.array(hand.pose_world_from_hand),
                                                      held=True, visible=True)
        tip_dist = axial = cc = None
        haptics: list[HapticRequest] = []
        step_index = s.step_index
        completed = s.completed_steps
        if instruments:
            inst = instruments[active]
            axis_p = self.patient_from_world[:3, :3] @ inst.axis
            axial = float(np.degrees(np.arctan2(abs(axis_p[1]), abs(axis_p[0]) + 1e-12)))
            cc = float(np.degrees(np.arcsin(np.clip(axis_p[2], -1, 1))))
            step = self.steps[step_index] if step_index < len(self.steps) else None
            target = self.targets.get(step.target_id) if step and step.target_id else None
            if target is None and self.targets:
                target = next(iter(self.targets.values()))
            if target is not None:
                tip_dist = float(np.linalg.norm(inst.tip_mm - target.point_world_mm))
                right_tool = step is None or step.instrument_id in (None, inst.instrument_id)
                if step is not None and step.target_id == target.target_id and right_tool \
                        and tip_dist <= target.tolerance_mm:
                    completed = completed + (step.step_id,)
                    step_index += 1
                    haptics.append(HapticRequest(inp.active_hand, 0.8, 0.15))
        return SimState(
            time_s=s.time_s + dt_s, tick=s.tick + 1, instruments=tuple(instruments), active_instrument=active,
            step_index=step_index, completed_steps=completed, tip_to_target_mm=tip_dist, axial_angle_deg=axial,
            craniocaudal_deg=cc, haptics=tuple(haptics), annotations=s.annotations, primary_was_pressed=pressed,
            mentor_notes=s.mentor_notes)
