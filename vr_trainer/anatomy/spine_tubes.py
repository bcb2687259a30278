"""Tubes for derived spine structures: smooth centrelines kept clear of bone, and closed meshes.

Centrelines are Catmull-Rom curves through waypoints, resampled every millimetre, then
pushed out of the bone (:class:`~vr_trainer.anatomy.spine_geometry.BoneField`, a signed
distance on a grid) until every sample is at least its radius plus a clearance from it.
Meshes come from rasterising the tube on a fine grid and the import pipeline's own
marching cubes (closed, outward-wound surfaces).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import trimesh

from .spine_geometry import BoneField
from .surface import finish, mask_surface


def catmull_rom(points_mm: np.ndarray, step_mm: float = 1.0) -> np.ndarray:
    """A smooth curve (m, 3) mm through ``points_mm`` (k, 3), samples about ``step_mm`` apart."""
    p = np.asarray(points_mm, float)
    if len(p) < 2:
        return p
    ext = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    out = [p[:1]]
    for i in range(1, len(ext) - 2):
        p0, p1, p2, p3 = ext[i - 1], ext[i], ext[i + 1], ext[i + 2]
        n = max(2, int(np.ceil(np.linalg.norm(p2 - p1) / step_mm)))
        t = np.linspace(0, 1, n + 1)[1:, None]
        out.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3))
    return np.vstack(out)


def keep_clear(path_mm: np.ndarray, radius_mm: np.ndarray, bone: BoneField, clearance_mm: float,
               iterations: int = 60, fixed_start: bool = True) -> np.ndarray:
    """Move samples of ``path_mm`` (m, 3) out of the bone until each is ``radius + clearance`` mm clear,
    smoothing between moves so the curve stays a nerve's course rather than a zigzag."""
    p = np.array(path_mm, float)
    need = np.asarray(radius_mm, float) + clearance_mm
    for _ in range(iterations):
        d = bone.distance(p)
        short = need - d
        if float(short.max()) <= 0.02:
            break
        move = np.clip(short + 0.1, 0.0, 1.5)[:, None] * bone.gradient(p)
        move[short <= 0] = 0.0
        if fixed_start:
            move[0] = 0.0
        p = p + move
        sm = p.copy()
        sm[1:-1] = 0.25 * p[:-2] + 0.5 * p[1:-1] + 0.25 * p[2:]
        p[1:-1] = np.where((short[1:-1] > 0)[:, None], p[1:-1], sm[1:-1])
    return p


def polyline_distance(points_mm: np.ndarray, path_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance (n,) mm from each point to the polyline ``path_mm`` (m, 3), and the index of the nearest segment."""
    a, ab = path_mm[:-1], path_mm[1:] - path_mm[:-1]
    rel = points_mm[:, None, :] - a[None, :, :]
    t = np.clip(np.einsum("nsk,sk->ns", rel, ab) / np.maximum((ab * ab).sum(1), 1e-12), 0.0, 1.0)
    d = np.linalg.norm(rel - t[..., None] * ab[None], axis=2)
    seg = d.argmin(axis=1)
    return d[np.arange(len(points_mm)), seg], seg


def tube_mesh(path_mm: np.ndarray, radius_mm: np.ndarray, *, pitch_mm: float = 0.5, max_faces: int = 2500,
              squash: tuple[np.ndarray, float] | None = None) -> trimesh.Trimesh:
    """A closed tube of radii ``radius_mm`` (m,) along ``path_mm`` (m, 3), rounded at both ends.

    ``squash`` = (unit axis (3,), factor): the cross-section is scaled by ``factor`` along that
    axis (an elliptic dural sac, flatter front to back).
    """
    r = np.asarray(radius_mm, float)
    lo = path_mm.min(0) - r.max() - 2 * pitch_mm
    hi = path_mm.max(0) + r.max() + 2 * pitch_mm
    ax = [np.arange(lo[i], hi[i] + pitch_mm, pitch_mm) for i in range(3)]
    g = np.stack(np.meshgrid(*ax, indexing="ij"), -1).reshape(-1, 3)
    q = g
    path = path_mm
    if squash is not None:
        axis, f = squash
        q = g + np.outer(g @ axis, axis) * (1.0 / f - 1.0)
        path = path_mm + np.outer(path_mm @ axis, axis) * (1.0 / f - 1.0)
    shape = tuple(len(x) for x in ax)
    inside = np.zeros(shape, bool)
    a, b = path[:-1], path[1:]
    for i in range(len(a)):
        rr = max(r[i], r[i + 1]) * (max(1.0, squash[1]) if squash is not None else 1.0)
        span = np.stack([np.minimum(path_mm[i], path_mm[i + 1]), np.maximum(path_mm[i], path_mm[i + 1])])
        i0 = np.clip(np.floor((span[0] - rr - lo) / pitch_mm).astype(int) - 1, 0, None)
        i1 = np.minimum(np.ceil((span[1] + rr - lo) / pitch_mm).astype(int) + 2, shape)
        sub = tuple(slice(int(i0[k]), int(i1[k])) for k in range(3))
        qs = q.reshape(*shape, 3)[sub].reshape(-1, 3)
        ab = b[i] - a[i]
        t = np.clip(((qs - a[i]) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
        d = np.linalg.norm(qs - (a[i] + t[:, None] * ab), axis=1)
        inside[sub] |= (d <= r[i] + t * (r[i + 1] - r[i])).reshape(inside[sub].shape)
    mask = inside
    affine = np.eye(4)
    affine[:3, :3] *= pitch_mm
    affine[:3, 3] = lo
    mesh = mask_surface(mask, affine)
    if mesh is None:
        raise ValueError("empty tube")
    return finish(mesh, max_faces)


def resample_radii(values: Sequence[float] | np.ndarray, n: int) -> np.ndarray:
    """Radii at waypoints -> radii at ``n`` samples (linear in the sample index)."""
    v = np.asarray(values, float)
    return np.interp(np.linspace(0, len(v) - 1, n), np.arange(len(v)), v)
