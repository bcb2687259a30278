"""Lumbar lordosis for the spine phantom: a piecewise-rigid sagittal bend.

The phantom's parts are written in *straight* coordinates (a column whose
endplates are all horizontal, origin at the canal centre of the L4-L5 disc).
:class:`Bend` places them in the lordotic patient frame: every bone is moved
rigidly (rotation about +x, the patient's left-right axis), the discs between
take the wedge.  The angle of the cross-section ``phi(z)`` is constant along
each bone and changes linearly across each disc; the neutral axis (through the
vertebral bodies' centres) is integrated from it, so the column stays
continuous.  Points of soft structures that follow the column (roots, dural
sac, vessels) are mapped with :meth:`Bend.point` (continuous); a bone's
primitives with :meth:`Bend.rigid` (exact).

Sign: ``phi > 0`` tips a cross-section's superior normal towards posterior
(-y); lordosis means the bones above the apex tip back (phi > 0) and those
below it tip forward (phi < 0), the discs being taller anteriorly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from . import phantom_sdf as S


@dataclass(frozen=True)
class Zone:
    """Straight-coordinate z range and the cross-section angle at its bottom and top (deg)."""

    z0: float
    z1: float
    phi0_deg: float
    phi1_deg: float


class Bend:
    """Maps straight-column coordinates to the lordotic patient frame."""

    def __init__(self, zones: Sequence[Zone], axis_y_mm: float, step_mm: float = 0.05,
                 z_range: tuple[float, float] = (-260.0, 260.0)) -> None:
        self.zones = sorted(zones, key=lambda zn: zn.z0)
        self.axis_y = float(axis_y_mm)
        self.z = np.arange(z_range[0], z_range[1] + step_mm, step_mm)
        phi = np.radians(np.array([self.phi_deg(float(z)) for z in self.z]))
        # neutral axis P(z): dP/dz = R(phi) e_z = (0, -sin phi, cos phi); P(0) = (0, axis_y, 0)
        dy, dz = -np.sin(phi), np.cos(phi)
        i0 = int(np.argmin(np.abs(self.z)))
        cy = np.concatenate([[0.0], np.cumsum(0.5 * (dy[1:] + dy[:-1]) * step_mm)])
        cz = np.concatenate([[0.0], np.cumsum(0.5 * (dz[1:] + dz[:-1]) * step_mm)])
        self.py = cy - cy[i0] + self.axis_y
        self.pz = cz - cz[i0]

    def phi_deg(self, z: float) -> float:
        """Cross-section angle (deg) at straight height ``z``: linear inside a zone, constant between
        zones (along a bone) and beyond the outermost ones."""
        last = self.zones[0].phi0_deg
        for zn in self.zones:
            if z < zn.z0:
                return last
            if z <= zn.z1:
                t = (z - zn.z0) / (zn.z1 - zn.z0) if zn.z1 > zn.z0 else 0.0
                return zn.phi0_deg + t * (zn.phi1_deg - zn.phi0_deg)
            last = zn.phi1_deg
        return last

    def axis(self, z: float) -> np.ndarray:
        """Patient-frame position of the neutral-axis point at straight height ``z``."""
        return np.array([0.0, float(np.interp(z, self.z, self.py)), float(np.interp(z, self.z, self.pz))])

    def rotation(self, z: float) -> np.ndarray:
        return S.rotation_x(self.phi_deg(z))

    def point(self, q: Any) -> np.ndarray:
        """Straight point -> patient frame (the cross-section through it moves rigidly)."""
        q = np.asarray(q, float)
        return self.axis(q[2]) + self.rotation(q[2]) @ np.array([q[0], q[1] - self.axis_y, 0.0])

    def points(self, qs: Any) -> np.ndarray:
        return np.array([self.point(q) for q in np.asarray(qs, float).reshape(-1, 3)])

    def direction(self, d: Any, z: float) -> np.ndarray:
        """A straight-frame direction at height ``z`` in the patient frame."""
        return self.rotation(z) @ np.asarray(d, float)

    def frame(self, z_ref: float) -> tuple[np.ndarray, np.ndarray]:
        """(origin, rotation) of the rigid placement that is exact at straight height ``z_ref``:
        world = origin + rot @ straight."""
        rot = self.rotation(z_ref)
        return self.axis(z_ref) - rot @ np.array([0.0, self.axis_y, z_ref]), rot

    def rigid(self, part: S.Part, z_ref: float) -> S.Part:
        """``part`` (straight coordinates) moved with the rigid placement at ``z_ref``."""
        origin, rot = self.frame(z_ref)
        return S.in_frame(part, origin, rot)

    def rigid_point(self, q: Any, z_ref: float) -> np.ndarray:
        origin, rot = self.frame(z_ref)
        return origin + rot @ np.asarray(q, float)


def subdivide(points: Sequence[Any], radii: Sequence[float], step_mm: float = 2.0
              ) -> tuple[list[np.ndarray], list[float]]:
    """A polyline resampled every ``step_mm`` or less (radii interpolated), so that mapping its
    points with :meth:`Bend.point` follows the bend between them."""
    pts = [np.asarray(p, float) for p in points]
    out_p, out_r = [pts[0]], [float(radii[0])]
    for i in range(len(pts) - 1):
        n = max(1, int(math.ceil(float(np.linalg.norm(pts[i + 1] - pts[i])) / step_mm)))
        for k in range(1, n + 1):
            t = k / n
            out_p.append(pts[i] + t * (pts[i + 1] - pts[i]))
            out_r.append(float(radii[i]) + t * (float(radii[i + 1]) - float(radii[i])))
    return out_p, out_r


def bent_tube(bend: Bend, points: Sequence[Any], radii: Sequence[float], scale: Any = (1, 1, 1),
              step_mm: float = 3.0) -> list[S.Part]:
    """A tube along a straight-frame polyline, following the bend, as one primitive per short segment
    (paint with :meth:`Canvas.paint_union`, which evaluates each only inside its own box).  ``scale``
    squashes the cross-section as in :func:`phantom_sdf.tube`."""
    p, r = subdivide(points, radii, step_mm)
    sc = tuple(float(v) for v in scale)
    if sc == (1.0, 1.0, 1.0):
        w = bend.points(p)
        return [S.capsule(tuple(a), tuple(b), (ra, rb)) for a, b, ra, rb in zip(w[:-1], w[1:], r[:-1], r[1:])]
    return [bend.rigid(S.tube([tuple(a), tuple(b)], [ra, rb], sc), 0.5 * (a[2] + b[2]))
            for a, b, ra, rb in zip(p[:-1], p[1:], r[:-1], r[1:])]
