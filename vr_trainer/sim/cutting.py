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


def mesh_volume_mm3(mesh: trimesh.Trimesh) -> float:
    """The enclosed volume of a closed mesh (divergence theorem; trimesh's mass properties do more)."""
    t = np.asarray(mesh.vertices, np.float64)[np.asarray(mesh.faces)]
    return float(np.einsum("ij,ij->i", t[:, 0], np.cross(t[:, 1], t[:, 2])).sum() / 6.0)


def bounded_cut(bone: trimesh.Trimesh | manifold3d.Manifold, plane: Plane, within: Plane,
                size_mm: float = 2000.0) -> CutResult:
    """A saw pass that stops: remove what lies on ``plane``'s far side AND on ``within``'s kept side
    (a 4-in-1 block's posterior cut ends at the component's height, not up the femoral shaft)."""
    t0 = time.perf_counter()
    solid = bone if isinstance(bone, manifold3d.Manifold) else to_manifold(bone)
    centre = tuple(float(c) for c in plane.origin_mm)
    region = manifold3d.Manifold.cube((size_mm, size_mm, size_mm), True).translate(centre)
    region = region.trim_by_plane(tuple(float(-c) for c in plane.normal), -plane.offset_mm)
    region = region.trim_by_plane(tuple(float(c) for c in within.normal), within.offset_mm)
    kept = solid - region
    mesh = from_manifold(kept)
    faces = cut_faces_on(mesh, plane) if len(mesh.faces) else np.zeros(0, dtype=np.int64)
    area = float(mesh.area_faces[faces].sum()) if len(faces) else 0.0
    return CutResult(mesh=mesh, cut_faces=faces, cut_area_mm2=area, outline_mm=_loops(mesh, faces),
                     removed_volume_mm3=float(solid.volume() - kept.volume()),
                     elapsed_ms=(time.perf_counter() - t0) * 1e3, solid=kept)


def plane_cut(bone: trimesh.Trimesh | manifold3d.Manifold, plane: Plane) -> CutResult:
    """Cut ``bone`` by ``plane``; keep the side the normal points to (a closed, watertight mesh).

    ``bone``: a watertight mesh (mm), cut directly (:mod:`vr_trainer.sim.cut_direct`; manifold3d
    when that cannot close the cut), or a manifold3d solid (trimmed by manifold3d)."""
    t0 = time.perf_counter()
    if isinstance(bone, trimesh.Trimesh):
        from vr_trainer.sim.cut_direct import direct_cut

        try:
            mesh = direct_cut(np.asarray(bone.vertices), np.asarray(bone.faces), plane.normal, plane.offset_mm)
        except ValueError:
            mesh = None  # the boundary does not close: the manifold3d route below decides
        if mesh is not None:
            lo, hi = mesh.metadata.get("cap_faces", (0, 0))
            faces = np.arange(lo, hi, dtype=np.int64)  # the cap the direct cut made is the cut face
            tri = mesh.vertices[mesh.faces[faces]]
            area = float(0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum())
            elapsed = (time.perf_counter() - t0) * 1e3
            removed = mesh_volume_mm3(bone) - (mesh_volume_mm3(mesh) if len(mesh.faces) else 0.0)
            return CutResult(mesh=mesh, cut_faces=faces, cut_area_mm2=area, outline_mm=_loops(mesh, faces),
                             removed_volume_mm3=removed, elapsed_ms=elapsed, solid=None)
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
    start = mesh_volume_mm3(bone)
    t0 = time.perf_counter()
    cur: trimesh.Trimesh | manifold3d.Manifold = bone
    res = None
    for p in planes:
        res = plane_cut(cur, p)
        cur = res.solid if res.solid is not None else res.mesh  # the next saw pass cuts what is left
    assert res is not None, "cut_sequence needs at least one plane"
    res.removed_volume_mm3 = float(start - mesh_volume_mm3(res.mesh))
    res.elapsed_ms = (time.perf_counter() - t0) * 1e3
    return res


__all__ = ["Plane", "CutResult", "plane_cut", "bounded_cut", "cut_sequence", "cut_faces_on", "to_manifold",
           "from_manifold"]
