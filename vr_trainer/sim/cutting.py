"""Plane cuts of bone meshes (a saw pass) that leave a closed, watertight bone.

manifold3d does the cut in double precision (``Mesh64``) and guarantees a manifold
result; we add what the trainer needs beside the new surface: the cut face (faces on
the plane), its area and outline, and the removed volume. Deterministic: the same
mesh and plane always give the same arrays.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import manifold3d
import numpy as np
import trimesh


@dataclass(frozen=True)
class Plane:
    """A cutting plane: a point on it (mm) and a unit normal toward the bone that STAYS."""

    origin_mm: np.ndarray
    normal: np.ndarray

    @classmethod
    def make(cls, origin_mm: np.ndarray | list[float], normal: np.ndarray | list[float]) -> "Plane":
        n = np.asarray(normal, dtype=float)
        return cls(np.asarray(origin_mm, dtype=float), n / float(np.linalg.norm(n)))

    @property
    def offset_mm(self) -> float:
        return float(self.origin_mm @ self.normal)

    def signed_distance_mm(self, points_mm: np.ndarray) -> np.ndarray:
        """(n,) signed distances of (n, 3) points; positive on the kept side."""
        return np.atleast_2d(points_mm) @ self.normal - self.offset_mm

    def flipped(self) -> "Plane":
        return Plane(self.origin_mm, -self.normal)


@dataclass
class CutResult:
    """A cut bone: the kept mesh, its cut face and what was removed."""

    mesh: trimesh.Trimesh
    cut_faces: np.ndarray  # (k,) indices into mesh.faces lying on the plane
    cut_area_mm2: float
    outline_mm: list[np.ndarray]  # closed loops, each (m, 3)
    removed_volume_mm3: float
    elapsed_ms: float
    solid: manifold3d.Manifold | None = None  # the kept bone as a solid: pass it to the next cut

    @property
    def watertight(self) -> bool:
        return bool(self.mesh.is_watertight)

    @property
    def touched(self) -> bool:
        """True when the plane crossed the bone (a cut face exists)."""
        return len(self.cut_faces) > 0


def to_manifold(mesh: trimesh.Trimesh) -> manifold3d.Manifold:
    """A watertight trimesh -> manifold3d solid (double precision); raises ValueError if not manifold."""
    m = manifold3d.Manifold(manifold3d.Mesh64(
        vert_properties=np.array(mesh.vertices, dtype=np.float64, order="C"),  # writable copy (nanobind)
        tri_verts=np.array(mesh.faces, dtype=np.uint64, order="C")))
    if m.status() != manifold3d.Error.NoError:
        raise ValueError(f"mesh is not a closed manifold ({m.status().name}); repair it before cutting")
    return m


def from_manifold(m: manifold3d.Manifold) -> trimesh.Trimesh:
    """manifold3d solid -> trimesh (vertices merged by the manifold's own topology)."""
    out = m.to_mesh64()
    verts = np.asarray(out.vert_properties, dtype=np.float64)[:, :3]
    faces = np.asarray(out.tri_verts, dtype=np.int64)
    return trimesh.Trimesh(vertices=verts, faces=faces, process=False)


def _loops(mesh: trimesh.Trimesh, faces: np.ndarray) -> list[np.ndarray]:
    """Boundary loops of a face subset as (m, 3) vertex arrays (outline of the cut face)."""
    if len(faces) == 0:
        return []
    f = mesh.faces[faces]
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    key = np.sort(edges, axis=1)
    _, inv, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    boundary = edges[counts[inv.ravel()] == 1]
    nxt = {int(a): int(b) for a, b in boundary}
    loops: list[np.ndarray] = []
    seen: set[int] = set()
    for start in sorted(nxt):
        if start in seen:
            continue
        loop, cur = [], start
        while cur not in seen and cur in nxt:
            seen.add(cur)
            loop.append(cur)
            cur = nxt[cur]
        if len(loop) >= 3:
            loops.append(np.asarray(mesh.vertices[loop]))
    return loops


def cut_faces_on(mesh: trimesh.Trimesh, plane: Plane, tol_mm: float = 1e-4) -> np.ndarray:
    """Indices of faces lying on ``plane`` and facing the removed side (the new cut surface)."""
    d = np.abs(plane.signed_distance_mm(mesh.vertices))
    on = (d[mesh.faces] < tol_mm).all(axis=1)
    facing = mesh.face_normals @ plane.normal < -0.999
    return np.flatnonzero(on & facing)


def plane_cut(bone: trimesh.Trimesh | manifold3d.Manifold, plane: Plane) -> CutResult:
    """Cut ``bone`` by ``plane``; keep the side the normal points to (a closed, watertight mesh).

    ``bone``: a watertight mesh (mm) or a manifold3d solid (pass the solid when cutting
    repeatedly, so the conversion is paid once)."""
    t0 = time.perf_counter()
    solid = bone if isinstance(bone, manifold3d.Manifold) else to_manifold(bone)
    kept = solid.trim_by_plane(tuple(float(c) for c in plane.normal), plane.offset_mm)
    mesh = from_manifold(kept)
    elapsed = (time.perf_counter() - t0) * 1e3
    faces = cut_faces_on(mesh, plane) if len(mesh.faces) else np.zeros(0, dtype=np.int64)
    area = float(mesh.area_faces[faces].sum()) if len(faces) else 0.0
    return CutResult(mesh=mesh, cut_faces=faces, cut_area_mm2=area, outline_mm=_loops(mesh, faces),
                     removed_volume_mm3=float(solid.volume() - kept.volume()), elapsed_ms=elapsed, solid=kept)


def cut_sequence(bone: trimesh.Trimesh, planes: list[Plane]) -> CutResult:
    """Several saw passes in order (e.g. the five femoral cuts); the last cut's face is reported."""
    solid = to_manifold(bone)
    start = solid.volume()
    t0 = time.perf_counter()
    for p in planes[:-1]:
        solid = solid.trim_by_plane(tuple(float(c) for c in p.normal), p.offset_mm)
    res = plane_cut(solid, planes[-1])
    res.removed_volume_mm3 = float(start - res.mesh.volume)
    res.elapsed_ms = (time.perf_counter() - t0) * 1e3
    return res


__all__ = ["Plane", "CutResult", "plane_cut", "cut_sequence", "cut_faces_on", "to_manifold", "from_manifold"]
