"""What an autopilot plan is: timed tool keyframes, timed actions and the instrument per step.

A :class:`Plan` is pure data in the patient frame (RAS, millimetres) and seconds from the
start of the run. The app turns it into the headless backend's pose track
(``vr_trainer.app.autopilot``); the run ends when the plan ends (``duration_s``).

Actions are discrete inputs at a time: ``next_instrument`` (the primary button: the active
instrument cycles to the next declared one), or any other action name the simulation knows
(``carm_shot`` ...), which the headless backend hands over as a key of that name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

Vec3 = tuple[float, float, float]
NEXT_INSTRUMENT = "next_instrument"
ErrorKind = Literal["aim", "waver", "slow", "detour", "overshoot", "entry", "redirect", "shots", "grasp", "cut",
                    "rotation",
                    "release", "plunge"]


def vec3(v: np.ndarray | list[float] | tuple[float, ...]) -> Vec3:
    a = np.asarray(v, float).reshape(3)
    return (float(a[0]), float(a[1]), float(a[2]))


@dataclass(frozen=True)
class ToolKey:
    """The instrument at ``t_s``: its tip and a point on the handle side of the shaft (RAS mm)."""

    t_s: float
    tip_mm: Vec3
    toward_mm: Vec3
    trigger: float = 0.0


@dataclass(frozen=True)
class PlanAction:
    """A discrete input at ``t_s`` (held for one frame)."""

    t_s: float
    name: str


@dataclass(frozen=True)
class PlanStep:
    """How one scenario step is carried out.

    ``approach_direction`` is a unit vector (RAS) from the target outward along the planned
    straight path; ``approach_source`` says whether it came from a bundle landmark or from the
    geometric search; ``clearance_mm`` is the smallest clearance (mm, shaft radius and margins
    taken off) of that path from the obstacles; ``stop_mm`` how far short of the target (along
    the path) the tip stops; ``arrive_s`` when the tip first reaches the stop point.
    """

    step_id: str
    instrument_id: str | None
    target_id: str | None
    start_s: float
    arrive_s: float
    end_s: float
    target_mm: Vec3 | None = None
    approach_direction: Vec3 | None = None
    approach_source: str = "none"
    clearance_mm: float | None = None
    stop_mm: float = 0.0


@dataclass(frozen=True)
class PlannedError:
    """One seeded error of a non-expert plan (see ``vr_trainer.procedures.autopilot``)."""

    kind: ErrorKind
    step_id: str
    t_s: float
    magnitude: float
    unit: str
    detail: str


@dataclass(frozen=True)
class Plan:
    scenario_id: str
    mode: str  # "expert", "novice" or "skill"
    skill: float  # 0 (novice errors at full size) .. 1 (expert, no errors)
    seed: int
    tool: tuple[ToolKey, ...]
    actions: tuple[PlanAction, ...] = ()
    steps: tuple[PlanStep, ...] = ()
    errors: tuple[PlannedError, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def duration_s(self) -> float:
        times = [k.t_s for k in self.tool] + [a.t_s for a in self.actions] + [s.end_s for s in self.steps]
        return max(times + [0.0])

    def tip_path_mm(self) -> np.ndarray:
        """(n, 3) float: the tip keyframe positions (RAS mm) in time order."""
        return np.array([k.tip_mm for k in self.tool], float).reshape(-1, 3)

    @property
    def path_length_mm(self) -> float:
        """Length of the tip's keyframed polyline (mm), all instruments together."""
        p = self.tip_path_mm()
        return float(np.linalg.norm(np.diff(p, axis=0), axis=1).sum()) if len(p) > 1 else 0.0

    def tip_at(self, t_s: float) -> np.ndarray:
        """(3,) tip position (RAS mm) at ``t_s``, linearly interpolated as the pose track does."""
        ts = np.array([k.t_s for k in self.tool], float)
        p = self.tip_path_mm()
        return np.array([np.interp(t_s, ts, p[:, i]) for i in range(3)])

    def summary(self) -> dict[str, Any]:
        """A compact description for summary.json (no keyframes)."""
        return {
            "mode": self.mode, "skill": self.skill, "seed": self.seed,
            "duration_s": round(self.duration_s, 3), "path_length_mm": round(self.path_length_mm, 1),
            "keyframes": len(self.tool), "actions": len(self.actions),
            "steps": [{k: v for k, v in asdict(s).items()} for s in self.steps],
            "errors": [asdict(e) for e in self.errors],
            "notes": list(self.notes),
        }
