"""Pelvic frame and cup readouts for total hip arthroplasty (anterior approach, supine).

- Anterior pelvic plane (APP): the plane touching both anterior superior iliac spines
  (ASIS) and the pubic tubercles, found as the pelvis's anterior supporting plane (the
  extreme points along the plane's own normal, iterated), from the bone geometry only;
  the bundle frame (RAS) picks signs: +x right, +y anterior, +z superior.
- Native acetabulum: least-squares sphere of the acetabular cavity (seeded at the femoral
  head centre when known), its axis pointing out of the opening.
- Cup orientation by Murray's radiographic definitions in the APP frame:
  inclination = angle between the longitudinal axis and the cup axis projected on the
  coronal (APP) plane; anteversion = angle between the cup axis and the coronal plane.
- Lewinnek safe zone: inclination 40 +- 10, anteversion 15 +- 10 deg (or the scenario's).
- Reaming: depth along the native axis and medialisation of the reamed centre (mm); leg
  length and offset change from the hip centre's move (mm).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import trimesh

from .tka_landmarks import fit_sphere

Side = Literal["left", "right"]


def _unit(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, dtype=float) / float(np.linalg.norm(v))


@dataclass(frozen=True)
class PelvicFrame:
    """APP frame: ``right`` (patient's right), ``anterior`` (APP normal), ``superior``; origin mid-ASIS."""

    origin_mm: np.ndarray
    right: np.ndarray
    anterior: np.ndarray
    superior: np.ndarray
    asis_right_mm: np.ndarray
    asis_left_mm: np.ndarray
    pubic_right_mm: np.ndarray
    pubic_left_mm: np.ndarray

    def lateral(self, side: Side) -> np.ndarray:
        return self.right if side == "right" else -self.right

    @property
    def tilt_deg(self) -> float:
        """Pelvic tilt: APP normal against the bundle's +y in the sagittal plane (+: APP top forward)."""
        return float(np.degrees(np.arctan2(-self.anterior[2], self.anterior[1])))


def anterior_pelvic_plane(pelvis: trimesh.Trimesh | list[trimesh.Trimesh]) -> PelvicFrame:
    """APP of a pelvis (one mesh or the hemipelves and sacrum, mm RAS)."""
    meshes = pelvis if isinstance(pelvis, list) else [pelvis]
    v = np.concatenate([np.asarray(m.vertices, dtype=float) for m in meshes])
    centre = 0.5 * (v.min(axis=0) + v.max(axis=0))
    right, ant, sup = np.eye(3)
    points: tuple[np.ndarray, ...] = ()
    for _ in range(5):
        d = v - centre
        x, z = d @ right, d @ sup
        half = 0.5 * float(np.ptp(x))
        zmin, zmax = float(z.min()), float(z.max())
        upper = z > zmin + 0.5 * (zmax - zmin)
        lower = z < zmin + 0.35 * (zmax - zmin)
        regions = [upper & (x > 0.25 * half), upper & (x < -0.25 * half),
                   lower & (x > 0.0) & (x < 0.5 * half), lower & (x < 0.0) & (x > -0.5 * half)]
        points = tuple(v[np.flatnonzero(r)[int(np.argmax(v[r] @ ant))]] for r in regions)
        asis_r, asis_l, pub_r, pub_l = points
        right = _unit(asis_r - asis_l)
        down = 0.5 * (pub_r + pub_l) - 0.5 * (asis_r + asis_l)
        sup = _unit(-(down - float(down @ right) * right))
        ant = np.cross(sup, right)
    asis_r, asis_l, pub_r, pub_l = points
    return PelvicFrame(origin_mm=0.5 * (asis_r + asis_l), right=right, anterior=ant, superior=sup,
                       asis_right_mm=asis_r, asis_left_mm=asis_l, pubic_right_mm=pub_r, pubic_left_mm=pub_l)


def cup_angles_deg(axis: np.ndarray, frame: PelvicFrame, side: Side) -> tuple[float, float]:
    """(inclination, anteversion) in degrees, Murray's radiographic definitions; ``axis`` out of the opening."""
    a = _unit(axis)
    lat = frame.lateral(side)
    rad_av = float(np.degrees(np.arcsin(np.clip(a @ frame.anterior, -1.0, 1.0))))
    rad_inc = float(np.degrees(np.arctan2(a @ lat, -(a @ frame.superior))))
    return rad_inc, rad_av


def cup_axis(inclination_deg: float, anteversion_deg: float, frame: PelvicFrame, side: Side) -> np.ndarray:
    """Unit cup axis (out of the opening) for Murray's radiographic angles."""
    i, a = np.radians(inclination_deg), np.radians(anteversion_deg)
    return (np.sin(i) * np.cos(a) * frame.lateral(side) + np.sin(a) * frame.anterior
            - np.cos(i) * np.cos(a) * frame.superior)


def in_lewinnek_zone(inclination_deg: float, anteversion_deg: float, *, inclination_target_deg: float = 40.0,
                     anteversion_target_deg: float = 15.0, tolerance_deg: float = 10.0) -> bool:
    return (abs(inclination_deg - inclination_target_deg) <= tolerance_deg
            and abs(anteversion_deg - anteversion_target_deg) <= tolerance_deg)


@dataclass(frozen=True)
class Acetabulum:
    centre_mm: np.ndarray
    radius_mm: float
    axis: np.ndarray  # unit, out of the opening
    rms_mm: float


def native_acetabulum(hemipelvis: trimesh.Trimesh, seed_mm: np.ndarray, seed_radius_mm: float = 25.0) -> Acetabulum:
    """Sphere fit of the acetabular cavity around ``seed_mm`` (e.g. the femoral head centre)."""
    v = np.asarray(hemipelvis.vertices, dtype=float)
    n = np.asarray(hemipelvis.vertex_normals, dtype=float)
    centre, radius = np.asarray(seed_mm, dtype=float), float(seed_radius_mm)
    sel = np.zeros(len(v), dtype=bool)
    rms = float("inf")
    for _ in range(8):
        d = v - centre
        dist = np.linalg.norm(d, axis=1)
        inward = -np.einsum("ij,ij->i", d, n) / np.maximum(dist, 1e-9)  # cavity normals face the centre
        sel = (np.abs(dist - radius) < max(2.0, 0.2 * radius)) & (inward > 0.8)
        if sel.sum() < 30:
            raise ValueError("acetabulum: no concave spherical surface near the seed; give the hip centre")
        centre, radius, rms = fit_sphere(v[sel])
    # the opening: the direction farthest from every cavity point (centre of the largest uncovered cap)
    d = v[sel] - centre
    u = d / np.linalg.norm(d, axis=1)[:, None]
    k = np.arange(2000) + 0.5
    polar, azim = np.arccos(1.0 - 2.0 * k / 2000), np.pi * (1.0 + 5.0 ** 0.5) * k
    dirs = np.stack([np.cos(azim) * np.sin(polar), np.sin(azim) * np.sin(polar), np.cos(polar)], axis=1)
    nearest = (dirs @ u.T).max(axis=1)  # cosine to the closest cavity direction
    if nearest.min() > np.cos(np.radians(12.0)):
        raise ValueError("acetabulum: the fitted sphere is closed all round; is the seed inside the femoral head?")
    far = dirs[nearest < np.percentile(nearest, 2.0)]  # the deepest part of the gap, averaged
    axis = _unit(far.mean(axis=0))
    return Acetabulum(centre_mm=centre, radius_mm=radius, axis=axis, rms_mm=rms)


@dataclass(frozen=True)
class ReamingReadout:
    depth_mm: float  # along the native axis, into the pelvis
    medialisation_mm: float  # toward the midline, in the APP frame


def reaming(native: Acetabulum, reamed_centre_mm: np.ndarray, frame: PelvicFrame, side: Side) -> ReamingReadout:
    move = np.asarray(reamed_centre_mm, dtype=float) - native.centre_mm
    return ReamingReadout(depth_mm=float(-(move @ native.axis)), medialisation_mm=float(-(move @ frame.lateral(side))))


def leg_length_and_offset_mm(hip_before_mm: np.ndarray, hip_after_mm: np.ndarray, frame: PelvicFrame,
                             side: Side) -> tuple[float, float]:
    """(leg length change, offset change) from the femoral head centre's move: + = longer / more lateral."""
    move = np.asarray(hip_after_mm, dtype=float) - np.asarray(hip_before_mm, dtype=float)
    return float(-(move @ frame.superior)), float(move @ frame.lateral(side))


__all__ = ["PelvicFrame", "anterior_pelvic_plane", "cup_angles_deg", "cup_axis", "in_lewinnek_zone", "Acetabulum",
           "native_acetabulum", "ReamingReadout", "reaming", "leg_length_and_offset_mm"]
