"""The body around a patient's spine, from the CT: skin surface and paraspinal muscle.

- ``skin``: the body surface, the CT thresholded at ``SKIN_HU`` (-300 HU: between
  air, about -1000, and fat, about -100), on a grid of at most ``SKIN_VOXEL_MM``
  (block-averaged first: the surface needs no finer detail and stays within its
  face budget).  Only the largest connected part is kept (the body: not the
  table, cables or the air-filled bowel), opened by one voxel so a table pad
  touching the back does not join it, and every axial slice's holes are filled
  (lungs, bowel gas) so the skin is one closed outer surface.  Where the body
  runs out of the scan (top and bottom) the surface is closed flat there, as any
  structure the scan cuts (the manifest says so).  A CT without air around the
  body (a crop inside the patient) has no body surface: no skin is made.
- ``paraspinal_muscle_left/right``: TotalSegmentator's ``autochthon_left/right``
  (the autochthonous back muscles: erector spinae, multifidus) renamed to the
  names the PTED scenarios use; the label's own name is kept in the manifest
  (``label_name``).

:func:`add_body` is called by ``vr-trainer import ct --spine`` (the PTED path):
a derived Kambin landmark then also gets its skin entry point.
"""

from __future__ import annotations

import numpy as np

from .bundle import Structure
from .pipeline import LabelSpec, structures_from_labels
from .volume import Volume

SKIN_HU = -300.0
SKIN_VOXEL_MM = 3.0
#: the body must hold at least this fraction of the scan, and air at least this fraction around it
MIN_BODY_FRACTION, MIN_AIR_FRACTION = 0.05, 0.02
MUSCLE_NAMES = {"autochthon_left": "paraspinal_muscle_left", "autochthon_right": "paraspinal_muscle_right"}


def _downsample(ct: Volume, max_mm: float) -> Volume:
    sp = ct.spacing_mm
    f = [max(1, int(np.floor(max_mm / float(s) + 1e-6))) for s in sp]
    a = np.asarray(ct.array, np.float32)
    if f == [1, 1, 1]:
        return ct
    sh = [n // k * k for n, k in zip(a.shape, f)]
    a = a[: sh[0], : sh[1], : sh[2]]
    a = a.reshape(sh[0] // f[0], f[0], sh[1] // f[1], f[1], sh[2] // f[2], f[2]).mean(axis=(1, 3, 5))
    aff = np.array(ct.affine, float).copy()
    aff[:3, :3] = aff[:3, :3] * np.asarray(f, float)[None, :]
    aff[:3, 3] = ct.affine[:3, 3] + ct.affine[:3, :3] @ ((np.asarray(f, float) - 1) / 2)
    return Volume(array=a, affine=aff, source_units=ct.source_units, name=ct.name, inputs=list(ct.inputs))


def body_mask(ct: Volume, threshold_hu: float = SKIN_HU) -> np.ndarray | None:
    """The body as a filled binary mask on ``ct``'s grid, or None when the CT shows no body surface."""
    from scipy import ndimage

    arr = np.asarray(ct.array)
    m = arr > threshold_hu
    if m.mean() < MIN_BODY_FRACTION or (~m).mean() < MIN_AIR_FRACTION:
        return None
    m = ndimage.binary_opening(m, iterations=1)
    lab, n = ndimage.label(m)
    if n == 0:
        return None
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    m = lab == int(np.argmax(sizes))
    # the axial slice axis: the voxel axis most aligned with patient S (RAS z)
    ax = int(np.argmax(np.abs(np.asarray(ct.affine)[2, :3])))
    out = np.empty_like(m)
    for k in range(m.shape[ax]):
        sl = [slice(None)] * 3
        sl[ax] = slice(k, k + 1)
        out[tuple(sl)] = ndimage.binary_fill_holes(m[tuple(sl)].squeeze(ax)).reshape(m[tuple(sl)].shape)
    if out.mean() < MIN_BODY_FRACTION:
        return None
    return out


def skin_from_ct(ct: Volume, threshold_hu: float = SKIN_HU) -> Structure | None:
    """The body surface (tissue ``skin``) of a CT in Hounsfield units, or None (no body surface in it)."""
    small = _downsample(ct, SKIN_VOXEL_MM)
    mask = body_mask(small, threshold_hu)
    if mask is None:
        return None
    labels = Volume(array=mask.astype(np.uint8), affine=small.affine, source_units=ct.source_units,
                    name="body mask", inputs=list(ct.inputs))
    desc = f"body surface: CT > {threshold_hu:g} HU, largest part, holes filled per slice"
    found, _ = structures_from_labels(labels, {1: LabelSpec(1, "skin", "skin", desc)})
    if not found:
        return None
    s = found[0]
    s.extra.pop("label_id", None)
    s.extra["derived"] = {"method": f"threshold {threshold_hu:g} HU on <= {SKIN_VOXEL_MM:g} mm voxels, "
                                    "largest component, per-slice hole filling", "from": ["ct"]}
    return s


def rename_muscles(structures: list[Structure]) -> list[Structure]:
    """``autochthon_left/right`` -> ``paraspinal_muscle_left/right`` (unless those names exist already)."""
    have = {s.name for s in structures}
    for s in structures:
        new = MUSCLE_NAMES.get(s.name)
        if new and new not in have:
            s.extra["label_name"] = s.name
            s.name = new
            s.tissue = "muscle"
    return structures


def add_body(structures: list[Structure], ct: Volume | None) -> tuple[list[Structure], dict[str, str]]:
    """``structures`` with the paraspinal muscles renamed and a skin from ``ct`` when it shows one
    (and none is there yet); returns them and a note for the manifest."""
    out = rename_muscles(list(structures))
    note = {"paraspinal_muscle": "from autochthon labels" if any("label_name" in s.extra for s in out) else "none"}
    if ct is not None and not any(s.tissue == "skin" for s in out):
        skin = skin_from_ct(ct)
        if skin is not None:
            out.append(skin)
            note["skin"] = f"from the CT at {SKIN_HU:g} HU"
        else:
            note["skin"] = "none: the CT shows no body surface (no air around the body)"
    return out, note
