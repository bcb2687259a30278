"""TKA: the procedure model for a scenario and its bundle (rules in :mod:`.tka_workflow`, geometry
in :mod:`.tka_slots`, metrics in :mod:`.tka_metrics`, planner in :mod:`.tka_autopilot`).

:func:`tka_model` reads everything from the scenario (its ``tka`` plan, or the defaults) and the
bundle's own bones: the structures whose names hold ``femur``, ``tibia`` (and ``fibula``), their
landmarks (:mod:`.tka_landmarks`, with the scenario's overrides), the collateral ligaments
(:mod:`.tka_gaps`) and the planned cuts (:func:`.tka_slots.planned_cuts`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

from vr_trainer.procedures.tka_gaps import knee_balance
from vr_trainer.procedures.tka_landmarks import FEMUR_OVERRIDES, TIBIA_OVERRIDES, femur_landmarks, tibia_landmarks
from vr_trainer.procedures.tka_slots import PlannedCuts, planned_cuts
from vr_trainer.procedures.tka_workflow import TkaModel
from vr_trainer.scenario.schema import Scenario, TkaPlan


class TkaBundleError(ValueError):
    """The bundle cannot carry a knee arthroplasty (the message says what is missing)."""


def _find(structures: Any, word: str) -> Any:
    hits = [s for s in structures if word in s.name.lower() and s.tissue == "bone"]
    return hits[0] if hits else None


def plan_of(scenario: Scenario) -> TkaPlan:
    return scenario.tka or TkaPlan()


@dataclass
class KneeSetup:
    """What a TKA session and its planner share: landmarks, balance, plan and planned cuts."""

    model: TkaModel
    plan: TkaPlan
    planned: PlannedCuts


def knee_setup(scenario: Scenario, bundle: Any, world_from_patient: np.ndarray) -> KneeSetup:
    femur_st = _find(bundle.structures, "femur")
    tibia_st = _find(bundle.structures, "tibia")
    if femur_st is None or tibia_st is None:
        have = ", ".join(s.name for s in bundle.structures)
        raise TkaBundleError(f"a knee arthroplasty needs a femur and a tibia (bone structures named so) in the "
                             f"bundle; it has: {have}")
    fibula_st = _find(bundle.structures, "fibula")
    plan = plan_of(scenario)
    side = scenario.anatomy.side
    femur_mesh = trimesh.Trimesh(np.asarray(femur_st.mesh.vertices), np.asarray(femur_st.mesh.faces), process=False)
    tibia_mesh = trimesh.Trimesh(np.asarray(tibia_st.mesh.vertices), np.asarray(tibia_st.mesh.faces), process=False)
    over = plan.landmarks
    femur = femur_landmarks(femur_mesh, side=side, valgus_deg=plan.valgus_deg,
                            overrides={k: v for k, v in over.items() if k in FEMUR_OVERRIDES})
    tibia = tibia_landmarks(tibia_mesh, side=side, overrides={k: v for k, v in over.items() if k in TIBIA_OVERRIDES})
    fib = None
    if fibula_st is not None:
        fib = trimesh.Trimesh(np.asarray(fibula_st.mesh.vertices), np.asarray(fibula_st.mesh.faces), process=False)
    balance = knee_balance(femur, tibia, tibia_mesh, fib, mcl_tightness_mm=plan.mcl_tightness_mm,
                           lcl_tightness_mm=plan.lcl_tightness_mm)
    kinds = {i.id: i.kind for i in scenario.instruments}
    # what moves with the tibia when the knee flexes: the structures whose centre lies below the
    # joint line (tibia, fibula, collateral ligaments, patellar tendon, the distal popliteal artery)
    joint = tibia.knee_centre_mm
    flexing = frozenset(s.name for s in bundle.structures if s.name != femur_st.name
                        and float((np.asarray(s.mesh.vertices).mean(0) - joint) @ tibia.frame.superior) < 0.0)
    measured = {r.structure for r in scenario.risk_structures} & flexing
    flexing_risk = None
    if measured:
        from vr_trainer.sim.proximity import ProximityField

        flexing_risk = ProximityField.from_meshes({s.name: (np.asarray(s.mesh.vertices), np.asarray(s.mesh.faces))
                                                   for s in bundle.structures if s.name in measured})
    model = TkaModel(patient_from_world=np.linalg.inv(world_from_patient), femur=femur, tibia=tibia, balance=balance,
                     meshes={"femur": femur_mesh, "tibia": tibia_mesh},
                     structure_names={"femur": femur_st.name, "tibia": tibia_st.name},
                     sizes=tuple((s.name, s.box_ap_mm) for s in plan.femoral_sizes),
                     inserts_mm=tuple(sorted(plan.insert_thickness_mm)), release_step_mm=plan.release_step_mm,
                     components_mm=plan.femoral_component_mm + plan.tibial_tray_mm,
                     kinds=kinds, flexing=flexing, flexing_risk=flexing_risk,
                     ligaments=frozenset(s.name for s in bundle.structures
                                         if any(w in s.name.lower() for w in ("mcl", "lcl", "collateral"))))
    return KneeSetup(model, plan, planned_cuts(femur, tibia, plan))


def tka_model(scenario: Scenario, bundle: Any, world_from_patient: np.ndarray) -> TkaModel:
    """The knee arthroplasty rules for ``scenario`` on ``bundle`` (an anatomy Bundle)."""
    return knee_setup(scenario, bundle, world_from_patient).model


def export_guides(setup: KneeSetup, folder: str | Path) -> list[Path]:
    """The patient-specific cutting guides of the planned distal femoral and tibial cuts (STL and 3MF)."""
    from vr_trainer.procedures.tka_guide import distal_cutting_guide, tibial_cutting_guide

    out: list[Path] = []
    m = setup.model
    out += distal_cutting_guide(m.meshes["femur"], setup.planned.distal, m.femur).export(folder,
                                                                                          "distal_femoral_guide")
    out += tibial_cutting_guide(m.meshes["tibia"], setup.planned.tibial, m.tibia).export(folder,
                                                                                         "proximal_tibial_guide")
    return out
