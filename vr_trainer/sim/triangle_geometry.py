"""Point-triangle geometry for the distance queries of :mod:`vr_trainer.sim.proximity`: the closest
point on a triangle (Ericson), conforming edge refinement, angle-weighted pseudonormals (Baerentzen
and Aanaes), and a watertightness test. Millimetres; numpy arrays, one row per point or triangle."""

from __future__ import annotations

import numpy as np

# closest-feature codes of :func:`closest_points_on_triangles`
FACE, VERT_A, VERT_B, VERT_C, EDGE_AB, EDGE_BC, EDGE_CA = range(7)
# edge AB, BC, CA (from corner a, b, c) by where its closest point is: its start, inside, its end
_EDGE_FEATURE = np.array([[VERT_A, EDGE_AB, VERT_B], [VERT_B, EDGE_BC, VERT_C], [VERT_C, EDGE_CA, VERT_A]])


def closest_points_on_triangles(p: np.ndarray, a: np.ndarray, ab: np.ndarray, ac: np.ndarray,
                                abab: np.ndarray, abac: np.ndarray, acac: np.ndarray
                                ) -> tuple[np.ndarray, np.ndarray]:
    """Closest point on each triangle to each point (Ericson, Real-Time Collision Detection 5.1.5).

    One point and one triangle per row: ``p, a, ab, ac`` (m, 3) float (corner a and the edge
    vectors b - a, c - a); ``abab, abac, acac`` (m,) their dot products. Returns the closest
    points (m, 3) and the closest feature per row (m,) int (``FACE``, ``VERT_A`` ...).
    """
    ap = p - a
    d1 = (ab * ap).sum(1)
    d2 = (ac * ap).sum(1)
    d3, d4 = d1 - abab, d2 - abac  # ab.(p-b), ac.(p-b)
    d5, d6 = d1 - abac, d2 - acac  # ab.(p-c), ac.(p-c)
    vc = d1 * d4 - d3 * d2
    vb = d5 * d2 - d1 * d6
    va = d3 * d6 - d5 * d4
    # Ericson's tests in his order, applied last-to-first so the first true one wins
    feature = np.full(len(p), FACE)
    feature[(va <= 0) & (d4 >= d3) & (d5 >= d6)] = EDGE_BC
    feature[(vb <= 0) & (d2 >= 0) & (d6 <= 0)] = EDGE_CA
    feature[(d6 >= 0) & (d5 <= d6)] = VERT_C
    feature[(vc <= 0) & (d1 >= 0) & (d3 <= 0)] = EDGE_AB
    feature[(d3 >= 0) & (d4 <= d3)] = VERT_B
    feature[(d1 <= 0) & (d2 <= 0)] = VERT_A
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = va + vb + vc
        s = vb / denom  # weight of ab (face interior)
        u = vc / denom  # weight of ac
        t_ab = d1 / (d1 - d3)
        t_ca = d2 / (d2 - d6)
        t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
    s = np.choose(feature, (s, 0.0, 1.0, 0.0, t_ab, 1.0 - t_bc, 0.0))
    u = np.choose(feature, (u, 0.0, 0.0, 1.0, 0.0, t_bc, t_ca))
    bad = ~(np.isfinite(s) & np.isfinite(u))  # degenerate (zero-area) triangles: their centroid
    if bad.any():
        s[bad] = u[bad] = 1.0 / 3.0
    return a + ab * s[:, None] + ac * u[:, None], feature


