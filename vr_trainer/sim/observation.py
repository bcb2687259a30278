"""What the scenario engine sees of the simulation after each fixed step.

The simulation (and the procedure rules built on it) fill an :class:`Observation`;
the scenario engine (``vr_trainer.scenario.engine``) reads nothing else, so it can be
driven by synthetic observation streams in tests and by recorded ones in replay.

Units: millimetres (world frame, y up), seconds, degrees, percent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np


@dataclass(frozen=True)
class Observation:
    """One fixed simulation step as the rules see it.

    ``structure_distance_mm`` maps a bundle structure name to the signed distance (mm) from the
    active instrument (its tip and inserted shaft, the closest point) to that structure's
    surface: negative inside, 0 touching. Only structures the scenario refers to are present.
    ``tip_inside`` holds the structure names whose closed surface contains the tip.
    ``target_distance_mm`` maps a scenario target id to the tip's distance from it (mm).
    ``angles_deg`` holds named trajectory angles (``axial``, ``craniocaudal`` and whatever a
    procedure adds). ``actions`` are the discrete actions the resident took in this step
    (``carm_shot``, ``next_instrument`` ...). ``shot_view`` is the C-arm view of the shot taken in
    this step (``ap``, ``lateral``, ``oblique``; None: no shot). ``values`` holds a procedure's
    named measurements for its metrics (``skin_entry_lateral_mm`` ...; units in the names).
    """

    time_s: float
    dt_s: float
    instrument_id: str | None = None
    tip_world_mm: np.ndarray | None = None  # (3,) float
    trigger: float = 0.0
    target_distance_mm: Mapping[str, float] = field(default_factory=dict)
    structure_distance_mm: Mapping[str, float] = field(default_factory=dict)
    tip_inside: frozenset[str] = frozenset()
    angles_deg: Mapping[str, float] = field(default_factory=dict)
    removed_pct: Mapping[str, float] = field(default_factory=dict)
    shots: int = 0
    fluoro_time_s: float = 0.0
    dose_mgy: float = 0.0
    actions: frozenset[str] = frozenset()
    shot_view: str | None = None
    values: Mapping[str, float] = field(default_factory=dict)
