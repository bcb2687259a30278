"""Levels of detail for rendering: coarser copies of a mesh for when it covers few pixels.

A vertebra of 14k triangles seen 350 mm away on a 640x480 eye covers about 5,000
pixels; drawing all 14k triangles there costs a software rasteriser a lot and
shows nothing more. Close up, or on a 1440x1600 headset eye, the full mesh is used."""

from __future__ import annotations

import numpy as np

MIN_FACES = 400


def make_lods(vertices_mm: np.ndarray, faces: np.ndarray, levels: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    """Up to ``levels`` coarser meshes, each about half the faces of the one before."""
    try:
        import fast_simplification
    except ImportError:  # optional: without it every mesh is drawn at full detail
        return []
    out: list[tuple[np.ndarray, np.ndarray]] = []
    v = np.asarray(vertices_mm, dtype=np.float32)
    f = np.asarray(faces, dtype=np.int64)
    n = len(f)
    for k in range(1, levels + 1):
        target = n // (2 ** k)
        if target < MIN_FACES:
            break
        pv, pf = fast_simplification.simplify(v, f, target_reduction=1.0 - target / n)
        if len(pf) < MIN_FACES // 2 or len(pf) >= (len(out[-1][1]) if out else n):
            break
        out.append((np.asarray(pv), np.asarray(pf)))
    return out
