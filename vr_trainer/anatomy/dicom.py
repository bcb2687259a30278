"""DICOM series: read, de-identify in memory, choose the series, decode, stack into a RAS volume.

Every dataset is de-identified with the kept ``dicom-anonymizer`` library
(DICOM PS3.15 Basic Application Level Confidentiality Profile: patient and
institution data, dates, device serials and private tags removed, UIDs
regenerated) *immediately after parsing and before pixel decoding or any
output*.  The returned record says what was done and contains no
identifiers; file names (which often embed UIDs) are never recorded.
Compressed transfer syntaxes (JPEG 2000, JPEG-LS, RLE ...) decode through
pydicom's pylibjpeg plugins.  Classic slice series and enhanced multi-frame
CT / MR (:mod:`vr_trainer.anatomy.dicom_geometry`) give the same volume; DICOM
SEG label maps are read by :mod:`vr_trainer.anatomy.dicom_seg`.  A folder
with several image series is listed and ``--series UID`` asked for.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .bundle import combined_sha256, sha256_file
from .dicom_geometry import classic_planes, enhanced_planes, stack_planes
from .errors import AnatomyError
from .quiet import library_logs, warn
from .volume import Volume

PROFILE = "DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile"
_MUST_BE_GONE = ("InstitutionAddress", "InstitutionName", "PatientName", "PatientID", "PatientBirthDate",
                 "StationName", "DeviceSerialNumber", "ReferringPhysicianName", "OperatorsName",
                 "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "AccessionNumber")
_UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")


@dataclass
class DicomSeries:
    """A decoded, de-identified series: the volume, the de-identified datasets
    (pixel data still attached), the de-identification record, the modality
    (``CT``, ``MR``, ``US``, ``OT`` ...) and the SOP class name."""

    volume: Volume
    datasets: list[Any]
    deidentification: dict[str, Any]
    modality: str = "CT"
    sop_class: str = ""


@dataclass
class _Series:
    """Datasets of one series as found in a folder; ``uid`` and ``description`` are the
    originals (shown to the user to choose with ``--series``, never written)."""

    uid: str
    modality: str
    description: str
    sop_class: str
    datasets: list[Any]

    @property
    def images(self) -> int:
        return sum(int(getattr(d, "NumberOfFrames", 1) or 1) for d in self.datasets)


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
    n_private = sum(1 for e in ds.iterall() if e.tag.is_private)
    originals = {k: str(ds.get(k, "") or "").strip() for k in _MUST_BE_GONE}
    # enhanced objects copy identifying attributes into nested sequences (functional groups,
    # converted-attribute sequences): remember every value, wherever it sits
    nested_values = {k: {str(it.get(k, "") or "").strip() for it in _items(ds)} - {""} for k in _MUST_BE_GONE}
    old_uids = {k: str(ds.get(k, "")) for k in _UID_KEYWORDS}
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the library prints/warns on odd tags
        anonymize_dataset(ds, delete_private_tags=True)
        ds.remove_private_tags()  # nested private tags too
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
    for k, values in nested_values.items():
        values |= {originals[k]} - {""}
        for it in _items(ds):
            if k in it and str(it.get(k, "") or "").strip() in values:
                it[k].value = ""
                if str(it.get(k, "") or "").strip() in values:
                    leftovers.append(f"{k} (nested)")
    if any(e.tag.is_private for e in ds.iterall()) or leftovers:
        raise AnatomyError(
            f"de-identification left {leftovers or 'private tags'} in place; refusing to import "
            "(report this series to the developers)"
        )
    return {"elements_removed": len(before - after), "private_removed": n_private}


def _items(ds: Any) -> list[Any]:
    """Every item dataset nested (at any depth) in ``ds``'s sequences."""
    out = []
    for e in ds:
        if e.VR == "SQ":
            for it in e.value:
                out.append(it)
                out += _items(it)
    return out


def _verify(ds: Any, path_label: str) -> None:
    if any(e.tag.is_private for e in ds.iterall()):
        raise AnatomyError(f"{path_label}: private tags survived de-identification; refusing to import")


def _info(ds: Any) -> tuple[str, str, str, str]:
    """(series uid, modality, description, SOP class name) before de-identification."""
    sop = ds.get("SOPClassUID", "")
    try:
        sop_name = str(sop.name) if sop else ""
    except AttributeError:
        sop_name = str(sop)
    return (str(ds.get("SeriesInstanceUID", "") or ""), str(ds.get("Modality", "") or "").upper(),
            str(ds.get("SeriesDescription", "") or "").strip(), sop_name)


