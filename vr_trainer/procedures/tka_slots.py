"""Knee arthroplasty cutting blocks as geometry: the slot planes a block's pose defines, the planned
planes of a scenario's :class:`~vr_trainer.scenario.schema.TkaPlan`, and the saw's coverage of a
bone's cross-section in a slot (a pass is done when the blade has swept all of it).

Conventions (patient RAS millimetres; a :class:`~vr_trainer.sim.cutting.Plane`'s normal points to
the bone that stays):

- a block's slot is the plane through its tool tip perpendicular to its tool z axis (the instrument
  catalogue's ``box_mm`` blocks are drawn that way);
- the 4-in-1 block stands on the distal cut: its tip marks the posterior cut, its z axis points
  anteriorly, and its four slots (posterior, anterior at the size's box distance, and two 45 degree
  chamfers) follow from the size (:func:`four_in_one_planes`).

Pure numpy and trimesh; no GL, device or network code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh

from vr_trainer.procedures.tka_landmarks import FemurLandmarks, TibiaLandmarks
from vr_trainer.procedures.tka_readouts import distal_femoral, femoral_rotation, plane_in_frame, tibial
from vr_trainer.scenario.schema import TkaPlan
from vr_trainer.sim.cutting import Plane

BLADE_HALF_WIDTH_MM = 12.5  # a 25 mm oscillating blade
BLADE_LENGTH_MM = 90.0
TIP_SWEEP_MM = 6.0  # the blade's oscillation reaches this far round its tip
SAMPLE_MM = 2.5  # cross-section sampling pitch
CHAMFER_FRACTION = 0.22  # chamfer corner size as a fraction of the box (a typical 4-in-1 geometry)
FOUR_IN_ONE_SLOTS = ("posterior", "anterior", "posterior_chamfer", "anterior_chamfer")


def _unit(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, float) / float(np.linalg.norm(v))


def slot_plane(tip_mm: np.ndarray, axis: np.ndarray, keep_toward: np.ndarray) -> Plane:
    """The slot through ``tip_mm`` perpendicular to ``axis``, its normal toward ``keep_toward``."""
    n = _unit(axis)
    return Plane.make(tip_mm, n if float(n @ keep_toward) >= 0 else -n)


def four_in_one_planes(tip_mm: np.ndarray, anterior: np.ndarray, distal_cut: Plane,
                       box_ap_mm: float) -> dict[str, Plane]:
    """The four slots of a 4-in-1 block whose posterior slot passes through ``tip_mm`` (on the distal
    cut) with its z axis ``anterior`` (projected into the distal cut), for a box of ``box_ap_mm``."""
    d = distal_cut.normal  # into the kept femur (proximal)
    a = _unit(anterior - float(anterior @ d) * d)
    tip = tip_mm - float((tip_mm - distal_cut.origin_mm) @ d) * d
    c = CHAMFER_FRACTION * box_ap_mm
    return {"posterior": Plane.make(tip, a),
            "anterior": Plane.make(tip + box_ap_mm * a, -a),
            "posterior_chamfer": Plane.make(tip + c * a, a + d),
            "anterior_chamfer": Plane.make(tip + (box_ap_mm - c) * a, -a + d)}


FINISHING_HEIGHT = 0.8  # the 4-in-1 cuts reach this fraction of the box above the distal cut (the flanges)


def finishing_limit(distal_cut: Plane, box_ap_mm: float) -> Plane:
    """Where a 4-in-1 block's saw passes end: the plane ``FINISHING_HEIGHT x box`` above the distal cut,
    its normal toward the joint (a posterior cut does not run up the femoral shaft)."""
    d = distal_cut.normal
    return Plane.make(distal_cut.origin_mm + FINISHING_HEIGHT * box_ap_mm * d, -d)


def femur_ap_mm(femur_mesh: trimesh.Trimesh, posterior: Plane, distal_cut: Plane, height_mm: float = 40.0) -> float:
    """The bone's depth in front of the posterior cut (to the anterior cortex), within ``height_mm``
    above the distal cut: what the 4-in-1 sizing stylus reads."""
    v = np.asarray(femur_mesh.vertices, float)
    h = distal_cut.signed_distance_mm(v)
    sel = v[(h >= 0) & (h <= height_mm)]
    if len(sel) == 0:
        return 0.0
    return float(posterior.signed_distance_mm(sel).max())


@dataclass(frozen=True)
class Section:
    """A bone's cross-section in a slot: sample points (n, 3) inside the bone, on the plane."""

    plane: Plane
    points_mm: np.ndarray
    centroid_mm: np.ndarray

    @property
    def empty(self) -> bool:
        return len(self.points_mm) == 0


