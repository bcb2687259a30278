"""The bundle's down-sampled Hounsfield volume, for the virtual C-arm's radiographs.

A bundle made from a CT (``vr-trainer import ct``, the synthetic phantoms) keeps the CT
block-averaged to voxels of at most :data:`MAX_SPACING_MM` (2 mm; a coarser CT is kept as
it is) in ``volume/hu.npz``: ``hu`` int16 Hounsfield units, ``affine`` float64 4x4 voxel
index -> patient RAS mm (``affine @ [i, j, k, 1]``), zip-compressed. The manifest records it
as ``hu_volume`` (file, shape, spacing, source). A bundle without one (meshes only) gets a
volume voxelised from its closed meshes with tissue densities: :func:`volume_from_meshes`.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .errors import AnatomyError
from .volume import Volume

if TYPE_CHECKING:
    from .bundle import Bundle, Structure

HU_FILE = "volume/hu.npz"
MAX_SPACING_MM = 2.0
HU_MIN, HU_MAX = -1024, 3071

#: Hounsfield values painted per tissue by :func:`volume_from_meshes` (typical CT values:
#: cancellous/mixed vertebral bone ~700, disc ~90, neural tissue ~35, muscle ~50, fat and
#: skin-enclosed subcutaneous tissue -100, air -1000).
TISSUE_HU: dict[str, float] = {
    "skin": -100.0, "fat": -100.0, "muscle": 50.0, "organ": 40.0, "vessel": 40.0, "ligament": 60.0,
    "dura": 20.0, "nerve": 35.0, "disc": 90.0, "pathology": 90.0, "cartilage": 100.0, "bone": 700.0,
    "cortical_bone": 1200.0, "implant": 3000.0,
}
AIR_HU = -1000.0
AIR_CLAMP_HU = -800  # at or below: no attenuation in the radiograph model (plastimatch's too)
#: painting order: later tissues overwrite earlier ones where closed surfaces nest
_PAINT_ORDER = ("skin", "fat", "muscle", "organ", "vessel", "ligament", "dura", "nerve", "disc", "pathology",
                "cartilage", "bone", "cortical_bone", "implant")


def downsample_hu(vol: Volume, max_spacing_mm: float = MAX_SPACING_MM) -> Volume:
    """Block-average ``vol`` by whole factors per axis so each voxel is at most ``max_spacing_mm``
    (axes already coarser stay as they are); int16 HU clipped to [-1024, 3071]."""
    arr = np.asarray(vol.array, dtype=np.float32)
    sp = vol.spacing_mm
    f = [max(1, int(np.floor(max_spacing_mm / s + 1e-6))) for s in sp]
    pad = [(0, (-n) % k) for n, k in zip(arr.shape, f)]
    if any(p[1] for p in pad):
        arr = np.pad(arr, pad, mode="edge")
    n = [arr.shape[i] // f[i] for i in range(3)]
    arr = arr.reshape(n[0], f[0], n[1], f[1], n[2], f[2]).mean(axis=(1, 3, 5))
    scale = np.eye(4)
    scale[:3, :3] = np.diag(f)
    scale[:3, 3] = (np.asarray(f) - 1) / 2.0  # the block's centre in the old index space
    hu = np.clip(np.round(arr), HU_MIN, HU_MAX).astype(np.int16)
    return Volume(array=hu, affine=np.asarray(vol.affine, float) @ scale, source_units="mm", name=f"{vol.name}:hu",
                  notes={"downsampled_by": f, "from_spacing_mm": [round(float(s), 4) for s in sp]})


def compact_for_radiographs(vol: Volume) -> Volume:
    """Air as one value (-1000 at or below :data:`AIR_CLAMP_HU`, where the DRR's attenuation is 0)
    and the grid cropped to the voxels above it (plus one): the same radiographs from a file
    about half the size (CT noise in air compresses badly)."""
    hu = np.asarray(vol.array).copy()
    air = hu <= AIR_CLAMP_HU
    hu[air] = int(AIR_HU)
    if air.all():
        return Volume(array=hu, affine=vol.affine, source_units="mm", name=vol.name, notes=dict(vol.notes))
    idx = np.nonzero(~air)
    lo = np.maximum([int(i.min()) - 1 for i in idx], 0)
    hi = np.minimum([int(i.max()) + 2 for i in idx], hu.shape)
    shift = np.eye(4)
    shift[:3, 3] = lo
    return Volume(array=np.ascontiguousarray(hu[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]),
                  affine=np.asarray(vol.affine, float) @ shift, source_units="mm", name=vol.name,
                  notes=dict(vol.notes))


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A compressed ``.npz`` (what :func:`numpy.load` reads) with fixed entry dates: the same arrays
    give the same bytes (``numpy.savez_compressed`` stamps the time, so bundles would differ)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, a in arrays.items():
            one = io.BytesIO()
            np.lib.format.write_array(one, np.ascontiguousarray(a), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, one.getvalue())
    return buf.getvalue()


def write_hu_volume(bundle_dir: Path, vol: Volume, source: str) -> dict[str, Any]:
    """Write ``vol`` (down-sampled first) as ``bundle_dir/volume/hu.npz``; returns the manifest's
    ``hu_volume`` entry. ``source`` says where the HU came from (``ct``, ``synthetic phantom ct`` ...)."""
    small = compact_for_radiographs(downsample_hu(vol))
    path = Path(bundle_dir) / HU_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    data = npz_bytes({"hu": small.array, "affine": small.affine})
    path.write_bytes(data)
    return {
        "file": HU_FILE,
        "dtype": "int16",
        "units": "HU",
        "shape": [int(x) for x in small.array.shape],
        "spacing_mm": [round(float(s), 4) for s in small.spacing_mm],
        "from_spacing_mm": small.notes["from_spacing_mm"],
        "affine_note": "affine: voxel index -> patient RAS mm",
        "source": source,
        "air_at_or_below_hu": AIR_CLAMP_HU,
        "air_note": "values at or below air_at_or_below_hu are stored as -1000 and the grid is cropped to the "
                    "rest (the radiograph model gives them no attenuation)",
        "bytes": len(data),
    }


def load_hu_volume(bundle_dir: str | os.PathLike[str]) -> Volume | None:
    """The bundle's HU volume, or None when it has none (older bundles, mesh imports)."""
    p = Path(bundle_dir)
    try:
        manifest = json.loads((p / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    entry = manifest.get("hu_volume") if isinstance(manifest, dict) else None
    if not isinstance(entry, dict):
        return None
    fpath = (p / str(entry.get("file", HU_FILE))).resolve()
    if p.resolve() not in fpath.parents:
        raise AnatomyError(f"{p}/manifest.json: hu_volume.file points outside the bundle")
    try:
        with np.load(fpath) as z:
            hu, affine = np.asarray(z["hu"]), np.asarray(z["affine"], float)
    except (OSError, KeyError, ValueError) as exc:
        raise AnatomyError(f"{fpath}: the bundle's HU volume is unreadable ({exc}); re-run the import") from exc
    if hu.ndim != 3 or affine.shape != (4, 4):
        raise AnatomyError(f"{fpath}: HU volume must be 3D with a 4x4 affine; re-run the import")
    return Volume(array=hu, affine=affine, source_units="mm", name=f"{p.name}:hu",
                  notes={"source": entry.get("source", "?")})


def _parity_mask(tri: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """(shape) bool: grid points (integer coordinates, in the triangles' own units) inside a
    closed surface by ray parity along +axis 2, one ray per (axis 0, axis 1) column."""
    xy = tri[:, :, :2]
    lo = np.clip(np.ceil(xy.min(axis=1)).astype(int), 0, None)
    hi = np.minimum(np.floor(xy.max(axis=1)).astype(int), np.array(shape[:2]) - 1)
    ni, nj = np.maximum(hi - lo + 1, 0).T
    count = ni * nj
    keep = count > 0
    if not keep.any():
        return np.zeros(shape, bool)
    t_idx = np.repeat(np.nonzero(keep)[0], count[keep])
    start = np.cumsum(count[keep]) - count[keep]
    local = np.arange(len(t_idx)) - np.repeat(start, count[keep])
    nj_t = nj[t_idx]
    ci = lo[t_idx, 0] + local // nj_t
    cj = lo[t_idx, 1] + local % nj_t
    a, b, c = xy[t_idx, 0], xy[t_idx, 1], xy[t_idx, 2]
    v0, v1 = b - a, c - a
    v2 = np.stack([ci, cj], axis=1) - a
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    ok = np.abs(den) > 1e-12
    den = np.where(ok, den, 1.0)
    w1 = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
    w2 = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
    hit = ok & (w1 >= 0) & (w2 >= 0) & (w1 + w2 <= 1)
    z0 = tri[t_idx, 0, 2]
    z = z0 + w1 * (tri[t_idx, 1, 2] - z0) + w2 * (tri[t_idx, 2, 2] - z0)
    ci, cj, z = ci[hit], cj[hit], z[hit]
    k = np.clip(np.ceil(z), 0, shape[2]).astype(np.int64)
    flat = (ci.astype(np.int64) * shape[1] + cj) * (shape[2] + 1) + k
    counts = np.bincount(flat, minlength=shape[0] * shape[1] * (shape[2] + 1)).reshape(
        shape[0], shape[1], shape[2] + 1)
    return (np.cumsum(counts[:, :, :-1], axis=2, dtype=np.int32) % 2) == 1


def _inside_mask(vertices: np.ndarray, faces: np.ndarray, origin: np.ndarray, spacing_mm: float,
                 shape: tuple[int, int, int]) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """Voxel centres inside a closed mesh, within the mesh's bounding block: (the block's slices,
    its bool mask). Ray parity along each of the three axes, a voxel inside where at least two
    agree (a ray grazing an edge or a small defect flips one axis' parity, not two)."""
    g = (np.asarray(vertices, float) - origin) / spacing_mm  # grid coordinates: voxel centres at integers
    lo = np.clip(np.floor(g.min(0)).astype(int) - 1, 0, None)
    hi = np.minimum(np.ceil(g.max(0)).astype(int) + 2, np.asarray(shape))
    block = tuple(int(x) for x in np.maximum(hi - lo, 0))
    sl = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
    if min(block) <= 0:
        return sl, np.zeros(block, bool)
    tri = (g - lo)[faces]
    votes = np.zeros(block, np.uint8)
    for axes in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        sub = (block[axes[0]], block[axes[1]], block[axes[2]])
        m = _parity_mask(tri[:, :, list(axes)], sub)
        votes += np.transpose(m, np.argsort(axes)).astype(np.uint8)
    return sl, votes >= 2


def volume_from_meshes(bundle: "Bundle", spacing_mm: float = MAX_SPACING_MM, margin_mm: float = 20.0) -> Volume:
    """A HU volume voxelised from the bundle's closed (watertight) meshes with :data:`TISSUE_HU`,
    air (-1000 HU) elsewhere; open surfaces are left out. Grid: the meshes' bounds plus
    ``margin_mm``, cubic voxels of ``spacing_mm``, axis-aligned in RAS."""
    return voxelise_structures(bundle.structures, spacing_mm, margin_mm, name=f"{bundle.path.name}:meshes",
                               where=str(bundle.path))


def voxelise_structures(structures: "Sequence[Structure]", spacing_mm: float = MAX_SPACING_MM,
                        margin_mm: float = 20.0, name: str = "meshes", where: str = "bundle") -> Volume:
    """:func:`volume_from_meshes` for a list of structures (before a bundle is written)."""
    closed = [s for s in structures if s.watertight and s.tissue in TISSUE_HU]
    if not closed:
        raise AnatomyError(f"{where}: no closed surface to make a radiograph from; re-import with a CT")
    lo = np.min([np.asarray(s.mesh.vertices).min(0) for s in closed], axis=0) - margin_mm
    hi = np.max([np.asarray(s.mesh.vertices).max(0) for s in closed], axis=0) + margin_mm
    n = np.ceil((hi - lo) / spacing_mm).astype(int)
    shape = (int(n[0]), int(n[1]), int(n[2]))
    # a small offset keeps voxel centres off mesh vertices and edges (a double count flips parity)
    origin = lo + spacing_mm * np.array([0.5 + 1.3e-3, 0.5 + 2.9e-3, 0.5 + 0.7e-3])
    hu = np.full(shape, AIR_HU, np.float32)
    rank = {t: i for i, t in enumerate(_PAINT_ORDER)}
    for s in sorted(closed, key=lambda s: rank[s.tissue]):
        sl, inside = _inside_mask(np.asarray(s.mesh.vertices, float), np.asarray(s.mesh.faces), origin, spacing_mm,
                                  shape)
        hu[sl][inside] = TISSUE_HU[s.tissue]
    affine = np.eye(4)
    affine[:3, :3] *= spacing_mm
    affine[:3, 3] = origin
    return Volume(array=hu.astype(np.int16), affine=affine, source_units="mm", name=name,
                  notes={"source": "voxelised meshes (tissue HU)"})


def meshes_with_ct_bone(structures: "Sequence[Structure]", ct: Volume, spacing_mm: float = MAX_SPACING_MM,
                        bone_hu: float = 200.0) -> Volume:
    """For a CT that covers only part of the body (the synthetic phantoms' CT box): the whole body
    voxelised from the closed meshes (:func:`voxelise_structures`), with the CT's own values
    (block-averaged to ``spacing_mm``, sampled trilinearly) wherever the CT shows bone (>=
    ``bone_hu``), so the radiograph has the CT's bone detail (cortical shell) and no box edge."""
    from scipy import ndimage

    body = voxelise_structures(structures, spacing_mm, name=f"{ct.name}:meshes+ct")
    small = downsample_hu(ct, spacing_mm)
    ijk = np.stack(np.meshgrid(*[np.arange(k) for k in body.array.shape], indexing="ij"), axis=0).reshape(3, -1)
    ras = body.affine[:3, :3] @ ijk + body.affine[:3, 3:4]
    src = np.linalg.inv(small.affine)
    coords = src[:3, :3] @ ras + src[:3, 3:4]
    ct_hu = ndimage.map_coordinates(small.array.astype(np.float32), coords, order=1, mode="constant", cval=AIR_HU)
    ct_hu = ct_hu.reshape(body.array.shape)
    out = np.where(ct_hu >= bone_hu, np.round(ct_hu), body.array).astype(np.int16)
    return Volume(array=out, affine=body.affine, source_units="mm", name=body.name,
                  notes={"source": f"voxelised meshes (tissue HU) + CT values >= {bone_hu:g} HU"})


def bundle_hu_volume(bundle: "Bundle") -> Volume:
    """The bundle's stored HU volume, else one voxelised from its meshes."""
    vol = load_hu_volume(bundle.path)
    return vol if vol is not None else volume_from_meshes(bundle)
