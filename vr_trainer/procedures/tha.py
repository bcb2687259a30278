"""THA: the procedure model for a scenario and its bundle (rules in :mod:`.tha_workflow`, reaming
geometry in :mod:`.tha_reaming`, pelvic frame and cup angles in :mod:`.tha_pelvis`, metrics in
:mod:`.tha_metrics`, planner in :mod:`.tha_autopilot`).

:func:`hip_setup` reads everything from the scenario (its ``tha`` plan, or the defaults) and the
bundle's own bones: the hemipelves (bone structures named ``hip``/``pelvis``/``ilium``/``innominate``)
give the anterior pelvic plane; the operated side's hemipelvis carries the acetabulum, found by a
sphere fit of its cavity (:func:`.tha_pelvis.native_acetabulum`) seeded, in this order, by the
scenario's ``tha.landmarks.hip_centre_mm``, the femoral head (a sphere fit of the operated side's
femur), a search of the hemipelvis's own surface for its largest spherical concavity
(:func:`cavity_seed`), or the bundle's ``hip_center_<side>_mm`` landmark.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import trimesh

from vr_trainer.procedures.tha_pelvis import Acetabulum, Side, anterior_pelvic_plane, cup_axis, native_acetabulum
from vr_trainer.procedures.tha_workflow import ThaModel
from vr_trainer.scenario.schema import Scenario, ThaPlan

PELVIS_WORDS = ("hip", "pelvis", "ilium", "innominate", "coxa")


class ThaBundleError(ValueError):
    """The bundle cannot carry a hip arthroplasty (the message says what is missing)."""


def plan_of(scenario: Scenario) -> ThaPlan:
    return scenario.tha or ThaPlan()


def _mesh(st: Any) -> trimesh.Trimesh:
    return trimesh.Trimesh(np.asarray(st.mesh.vertices, float), np.asarray(st.mesh.faces), process=False)


def _of_side(structs: list[Any], side: Side) -> Any:
    """The structure of ``side``: by its name, else by where it lies (RAS: +x is the patient's right)."""
    named = [s for s in structs if side in s.name.lower()]
    if named:
        return named[0]
    sign = 1.0 if side == "right" else -1.0
    return max(structs, key=lambda s: sign * float(np.asarray(s.mesh.vertices, float)[:, 0].mean()))


def cavity_seed(hemipelvis: trimesh.Trimesh, radii_mm: tuple[float, ...] = (20.0, 24.0, 28.0, 32.0)
                ) -> tuple[np.ndarray, float]:
    """(centre_mm, radius_mm) of the hemipelvis's largest spherical concavity: each vertex, moved by
    ``r`` along its outward normal, lands on the centre of the sphere its surface bends around; the
    acetabulum is where most of them land together (within 3 mm), over the trial radii."""
    from scipy.spatial import cKDTree

    v = np.asarray(hemipelvis.vertices, float)
    n = np.asarray(hemipelvis.vertex_normals, float)
    best: tuple[int, np.ndarray, float] | None = None
    for r in radii_mm:
        c = v + r * n
        counts = cKDTree(c).query_ball_point(c, 3.0, return_length=True)
        k = int(np.argmax(counts))
        if best is None or int(counts[k]) > best[0]:
            best = (int(counts[k]), c[k], r)
    assert best is not None
    return best[1], best[2]


def femoral_head_seed(femur: trimesh.Trimesh, superior: np.ndarray) -> tuple[np.ndarray, float] | None:
    """(centre_mm, radius_mm) of the femoral head's sphere fit, or None when it is not there."""
    from vr_trainer.procedures.tka_landmarks import _femoral_head

    return _femoral_head(np.asarray(femur.vertices, float), np.asarray(femur.vertex_normals, float),
                         np.asarray(superior, float))


def find_acetabulum(hemipelvis: trimesh.Trimesh, femur: trimesh.Trimesh | None, superior: np.ndarray,
                    side: Side, plan: ThaPlan, landmarks: dict[str, Any]) -> tuple[Acetabulum, str]:
    """The native acetabulum and what seeded its fit."""
    tried: list[tuple[str, np.ndarray, float]] = []
    if "hip_centre_mm" in plan.landmarks:
        tried.append(("scenario landmark", np.asarray(plan.landmarks["hip_centre_mm"], float), 25.0))
    head = femoral_head_seed(femur, superior) if femur is not None else None
    if head is not None:
        tried.append(("femoral head", head[0], head[1]))
    c, r = cavity_seed(hemipelvis)
    tried.append(("cavity search", c, r))
    lm = landmarks.get(f"hip_center_{side}_mm")
    if lm is not None and len(lm) == 3:
        tried.append(("bundle landmark", np.asarray(lm, float), 25.0))
    errors = []
    for source, seed, radius in tried:
        try:
            return native_acetabulum(hemipelvis, seed, radius), source
        except ValueError as e:
            errors.append(f"{source}: {e}")
    raise ThaBundleError("no acetabulum found on the operated hemipelvis (" + "; ".join(errors) + "); give "
                         "tha.landmarks.hip_centre_mm in the scenario")


@dataclass
class HipSetup:
    """What a THA session and its planner share: the model, the plan and the planned cup axis."""

    model: ThaModel
    plan: ThaPlan
    planned_axis: np.ndarray  # unit, the target cup axis (patient)


def hip_setup(scenario: Scenario, bundle: Any, world_from_patient: np.ndarray) -> HipSetup:
    bones = [s for s in bundle.structures if s.tissue == "bone"]
    pelves = [s for s in bones if any(w in s.name.lower() for w in PELVIS_WORDS)]
    if not pelves:
        have = ", ".join(s.name for s in bundle.structures)
        raise ThaBundleError("a hip arthroplasty needs the pelvis (bone structures named hip_right/hip_left, "
                             f"pelvis ...) in the bundle; it has: {have}")
    side: Side = scenario.anatomy.side or "right"
    plan = plan_of(scenario)
    pelvis_meshes = [_mesh(s) for s in pelves]
    frame = anterior_pelvic_plane(pelvis_meshes)
    hemi_st = _of_side(pelves, side) if len(pelves) > 1 else pelves[0]
    hemi = pelvis_meshes[pelves.index(hemi_st)]
    femurs = [s for s in bones if "femur" in s.name.lower()]
    femur = _mesh(_of_side(femurs, side)) if femurs else None
    landmarks = dict(getattr(bundle, "landmarks", {}) or {})
    native, source = find_acetabulum(hemi, femur, frame.superior, side, plan, landmarks)
    meshes = {"hemipelvis": hemi}
    names = {"hemipelvis": hemi_st.name}
    cart = [s for s in bundle.structures if s.tissue == "cartilage" and "acetabul" in s.name.lower()]
    if cart:
        c_st = _of_side(cart, side)
        c_mesh = _mesh(c_st)
        if c_mesh.is_watertight:
            meshes["cartilage"], names["cartilage"] = c_mesh, c_st.name
    model = ThaModel(patient_from_world=np.linalg.inv(world_from_patient), frame=frame, native=native, side=side,
                     meshes=meshes, structure_names=names, reamer_radius_mm=plan.reamer_diameter_mm / 2.0,
                     cup_radius_mm=plan.cup_diameter_mm / 2.0, reaming_rate_mm_s=plan.reaming_rate_mm_s,
                     inclination_target_deg=plan.cup_inclination_deg,
                     anteversion_target_deg=plan.cup_anteversion_deg,
                     inclination_tolerance_deg=plan.inclination_tolerance_deg,
                     anteversion_tolerance_deg=plan.anteversion_tolerance_deg, seed_source=source)
    return HipSetup(model, plan, cup_axis(plan.cup_inclination_deg, plan.cup_anteversion_deg, frame, side))


def tha_model(scenario: Scenario, bundle: Any, world_from_patient: np.ndarray) -> ThaModel:
    """The hip arthroplasty rules for ``scenario`` on ``bundle`` (an anatomy Bundle)."""
    return hip_setup(scenario, bundle, world_from_patient).model