def in_plane_basis(plane: Plane, hint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit in-plane axes: ``w`` along ``hint`` projected into the plane, ``u`` = normal x w."""
    n = plane.normal
    w = hint - float(hint @ n) * n
    if float(np.linalg.norm(w)) < 1e-6:
        w = np.cross(n, [1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.cross(n, [0.0, 1.0, 0.0])
    w = _unit(w)
    return np.cross(n, w), w


def cross_section(bone: trimesh.Trimesh, plane: Plane, pitch_mm: float = SAMPLE_MM,
                  within: Plane | None = None) -> Section:
    """Points every ``pitch_mm`` of ``plane`` that lie inside the closed ``bone`` (and on the kept side
    of ``within``, when given)."""
    v = np.asarray(bone.vertices, float)
    near = v[np.abs(plane.signed_distance_mm(v)) < 2.0 * pitch_mm]
    if len(near) < 3:
        return Section(plane, np.zeros((0, 3)), plane.origin_mm.copy())
    u, w = in_plane_basis(plane, np.array([0.0, 1.0, 0.0]))
    o = plane.origin_mm
    cu, cw = (near - o) @ u, (near - o) @ w
    gu = np.arange(cu.min() - pitch_mm, cu.max() + pitch_mm, pitch_mm)
    gw = np.arange(cw.min() - pitch_mm, cw.max() + pitch_mm, pitch_mm)
    uu, ww = np.meshgrid(gu, gw, indexing="ij")
    pts = o + uu.reshape(-1, 1) * u + ww.reshape(-1, 1) * w
    inside = _contains(bone, pts)
    if within is not None:
        inside &= within.signed_distance_mm(pts) >= 0.0
    pts = pts[inside]
    return Section(plane, pts, pts.mean(0) if len(pts) else o.copy())


def _contains(mesh: trimesh.Trimesh, pts: np.ndarray) -> np.ndarray:
    """Inside test by ray parity along a fixed skew direction (robust to points on the plane's cut)."""
    d = _unit(np.array([0.3127, 0.7243, 0.6147]))
    ray = mesh.ray
    locs, idx, _ = ray.intersects_location(pts, np.tile(d, (len(pts), 1)), multiple_hits=True)
    counts = np.bincount(idx, minlength=len(pts)) if len(idx) else np.zeros(len(pts), int)
    return np.asarray(counts % 2 == 1)


def blade_covers(points_mm: np.ndarray, tip_mm: np.ndarray, toward_handle: np.ndarray) -> np.ndarray:
    """(n,) bool: section points under the blade (tip at ``tip_mm``, body toward the handle)."""
    if len(points_mm) == 0:
        return np.zeros(0, bool)
    rel = points_mm - tip_mm
    s = np.clip(rel @ toward_handle, 0.0, BLADE_LENGTH_MM)
    radial = np.linalg.norm(rel - s[:, None] * toward_handle, axis=1)
    return np.asarray((radial <= BLADE_HALF_WIDTH_MM) | (np.linalg.norm(rel, axis=1) <= BLADE_HALF_WIDTH_MM
                                                         + TIP_SWEEP_MM))


@dataclass(frozen=True)
class PlannedCuts:
    """The scenario's planned planes, from the landmarks (what navigation aims at)."""

    distal: Plane
    tibial: Plane
    posterior: Plane


def planned_cuts(femur: FemurLandmarks, tibia: TibiaLandmarks, plan: TkaPlan) -> PlannedCuts:
    """Planes that read exactly the targets of ``plan`` (a :class:`TkaPlan`) on these landmarks."""
    fr = femur.frame
    # varus + means the distal-pointing normal leans medially: the kept-side normal leans laterally
    distal = plane_in_frame(fr, fr.origin_mm, lateral_tilt_deg=float(plan.distal_varus_deg),
                            anterior_tilt_deg=float(plan.distal_flexion_deg))
    r = distal_femoral(distal, femur)
    depth = max(r.medial_resection_mm, r.lateral_resection_mm)
    distal = Plane.make(distal.origin_mm + (float(plan.distal_resection_mm) - depth) * distal.normal,
                        distal.normal)
    tf = tibia.frame
    t = plane_in_frame(tf, tf.origin_mm, lateral_tilt_deg=-float(plan.tibial_varus_deg),
                       anterior_tilt_deg=-float(plan.tibial_slope_deg))
    rt = tibial(t, tibia)
    depth = max(rt.medial_resection_mm, rt.lateral_resection_mm)
    up = t.normal  # toward the removed plateau
    t = Plane.make(t.origin_mm + (depth - float(plan.tibial_resection_mm)) * up, -up)
    rot = float(plan.femoral_rotation_deg)
    post = _posterior_plane(femur, distal, rot, float(plan.posterior_resection_mm))
    return PlannedCuts(distal, t, post)


def _posterior_plane(femur: FemurLandmarks, distal: Plane, rotation_deg: float, resection_mm: float) -> Plane:
    fr = femur.frame
    d = distal.normal
    best = None
    for sign in (1.0, -1.0):
        p = plane_in_frame(fr, fr.origin_mm, lateral_tilt_deg=sign * rotation_deg, around="anterior")
        a = _unit(p.normal - float(p.normal @ d) * d)
        cand = Plane.make(fr.origin_mm, a)
        err = abs(femoral_rotation(cand, femur).external_rotation_deg - rotation_deg)
        if best is None or err < best[0]:
            best = (err, cand)
    assert best is not None
    p = best[1]
    r = femoral_rotation(p, femur)
    depth = max(r.medial_resection_mm, r.lateral_resection_mm)
    return Plane.make(p.origin_mm + (resection_mm - depth) * p.normal, p.normal)  # normal: anterior


__all__ = ["Section", "PlannedCuts", "slot_plane", "four_in_one_planes", "femur_ap_mm", "cross_section",
           "blade_covers", "planned_cuts", "in_plane_basis", "finishing_limit", "FOUR_IN_ONE_SLOTS",
           "BLADE_HALF_WIDTH_MM"]