def read_folder(folder: Path) -> tuple[list[_Series], dict[str, Any]]:
    """Every DICOM image under ``folder`` (or one file), de-identified, grouped by series;
    plus the de-identification record."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    if folder.is_file():
        files = [folder]
    else:
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                       and p.name.upper() != "DICOMDIR")
    groups: dict[str, _Series] = {}
    digests, total, n = [], 0, 0
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
        uid, modality, desc, sop = _info(ds)
        ds.filename = None  # do not carry the path (it often holds UIDs)
        try:
            deidentify(ds)
        except AnatomyError as exc:
            raise AnatomyError(f"{folder}: slice {i}: {exc.message}") from None
        _verify(ds, f"{folder}: slice {i}")
        groups.setdefault(uid, _Series(uid, modality, desc, sop, [])).datasets.append(ds)
        digests.append(sha256_file(p))
        total += p.stat().st_size
        n += 1
    record = {
        "status": "deidentified",
        "profile": PROFILE,
        "library": "dicom-anonymizer",
        "library_version": _lib_version(),
        "when": "in memory, right after parsing, before decoding or writing anything",
        "files": n,
        "actions": ["patient and institution attributes removed or emptied (nested sequences included)",
                    "dates and times removed or shifted", "device serial numbers and station names removed",
                    "private tags removed", "study/series/instance/frame-of-reference UIDs regenerated"],
        "verified_changed": list(_MUST_BE_GONE) + ["private tags (none left)"],
        "file_names_recorded": False,
        "_inputs": {"kind": "dicom_series", "files": len(digests), "bytes": total,
                    "sha256": combined_sha256(digests)},
    }
    return list(groups.values()), record


def series_listing(series: list[_Series]) -> str:
    """One line per series: UID, modality, description, number of images."""
    return "\n".join(f"  {s.uid}  {s.modality or '?':<3} {s.description or '(no description)'!r:<28} "
                      f"{s.images} image{'s' if s.images != 1 else ''}" for s in series)


def choose_series(series: list[_Series], folder: Path, uid: str | None) -> _Series:
    """The image series to import: the only one, or the one ``--series`` names (a unique prefix will do)."""
    images = [s for s in series if s.modality != "SEG"]
    if not images and series:
        raise AnatomyError(f"{folder}: holds only a DICOM SEG (a label map); pass the image series it was drawn "
                           "on as PATH and the SEG as --labels")
    if not images:
        raise AnatomyError(f"{folder}: no DICOM images found; pass the folder that holds the series' slice files")
    if uid is not None:
        hits = [s for s in images if s.uid == uid] or [s for s in images if s.uid.startswith(uid)]
        if len(hits) != 1:
            what = "matches none" if not hits else f"matches {len(hits)}"
            raise AnatomyError(f"{folder}: --series {uid} {what} of the series here; use one of:\n"
                               + series_listing(images))
        return hits[0]
    if len(images) > 1:
        raise AnatomyError(f"{folder}: holds {len(images)} image series; choose one with --series UID:\n"
                           + series_listing(images))
    return images[0]


def volume_of(s: _Series, where: str) -> Volume:
    """Decode one chosen series (classic slices or one enhanced multi-frame object)."""
    multi = [d for d in s.datasets if int(getattr(d, "NumberOfFrames", 1) or 1) > 1
             or "PerFrameFunctionalGroupsSequence" in d or "SharedFunctionalGroupsSequence" in d]
    if multi:
        if len(s.datasets) > 1:
            raise AnatomyError(f"{where}: the series mixes {len(multi)} multi-frame objects with "
                               f"{len(s.datasets) - len(multi)} other images; export one stack per series")
        planes = enhanced_planes(multi[0], where)
    else:
        planes = classic_planes(s.datasets, where)
    return stack_planes(planes, where, f"{where} (DICOM {s.modality or '?'})")


def read_dicom_series(folder: str | Path, series: str | None = None) -> DicomSeries:
    """Read one image series under ``folder`` (``series``: its SeriesInstanceUID when
    the folder holds several) into a RAS mm volume (HU for CT)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AnatomyError(f"{folder}: not a folder; pass the folder holding the DICOM series")
    with library_logs() as logged:  # pydicom/codec log lines become one warning each
        groups, record = read_folder(folder)
        if not groups:
            raise AnatomyError(f"{folder}: no DICOM images found; pass the folder that holds the series' slice files")
        chosen = choose_series(groups, folder, series)
        vol = volume_of(chosen, str(folder))
    warn(str(folder), logged)
    inputs = record.pop("_inputs")
    vol.inputs = [inputs]
    segs = [g for g in groups if g.modality == "SEG"]
    if segs:
        vol.notes["dicom_seg_in_folder"] = (f"{len(segs)} DICOM SEG object(s) in the folder were not used; "
                                            "pass one as --labels to import its segments")
    if len(groups) - len(segs) > 1:
        vol.notes["series"] = f"{len(groups) - len(segs)} image series found; the one chosen with --series imported"
    record["modality"] = chosen.modality
    return DicomSeries(volume=vol, datasets=chosen.datasets, deidentification=record, modality=chosen.modality,
                       sop_class=chosen.sop_class)
