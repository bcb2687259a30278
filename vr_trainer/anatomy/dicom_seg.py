"""DICOM SEG label maps (read with highdicom), de-identified like every DICOM input.

Each segment becomes one label id (its segment number) with a structure name
and tissue class taken from the segment label and its SNOMED property type /
category (``L4 vertebra`` -> ``L4``/bone, ``Spinal cord`` -> ``spinal_cord``/
nerve).  A SEG in the same frame of reference as the CT it was drawn on is
resampled (nearest neighbour) onto the CT grid, so the existing label-map path
measures Hounsfield values per structure.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from .errors import AnatomyError
from .frames import vertebra_level
from .meshes import infer_tissue
from .pipeline import LabelSpec
from .quiet import library_logs, warn
from .volume import LPS_TO_RAS, Volume

_WORDS: list[tuple[tuple[str, ...], str]] = [
    (("spinal cord", "cauda equina", "nerve", "ganglion"), "nerve"),
    (("dura", "thecal"), "dura"),
    (("intervertebral disc", "disc", "disk"), "disc"),
    (("cartilage", "menisc"), "cartilage"),
    (("ligament",), "ligament"),
    (("artery", "vein", "aorta", "vena cava", "vessel"), "vessel"),
    (("muscle", "psoas"), "muscle"),
    (("tumor", "tumour", "neoplasm", "lesion", "mass", "cyst", "hernia"), "pathology"),
    (("implant", "prosthesis", "screw"), "implant"),
    (("bone", "vertebra", "femur", "tibia", "fibula", "patella", "pelvis", "hip", "sacrum", "rib", "skull",
      "humerus", "scapula", "clavicle", "sternum", "ilium", "ischium", "pubis", "ulna", "radius"), "bone"),
    (("liver", "kidney", "spleen", "lung", "heart", "stomach", "bowel", "colon", "pancreas", "bladder", "brain",
      "gland", "organ", "prostate", "esophagus", "trachea"), "organ"),
    (("skin",), "skin"), (("fat", "adipose"), "fat"),
]


def _meaning(item: Any, seq: str) -> str:
    codes = getattr(item, seq, None) or []
    return str(getattr(codes[0], "CodeMeaning", "")) if len(codes) else ""


def segment_spec(number: int, label: str, type_meaning: str, category_meaning: str) -> LabelSpec:
    """Structure name and tissue of one segment (see module docstring)."""
    text = f"{label} {type_meaning}".lower()
    tissue = next((t for words, t in _WORDS if any(w in text for w in words)), None)
    if tissue is None:
        tissue = infer_tissue(text) if "tissue" not in category_meaning.lower() else "organ"
    level = vertebra_level(label) or vertebra_level(type_meaning)
    if level is not None and tissue == "bone":
        name = level
    else:
        name = re.sub(r"[^a-z0-9]+", "_", (label or type_meaning or f"segment_{number}").lower()).strip("_")
    desc = f"DICOM SEG segment {number}: {label or type_meaning}"
    if type_meaning:
        desc += f" (property type {type_meaning})"
    return LabelSpec(number, name[:64] or f"segment_{number}", tissue, desc)


def _resample_nearest(src: Volume, onto: Volume) -> np.ndarray:
    """``src`` labels sampled at every voxel centre of ``onto`` (0 outside ``src``)."""
    m = np.linalg.inv(src.affine) @ onto.affine
    shape = onto.array.shape[:3]
    out = np.zeros(shape, dtype=src.array.dtype)
    ii, jj = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    for k in range(shape[2]):  # slice by slice: memory stays one CT slice
        p = np.stack([ii.ravel(), jj.ravel(), np.full(ii.size, k), np.ones(ii.size)])
        q = np.rint((m @ p)[:3]).astype(np.int64)
        ok = np.all((q >= 0) & (q < np.array(src.array.shape[:3])[:, None]), axis=0)
        vals = np.zeros(ii.size, dtype=src.array.dtype)
        vals[ok] = src.array[q[0, ok], q[1, ok], q[2, ok]]
        out[:, :, k] = vals.reshape(ii.shape)
    return out


def read_dicom_seg(path: str | Path, *, reference: Volume | None = None,
                   reference_frame_uid: str | None = None) -> tuple[Volume, dict[int, LabelSpec], dict[str, Any]]:
    """A DICOM SEG file (or a folder holding one) -> (label volume, specs, de-identification record).

    With ``reference`` (the CT) and the SEG in the same frame of reference
    (``reference_frame_uid``, compared after the consistent UID mapping of the
    de-identification), the labels are resampled onto the CT grid.
    """
    import highdicom as hd

    from .dicom import read_folder

    p = Path(path)
    if not p.exists():
        raise AnatomyError(f"{p}: no such file or folder")
    with library_logs() as read_logged:
        groups, record = read_folder(p)
    warn(str(p), read_logged)
    inputs = record.pop("_inputs")
    segs = [d for g in groups if g.modality == "SEG" for d in g.datasets]
    if not segs:
        found = ", ".join(sorted({g.modality or "?" for g in groups})) or "no DICOM images"
        raise AnatomyError(f"{p}: holds no DICOM SEG object ({found}); pass the segmentation export (Modality SEG)")
    if len(segs) > 1:
        raise AnatomyError(f"{p}: holds {len(segs)} DICOM SEG objects; pass the one file to use as --labels")
    ds = segs[0]
    try:
        with library_logs() as logged:
            seg = hd.seg.Segmentation.from_dataset(ds, copy=False)
            notes: dict[str, Any] = {}
            try:
                hv = seg.get_volume(combine_segments=True, dtype=np.int32)
            except (ValueError, RuntimeError) as exc:
                if "overlap" not in str(exc).lower():
                    raise
                seg = hd.seg.Segmentation.from_dataset(ds, copy=True)  # a fresh frame index after the failure
                hv = seg.get_volume(combine_segments=True, skip_overlap_checks=True, dtype=np.int32)
                notes["dicom_seg"] = "segments overlap; where they do, the higher segment number was kept"
    except AnatomyError:
        raise
    except Exception as exc:  # highdicom raises many types for malformed SEG
        raise AnatomyError(f"{p}: DICOM SEG cannot be read ({type(exc).__name__}: {exc}); export it again") from exc
    warn(str(p), logged)
    vol = Volume(array=np.asarray(hv.array), affine=LPS_TO_RAS @ np.asarray(hv.affine, float), source_units="mm",
                 name=f"{p} (DICOM SEG)", inputs=[{**inputs, "kind": "dicom_seg"}], notes=notes)
    specs = {}
    for item in ds.SegmentSequence:
        n = int(item.SegmentNumber)
        specs[n] = segment_spec(n, str(getattr(item, "SegmentLabel", "") or ""),
                                _meaning(item, "SegmentedPropertyTypeCodeSequence"),
                                _meaning(item, "SegmentedPropertyCategoryCodeSequence"))
    same_frame = reference_frame_uid is not None and str(ds.get("FrameOfReferenceUID", "")) == reference_frame_uid
    if reference is not None and same_frame:
        vol = Volume(array=_resample_nearest(vol, reference), affine=reference.affine.copy(), source_units="mm",
                     name=vol.name, inputs=vol.inputs, notes=vol.notes)
        vol.notes["dicom_seg_grid"] = "resampled (nearest) onto the CT grid it references"
    record["files"] = inputs["files"]
    return vol, specs, record
