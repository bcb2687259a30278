"""Spine geometry from vertebra meshes: voxels, per-vertebra frames, canal and pedicles.

Everything here is measured from the meshes themselves (RAS millimetres); the only
prior is the bundle's own frame contract (+z superior, +y anterior), used to start
the search and to order the levels, never a coordinate of a shipped file.

A vertebra's frame: ``centroid_mm`` is its **body** centroid; ``s`` (superior) the
direction between the neighbouring bodies' centroids; ``a`` (anterior)
from the vertebral foramen toward the body; ``r`` (right) = ``a x s``.  The
vertebral foramen is found as the hole of the vertebra's projection along ``s``
(the arch encloses the canal, so the projection is a ring); the body is the bone in
front of that hole; the pedicles the bone beside the front half of the hole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import trimesh
from scipy import ndimage

LEVELS: tuple[str, ...] = (*(f"C{i}" for i in range(1, 8)), *(f"T{i}" for i in range(1, 13)),
                           *(f"L{i}" for i in range(1, 7)), "S1")
#: depth (mm) below a body's superior endplate over which its endplate width is measured
ENDPLATE_BAND_MM = 3.0
_VERT_RE = re.compile(r"^(?:vertebrae_)?([CTL][0-9]{1,2}|S1|sacrum)$", re.IGNORECASE)


def vertebra_level(name: str) -> str | None:
    """``'L4'`` for a structure named ``L4`` / ``vertebrae_L4``; ``'S1'`` for ``sacrum`` / ``S1``; else None."""
    m = _VERT_RE.match(name.strip())
    if not m:
        return None
    lv = m.group(1).upper()
    lv = "S1" if lv == "SACRUM" else lv
    return lv if lv in LEVELS else None


def unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return np.asarray(v, float) / (n if n > 1e-12 else 1.0)


def solid_points(mesh: trimesh.Trimesh, pitch_mm: float) -> np.ndarray:
    """Centres (n, 3) mm of the cubes of side ``pitch_mm`` inside a closed ``mesh``.

    One ray per (x, y) column along +z; inside is where the crossing parity is odd.
    """
    lo, hi = np.asarray(mesh.bounds[0], float), np.asarray(mesh.bounds[1], float)
    ax = [np.arange(lo[i] + pitch_mm / 2, hi[i], pitch_mm) + 1.234e-4 * (i + 1) for i in range(3)]
    gx, gy = np.meshgrid(ax[0], ax[1], indexing="ij")
    origins = np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, lo[2] - 1.0)], axis=1)
    dirs = np.tile([0.0, 0.0, 1.0], (len(origins), 1))
    loc, ray, _tri = mesh.ray.intersects_location(origins, dirs, multiple_hits=True)
    if len(loc) == 0:
        return np.zeros((0, 3))
    order = np.lexsort((loc[:, 2], ray))
    ray, z = ray[order], loc[order, 2]
    # drop duplicate hits (a ray through an edge hits two triangles at one point)
    keep = np.ones(len(z), bool)
    keep[1:] = ~((ray[1:] == ray[:-1]) & (np.abs(z[1:] - z[:-1]) < 1e-6))
    ray, z = ray[keep], z[keep]
    starts = np.r_[0, np.nonzero(np.diff(ray))[0] + 1]
    counts = np.diff(np.r_[starts, len(ray)])
    rank = np.arange(len(ray)) - np.repeat(starts, counts)
    usable = np.repeat(counts % 2 == 0, counts)
    enter = usable & (rank % 2 == 0)
    z0, z1, rr = z[enter], z[np.nonzero(enter)[0] + 1], ray[enter]
    nz = len(ax[2])
    k0 = np.clip(np.ceil((z0 - ax[2][0]) / pitch_mm), 0, nz).astype(int)
    k1 = np.clip(np.floor((z1 - ax[2][0]) / pitch_mm) + 1, 0, nz).astype(int)
    ok = k1 > k0
    diff = np.zeros((len(origins), nz + 1), np.int32)
    np.add.at(diff, (rr[ok], k0[ok]), 1)
    np.add.at(diff, (rr[ok], k1[ok]), -1)
    inside = np.cumsum(diff[:, :nz], axis=1) > 0
    ci, kz = np.nonzero(inside)
    return np.stack([origins[ci, 0], origins[ci, 1], ax[2][kz]], axis=1)


@dataclass
class Pedicle:
    """One pedicle in its vertebra's frame: offsets (mm) from the canal centre along r (lateral
    positive), a and s; ``inferior_s_mm`` / ``superior_s_mm`` its lower and upper edges."""

    centre_mm: np.ndarray  # (3,) RAS
    lateral_mid_mm: float
    medial_mm: float
    lateral_mm: float
    a_mid_mm: float
    inferior_s_mm: float
    superior_s_mm: float


@dataclass
class VertebraFrame:
    """A vertebra measured from its mesh (see the module docstring); offsets are mm in this frame."""

    name: str
    centroid_mm: np.ndarray  # body centroid (3,) RAS
    r: np.ndarray
    a: np.ndarray
    s: np.ndarray
    canal_mm: np.ndarray  # canal centre at the body centroid's height (3,) RAS
    canal_half_width_mm: float
    canal_half_depth_mm: float
    body_points_mm: np.ndarray  # (n, 3) RAS
    body_half_width_mm: float
    body_half_height_mm: float
    pedicles: dict[str, Pedicle] = field(default_factory=dict)
    canal_found: bool = True
    notes: list[str] = field(default_factory=list)

    @property
    def rotation(self) -> np.ndarray:
        """Rows r, a, s: world offset -> frame coordinates."""
        return np.stack([self.r, self.a, self.s])

    def local(self, p_mm: np.ndarray) -> np.ndarray:
        """RAS point(s) -> (r, a, s) offsets from the canal centre."""
        return (np.asarray(p_mm, float) - self.canal_mm) @ self.rotation.T

    def world(self, rs_mm: Sequence[float] | np.ndarray) -> np.ndarray:
        """(r, a, s) offsets from the canal centre -> RAS point(s)."""
        return self.canal_mm + np.asarray(rs_mm, float) @ self.rotation

    @property
    def endplate_half_width_mm(self) -> float:
        """Half-width (mm) of the body over the top ``ENDPLATE_BAND_MM`` below its superior endplate (the top
        of its central columns): the body proper, without the sacral alae that widen the slab below."""
        bl = (self.body_points_mm - self.centroid_mm) @ self.rotation.T
        central = (np.abs(bl[:, 0]) < 6.0) & (np.abs(bl[:, 1]) < 6.0)
        if central.sum() <= 10:
            return self.body_half_width_mm
        band = bl[bl[:, 2] > float(bl[central, 2].max()) - ENDPLATE_BAND_MM]
        return float(np.percentile(np.abs(band[:, 0]), 99)) if len(band) > 20 else self.body_half_width_mm

    @property
    def front_a_mm(self) -> float:
        """The canal's anterior edge (the body's posterior wall) as an a offset."""
        return self.canal_half_depth_mm


def _grid2d(uv: np.ndarray, pitch: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo = uv.min(0) - 2 * pitch
    ij = np.floor((uv - lo) / pitch).astype(int)
    shape = ij.max(0) + 3
    mask = np.zeros(shape, bool)
    mask[ij[:, 0], ij[:, 1]] = True
    return mask, ij, lo


def _hole(mask: np.ndarray, pitch: float, min_area_mm2: float = 25.0) -> np.ndarray | None:
    """The largest enclosed hole of a 2D mask (after closing 1 px gaps), or None."""
    closed = ndimage.binary_closing(mask, iterations=1)
    holes = ndimage.binary_fill_holes(closed) & ~closed
    lab, n = ndimage.label(holes)
    if n == 0:
        return None
    sizes = ndimage.sum(holes, lab, range(1, n + 1))
    k = int(np.argmax(sizes))
    if sizes[k] * pitch * pitch < min_area_mm2:
        return None
    return np.asarray(lab == k + 1)


SYMMETRY_SEARCH_DEG = 30.0  # the anterior axis is searched this far either side of the current one


def _symmetry_axis(uv: np.ndarray, pitch: float) -> np.ndarray:
    """The unit direction (2,) through the origin (the canal's centre) about which the projected bone
    ``uv`` (n, 2) is most nearly its own mirror image: a vertebra's (and the sacrum's) plane of
    bilateral symmetry. Searched in 2 degree steps, then 0.25, within ``SYMMETRY_SEARCH_DEG`` of +v
    (anterior). The body's centroid is not used: on a sacrum a slight turn takes more of one ala into
    the body and the turn grows (8 degrees measured on the symmetric phantom, 45 at some samplings)."""
    ij = np.round(uv / pitch).astype(np.int64)  # one point per occupied cell
    lo = ij.min(0)
    occupied = np.zeros(tuple(ij.max(0) - lo + 1), bool)
    occupied[ij[:, 0] - lo[0], ij[:, 1] - lo[1]] = True
    uv = (np.argwhere(occupied) + lo) * pitch
    reach = int(np.ceil(np.linalg.norm(uv, axis=1).max() / pitch)) + 1  # cells from the origin, any turn
    side = 2 * reach + 1

    def score(deg: float) -> float:
        t = np.radians(deg)
        c, sn = np.cos(t), np.sin(t)
        iu = np.round((c * uv[:, 0] - sn * uv[:, 1]) / pitch).astype(np.int64) + reach
        iv = np.round((sn * uv[:, 0] + c * uv[:, 1]) / pitch).astype(np.int64) + reach
        img = np.zeros((side, side), bool)  # u is the first axis, centred on the origin
        img[iu, iv] = True
        return float((img & img[::-1]).sum()) / max(float(img.sum()), 1.0)

    best = max(np.arange(-SYMMETRY_SEARCH_DEG, SYMMETRY_SEARCH_DEG + 0.1, 2.0), key=score)
    best = max(np.arange(best - 2.0, best + 2.01, 0.25), key=score)
    t = np.radians(best)
    # the axis that the rotation by t brings onto +v, in the original coordinates
    return np.array([np.sin(t), np.cos(t)])


def vertebra_frame(name: str, pts: np.ndarray, up_hint: np.ndarray, pitch: float) -> VertebraFrame:
    """Measure one vertebra from its solid points ``pts`` (n, 3) mm; ``up_hint`` (3,) is its superior
    axis (the direction between the neighbouring bodies' centroids, see :func:`spine_frames`)."""
    s = unit(up_hint)
    a = unit(np.array([0.0, 1.0, 0.0]) - s[1] * s)
    c_all = pts.mean(0)
    frame: VertebraFrame | None = None
    for _it in range(3):
        r = unit(np.cross(a, s))
        a = np.cross(s, r)
        rot = np.stack([r, a, s])
        loc = (pts - c_all) @ rot.T
        mask, _ij, lo = _grid2d(loc[:, :2], pitch)
        edt = ndimage.distance_transform_edt(mask)
        peak_uv = lo + (np.array(np.unravel_index(int(np.argmax(edt)), edt.shape)) + 0.5) * pitch
        hole = _hole(mask, pitch)
        notes: list[str] = []
        if hole is not None:
            huv = lo + (np.argwhere(hole) + 0.5) * pitch
            canal_ra = huv.mean(0)
            half_w = float(np.percentile(np.abs(huv[:, 0] - canal_ra[0]), 98)) + pitch / 2
            half_d = float(np.percentile(np.abs(huv[:, 1] - canal_ra[1]), 98)) + pitch / 2
            found = True
        else:
            notes.append(f"{name}: no vertebral foramen in the projection along its axis; canal placed behind "
                         "the body")
            half_w, half_d = 9.0, 7.0
            canal_ra = np.array([peak_uv[0], peak_uv[1] - 20.0 - half_d])
            found = False
        body_sel = (loc[:, 1] >= canal_ra[1] + half_d - pitch) & (np.abs(loc[:, 0] - canal_ra[0]) < 45.0)
        body = pts[body_sel] if body_sel.sum() >= 50 else pts
        cb = body.mean(0)
        bl = (body - cb) @ rot.T
        canal_world = c_all + canal_ra[0] * r + canal_ra[1] * a
        canal_world = canal_world + ((cb - canal_world) @ s) * s
        frame = VertebraFrame(
            name=name, centroid_mm=cb, r=r, a=a, s=s, canal_mm=canal_world, canal_half_width_mm=half_w,
            canal_half_depth_mm=half_d, body_points_mm=body,
            body_half_width_mm=float(np.percentile(np.abs(bl[:, 0]), 99)),
            body_half_height_mm=float(np.percentile(np.abs(bl[:, 2]), 99)), canal_found=found, notes=notes)
        # next pass: a along the vertebra's plane of symmetry through the canal (the frame's s stays the
        # given axis); without a canal, toward the thickest bone
        toward = _symmetry_axis(loc[:, :2] - canal_ra, pitch) if found else np.array([0.0, 1.0])
        if not found and _it == 0:
            toward = unit(peak_uv - canal_ra)
        a = unit(toward[0] * r + toward[1] * a)
        a = unit(a - (a @ s) * s)
    assert frame is not None
    frame.pedicles = _pedicles(frame, pts, pitch)
    return frame


def _pedicles(f: VertebraFrame, pts: np.ndarray, pitch: float) -> dict[str, Pedicle]:
    """Bone beside the front half of the canal, per side, within the body's height (+4 mm)."""
    loc = f.local(pts)
    out: dict[str, Pedicle] = {}
    front = f.front_a_mm
    zone = ((loc[:, 1] > front - 0.55 * 2 * f.canal_half_depth_mm) & (loc[:, 1] < front - pitch)
            & (np.abs(loc[:, 2] - f.local(f.centroid_mm)[2]) < f.body_half_height_mm + 4.0))
    for side, sign in (("right", 1.0), ("left", -1.0)):
        lat = sign * loc[:, 0]
        sel = zone & (lat > 0.6 * f.canal_half_width_mm) & (lat < f.canal_half_width_mm + 14.0)
        p = loc[sel]
        if len(p) < 20:
            continue
        lat_p = sign * p[:, 0]
        mid = np.median(p, axis=0)
        out[side] = Pedicle(
            centre_mm=f.world(mid), lateral_mid_mm=float(np.median(lat_p)),
            medial_mm=float(np.percentile(lat_p, 3)), lateral_mm=float(np.percentile(lat_p, 97)),
            a_mid_mm=float(mid[1]), inferior_s_mm=float(np.percentile(p[:, 2], 3)),
            superior_s_mm=float(np.percentile(p[:, 2], 97)))
    return out


class BoneField:
    """Signed distance (mm, negative inside) to the union of the bones, on a regular grid."""

    def __init__(self, points_by_bone: Sequence[np.ndarray], pitch_mm: float, pad_mm: float = 40.0) -> None:
        allp = np.vstack(points_by_bone)
        self.pitch = float(pitch_mm)
        self.origin = allp.min(0) - pad_mm
        shape = np.ceil((allp.max(0) + pad_mm - self.origin) / self.pitch).astype(int) + 1
        solid = np.zeros(shape, bool)
        ijk = np.round((allp - self.origin) / self.pitch).astype(int)
        solid[ijk[:, 0], ijk[:, 1], ijk[:, 2]] = True
        outside = ndimage.distance_transform_edt(~solid, sampling=self.pitch)
        inside = ndimage.distance_transform_edt(solid, sampling=self.pitch)
        # voxel centres: the surface lies half a voxel from the last solid centre
        self.sdf = np.where(solid, -inside + 0.5 * self.pitch, outside - 0.5 * self.pitch).astype(np.float32)
        self.grad = np.stack(np.gradient(self.sdf, self.pitch), axis=-1).astype(np.float32)

    def _coords(self, p: np.ndarray) -> np.ndarray:
        return ((np.atleast_2d(p) - self.origin) / self.pitch).T

    def distance(self, p_mm: np.ndarray) -> np.ndarray:
        """Signed distance (n,) mm at points (n, 3); far outside the grid: the border value."""
        return np.asarray(ndimage.map_coordinates(self.sdf, self._coords(p_mm), order=1, mode="nearest"))

    def gradient(self, p_mm: np.ndarray) -> np.ndarray:
        """Unit outward directions (n, 3) at points (n, 3)."""
        c = self._coords(p_mm)
        g = np.stack([ndimage.map_coordinates(self.grad[..., i], c, order=1, mode="nearest") for i in range(3)], 1)
        return g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-9)
