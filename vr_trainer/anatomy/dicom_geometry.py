"""DICOM images to one RAS volume: classic slice series and enhanced multi-frame objects.

Both become a list of :class:`Plane` (position, orientation, pixel spacing,
rescale) and go through :func:`stack_planes`, so a classic CT series, an
Enhanced CT / MR and a Legacy Converted Enhanced object give the same
:class:`~vr_trainer.anatomy.volume.Volume`.  Enhanced objects carry their
geometry in functional groups: per frame (``PerFrameFunctionalGroupsSequence``)
or shared by all frames (``SharedFunctionalGroupsSequence``); the per-frame
item wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import numpy as np

from .errors import AnatomyError
from .volume import LPS_TO_RAS, Volume, check_plausible_spacing


@dataclass
class Plane:
    """One image plane in DICOM patient (LPS) millimetres."""

    position_mm: np.ndarray          # (3,) centre of the first pixel
    row_dir: np.ndarray              # (3,) unit, along a row (increasing column)
    col_dir: np.ndarray              # (3,) unit, along a column (increasing row)
    spacing_mm: tuple[float, float]  # (between rows, between columns)
    slope: float
    intercept: float
    pixels: Callable[[], np.ndarray]  # (rows, cols) stored values, decoded on demand
    thickness_mm: float = 0.0


def _decode(fn: Callable[[], Any], where: str) -> np.ndarray:
    try:
        return np.asarray(fn())
    except Exception as exc:  # pydicom raises many types for broken or unsupported pixel data
        raise AnatomyError(
            f"{where}: pixel data cannot be decoded ({type(exc).__name__}: {exc}); the file is "
            "truncated/corrupt, or the codec is missing (pip install pylibjpeg pylibjpeg-openjpeg)"
        ) from exc


def classic_planes(slices: list[Any], where: str) -> list[Plane]:
    """Planes of a one-file-per-slice series."""
    out = []
    for i, s in enumerate(slices):
        try:
            iop = [float(v) for v in s.ImageOrientationPatient]
            ps = [float(v) for v in s.PixelSpacing]
            ipp = np.array([float(v) for v in s.ImagePositionPatient])
        except (AttributeError, ValueError, TypeError) as exc:
            raise AnatomyError(f"{where}: series lacks ImageOrientationPatient/PixelSpacing/ImagePositionPatient; "
                               "cannot place it in space") from exc
        out.append(Plane(ipp, np.array(iop[:3]), np.array(iop[3:]), (ps[0], ps[1]),
                         float(getattr(s, "RescaleSlope", 1) or 1), float(getattr(s, "RescaleIntercept", 0) or 0),
                         partial(_decode, partial(getattr, s, "pixel_array"), f"{where}: slice {i}"),
                         float(getattr(s, "SliceThickness", 0) or 0)))
    return out


def _group_item(frame: Any, shared: Any, seq: str) -> Any | None:
    for fg in (frame, shared):
        if fg is not None and seq in fg and len(fg[seq].value):
            return fg[seq].value[0]
    return None


def enhanced_planes(ds: Any, where: str) -> list[Plane]:
    """Planes of an enhanced multi-frame image (per-frame or shared functional groups)."""
    n = int(getattr(ds, "NumberOfFrames", 1) or 1)
    per = list(getattr(ds, "PerFrameFunctionalGroupsSequence", []) or [])
    shared = (getattr(ds, "SharedFunctionalGroupsSequence", None) or [None])[0]
    if len(per) not in (0, n):
        raise AnatomyError(f"{where}: {len(per)} per-frame functional groups for {n} frames; re-export the image")
    cache: dict[str, np.ndarray] = {}

    def frame_pixels(i: int) -> np.ndarray:
        if "all" not in cache:
            arr = _decode(lambda: ds.pixel_array, where)
            cache["all"] = arr.reshape((n, *arr.shape[-2:]))
        return cache["all"][i]

    out = []
    for i in range(n):
        fg = per[i] if per else None
        pos = _group_item(fg, shared, "PlanePositionSequence")
        ori = _group_item(fg, shared, "PlaneOrientationSequence")
        pm = _group_item(fg, shared, "PixelMeasuresSequence")
        missing = [name for name, item, key in (("PlanePositionSequence", pos, "ImagePositionPatient"),
                                                ("PlaneOrientationSequence", ori, "ImageOrientationPatient"),
                                                ("PixelMeasuresSequence", pm, "PixelSpacing"))
                   if item is None or key not in item]
        if missing:
            raise AnatomyError(f"{where}: frame {i + 1} has no {', '.join(missing)} (neither per-frame nor "
                               "shared functional groups); cannot place it in space, re-export the image")
        assert pos is not None and ori is not None and pm is not None
        iop = [float(v) for v in ori.ImageOrientationPatient]
        ps = [float(v) for v in pm.PixelSpacing]
        pvt = _group_item(fg, shared, "PixelValueTransformationSequence")
        src = pvt if pvt is not None else ds
        out.append(Plane(np.array([float(v) for v in pos.ImagePositionPatient]), np.array(iop[:3]),
                         np.array(iop[3:]), (ps[0], ps[1]), float(getattr(src, "RescaleSlope", 1) or 1),
                         float(getattr(src, "RescaleIntercept", 0) or 0), partial(frame_pixels, i),
                         float(getattr(pm, "SliceThickness", 0) or 0)))
    return out


def stack_planes(planes: list[Plane], where: str, name: str) -> Volume:
    """Sort planes along their normal, check spacing, decode, rescale -> RAS mm volume."""
    ref = planes[0]
    for i, p in enumerate(planes):
        if not (np.allclose(p.row_dir, ref.row_dir, atol=1e-3) and np.allclose(p.col_dir, ref.col_dir, atol=1e-3)):
            raise AnatomyError(f"{where}: image {i + 1} is oriented differently from image 1 (localizer or "
                               "several stacks in one series?); export one stack per series")
        if not np.allclose(p.spacing_mm, ref.spacing_mm, rtol=1e-3):
            raise AnatomyError(f"{where}: image {i + 1} has pixel spacing {p.spacing_mm} mm, image 1 "
                               f"{ref.spacing_mm} mm; export one stack per series")
    normal = np.cross(ref.row_dir, ref.col_dir)
    pos = np.array([p.position_mm for p in planes])
    order = np.argsort(pos @ normal, kind="stable")
    planes = [planes[i] for i in order]
    pos = pos[order]
    d = np.diff(pos @ normal)
    if len(planes) > 1:
        if np.any(d < 1e-3):
            raise AnatomyError(f"{where}: two slices share a position (mixed series, or several echoes/time "
                               "points?); export one series per folder")
        step = float(np.median(d))
        if np.max(np.abs(d - step)) > 0.25 * step:
            raise AnatomyError(f"{where}: slice spacing varies ({d.min():.2f}-{d.max():.2f} mm): "
                               "slices missing? re-export the full series")
    else:
        step = ref.thickness_mm or 1.0
    layers = []
    shape: tuple[int, ...] | None = None
    for i, p in enumerate(planes):
        px = p.pixels()
        if shape is None:
            shape = px.shape
        if px.shape != shape:
            raise AnatomyError(f"{where}: slice {i} has size {px.shape}, others {shape}")
        layers.append((px.astype(np.float32) * p.slope + p.intercept).T)  # (col, row)
    arr = np.stack(layers, axis=-1)
    if np.all(arr == np.round(arr)) and arr.min() >= -32768 and arr.max() <= 32767:
        arr = arr.astype(np.int16)
    affine = np.eye(4)
    affine[:3, 0] = ref.row_dir * ref.spacing_mm[1]
    affine[:3, 1] = ref.col_dir * ref.spacing_mm[0]
    affine[:3, 2] = normal * step
    affine[:3, 3] = pos[0]
    vol = Volume(array=arr, affine=LPS_TO_RAS @ affine, source_units="mm", name=name)
    check_plausible_spacing(vol, where)
    return vol
