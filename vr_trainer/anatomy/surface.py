"""Voxels to clean surfaces: marching cubes, smoothing, decimation, repair.

Every importer (CT threshold, label maps, the phantom generator) goes through
these functions, so the shipped phantoms exercise the same code a hospital's
CT does.  Vertices come out in RAS millimetres via the volume's 4x4 affine
(voxel index -> RAS mm); faces are wound so normals point outward.
"""

from __future__ import annotations

import math
import threading
from typing import Sequence

import fast_simplification
import numpy as np
import trimesh
from scipy import ndimage
from skimage import measure

from .caps import extend_edges
from .errors import AnatomyError


def _crop_affine(affine: np.ndarray, start_vox: np.ndarray) -> np.ndarray:
    """Affine of a sub-volume whose voxel (0,0,0) is ``start_vox`` of the parent."""
    out = np.array(affine, dtype=float, copy=True)
    out[:3, 3] = affine[:3, :3] @ np.asarray(start_vox, dtype=float) + affine[:3, 3]
    return out


def _to_ras(verts_vox: np.ndarray, faces: np.ndarray, affine: np.ndarray) -> trimesh.Trimesh:
    """Map marching-cubes output (voxel coords) to RAS mm, keeping outward winding."""
    verts = verts_vox.astype(np.float64) @ affine[:3, :3].T + affine[:3, 3]
    faces = np.asarray(faces, dtype=np.int64)
    if np.linalg.det(affine[:3, :3]) < 0:  # a mirroring affine flips winding
        faces = faces[:, ::-1]
    mesh = trimesh.Trimesh(vertices=verts, faces=faces, process=False)
    return mesh


def spacing_of(affine: np.ndarray) -> np.ndarray:
    """Voxel size along each array axis (mm)."""
    return np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)


def mask_surface(
    mask: np.ndarray,
    affine: np.ndarray,
    *,
    sigma_mm: float | None = None,
    start_vox: tuple[int, int, int] | np.ndarray = (0, 0, 0),
    extend: Sequence[tuple[int, int]] = (),
) -> trimesh.Trimesh | None:
    """Closed surface of a boolean mask (RAS mm), or ``None`` when empty.

    Sides listed in ``extend`` ((axis, 0|1), where the scan cut the structure)
    are extruded past the border first, for :func:`caps.cap_at_border` to cut
    flat afterwards.  The mask is padded (so the surface always closes),
    blurred with a Gaussian of ``sigma_mm`` (default 0.5 x the finest voxel
    size) to remove the voxel staircase, and contoured at 0.5 with
    ``gradient_direction="ascent"`` (outward normals on a 0/1 mask).
    """
    if not mask.any():
        return None
    spacing = spacing_of(affine)
    if sigma_mm is None:
        sigma_mm = 0.5 * float(spacing.min())
    sig_vox = np.maximum(sigma_mm / spacing, 1e-6)
    pad = 2 + int(math.ceil(3.0 * float(sig_vox.max())))
    grown, shift = extend_edges(mask.astype(np.float32), extend, pad + 2)
    field = np.pad(grown, pad)
    if sigma_mm > 0:
        field = ndimage.gaussian_filter(field, sigma=sig_vox, mode="constant", truncate=3.0)
    if field.max() <= 0.5:  # structure thinner than the blur: contour the raw mask
        field = np.pad(grown, pad)
    verts, faces, _n, _v = measure.marching_cubes(field, 0.5, gradient_direction="ascent")
    start = np.asarray(start_vox, dtype=float) - pad - shift
    return _to_ras(verts, faces, _crop_affine(affine, start))


def iso_surface(
    values: np.ndarray,
    level: float,
    affine: np.ndarray,
    *,
    sigma_mm: float = 0.0,
    start_vox: tuple[int, int, int] | np.ndarray = (0, 0, 0),
    extend: Sequence[tuple[int, int]] = (),
) -> trimesh.Trimesh | None:
    """Isosurface ``values == level`` with the inside where values exceed it
    (``extend`` as in :func:`mask_surface`)."""
    n_ext = 3 + int(math.ceil(3.0 * float(np.max(sigma_mm / spacing_of(affine))))) if sigma_mm > 0 else 3
    field, shift = extend_edges(values.astype(np.float32, copy=False), extend, n_ext)
    if sigma_mm > 0:
        field = ndimage.gaussian_filter(field, sigma=np.maximum(sigma_mm / spacing_of(affine), 1e-6))
    if not (field.max() > level > field.min()):
        return None
    lo = float(field.min())
    field = np.pad(field, 1, constant_values=min(lo, level - 1.0))
    verts, faces, _n, _v = measure.marching_cubes(field, level, gradient_direction="ascent")
    start = np.asarray(start_vox, dtype=float) - 1 - shift
    return _to_ras(verts, faces, _crop_affine(affine, start))


#: fast-simplification keeps its working mesh in C++ globals: concurrent calls
#: from the label thread pool would swap meshes, so calls are serialised.
_SIMPLIFY_LOCK = threading.Lock()