def _unique_rows(pairs: np.ndarray, n: int, return_inverse: bool = False,
                 return_counts: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(pairs, axis=0, ...)`` for (m, 2) non-negative ints below ``n``, several times
    faster: each row as one int64 key ``a * n + b`` (the same sorted order, so the same result).
    Returns (unique rows, inverse or counts)."""
    keys = pairs[:, 0].astype(np.int64) * n + pairs[:, 1]
    if return_inverse:
        u, extra = np.unique(keys, return_inverse=True)
    elif return_counts:
        u, extra = np.unique(keys, return_counts=True)
    else:
        u, extra = np.unique(keys), np.zeros(0, np.int64)
    return np.stack([u // n, u % n], 1), np.asarray(extra).reshape(-1)


def refine_to_edge_length(vertices_mm: np.ndarray, faces: np.ndarray, max_edge_mm: float,
                          max_rounds: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Split every edge longer than ``max_edge_mm`` at its midpoint, re-triangulating the faces
    around it (1, 2 or 3 split edges per face), until none is longer. Conforming: no T-junctions,
    shared edges stay shared, winding is kept. ``vertices_mm`` (V, 3), ``faces`` (F, 3)."""
    v = np.asarray(vertices_mm, float)
    f = np.asarray(faces, np.int64)
    for _ in range(max_rounds):
        n_f = len(f)
        edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
        uniq, inv = _unique_rows(edges, len(v), return_inverse=True)
        long = np.linalg.norm(v[uniq[:, 0]] - v[uniq[:, 1]], axis=1) > max_edge_mm
        if not long.any():
            break
        mid = np.full(len(uniq), -1, np.int64)
        mid[long] = len(v) + np.arange(int(long.sum()))
        v = np.vstack([v, (v[uniq[long, 0]] + v[uniq[long, 1]]) / 2.0])
        m = mid[inv.reshape(-1)].reshape(3, n_f).T  # (F, 3): midpoint of edge AB, BC, CA or -1
        split = m >= 0
        count = split.sum(1)
        # rotate each face so that a single split edge is AB, or the one unsplit edge is CA
        first_split = np.argmax(split, axis=1)
        unsplit = np.argmin(split, axis=1)
        r = np.where(count == 1, first_split, np.where(count == 2, (unsplit + 1) % 3, 0))
        rot = (np.arange(3)[None, :] + r[:, None]) % 3
        c = np.take_along_axis(f, rot, axis=1)
        mm = np.take_along_axis(m, rot, axis=1)
        a, b, cc, mab, mbc, mca = c[:, 0], c[:, 1], c[:, 2], mm[:, 0], mm[:, 1], mm[:, 2]
        out = [f[count == 0]]
        k1, k2, k3 = count == 1, count == 2, count == 3
        out += [np.stack([a[k1], mab[k1], cc[k1]], 1), np.stack([mab[k1], b[k1], cc[k1]], 1)]
        out += [np.stack([mab[k2], b[k2], mbc[k2]], 1), np.stack([a[k2], mab[k2], mbc[k2]], 1),
                np.stack([a[k2], mbc[k2], cc[k2]], 1)]
        out += [np.stack([a[k3], mab[k3], mca[k3]], 1), np.stack([mab[k3], b[k3], mbc[k3]], 1),
                np.stack([mca[k3], mbc[k3], cc[k3]], 1), np.stack([mab[k3], mbc[k3], mca[k3]], 1)]
        f = np.concatenate(out)
    return v, f


def _pseudonormals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F, 7, 3): per face, the pseudonormal of each closest-feature code (face, corners, edges)."""
    tri = vertices[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    ln = np.linalg.norm(n, axis=1)
    n = n / np.where(ln > 0, ln, 1.0)[:, None]
    vn = np.zeros((len(vertices), 3))
    for k in range(3):  # angle-weighted vertex normals
        e1 = tri[:, (k + 1) % 3] - tri[:, k]
        e2 = tri[:, (k + 2) % 3] - tri[:, k]
        cosv = (e1 * e2).sum(1) / np.maximum(np.linalg.norm(e1, axis=1) * np.linalg.norm(e2, axis=1), 1e-300)
        np.add.at(vn, faces[:, k], n * np.arccos(np.clip(cosv, -1.0, 1.0))[:, None])
    # edges: the sum of both neighbours' face normals (each weighted by pi)
    keys = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, inverse = _unique_rows(keys, len(vertices), return_inverse=True)
    inverse = inverse.reshape(-1)
    en = np.zeros((int(inverse.max()) + 1, 3))
    np.add.at(en, inverse, np.tile(n, (3, 1)))
    f = len(faces)
    out = np.empty((f, 7, 3))
    out[:, FACE] = n
    out[:, VERT_A], out[:, VERT_B], out[:, VERT_C] = vn[faces[:, 0]], vn[faces[:, 1]], vn[faces[:, 2]]
    out[:, EDGE_AB], out[:, EDGE_BC], out[:, EDGE_CA] = en[inverse[:f]], en[inverse[f:2 * f]], en[inverse[2 * f:]]
    return out


def is_closed(faces: np.ndarray) -> bool:
    """Every edge has exactly two faces (a watertight, manifold surface)."""
    f = np.asarray(faces, np.int64)
    e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    _, counts = _unique_rows(e, int(f.max()) + 1 if len(f) else 1, return_counts=True)
    return bool(np.all(counts == 2))
