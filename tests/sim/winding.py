"""Geometry checks the proximity tests share."""

from __future__ import annotations

import numpy as np
import trimesh


def winding_inside(mesh: trimesh.Trimesh, points: np.ndarray) -> np.ndarray:
    """Generalised winding number > 1/2 (Jacobson et al. 2013), one point at a time (low memory)."""
    tri = np.asarray(mesh.triangles)
    out = np.empty(len(points), bool)
    for i, p in enumerate(points):
        t = tri - p
        a, b, c = t[:, 0], t[:, 1], t[:, 2]
        la, lb, lc = (np.linalg.norm(x, axis=1) for x in (a, b, c))
        num = (a * np.cross(b, c)).sum(1)
        den = la * lb * lc + (a * b).sum(1) * lc + (b * c).sum(1) * la + (c * a).sum(1) * lb
        out[i] = (2.0 * np.arctan2(num, den)).sum() / (4.0 * np.pi) > 0.5
    return out
