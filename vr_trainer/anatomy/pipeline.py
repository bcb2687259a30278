"""Volumes to structures: the one import pipeline every source goes through.

``structures_from_labels`` turns a label volume into one surface per label
(marching cubes per label -> smoothing -> decimation to the tissue budget ->
repair -> measurements); ``structures_from_threshold`` makes a bone surface
from a CT without labels.  All outputs are RAS millimetres.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, TypeVar

import numpy as np
import trimesh
from tqdm import tqdm

from .bundle import Structure
from .caps import border_planes, border_sides, cap_at_border
from .errors import AnatomyError
from .surface import finish, iso_surface, label_boxes, mask_surface, spacing_of
from .tissues import FACE_BUDGET, check_tissue
from .volume import Volume

T = TypeVar("T")


@dataclass(frozen=True)
class LabelSpec:
    """What one label id means: structure name, tissue class, description."""

    id: int
    name: str
    tissue: str
    description: str = ""


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """A tqdm bar on stderr; silent when stderr is not a terminal."""
    return iter(tqdm(items, desc=desc, total=total, file=sys.stderr, disable=None, leave=False, unit="structure"))


def same_grid(a: Volume, b: Volume, tol_mm: float = 0.5) -> bool:
    """True when two volumes share shape and voxel->RAS mapping."""
    return a.array.shape == b.array.shape and bool(np.allclose(a.affine, b.affine, atol=tol_mm))


def structures_from_labels(
    labels: Volume,
    specs: Mapping[int, LabelSpec],
    *,
    ct: Volume | None = None,
    budgets: Mapping[str, int] | None = None,
    sigma_mm: float | None = None,
    only: Iterable[int] | None = None,
    min_voxels: int = 8,
    skipped: list[int] | None = None,
) -> tuple[list[Structure], list[int]]:
    """One structure per label id present in ``labels`` and known to ``specs``.

    Returns ``(structures, unmapped_ids)``; ids present in the volume but not
    in ``specs`` are left out and reported so the caller can tell the user.
    ``ct`` (same grid) adds each structure's mean Hounsfield value.  Labels
    with fewer than ``min_voxels`` voxels (specks) are skipped and appended to
    ``skipped`` when given.
    """
    budgets = dict(FACE_BUDGET if budgets is None else budgets)
    arr = labels.array
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr)):
            raise AnatomyError(
                f"{labels.name}: label map holds non-integer values; pass the segmentation "
                "(integer labels), not the CT, as --labels"
            )
        arr = arr.astype(np.int32)
    boxes = label_boxes(arr)
    wanted = sorted(boxes) if only is None else sorted(set(only) & set(boxes))
    mapped = [i for i in wanted if i in specs]
    unmapped = [i for i in wanted if i not in specs]
    hu = ct.array if (ct is not None and same_grid(ct, labels)) else None
    voxel_ml = float(abs(np.linalg.det(labels.affine[:3, :3]))) / 1000.0
    for lid in mapped:
        check_tissue(specs[lid].tissue, f"label {lid} ({specs[lid].name})")

    def one(lid: int) -> Structure | int | None:
        spec = specs[lid]
        sl = boxes[lid]
        mask = arr[sl] == lid
        nvox = int(mask.sum())
        if nvox < min_voxels:
            return lid
        sides = border_sides(sl, arr.shape)
        mesh = mask_surface(mask, labels.affine, sigma_mm=sigma_mm, start_vox=np.array([s.start for s in sl]),
                            extend=sides)
        if mesh is None or len(mesh.faces) == 0:
            return None
        mesh = finish(mesh, budgets.get(spec.tissue, 5000))
        extra: dict[str, Any] = {"label_id": int(lid), "voxel_volume_ml": round(nvox * voxel_ml, 3)}
        mesh = _capped(mesh, labels.affine, arr.shape, sides, extra)
        if spec.description:
            extra["description"] = spec.description
        if hu is not None:
            extra["hu_mean"] = round(float(hu[sl][mask].mean()), 1)
        return Structure.from_mesh(spec.name, spec.tissue, mesh, **extra)

    # labels are independent; numpy, scikit-image and fast-simplification release
    # the GIL for most of the work, so a small thread pool uses the spare cores
    workers = max(1, min(4, os.cpu_count() or 1, len(mapped)))
    out: list[Structure] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for lid, res in zip(mapped, progress(pool.map(one, mapped), "surfaces", total=len(mapped))):
            if isinstance(res, Structure):
                out.append(res)
            elif res is not None and skipped is not None:
                skipped.append(int(lid))
    return out, unmapped


def structures_from_threshold(
    ct: Volume,
    threshold_hu: float,
    *,
    name: str = "bone",
    tissue: str = "bone",
    max_faces: int = 120_000,
) -> list[Structure]:
    """A bone surface where the CT exceeds ``threshold_hu`` (Hounsfield units).

    The volume is cropped to the voxels above threshold first; islands
    smaller than 1 % of the largest piece (noise, table, calcifications) go.
    """
    arr = ct.array
    above = arr > threshold_hu
    if not above.any():
        hi = float(arr.max())
        raise AnatomyError(
            f"{ct.name}: no voxel exceeds {threshold_hu:g} HU (maximum {hi:g}); the input may "
            "not be a CT in Hounsfield units, or lower --threshold-hu"
        )
    idx = [np.nonzero(above.any(axis=tuple(j for j in range(3) if j != i)))[0] for i in range(3)]
    del above
    lo = np.array([max(int(ix[0]) - 2, 0) for ix in idx])
    hi_ = np.array([min(int(ix[-1]) + 3, arr.shape[i]) for i, ix in enumerate(idx)])
    crop = arr[lo[0] : hi_[0], lo[1] : hi_[1], lo[2] : hi_[2]]
    sigma = 0.5 * float(spacing_of(ct.affine).min())
    bar = tqdm(total=2, desc="bone surface", file=sys.stderr, disable=None, leave=False)
    sides = [(i, 0) for i, ix in enumerate(idx) if ix[0] == 0]
    sides += [(i, 1) for i, ix in enumerate(idx) if ix[-1] == arr.shape[i] - 1]
    mesh = iso_surface(crop, float(threshold_hu), ct.affine, sigma_mm=sigma, start_vox=lo, extend=sides)
    bar.update()
    if mesh is None:
        raise AnatomyError(f"{ct.name}: no surface at {threshold_hu:g} HU; lower --threshold-hu")
    mesh = finish(mesh, max_faces, smooth_iterations=4)
    extra: dict[str, Any] = {"threshold_hu": float(threshold_hu)}
    mesh = _capped(mesh, ct.affine, arr.shape, sides, extra)
    bar.update()
    bar.close()
    return [Structure.from_mesh(name, tissue, mesh, **extra)]


def _capped(mesh: trimesh.Trimesh, affine: np.ndarray, shape: tuple[int, ...], sides: list[tuple[int, int]],
            extra: dict[str, Any]) -> trimesh.Trimesh:
    """Cut and cap a surface at the scan border sides it was extruded through; the
    cap is recorded in ``extra`` (``cap_faces``: the last that many faces)."""
    if not sides:
        return mesh
    mesh, n_cap, planes = cap_at_border(mesh, border_planes(affine, shape[:3], sides))
    if n_cap:
        extra["cap_faces"] = n_cap
        extra["cap_planes"] = planes
        extra["cap_note"] = "cut by the scan's edge: the last cap_faces faces close it flat there (not anatomy)"
    return mesh
