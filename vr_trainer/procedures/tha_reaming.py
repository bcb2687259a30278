"""Acetabular reaming as solid geometry: the bone less the volume a hemispherical reamer head swept.

A straight move of a hemisphere (radius ``r``, dome along the direction of advance) sweeps the convex
hull of its start and end copies, so one pass of the reamer is one boolean subtraction of that hull
(manifold3d, double precision): the result stays a closed, watertight solid, and the next pass starts
from it (the solid is kept beside its mesh). Deterministic: the same moves give the same arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import manifold3d
import numpy as np
import trimesh

from vr_trainer.sim.cutting import from_manifold, to_manifold

DOME_POINTS = 600  # points on the unit sphere the hemisphere's hull is made of
RIM_POINTS = 64


@dataclass(frozen=True)
class ReamedSolid:
    """A bone after reaming: the solid (for the next pass) and its mesh (to draw)."""

    solid: manifold3d.Manifold
    mesh: trimesh.Trimesh
    removed_mm3: float


@lru_cache(maxsize=1)
def _unit_sphere() -> np.ndarray:
    k = np.arange(DOME_POINTS) + 0.5
    polar, azim = np.arccos(1.0 - 2.0 * k / DOME_POINTS), np.pi * (1.0 + 5.0 ** 0.5) * k
    return np.stack([np.cos(azim) * np.sin(polar), np.sin(azim) * np.sin(polar), np.cos(polar)], axis=1)


def hemisphere_points(radius_mm: float, dome: np.ndarray) -> np.ndarray:
    """(n, 3) points of a hemisphere centred on the origin, its dome along ``dome`` (its rim included)."""
    d = np.asarray(dome, float) / float(np.linalg.norm(dome))
    p = _unit_sphere()
    u = np.cross(d, [1.0, 0.0, 0.0] if abs(d[0]) < 0.9 else [0.0, 1.0, 0.0])
    u /= float(np.linalg.norm(u))
    w = np.cross(d, u)
    a = np.linspace(0.0, 2.0 * np.pi, RIM_POINTS, endpoint=False)
    rim = np.cos(a)[:, None] * u + np.sin(a)[:, None] * w
    return radius_mm * np.vstack([p[p @ d > 0.0], rim])


def swept_head(start_mm: np.ndarray, end_mm: np.ndarray, dome: np.ndarray, radius_mm: float) -> manifold3d.Manifold:
    """The solid a reamer head sweeps moving straight from ``start_mm`` to ``end_mm`` (patient mm)."""
    h = hemisphere_points(radius_mm, dome)
    pts = np.vstack([np.asarray(start_mm, float) + h, np.asarray(end_mm, float) + h])
    return manifold3d.Manifold.hull_points(np.ascontiguousarray(pts, dtype=np.float64))


def ream(bone: trimesh.Trimesh | ReamedSolid, start_mm: np.ndarray, end_mm: np.ndarray, dome: np.ndarray,
         radius_mm: float) -> ReamedSolid | None:
    """``bone`` less the head swept from ``start_mm`` to ``end_mm``; None when the head missed it."""
    solid = bone.solid if isinstance(bone, ReamedSolid) else to_manifold(bone)
    lo, hi = np.asarray(solid.bounding_box()).reshape(2, 3)
    ends = np.stack([np.asarray(start_mm, float), np.asarray(end_mm, float)])
    if np.any(ends.min(0) - radius_mm > hi) or np.any(ends.max(0) + radius_mm < lo):
        return None
    before = float(solid.volume())
    out = solid - swept_head(start_mm, end_mm, dome, radius_mm)
    removed = before - float(out.volume())
    if removed < 1e-3:
        return None
    prev = bone.removed_mm3 if isinstance(bone, ReamedSolid) else 0.0
    return ReamedSolid(out, from_manifold(out), prev + removed)



def inner_wall_mm(bone: trimesh.Trimesh, origin_mm: np.ndarray, direction: np.ndarray) -> float | None:
    """Distance (mm) from ``origin_mm`` (in the acetabular cavity) along ``direction`` to where the ray,
    having entered ``bone`` (the uncut hemipelvis), leaves it again: its inner, pelvic surface behind
    the acetabulum; None when the ray never passes through bone."""
    d = np.asarray(direction, float) / float(np.linalg.norm(direction))
    c = np.asarray(origin_mm, float)
    loc, _, tri = bone.ray.intersects_location(c[None], d[None], multiple_hits=True)
    if len(loc) == 0:
        return None
    t = (np.asarray(loc) - c) @ d
    order = np.argsort(t)
    t, leaving = t[order], (np.asarray(bone.face_normals)[tri] @ d > 0.0)[order]
    entered = np.flatnonzero(~leaving & (t > 0.0))
    if not len(entered):
        return None
    after = np.flatnonzero(leaving & (t > t[entered[0]]))
    return float(t[after[0]]) if len(after) else None