def decimate(mesh: trimesh.Trimesh, max_faces: int) -> trimesh.Trimesh:
    """Quadric decimation (fast-simplification) down to at most ``max_faces``."""
    n = len(mesh.faces)
    if n <= max_faces or max_faces <= 0:
        return mesh
    reduction = 1.0 - (max_faces * 0.98) / n
    with _SIMPLIFY_LOCK:
        v, f = fast_simplification.simplify(
            np.asarray(mesh.vertices, dtype=np.float32),
            np.asarray(mesh.faces, dtype=np.int32),
            target_reduction=float(reduction),
        )
    return trimesh.Trimesh(vertices=np.asarray(v, dtype=np.float64), faces=f, process=False)


def smooth(mesh: trimesh.Trimesh, iterations: int = 8) -> trimesh.Trimesh:
    """Taubin smoothing (volume-preserving, unlike plain Laplacian)."""
    if iterations > 0 and len(mesh.faces) > 0:
        trimesh.smoothing.filter_taubin(mesh, lamb=0.5, nu=0.53, iterations=iterations)
    return mesh


def repair(
    mesh: trimesh.Trimesh,
    *,
    min_component_fraction: float = 0.01,
    min_component_faces: int = 16,
    min_component_size_fraction: float = 0.03,
    fix_winding: bool = True,
    merge: bool = True,
) -> trimesh.Trimesh:
    """Make a mesh usable: one vertex per position, no degenerate or duplicate
    faces, consistent outward winding, no tiny islands.

    Vertices are merged by position only (per-face normals and texture
    coordinates as stored by STL/OBJ are dropped first); islands with fewer
    than ``min_component_fraction`` of the largest island's faces, or smaller
    than ``min_component_size_fraction`` of its bounding-box diagonal, go.
    """
    out = trimesh.Trimesh(
        vertices=np.asarray(mesh.vertices, dtype=np.float64),
        faces=np.asarray(mesh.faces, dtype=np.int64),
        process=False,
    )
    if len(out.faces) == 0:
        return out
    if merge:  # marching cubes and quadric decimation already share vertices
        out.merge_vertices(merge_tex=True, merge_norm=True)
    out.update_faces(out.nondegenerate_faces())
    if merge:
        out.update_faces(out.unique_faces())
    out.remove_unreferenced_vertices()
    if len(out.faces) == 0:
        return out
    labels = trimesh.graph.connected_component_labels(out.face_adjacency, node_count=len(out.faces))
    counts = np.bincount(labels)
    if len(counts) > 1:
        # size of each island: bounding-box diagonal of its vertices (mm)
        tri = out.vertices[out.faces]
        order = np.argsort(labels, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        lo = np.minimum.reduceat(tri[order].min(axis=1), starts, axis=0)
        hi = np.maximum.reduceat(tri[order].max(axis=1), starts, axis=0)
        diag = np.linalg.norm(hi - lo, axis=1)
        keep = (counts >= max(min_component_faces, min_component_fraction * counts.max())) & (
            diag >= min_component_size_fraction * diag.max())
        keep_ids = np.nonzero(keep)[0]
        if len(keep_ids) == 0:
            keep_ids = np.array([int(np.argmax(counts))])
        out.update_faces(np.isin(labels, keep_ids))
        out.remove_unreferenced_vertices()
    if fix_winding:  # marching-cubes output is already consistent: callers may skip this
        trimesh.repair.fix_normals(out, multibody=True)
    if out.volume < 0 and out.is_watertight:
        out.invert()
    return out


def finish(
    mesh: trimesh.Trimesh,
    max_faces: int,
    *,
    smooth_iterations: int = 8,
    min_component_fraction: float = 0.01,
    fix_winding: bool = False,
) -> trimesh.Trimesh:
    """Smoothing, decimation to ``max_faces`` and repair, in that order, for
    marching-cubes surfaces (consistently wound already, so the costly
    winding fix is off unless ``fix_winding``).

    Very large inputs are pre-decimated to 8 x the budget before smoothing so
    the cost stays linear in the budget, not in the voxel count.
    """
    if len(mesh.faces) > 8 * max_faces:
        mesh = decimate(mesh, 8 * max_faces)
    mesh = smooth(mesh, smooth_iterations)
    # decimation can pinch a thin neck into a non-manifold edge; a slightly
    # smaller target collapses in a different order, so retry (within budget)
    closed: bool | None = None
    for frac in (1.0, 0.93, 0.86, 0.79, 0.72):
        out = repair(decimate(mesh, int(max_faces * frac)), min_component_fraction=min_component_fraction,
                     fix_winding=fix_winding, merge=fix_winding)
        if out.is_watertight or len(mesh.faces) <= max_faces:
            break
        if closed is None:  # only worth retrying when the input was closed
            closed = bool(mesh.is_watertight)
        if not closed:
            break
    if len(out.faces) == 0:
        raise AnatomyError("surface vanished during repair (structure smaller than a few voxels?)")
    return out


def label_boxes(labels: np.ndarray) -> dict[int, tuple[slice, slice, slice]]:
    """Bounding slices of every positive integer label present (one pass)."""
    arr = labels
    if arr.dtype.kind not in "iu":
        arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        arr = np.where(arr < 0, 0, arr)
    boxes = ndimage.find_objects(arr)
    return {i + 1: b for i, b in enumerate(boxes) if b is not None}
