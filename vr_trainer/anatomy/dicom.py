"""DICOM CT series: read, de-identify in memory, decode, stack into a RAS volume.

Every dataset is de-identified with the kept ``dicom-anonymizer`` library
(DICOM PS3.15 Basic Application Level Confidentiality Profile: patient and
institution data, dates, device serials and private tags removed, UIDs
regenerated) *immediately after parsing and before pixel decoding or any
output*.  The returned record says what was done and contains no
identifiers; file names (which often embed UIDs) are never recorded.
Compressed transfer syntaxes (JPEG 2000, JPEG-LS, RLE ...) decode through
pydicom's pylibjpeg plugins.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from .bundle import combined_sha256, sha256_file
from .errors import AnatomyError
from .volume import LPS_TO_RAS, Volume, check_plausible_spacing

PROFILE = "DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile"
_MUST_BE_GONE = ("InstitutionAddress", "InstitutionName", "PatientName", "PatientID", "PatientBirthDate",
                 "StationName", "DeviceSerialNumber", "ReferringPhysicianName", "OperatorsName",
                 "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "AccessionNumber")
_UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")


@dataclass
class DicomSeries:
    """A decoded, de-identified series: the volume, the de-identified datasets
    (pixel data still attached) and the de-identification record."""

    volume: Volume
    datasets: list[Any]
    deidentification: dict[str, Any]


def _lib_version() -> str:
    try:
        return version("dicom-anonymizer")
    except PackageNotFoundError:  # pragma: no cover - declared dependency
        return "unknown"


def _looks_like_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def deidentify(ds: Any) -> dict[str, int]:
    """De-identify one dataset in place; returns counts of what changed."""
    from dicomanonymizer import anonymize_dataset
    from pydicom.uid import generate_uid

    before = {e.tag for e in ds}
    n_private = sum(1 for e in ds if e.tag.is_private)
    originals = {k: str(ds.get(k, "") or "").strip() for k in _MUST_BE_GONE}
    old_uids = {k: str(ds.get(k, "")) for k in _UID_KEYWORDS}
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the library prints/warns on odd tags
        anonymize_dataset(ds, delete_private_tags=True)
    # an empty or shared SOPInstanceUID would map to one value for all files
    if not old_uids["SOPInstanceUID"] or ds.get("SOPInstanceUID", "") in ("", old_uids["SOPInstanceUID"]):
        ds.SOPInstanceUID = generate_uid()
    if hasattr(ds, "file_meta"):
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for k in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        if k in ds and str(ds.get(k, "")) == old_uids[k] and old_uids[k]:
            setattr(ds, k, generate_uid())
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = f"PS3.15 Basic Profile; dicom-anonymizer {_lib_version()}"[:64]
    after = {e.tag for e in ds}
    leftovers = [k for k, v in originals.items() if v and str(ds.get(k, "") or "").strip() == v]
    if any(e.tag.is_private for e in ds) or leftovers:
        raise AnatomyError(
            f"de-identification left {leftovers or 'private tags'} in place; refusing to import "
            "(report this series to the developers)"
        )
    return {"elements_removed": len(before - after), "private_removed": n_private}


def _verify(ds: Any, path_label: str) -> None:
    if any(e.tag.is_private for e in ds):
        raise AnatomyError(f"{path_label}: private tags survived de-identification; refusing to import")


def _read_all(folder: Path) -> tuple[list[Any], list[str], int]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                   and p.name.upper() != "DICOMDIR")
    datasets, digests, total = [], [], 0
    for i, p in enumerate(files):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ds = pydicom.dcmread(str(p))
            if any("end of file" in str(w.message).lower() for w in caught):
                raise AnatomyError(f"{p}: DICOM file is truncated (ends before its data does); re-export the series")
        except AnatomyError:
            raise
        except InvalidDicomError:
            if _looks_like_dicom(p):
                raise AnatomyError(f"{p}: DICOM file is corrupt (cannot parse); re-export the series") from None
            continue  # not DICOM at all (notes, thumbnails)
        except Exception as exc:
            raise AnatomyError(
                f"{p}: DICOM file is corrupt or truncated ({type(exc).__name__}: {exc}); re-export the series"
            ) from exc
        if "PixelData" not in ds:
            continue
        ds.filename = None  # do not carry the path (it often holds UIDs)
        try:
            deidentify(ds)
        except AnatomyError as exc:
            raise AnatomyError(f"{folder}: slice {i}: {exc.message}") from None
        _verify(ds, f"{folder}: slice {i}")
        datasets.append(ds)
        digests.append(sha256_file(p))
        total += p.stat().st_size
    return datasets, digests, total


def read_dicom_series(folder: str | Path) -> DicomSeries:
    """Read the (largest) CT series under ``folder`` into a RAS mm volume in HU."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AnatomyError(f"{folder}: not a folder; pass the folder holding the DICOM series")
    datasets, digests, total_bytes = _read_all(folder)
    if not datasets:
        raise AnatomyError(f"{folder}: no DICOM images found; pass the folder that holds the series' slice files")
    series: dict[str, list[Any]] = {}
    for ds in datasets:
        series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(ds)
    chosen = max(series.values(), key=len)
    notes: dict[str, Any] = {}
    if len(series) > 1:
        notes["series"] = f"{len(series)} series found; the largest ({len(chosen)} slices) was imported"
    vol = _stack(chosen, folder)
    vol.notes.update(notes)
    vol.inputs = [{"kind": "dicom_series", "files": len(digests), "bytes": total_bytes,
                   "sha256": combined_sha256(digests)}]
    record = {
        "status": "deidentified",
        "profile": PROFILE,
        "library": "dicom-anonymizer",
        "library_version": _lib_version(),
        "when": "in memory, right after parsing, before decoding or writing anything",
        "files": len(datasets),
        "actions": ["patient and institution attributes removed or emptied", "dates and times removed or shifted",
                    "device serial numbers and station names removed", "private tags removed",
                    "study/series/instance/frame-of-reference UIDs regenerated"],
        "verified_changed": list(_MUST_BE_GONE) + ["private tags (none left)"],
        "file_names_recorded": False,
    }
    return DicomSeries(volume=vol, datasets=chosen, deidentification=record)


