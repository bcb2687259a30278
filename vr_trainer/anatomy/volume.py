"""Image volumes in one frame: a numpy array plus a voxel -> RAS mm affine.

Readers for NIfTI (nibabel) and NRRD (pynrrd); DICOM series live in
:mod:`vr_trainer.anatomy.dicom` and return the same :class:`Volume`.  Arrays
keep their on-disk axis order; the affine carries orientation, so surfaces are
oriented to RAS when vertices are mapped through it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .bundle import sha256_file
from .errors import AnatomyError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_UNIT_TO_MM = {"mm": 1.0, "millimeter": 1.0, "millimeters": 1.0, "cm": 10.0, "m": 1000.0,
               "meter": 1000.0, "meters": 1000.0, "um": 0.001, "micron": 0.001}


@dataclass
class Volume:
    """A 3D image: ``array[i, j, k]`` at RAS mm ``affine @ [i, j, k, 1]``."""

    array: np.ndarray
    affine: np.ndarray
    source_units: str = "mm"
    name: str = "volume"
    inputs: list[dict[str, Any]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def spacing_mm(self) -> np.ndarray:
        """Voxel size along each array axis (mm)."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def extent_mm(self) -> np.ndarray:
        """Physical size along each array axis (mm)."""
        return self.spacing_mm * np.asarray(self.array.shape[:3])


def input_record(path: Path, kind: str, *, keep_name: bool = False) -> dict[str, Any]:
    """Provenance of one input file: kind, size and sha256.  File names are left
    out by default: they often carry patient names or UIDs."""
    rec: dict[str, Any] = {"kind": kind, "bytes": path.stat().st_size, "sha256": sha256_file(path)}
    if keep_name:
        rec["name"] = path.name
    return rec


def check_plausible_spacing(vol: Volume, where: str) -> None:
    """Refuse voxel sizes no CT/MR has (wrong header units)."""
    sp = vol.spacing_mm
    if not np.all(np.isfinite(sp)) or sp.min() < 0.02 or sp.max() > 30.0:
        raise AnatomyError(
            f"{where}: voxel size {np.round(sp, 4).tolist()} mm is implausible for a CT or "
            f"label map (header units {vol.source_units!r}); fix the file's spacing/units and re-export"
        )


def read_nifti(path: Path, *, labels: bool = False) -> Volume:
    """Read a NIfTI-1/2 file (``.nii`` / ``.nii.gz``); HU scaling applied."""
    import nibabel as nib

    try:
        img: Any = nib.load(str(path))
        raw = np.asanyarray(img.dataobj)
        if labels:
            data = np.asarray(raw)
        else:
            data = np.asarray(img.dataobj, dtype=np.float32) if _has_scaling(img) else np.asarray(raw)
        affine = np.asarray(img.affine, dtype=np.float64)
        unit = img.header.get_xyzt_units()[0]
    except AnatomyError:
        raise
    except Exception as exc:  # nibabel/zlib/EOF errors on broken files
        raise AnatomyError(
            f"{path}: cannot read as NIfTI ({type(exc).__name__}: {exc}); the file is truncated "
            "or corrupt, export it again"
        ) from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise AnatomyError(f"{path}: expected a 3D volume, got shape {data.shape}; pass one 3D image")
    scale = {"meter": 1000.0, "micron": 0.001}.get(unit or "", 1.0)
    affine[:3, :4] *= scale
    source_units = {"meter": "m", "micron": "um", "mm": "mm"}.get(unit or "", "mm")
    vol = Volume(array=data, affine=affine, source_units=source_units, name=str(path),
                 inputs=[input_record(path, "nifti", keep_name=False)])
    if unit in (None, "unknown"):
        vol.notes["units"] = "NIfTI header gives no spatial unit; millimetres assumed (NIfTI default)"
    check_plausible_spacing(vol, str(path))
    return vol


def _has_scaling(img: Any) -> bool:
    slope, inter = img.header.get_slope_inter()
    return not ((slope is None or slope == 1.0) and (inter is None or inter == 0.0))


def read_nrrd(path: Path, *, labels: bool = False) -> Volume:
    """Read an NRRD (``.nrrd`` / ``.nhdr``) as written by 3D Slicer."""
    import nrrd

    try:
        data, header = nrrd.read(str(path))
    except Exception as exc:
        raise AnatomyError(
            f"{path}: cannot read as NRRD ({type(exc).__name__}: {exc}); the file is truncated "
            "or corrupt, export it again"
        ) from exc
    if data.ndim != 3:
        raise AnatomyError(f"{path}: expected a 3D volume, got shape {data.shape}; pass one 3D image")
    notes: dict[str, Any] = {}
    units = [str(u).strip().lower() for u in header.get("space units", ["mm"] * 3)]
    unit = units[0] if units else "mm"
    if unit not in _UNIT_TO_MM:
        raise AnatomyError(f"{path}: unknown space unit {unit!r}; re-export the NRRD in mm")
    k = _UNIT_TO_MM[unit]
    if "space directions" in header and header["space directions"] is not None:
        dirs = np.asarray(header["space directions"], dtype=float)
        origin = np.asarray(header.get("space origin", np.zeros(3)), dtype=float)
    else:
        dirs = np.diag(np.asarray(header.get("spacings", [1.0, 1.0, 1.0]), dtype=float))
        origin = np.zeros(3)
        notes["frame"] = "NRRD has no space directions; axis-aligned volume assumed"
    if dirs.shape != (3, 3) or not np.all(np.isfinite(dirs)):
        raise AnatomyError(f"{path}: 'space directions' must give three spatial axes; re-export the NRRD")
    affine = np.eye(4)
    affine[:3, :3] = dirs.T * k
    affine[:3, 3] = origin * k
    space = str(header.get("space", "left-posterior-superior")).lower()
    if space in ("left-posterior-superior", "lps", "scanner-xyz"):
        affine = LPS_TO_RAS @ affine
    elif space not in ("right-anterior-superior", "ras"):
        raise AnatomyError(f"{path}: NRRD space {space!r} is not supported; use RAS or LPS")
    arr = np.asarray(data)
    vol = Volume(array=arr, affine=affine, source_units="mm" if k == 1.0 else unit, name=str(path),
                 inputs=[input_record(path, "nrrd", keep_name=False)], notes=notes)
    check_plausible_spacing(vol, str(path))
    return vol


def read_volume(path: str | os.PathLike[str], *, labels: bool = False) -> Volume:
    """Read a DICOM series folder, NIfTI or NRRD file into a RAS-mm :class:`Volume`."""
    p = Path(path)
    if not p.exists():
        raise AnatomyError(f"{p}: no such file or folder")
    lower = p.name.lower()
    if p.is_dir() or lower.endswith(".dcm"):
        if labels:
            from .dicom_seg import read_dicom_seg

            return read_dicom_seg(p)[0]
        from .dicom import read_dicom_series

        return read_dicom_series(p.parent if p.is_file() else p).volume
    if lower.endswith((".nii", ".nii.gz")):
        return read_nifti(p, labels=labels)
    if lower.endswith((".nrrd", ".nhdr")):
        return read_nrrd(p, labels=labels)
    raise AnatomyError(
        f"{p}: unknown volume format; pass a DICOM series folder, a .nii/.nii.gz or a .nrrd file"
    )
