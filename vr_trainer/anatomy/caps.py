"""Structures cut by the scan's edge: closed with a flat cap that is marked.

A bone that leaves the scanned volume (a knee CT crops the femur shaft, a
lumbar CT ends inside L2) has no surface beyond the last slice.  The label is
extruded past that border before contouring (:func:`extend_edges`), so
smoothing and decimation see a bone that simply continues, and the finished
surface is then cut at the border plane and capped (:func:`cap_at_border`):
watertight, flat where the scan ended.  Cap faces are moved to the end of the
face list and counted, so the manifest can say ``cap_faces`` and renderers or
metrics can tell the cut from anatomy (:meth:`Structure.cap_face_mask`).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import trimesh

#: (array axis, side): side 0 is index 0, side 1 is the last index
Side = tuple[int, int]


def border_sides(box: Sequence[slice], shape: Sequence[int]) -> list[Side]:
    """Sides of the volume (``shape``) that a bounding box (slices) touches."""
    out: list[Side] = []
    for ax, (sl, n) in enumerate(zip(box, shape)):
        if (sl.start or 0) == 0:
            out.append((ax, 0))
        if (sl.stop if sl.stop is not None else n) >= n:
            out.append((ax, 1))
    return out


def extend_edges(field: np.ndarray, sides: Sequence[Side], n_vox: int) -> tuple[np.ndarray, np.ndarray]:
    """Repeat the edge slices of ``field`` ``n_vox`` times past each side in ``sides``.

    Returns ``(extended, shift_vox)``: voxel ``v`` of ``field`` is ``v + shift_vox`` of the result.
    """
    widths = [[0, 0], [0, 0], [0, 0]]
    for ax, side in sides:
        widths[ax][side] = n_vox
    shift = np.array([w[0] for w in widths], dtype=float)
    if not sides:
        return field, shift
    return np.pad(field, widths, mode="edge"), shift


def border_planes(affine: np.ndarray, shape: Sequence[int], sides: Sequence[Side]) -> list[dict[str, Any]]:
    """The scan's border planes in RAS mm: half a voxel beyond the first/last voxel centre.

    Each plane has ``origin_mm`` and ``normal`` (unit, pointing into the volume).
    """
    a = np.asarray(affine, float)
    inv = np.linalg.inv(a[:3, :3])
    planes = []
    for ax, side in sides:
        ijk = (np.asarray(shape, float) - 1.0) / 2.0
        ijk[ax] = -0.5 if side == 0 else shape[ax] - 0.5
        grad = inv[ax]  # gradient of voxel coordinate ax in RAS
        normal = grad / np.linalg.norm(grad) * (1.0 if side == 0 else -1.0)
        planes.append({"axis": "ijk"[ax], "side": "first" if side == 0 else "last",
                       "origin_mm": a[:3, :3] @ ijk + a[:3, 3], "normal": normal})
    return planes


def cap_at_border(mesh: trimesh.Trimesh, planes: Sequence[dict[str, Any]]
                  ) -> tuple[trimesh.Trimesh, int, list[dict[str, Any]]]:
    """Cut ``mesh`` (RAS mm) at each plane, cap the cut, put cap faces last.

    Returns ``(mesh, cap_face_count, plane records for the manifest)``.  Planes the
    mesh does not reach are left out of the records.
    """
    if not planes:
        return mesh, 0, []
    out = mesh
    used = []
    for pl in planes:
        d = (np.asarray(out.vertices) - pl["origin_mm"]) @ pl["normal"]
        if d.min() >= 0:  # surface ends inside the scan: nothing to cut here
            continue
        cut = trimesh.intersections.slice_mesh_plane(out, pl["normal"], pl["origin_mm"], cap=True)
        if len(cut.faces) == 0:
            continue
        cut.merge_vertices()  # the next cut needs shared vertices on this cap's rim
        out = cut
        used.append(pl)
    if not used:
        return mesh, 0, []
    v = np.asarray(out.vertices)
    tol = 1e-6 * max(1.0, float(np.max(out.extents)))
    on_cap = np.zeros(len(out.faces), dtype=bool)
    for pl in used:
        on = np.abs((v - pl["origin_mm"]) @ pl["normal"]) < tol
        on_cap |= on[out.faces].all(axis=1)
    order = np.concatenate([np.nonzero(~on_cap)[0], np.nonzero(on_cap)[0]])
    capped = trimesh.Trimesh(vertices=v, faces=np.asarray(out.faces)[order], process=False)
    records = [{"axis": pl["axis"], "side": pl["side"], "origin_mm": [round(float(x), 3) for x in pl["origin_mm"]],
                "normal": [round(float(x), 6) for x in pl["normal"]]} for pl in used]
    return capped, int(on_cap.sum()), records