def _stack(slices: list[Any], folder: Path) -> Volume:
    ref = slices[0]
    try:
        iop = np.asarray([float(v) for v in ref.ImageOrientationPatient], float)
        ps = [float(v) for v in ref.PixelSpacing]
    except (AttributeError, ValueError, TypeError) as exc:
        raise AnatomyError(f"{folder}: series lacks ImageOrientationPatient/PixelSpacing; "
                           "cannot place it in space") from exc
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    pos = np.array([[float(v) for v in s.ImagePositionPatient] for s in slices])
    order = np.argsort(pos @ normal)
    slices = [slices[i] for i in order]
    pos = pos[order]
    d = np.diff(pos @ normal)
    if len(slices) > 1:
        if np.any(d < 1e-3):
            raise AnatomyError(f"{folder}: two slices share a position (mixed series?); export one series per folder")
        step = float(np.median(d))
        if np.max(np.abs(d - step)) > 0.25 * step:
            raise AnatomyError(f"{folder}: slice spacing varies ({d.min():.2f}-{d.max():.2f} mm): "
                               "slices missing? re-export the full series")
    else:
        step = float(getattr(ref, "SliceThickness", 1.0) or 1.0)
    planes = []
    for i, s in enumerate(slices):
        try:
            px = s.pixel_array
        except Exception as exc:
            raise AnatomyError(
                f"{folder}: slice {i} pixel data cannot be decoded ({type(exc).__name__}: {exc}); the file is "
                "truncated/corrupt, or the codec is missing (pip install pylibjpeg pylibjpeg-openjpeg)"
            ) from exc
        if px.shape != (ref.Rows, ref.Columns):
            raise AnatomyError(f"{folder}: slice {i} has size {px.shape}, others {(ref.Rows, ref.Columns)}")
        slope = float(getattr(s, "RescaleSlope", 1) or 1)
        inter = float(getattr(s, "RescaleIntercept", 0) or 0)
        planes.append((px.astype(np.float32) * slope + inter).T)  # (col, row)
    arr = np.stack(planes, axis=-1)
    if np.all(arr == np.round(arr)) and arr.min() >= -32768 and arr.max() <= 32767:
        arr = arr.astype(np.int16)
    affine = np.eye(4)
    affine[:3, 0] = row * ps[1]
    affine[:3, 1] = col * ps[0]
    affine[:3, 2] = normal * step
    affine[:3, 3] = pos[0]
    vol = Volume(array=arr, affine=LPS_TO_RAS @ affine, source_units="mm", name=f"{folder} (DICOM)")
    check_plausible_spacing(vol, str(folder))
    return vol
