"""Signed-distance primitives and a label canvas for the phantom generator.

All coordinates are RAS millimetres.  A primitive is a function of broadcast
coordinate arrays ``(X, Y, Z)`` returning an (approximate) signed distance in
mm, negative inside.  :class:`Canvas` holds the label volume; ``paint``
evaluates a primitive only inside its bounding box.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

Arr = np.ndarray
SDF = Callable[[Arr, Arr, Arr], Arr]
#: a point, vector or size triple in mm: any sequence of 3 floats or an array
Point = Any


class Part:
    """A primitive with the world box (mm) outside which it is certainly positive."""

    def __init__(self, f: SDF, lo: Point, hi: Point) -> None:
        self.f = f
        self.lo = np.asarray(lo, float)
        self.hi = np.asarray(hi, float)

    def __call__(self, X: Arr, Y: Arr, Z: Arr) -> Arr:
        return self.f(X, Y, Z)


def _pbox(points: Sequence[Point], pad: float | Point) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(points, float).reshape(-1, 3)
    return arr.min(0) - np.asarray(pad, float), arr.max(0) + np.asarray(pad, float)


def smin(a: Arr, b: Arr, k: float) -> Arr:
    """Smooth union (polynomial), blending radius ``k`` mm."""
    if k <= 0:
        return np.minimum(a, b)
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


def union(parts: Sequence[Arr], k: float = 0.0) -> Arr:
    """Union (smooth when ``k`` > 0) of several distance arrays."""
    out = parts[0]
    for p in parts[1:]:
        out = smin(out, p, k)
    return out


def join(fns: Sequence[Part], k: float = 0.0) -> Part:
    """Union (smooth when ``k`` > 0) of several primitives, as one primitive."""
    lo = np.min([f.lo for f in fns], axis=0)
    hi = np.max([f.hi for f in fns], axis=0)
    return Part(lambda X, Y, Z: union([f(X, Y, Z) for f in fns], k), lo, hi)


def _seg_t(px: Arr, py: Arr, pz: Arr, a: Point, b: Point) -> Arr:
    ab = np.subtract(b, a, dtype=np.float64)
    den = float(ab @ ab) or 1e-12
    t = ((px - a[0]) * ab[0] + (py - a[1]) * ab[1] + (pz - a[2]) * ab[2]) / den
    return np.clip(t, 0.0, 1.0)


def capsule(a: Point, b: Point, r: float | tuple[float, float]) -> Part:
    """Segment a-b with radius ``r`` (or radii tapering from a to b)."""
    ra, rb = (float(r), float(r)) if isinstance(r, (int, float)) else (float(r[0]), float(r[1]))

    def f(X: Arr, Y: Arr, Z: Arr) -> Arr:
        t = _seg_t(X, Y, Z, a, b)
        dx = X - (a[0] + t * (b[0] - a[0]))
        dy = Y - (a[1] + t * (b[1] - a[1]))
        dz = Z - (a[2] + t * (b[2] - a[2]))
        return np.sqrt(dx * dx + dy * dy + dz * dz) - (ra + t * (rb - ra))

    return Part(f, *_pbox([a, b], max(ra, rb)))


def tube(points: Sequence[Point], radii: Point, scale: Point = (1, 1, 1)) -> Part:
    """Polyline tube with a radius per point; ``scale`` squashes the cross-section
    (e.g. ``(1, 0.75, 1)`` makes a vertical tube elliptic, 25 % thinner in y)."""
    pts = [np.asarray(p, float) / np.asarray(scale, float) for p in points]
    sc = np.asarray(scale, float)
    k = float(sc.min())

    def f(X: Arr, Y: Arr, Z: Arr) -> Arr:
        Xs, Ys, Zs = X / sc[0], Y / sc[1], Z / sc[2]
        out = None
        for i in range(len(pts) - 1):
            d = capsule(pts[i], pts[i + 1], (radii[i] / k, radii[i + 1] / k))(Xs, Ys, Zs)
            out = d if out is None else np.minimum(out, d)
        assert out is not None
        return out * k

    return Part(f, *_pbox(points, max(radii) * sc / k))


def ellipsoid(c: Point, r: Point) -> Part:
    """Ellipsoid centred at ``c`` with semi-axes ``r`` (approximate distance)."""

    def f(X: Arr, Y: Arr, Z: Arr) -> Arr:
        x, y, z = X - c[0], Y - c[1], Z - c[2]
        k0 = np.sqrt((x / r[0]) ** 2 + (y / r[1]) ** 2 + (z / r[2]) ** 2)
        k1 = np.sqrt((x / r[0] ** 2) ** 2 + (y / r[1] ** 2) ** 2 + (z / r[2] ** 2) ** 2)
        return k0 * (k0 - 1.0) / np.maximum(k1, 1e-9)  # good near the surface (Quilez)

    return Part(f, *_pbox([c], r))


def triangle(a: Point, b: Point, c: Point, half_t: float) -> Part:
    """A plate of half thickness ``half_t`` around triangle a-b-c (exact distance to the triangle,
    after Quilez, minus ``half_t``)."""
    A, B, C = (np.asarray(p, float) for p in (a, b, c))
    ba, cb, ac = B - A, C - B, A - C
    nor = np.cross(ba, ac)

    def f(X: Arr, Y: Arr, Z: Arr) -> Arr:
        X, Y, Z = np.broadcast_arrays(X, Y, Z)
        P = np.stack([X, Y, Z], axis=-1)
        pa, pb, pc = P - A, P - B, P - C
        s = (np.sign(pa @ np.cross(ba, nor)) + np.sign(pb @ np.cross(cb, nor)) + np.sign(pc @ np.cross(ac, nor)))

        def seg(e: np.ndarray, q: Arr) -> Arr:
            t = np.clip((q @ e) / float(e @ e), 0.0, 1.0)
            d = e * t[..., None] - q
            return np.einsum("...i,...i->...", d, d)

        edge = np.minimum(np.minimum(seg(ba, pa), seg(cb, pb)), seg(ac, pc))
        face = (pa @ nor) ** 2 / float(nor @ nor)
        return np.sqrt(np.where(s < 2.0, edge, face)) - half_t

    return Part(f, *_pbox([A, B, C], half_t))


def box_frame(center: Point, axes: Sequence[Point], half: Point, round_mm: float = 0.0) -> Part:
    """Oriented box: ``axes`` are three orthonormal directions, ``half`` the half sizes."""
    ax = [np.asarray(a, float) / np.linalg.norm(a) for a in axes]

    def f(X: Arr, Y: Arr, Z: Arr) -> Arr:
        qs = []
        for a, h in zip(ax, half):
            u = (X - center[0]) * a[0] + (Y - center[1]) * a[1] + (Z - center[2]) * a[2]
            qs.append(np.abs(u) - (h - round_mm))
        outside = np.sqrt(sum(np.maximum(q, 0.0) ** 2 for q in qs))
        inside = np.minimum(np.maximum(np.maximum(qs[0], qs[1]), qs[2]), 0.0)
        return outside + inside - round_mm

    ext = sum(np.abs(a) * h for a, h in zip(ax, half))
    return Part(f, *_pbox([center], ext))


def slab(a: Point, b: Point, half_t: float | tuple[float, float],
         z_a: tuple[float, float], z_b: tuple[float, float], round_mm: float = 1.0) -> Part:
    """A plate swept along the horizontal segment a-b (x, y), thickness ``2*half_t``
    across it, spanning z from ``z_a`` at a to ``z_b`` at b (linear between)."""
    ht_a, ht_b = ((float(half_t), float(half_t)) if isinstance(half_t, (int, float))
                  else (float(half_t[0]), float(half_t[1])))

    def f(X: Arr, Y: Arr, Z: Arr) -> Arr:
        t = _seg_t(X, Y, 0 * Z, (a[0], a[1], 0.0), (b[0], b[1], 0.0))
        dx = X - (a[0] + t * (b[0] - a[0]))
        dy = Y - (a[1] + t * (b[1] - a[1]))
        d_xy = np.sqrt(dx * dx + dy * dy) - (ht_a + t * (ht_b - ht_a))
        lo = z_a[0] + t * (z_b[0] - z_a[0])
        hi = z_a[1] + t * (z_b[1] - z_a[1])
        d_z = np.maximum(lo - Z, Z - hi)
        q0, q1 = d_xy + round_mm, d_z + round_mm
        return np.sqrt(np.maximum(q0, 0) ** 2 + np.maximum(q1, 0) ** 2) + np.minimum(np.maximum(q0, q1), 0) - round_mm

    t = max(ht_a, ht_b)
    lo = (min(a[0], b[0]) - t, min(a[1], b[1]) - t, min(z_a[0], z_b[0]))
    hi = (max(a[0], b[0]) + t, max(a[1], b[1]) + t, max(z_a[1], z_b[1]))
    return Part(f, lo, hi)


def body(center: Point, a: float, b_ant: float, b_post: float, h: float,
         waist: float = 0.07, round_mm: float = 2.0, concave_mm: float = 0.0) -> Part:
    """Vertebral body / disc: elliptic cylinder (half width ``a``, anterior and
    posterior half depths ``b_ant``/``b_post``, half height ``h``), waisted
    sides and rounded rims; a negative ``waist`` bulges (discs).  ``concave_mm``
    indents the posterior wall at the midline (the kidney-shaped lumbar endplate),
    fading out over the middle 70 % of the width."""

    def f(X: Arr, Y: Arr, Z: Arr) -> Arr:
        x, y, z = X - center[0], Y - center[1], Z - center[2]
        if concave_mm:
            y = y - np.where(y < 0, concave_mm * np.clip(1.0 - (x / (0.7 * a)) ** 2, 0.0, 1.0), 0.0)
        zn = np.clip(z / h, -1.0, 1.0)
        s = 1.0 - waist * (1.0 - zn * zn)
        bb = np.where(y > 0, b_ant, b_post)
        q = np.sqrt((x / (a * s)) ** 2 + (y / (bb * s)) ** 2)
        dr = (q - 1.0) * min(a, b_post) * s + round_mm
        dz = np.abs(z) - h + round_mm
        return np.sqrt(np.maximum(dr, 0) ** 2 + np.maximum(dz, 0) ** 2) + np.minimum(np.maximum(dr, dz), 0) - round_mm

    grow = 1.0 + max(0.0, -waist)
    return Part(f, *_pbox([center], (a * grow, max(b_ant, b_post) * grow, h)))


def rotation_x(angle_deg: float) -> np.ndarray:
    """Rotation about +x (right-handed): +y tips toward +z for positive angles."""
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], float)


def local_frame(origin: Point, rot: np.ndarray) -> Callable[[Arr, Arr, Arr], tuple[Arr, Arr, Arr]]:
    """World -> local coordinates for a frame whose axes are the columns of ``rot``."""
    o = np.asarray(origin, float)

    def f(X: Arr, Y: Arr, Z: Arr) -> tuple[Arr, Arr, Arr]:
        dx, dy, dz = X - o[0], Y - o[1], Z - o[2]
        return (rot[0, 0] * dx + rot[1, 0] * dy + rot[2, 0] * dz,
                rot[0, 1] * dx + rot[1, 1] * dy + rot[2, 1] * dz,
                rot[0, 2] * dx + rot[1, 2] * dy + rot[2, 2] * dz)

    return f


def in_frame(part: Part, origin: Point, rot: np.ndarray) -> Part:
    """A primitive defined in a local frame (axes = columns of ``rot``), placed in the world."""
    frame = local_frame(origin, rot)
    corners = np.array([[x, y, z] for x in (part.lo[0], part.hi[0]) for y in (part.lo[1], part.hi[1])
                        for z in (part.lo[2], part.hi[2])])
    world = np.asarray(origin, float) + corners @ rot.T
    return Part(lambda X, Y, Z: part(*frame(X, Y, Z)), world.min(0), world.max(0))


class Canvas:
    """Label volume on an axis-aligned RAS grid (array axes = x, y, z)."""

    def __init__(self, lo_mm: Point, hi_mm: Point, spacing_mm: float) -> None:
        self.lo = np.asarray(lo_mm, float)
        self.spacing = float(spacing_mm)
        self.shape = tuple(int(math.ceil((h - lo) / self.spacing)) + 1 for lo, h in zip(lo_mm, hi_mm))
        self.labels = np.zeros(self.shape, np.uint8)
        self.affine = np.diag([self.spacing] * 3 + [1.0])
        self.affine[:3, 3] = self.lo
        self.blocked: dict[int, int] = {}

    @classmethod
    def from_labels(cls, labels: np.ndarray, affine: np.ndarray) -> "Canvas":
        """A canvas around an existing label array (axis-aligned, isotropic affine)."""
        c = cls.__new__(cls)
        c.spacing = float(affine[0, 0])
        c.lo = np.asarray(affine[:3, 3], float)
        c.shape = tuple(int(n) for n in labels.shape)
        c.labels = labels
        c.affine = np.asarray(affine, float).copy()
        c.blocked = {}
        return c

    def _box(self, lo: Point, hi: Point) -> tuple[tuple[slice, ...], list[Arr]]:
        i0 = np.clip(np.floor((np.asarray(lo) - self.lo) / self.spacing).astype(int), 0, self.shape)
        i1 = np.clip(np.ceil((np.asarray(hi) - self.lo) / self.spacing).astype(int) + 1, 0, self.shape)
        sl = tuple(slice(int(a), int(b)) for a, b in zip(i0, i1))
        axes = []
        for d in range(3):
            v = (self.lo[d] + self.spacing * np.arange(sl[d].start, sl[d].stop)).astype(np.float32)
            shape = [1, 1, 1]
            shape[d] = len(v)
            axes.append(v.reshape(shape))
        return sl, axes

    def paint(self, label: int, sdf: SDF, lo: Point, hi: Point,
              over: Sequence[int] = (0,)) -> int:
        """Set ``label`` where ``sdf < 0`` inside the box ``lo..hi`` (mm) and the
        current label is in ``over``; returns voxels painted.  Voxels refused
        because another structure holds them are counted in ``blocked``."""
        sl, (X, Y, Z) = self._box(lo, hi)
        inside = sdf(X, Y, Z) < 0
        inside = np.broadcast_to(inside, tuple(s.stop - s.start for s in sl))
        return self._write_label(label, sl, inside, over)

    def _write_label(self, label: int, sl: tuple[slice, ...], inside: np.ndarray, over: Sequence[int]) -> int:
        """Give ``label`` to the voxels of box ``sl`` that are ``inside`` and currently one of ``over``;
        count the refused ones in ``blocked``. Returns voxels painted."""
        cur = self.labels[sl]
        ok = np.isin(cur, np.asarray(over, dtype=np.uint8))
        self.blocked[label] = self.blocked.get(label, 0) + int((inside & ~ok).sum())
        write = inside & ok
        cur[write] = label
        return int(write.sum())

    def paint_union(self, label: int, parts: Sequence[Part], k: float = 0.0, cuts: Sequence[Part] = (),
                    over: Sequence[int] = (0,)) -> int:
        """Paint the smooth union of ``parts`` minus ``cuts``, evaluating each
        primitive only inside its own box (fast: most of a vertebra's box is
        far from most of its parts)."""
        lo = np.min([p.lo for p in parts], axis=0) - k - 1
        hi = np.max([p.hi for p in parts], axis=0) + k + 1
        sl, _ = self._box(lo, hi)
        field = np.full(tuple(s.stop - s.start for s in sl), 1e3, np.float32)
        for p, is_cut in [(p, False) for p in parts] + [(c, True) for c in cuts]:
            psl, (X, Y, Z) = self._box(p.lo - k - self.spacing, p.hi + k + self.spacing)
            sub = tuple(slice(max(a.start, b.start) - b.start, min(a.stop, b.stop) - b.start) for a, b in zip(psl, sl))
            if any(x.stop <= x.start for x in sub):
                continue
            loc = tuple(slice(max(a.start, b.start) - a.start, min(a.stop, b.stop) - a.start) for a, b in zip(psl, sl))
            d = np.broadcast_to(p(X, Y, Z), tuple(s.stop - s.start for s in psl))[loc]
            f = field[sub]
            field[sub] = np.maximum(f, -d) if is_cut else smin(f, d, k)
        inside = field < 0
        return self._write_label(label, sl, inside, over)

    def open_label(self, label: int, iterations: int = 1) -> int:
        """Morphological opening of one label (drops slivers thinner than ~2 voxels that would mesh
        as non-manifold threads); returns the voxels cleared."""
        from scipy import ndimage

        idx = np.argwhere(self.labels == label)
        if len(idx) == 0:
            return 0
        lo = np.maximum(idx.min(0) - 2, 0)
        hi = np.minimum(idx.max(0) + 3, self.shape)
        sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        mask = self.labels[sl] == label
        gone = mask & ~ndimage.binary_opening(mask, iterations=iterations)
        self.labels[sl][gone] = 0
        return int(gone.sum())

    def carve(self, labels: Sequence[int], sdf: SDF, lo: Point, hi: Point) -> None:
        """Clear ``labels`` where ``sdf < 0`` (cut canals, foramina)."""
        sl, (X, Y, Z) = self._box(lo, hi)
        inside = np.broadcast_to(sdf(X, Y, Z) < 0, tuple(s.stop - s.start for s in sl))
        cur = self.labels[sl]
        cur[inside & np.isin(cur, np.asarray(labels, dtype=np.uint8))] = 0

    def hu_volume(self, hu_by_label: dict[int, float], bone_labels: Sequence[int], seed: int,
                  background_hu: float = 30.0, noise_hu: float = 18.0) -> np.ndarray:
        """CT-like Hounsfield volume (int16): tissue values, a 1.5 mm cortical
        shell on bone (~1100 HU over ~250 HU cancellous), seeded noise, 0.6 mm blur."""
        from scipy import ndimage

        lut = np.full(256, background_hu, np.float32)
        for k, v in hu_by_label.items():
            lut[k] = v
        hu = lut[self.labels]
        bone = np.isin(self.labels, np.asarray(bone_labels, np.uint8))
        shell_vox = max(1, int(round(1.5 / self.spacing)))
        cortex = bone & ~ndimage.binary_erosion(bone, iterations=shell_vox)
        hu[cortex] = 1100.0
        rng = np.random.default_rng(seed)
        hu += rng.normal(0.0, noise_hu, size=hu.shape).astype(np.float32)
        hu = ndimage.gaussian_filter(hu, 0.6 / self.spacing)
        return np.clip(np.round(hu), -1024, 3071).astype(np.int16)
