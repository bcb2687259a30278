"""One call per import: read -> (de-identify) -> surfaces -> bundle.

Nothing is written until every structure is ready; :func:`write_bundle`
then writes atomically, so a failure at any step leaves no bundle behind.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .bundle import Bundle, Structure, combined_sha256, load_bundle, write_bundle
from .errors import AnatomyError
from .labelmaps import resolve_label_map
from .meshes import structures_from_meshes
from .pipeline import same_grid, structures_from_labels, structures_from_threshold
from .volume import Volume, read_volume

DEFAULT_THRESHOLD_HU = 200.0
_NO_PHI_NOTE = ("no patient metadata copied: only voxel data and geometry are used; header text "
                "(NIfTI descrip/aux, NRRD key/values) and file names are not recorded")


def looks_like_labels(vol: Volume) -> bool:
    """A label map: non-negative integers with few distinct values (a CT has air at -1000 HU)."""
    a = vol.array
    if a.dtype.kind == "f" and not np.array_equal(a, np.round(a)):
        return False
    if a.min() < 0:
        return False
    return len(np.unique(a[:: max(1, a.shape[0] // 64)])) <= 512


def _overlap_mm(a: Volume, b: Volume) -> float:
    def box(v: Volume) -> np.ndarray:
        corners = np.array([[i, j, k, 1.0] for i in (0, v.array.shape[0] - 1) for j in (0, v.array.shape[1] - 1)
                            for k in (0, v.array.shape[2] - 1)])
        w = corners @ v.affine.T
        return np.stack([w[:, :3].min(0), w[:, :3].max(0)])

    ba, bb = box(a), box(b)
    return float(np.min(np.minimum(ba[1], bb[1]) - np.maximum(ba[0], bb[0])))


def _is_dicom(p: Path) -> bool:
    return p.is_dir() or p.suffix.lower() in (".dcm", ".dicom")


def _licence_and_source(license: str | None, source_ref: str | None) -> dict[str, str]:
    """``provenance.license`` (an SPDX licence id or expression) and ``provenance.source_ref``, when given."""
    out: dict[str, str] = {}
    if license is not None:
        lic = license.strip()
        if not lic or not all(c.isalnum() or c in ".-+() :" for c in lic):
            raise AnatomyError(f"--license {license!r}: give an SPDX licence id such as Apache-2.0 or CC-BY-4.0")
        out["license"] = lic
    if source_ref is not None:
        if not source_ref.strip():
            raise AnatomyError("--source: give where the data come from (a URL, repository and path, a DOI)")
        out["source_ref"] = source_ref.strip()
    return out


def import_ct(path: str | Path, out: str | Path, *, labels: str | Path | None = None, label_map: str | None = None,
              threshold_hu: float | None = None, series: str | None = None, spine: bool = False,
              license: str | None = None, source_ref: str | None = None) -> Path:
    """CT (DICOM folder / NIfTI / NRRD) and optional label map -> bundle at ``out``.

    Without ``labels`` a CT gives one bone surface at ``threshold_hu``
    (default 200 HU); a label map passed as ``path`` alone is imported as
    labels.  ``labels`` may be a NIfTI/NRRD or a DICOM SEG (file or folder);
    ``series`` picks one SeriesInstanceUID in a folder holding several.  An MR,
    ultrasound or secondary-capture series needs ``labels`` (no Hounsfield
    units to threshold).  Returns the bundle folder.  ``spine``: derive discs, dural
    sac, nerve roots and Kambin landmarks from the labelled vertebrae
    (:mod:`vr_trainer.anatomy.spine`). ``license`` (an SPDX id) and ``source_ref`` (where the
    data come from) are recorded as ``provenance.license`` / ``provenance.source_ref``.
    """
    licence = _licence_and_source(license, source_ref)  # a user error before any work
    path = Path(path)
    deid: dict[str, Any] = {"status": "no_patient_metadata_copied", "note": _NO_PHI_NOTE}
    dicom = _is_dicom(path)
    modality, frame_uid = "CT", None
    if dicom:
        from .dicom import read_dicom_series

        ds_series = read_dicom_series(path if path.is_dir() else path.parent, series=series)
        ct: Volume | None = ds_series.volume
        deid = ds_series.deidentification
        modality = ds_series.modality or "?"
        frame_uid = str(ds_series.datasets[0].get("FrameOfReferenceUID", "") or "") or None
        if labels is None and modality != "CT":
            raise AnatomyError(
                f"{path}: the series is {modality} ({ds_series.sop_class or 'unknown SOP class'}), not CT: it has "
                "no Hounsfield units to threshold bone at; give a label map made from it: --labels SEG "
                "(NIfTI, NRRD or DICOM SEG)")
    elif series is not None:
        raise AnatomyError(f"--series {series}: only a DICOM folder holds several series; {path} is one volume")
    else:
        ct = read_volume(path)
    lab: Volume | None = None
    seg_specs = None
    if labels is not None:
        assert ct is not None
        if _is_dicom(Path(labels)):
            from .dicom_seg import read_dicom_seg

            lab, seg_specs, seg_deid = read_dicom_seg(labels, reference=ct, reference_frame_uid=frame_uid)
            deid = {**seg_deid, "files": seg_deid["files"] + deid["files"]} if dicom else seg_deid
        else:
            lab = read_volume(labels, labels=True)
        if not same_grid(ct, lab) and _overlap_mm(ct, lab) <= 0:
            raise AnatomyError(f"{labels}: the label map does not overlap the CT {path} in space; "
                               "pass the segmentation made from this CT")
        if modality != "CT":
            ct.notes["modality"] = f"{modality}: no Hounsfield values recorded per structure"
    elif ct is not None and threshold_hu is None and not dicom and (label_map is not None or looks_like_labels(ct)):
        lab, ct = ct, None  # a label map on its own
    inputs = (ct.inputs if ct is not None else []) + (lab.inputs if lab is not None else [])
    notes: dict[str, Any] = {}
    for v in (ct, lab):
        if v is not None:
            notes.update(v.notes)
    if lab is not None:
        if seg_specs is not None and label_map is None:
            specs, map_desc = seg_specs, "DICOM SEG segments (label, SNOMED property type)"
        else:
            specs, map_desc = resolve_label_map(label_map)
        tiny: list[int] = []
        structures, unmapped = structures_from_labels(lab, specs, ct=ct if modality == "CT" else None,
                                                       skipped=tiny)
        if tiny:
            notes["skipped_tiny_label_ids"] = tiny
        if unmapped:
            notes["unmapped_label_ids"] = unmapped
            print(f"warning: label ids {unmapped} are not in the label map ({map_desc}) and were skipped",
                  file=sys.stderr)
        if not structures:
            raise AnatomyError(f"{labels or path}: no label of the map ({map_desc}) is present; "
                               "check --label-map matches the segmentation")
        method: dict[str, Any] = {"method": "label map", "label_map": map_desc}
    else:
        assert ct is not None
        thr = DEFAULT_THRESHOLD_HU if threshold_hu is None else float(threshold_hu)
        structures = structures_from_threshold(ct, thr)
        method = {"method": "threshold", "threshold_hu": thr}
    src_units = (lab or ct).source_units  # type: ignore[union-attr]
    provenance = {"source": "dicom" if dicom else "volume", "inputs": inputs,
                  "inputs_sha256": combined_sha256(i["sha256"] for i in inputs), **method,
                  "modality": modality,
                  "voxel_mm": [round(float(x), 4) for x in (lab or ct).spacing_mm],  # type: ignore[union-attr]
                  "pipeline": "orient to RAS mm -> marching cubes per label (ascent) -> taubin -> "
                              "fast-simplification to tissue budget -> repair"}
    provenance.update(licence)
    landmarks = None
    if spine:
        from .skin import add_body
        from .spine import with_spine

        structures, notes["body"] = add_body(structures, ct if modality == "CT" else None)
        structures, landmarks, notes = with_spine(structures, notes)
    hu = ct if (ct is not None and modality == "CT") else None  # kept down-sampled for the virtual C-arm
    return write_bundle(out, structures, source_units=src_units, provenance=provenance,
                        deidentification=deid, notes=notes or None, landmarks=landmarks, hu_volume=hu)


def import_mesh(files: Sequence[str | Path], out: str | Path, *, tissue: str | None = None, units: str = "auto",
                name: str | None = None, frame: str | None = None, spine: bool = False,
                license: str | None = None, source_ref: str | None = None) -> Path:
    """Surface meshes -> bundle at ``out`` (see :mod:`vr_trainer.anatomy.meshes`).

    ``frame``: orientation code of the file coordinates (``RAS``, ``LPS``, ``ALS`` ...;
    default what the file declares, else RAS); recorded in the manifest's provenance.
    ``spine``: derive what is missing of discs, dural sac, roots and Kambin landmarks from
    vertebra meshes named by level (``L4.stl``, ``S1.stl`` ...). ``license`` / ``source_ref``:
    as in :func:`import_ct`.
    """
    licence = _licence_and_source(license, source_ref)  # a user error before any work
    paths = [Path(f) for f in files]
    if not paths:
        raise AnatomyError("import mesh: give at least one mesh file")
    structures, unit, record, inputs = structures_from_meshes(paths, tissue=tissue, units=units, name=name,
                                                              frame=frame)
    provenance = {"source": "mesh", "inputs": inputs, "inputs_sha256": combined_sha256(i["sha256"] for i in inputs),
                  "units": record["units"], "frame": record["frame"],
                  "pipeline": "units to mm -> source frame to RAS -> repair (merge by position, winding, "
                  "degenerate faces, tiny islands) -> decimation above 60k faces"}
    deid = {"status": "no_patient_metadata_copied",
            "note": "only vertex and face arrays are used; file headers, comments, names are not recorded"}
    provenance.update(licence)
    notes = {"warnings": record["warnings"]} if record["warnings"] else None
    landmarks = None
    if spine:
        from .spine import with_spine

        structures, landmarks, notes = with_spine(structures, notes)
    return write_bundle(out, structures, source_units=unit, provenance=provenance, deidentification=deid,
                        notes=notes, landmarks=landmarks)


def describe(bundle_path: Path) -> str:
    """One line per structure for the CLI summary."""
    b: Bundle = load_bundle(bundle_path)
    lines = [f"wrote {b.path} ({len(b.structures)} structures, units mm, source {b.manifest['source_units']})"]
    for s in b.structures:
        vol = f"{s.volume_ml:.1f} ml" if s.volume_ml is not None else "open surface"
        size = "x".join(f"{v:.0f}" for v in s.size_mm)
        cap = f" ({s.extra['cap_faces']} close the scan's cut)" if s.extra.get("cap_faces") else ""
        lines.append(f"  {s.name:<32} {s.tissue:<10} {vol:>12}  {size} mm  {s.face_count} faces{cap}")
    from .spine import describe_spine

    return "\n".join(lines + describe_spine(b.manifest))


__all__ = ["import_ct", "import_mesh", "describe", "looks_like_labels", "Structure"]
