"""The herniated fragment in pieces: what the grasping forceps take out, one bite at a time.

:func:`split_fragment` cuts the fragment's closed mesh into ``n_pieces`` slabs across its longest
axis (principal component of its vertices), each slab holding the same share of the fragment's
length, with manifold3d so every piece is closed; pieces come in a fixed order (along the axis,
the axis pointing from the fragment's centroid towards its farthest vertex), so the
planner and the simulation see the same pieces. A piece's ``volume_mm3`` weighs it in the
removed percentage. A mesh manifold3d cannot take (open, self-intersecting) is split by assigning
faces to slabs by their centroids instead (open pieces, volumes from the slab's share of the
vertex count).

Patient frame (RAS), millimetres. No GL.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_PIECES = 6


@dataclass(frozen=True)
class FragmentPiece:
    index: int
    vertices_mm: np.ndarray  # (n, 3) float
    faces: np.ndarray  # (m, 3) int
    centroid_mm: np.ndarray  # (3,)
    volume_mm3: float
    closed: bool


def _axis(vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = vertices.mean(0)
    _, _, vt = np.linalg.svd(vertices - c, full_matrices=False)
    axis = vt[0] / np.linalg.norm(vt[0])
    far = vertices[np.argmax(np.linalg.norm(vertices - c, axis=1))]
    if float(np.dot(far - c, axis)) < 0:  # a fixed sign: towards the farthest vertex
        axis = -axis
    return c, axis


def split_fragment(vertices_mm: np.ndarray, faces: np.ndarray, n_pieces: int = DEFAULT_PIECES) -> list[FragmentPiece]:
    """The fragment as ``n_pieces`` pieces (fewer when a slab is empty), in order along its long axis."""
    v = np.asarray(vertices_mm, float)
    f = np.asarray(faces, np.int64)
    if len(v) == 0 or len(f) == 0 or n_pieces < 1:
        return []
    c, axis = _axis(v)
    s = (v - c) @ axis
    lo, hi = float(s.min()), float(s.max())
    cuts = np.linspace(lo, hi, n_pieces + 1)  # along the axis, from the centroid
    try:
        return _split_manifold(v, f, axis, cuts + float(c @ axis))  # planes: axis . x = offset
    except Exception:  # noqa: BLE001 - manifold3d refuses an open or broken mesh: split by face centroids
        return _split_faces(v, f, axis, c, cuts)


def _split_manifold(v: np.ndarray, f: np.ndarray, axis: np.ndarray, cuts: np.ndarray) -> list[FragmentPiece]:
    import manifold3d

    whole = manifold3d.Manifold(manifold3d.Mesh(vert_properties=v.astype(np.float32),
                                                tri_verts=f.astype(np.uint32)))
    if whole.is_empty() or whole.volume() <= 0:
        raise ValueError("not a closed volume")
    pieces: list[FragmentPiece] = []
    rest = whole
    for cut in cuts[1:-1]:
        # trim_by_plane keeps the side the normal points to: keep above the cut as the rest
        offset = float(cut)
        below = rest.trim_by_plane(tuple(float(x) for x in -axis), -offset)
        rest = rest.trim_by_plane(tuple(float(x) for x in axis), offset)
        _append(pieces, below)
    _append(pieces, rest)
    if not pieces:
        raise ValueError("no pieces")
    return pieces


def _append(pieces: list[FragmentPiece], m: object) -> None:
    mesh = m.to_mesh()  # type: ignore[attr-defined]
    verts = np.asarray(mesh.vert_properties, float)[:, :3]
    tris = np.asarray(mesh.tri_verts, np.int64)
    vol = float(m.volume())  # type: ignore[attr-defined]
    if len(tris) == 0 or vol <= 1e-6:
        return
    pieces.append(FragmentPiece(len(pieces), verts, tris, _volume_centroid(verts, tris), vol, True))


def _volume_centroid(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    vol6 = np.einsum("ij,ij->i", a, np.cross(b, c))
    total = float(vol6.sum())
    if abs(total) < 1e-9:
        return np.asarray(v.mean(0), float)
    return np.asarray((vol6[:, None] * (a + b + c)).sum(0) / (4.0 * total), float)


def _split_faces(v: np.ndarray, f: np.ndarray, axis: np.ndarray, c: np.ndarray,
                 cuts: np.ndarray) -> list[FragmentPiece]:
    cent = (v[f].mean(1) - c) @ axis
    bins = np.clip(np.searchsorted(cuts, cent, side="right") - 1, 0, len(cuts) - 2)
    pieces: list[FragmentPiece] = []
    total_v = max(len(v), 1)
    for k in range(len(cuts) - 1):
        sel = f[bins == k]
        if len(sel) == 0:
            continue
        used, inv = np.unique(sel, return_inverse=True)
        verts = v[used]
        pieces.append(FragmentPiece(len(pieces), verts, inv.reshape(-1, 3), verts.mean(0),
                                    float(len(used)) / total_v, False))
    return pieces


def removed_pct(pieces: list[FragmentPiece], removed: frozenset[int]) -> float:
    """Percent of the fragment's volume taken out (the removed pieces' share)."""
    total = sum(p.volume_mm3 for p in pieces)
    if total <= 0:
        return 0.0
    return 100.0 * sum(p.volume_mm3 for p in pieces if p.index in removed) / total
