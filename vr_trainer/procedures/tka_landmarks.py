"""Knee arthroplasty landmarks computed from the bone surfaces of a bundle.

Every landmark comes from the mesh's own geometry (principal axes, cross-sections,
extreme points, a sphere fit), never from coordinates of a particular file, so the
same code serves any patient's femur and tibia. The bundle frame (RAS millimetres) is
used only to pick signs: superior is the end toward +z, anterior toward +y.

Definitions (what a navigation system reports):

- intramedullary (IM) axis: line through the centroids of shaft cross-sections;
- femoral head centre: least-squares sphere fit of the proximal femur's spherical cap;
- femoral knee centre: midpoint of the transepicondylar axis (TEA);
- epicondyles: most medial / lateral points of the distal femur (clinical TEA);
- distal / posterior condyle points: most distal (along the mechanical axis) and most
  posterior points of each condyle;
- Whiteside's line: from the centre of the intercondylar notch to the deepest point of
  the trochlear groove, in the plane perpendicular to the mechanical axis;
- tibial plateau points: the surface at the centre of each compartment's articular (upward-
  facing) patch, where a concave plateau is deepest; on a resected plateau, the compartment centre;
- ankle centre: centroid of the distal tibial cross-section just above the plafond;
- mechanical axes: femoral = head centre -> knee centre, tibial = knee centre -> ankle.

Fallbacks (a knee CT crops both bones): without the femoral head, the femoral
mechanical axis is the IM axis tilted ``valgus_deg`` (default 6) toward medial; without
the ankle, the tibial mechanical axis is the shaft axis. ``notes`` says which was used.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import trimesh

Side = Literal["left", "right"]
_SUPERIOR_HINT = np.array([0.0, 0.0, 1.0])
_ANTERIOR_HINT = np.array([0.0, 1.0, 0.0])


def _unit(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, dtype=float) / float(np.linalg.norm(v))


def _perp(v: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """``v`` without its component along the unit ``axis``, normalised."""
    return _unit(v - float(np.dot(v, axis)) * axis)


@dataclass(frozen=True)
class BoneFrame:
    """Anatomical frame of one bone: origin (mm) and unit axes (superior, lateral, anterior)."""

    origin_mm: np.ndarray
    superior: np.ndarray
    lateral: np.ndarray
    anterior: np.ndarray

    def local(self, points_mm: np.ndarray) -> np.ndarray:
        """(n, 3) points -> (n, 3) coordinates (lateral, anterior, superior) in mm."""
        d = np.atleast_2d(points_mm) - self.origin_mm
        return np.stack([d @ self.lateral, d @ self.anterior, d @ self.superior], axis=1)


@dataclass
class FemurLandmarks:
    """Femoral landmarks (mm, bundle frame); axes are unit vectors pointing proximally."""

    side: Side
    hip_centre_mm: np.ndarray | None
    head_radius_mm: float | None
    knee_centre_mm: np.ndarray
    medial_epicondyle_mm: np.ndarray
    lateral_epicondyle_mm: np.ndarray
    medial_distal_mm: np.ndarray
    lateral_distal_mm: np.ndarray
    medial_posterior_mm: np.ndarray
    lateral_posterior_mm: np.ndarray
    trochlear_groove_mm: np.ndarray
    notch_mm: np.ndarray
    whiteside_axis: np.ndarray
    im_axis: np.ndarray
    mechanical_axis: np.ndarray
    valgus_deg: float
    frame: BoneFrame
    notes: list[str] = field(default_factory=list)

    @property
    def transepicondylar_width_mm(self) -> float:
        return float(np.linalg.norm(self.lateral_epicondyle_mm - self.medial_epicondyle_mm))

    @property
    def posterior_condylar_angle_deg(self) -> float:
        """Angle of the posterior condylar line to the TEA in the axial plane (+: TEA externally rotated)."""
        p = self.frame.local(np.stack([self.medial_posterior_mm, self.lateral_posterior_mm]))
        d = p[1] - p[0]
        return float(np.degrees(np.arctan2(-d[1], d[0])))

    @property
    def whiteside_to_tea_deg(self) -> float:
        """Whiteside's line against the TEA perpendicular (+: toward lateral at its anterior end)."""
        w = self.whiteside_axis
        return float(np.degrees(np.arctan2(w @ self.frame.lateral, w @ self.frame.anterior)))

    def as_dict(self) -> dict[str, Any]:
        return _as_dict(self)


@dataclass
class TibiaLandmarks:
    """Tibial landmarks (mm, bundle frame); axes are unit vectors pointing proximally."""

    side: Side
    medial_plateau_mm: np.ndarray
    lateral_plateau_mm: np.ndarray
    knee_centre_mm: np.ndarray
    ankle_centre_mm: np.ndarray | None
    shaft_axis: np.ndarray
    mechanical_axis: np.ndarray
    frame: BoneFrame
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return _as_dict(self)


def _as_dict(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in vars(obj).items():
        if isinstance(v, np.ndarray):
            out[k] = [round(float(x), 3) for x in v]
        elif isinstance(v, BoneFrame):
            out[k] = {n: [round(float(x), 4) for x in getattr(v, n)]
                      for n in ("origin_mm", "superior", "lateral", "anterior")}
        elif isinstance(v, float):
            out[k] = round(v, 3)
        else:
            out[k] = v
    return out


def _long_axis(points: np.ndarray, hint: np.ndarray) -> np.ndarray:
    """First principal axis of ``points``, signed toward ``hint``."""
    c = points - points.mean(axis=0)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    a = vt[0]
    return a if float(a @ hint) >= 0 else -a


def _section_centroids(mesh: trimesh.Trimesh, origin: np.ndarray, axis: np.ndarray,
                       heights: np.ndarray) -> np.ndarray:
    """Area centroids (k, 3) of the largest polygon of sections perpendicular to ``axis``."""
    secs = mesh.section_multiplane(plane_origin=origin, plane_normal=axis, heights=list(heights))
    out = []
    for s in secs:
        if s is None or not s.polygons_full:
            continue
        poly = max(s.polygons_full, key=lambda p: p.area)
        cx, cy = poly.centroid.coords[0]
        out.append((s.metadata["to_3D"] @ np.array([cx, cy, 0.0, 1.0]))[:3])
    if len(out) < 2:
        raise ValueError("bone shaft: fewer than two cross-sections; is the mesh closed?")
    return np.asarray(out)


def _fit_line(points: np.ndarray, hint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = points.mean(axis=0)
    return c, _long_axis(points, hint)


def _shaft_axis(mesh: trimesh.Trimesh, axis: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """(point, unit axis) of the shaft between heights ``lo``..``hi`` along ``axis`` (two passes)."""
    point = np.zeros(3)
    for _ in range(2):
        heights = np.linspace(lo, hi, 9) - float(point @ axis)
        cents = _section_centroids(mesh, point, axis, heights)
        point, new = _fit_line(cents, axis)
        axis = new
    return point, axis


def fit_sphere(points: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Least-squares sphere through (n, 3) points -> (centre_mm, radius_mm, rms_mm)."""
    a = np.hstack([2.0 * points, np.ones((len(points), 1))])
    b = (points ** 2).sum(axis=1)
    sol, *_ = np.linalg.lstsq(a, b, rcond=None)
    centre = sol[:3]
    radius = float(np.sqrt(sol[3] + centre @ centre))
    rms = float(np.sqrt(np.mean((np.linalg.norm(points - centre, axis=1) - radius) ** 2)))
    return centre, radius, rms


def _femoral_head(v: np.ndarray, n: np.ndarray, axis: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Sphere fit of the femoral head, seeded at the most proximal point; None when not spherical."""
    top = v[int(np.argmax(v @ axis))]
    centre, radius = top - 22.0 * axis, 22.0
    sel = np.zeros(len(v), dtype=bool)
    for _ in range(8):
        d = v - centre
        dist = np.linalg.norm(d, axis=1)
        radial = np.einsum("ij,ij->i", d, n) / np.maximum(dist, 1e-9)
        sel = (np.abs(dist - radius) < max(2.0, 0.25 * radius)) & (radial > 0.9)
        if sel.sum() < 50:
            return None
        centre, radius, rms = fit_sphere(v[sel])
        if not 12.0 < radius < 40.0:
            return None
    d = v[sel] - centre
    spread = float(np.linalg.norm((d / np.linalg.norm(d, axis=1)[:, None]).mean(axis=0)))
    if rms > 1.0 or spread > 0.7:  # a cap narrower than a hemisphere is not a head
        return None
    return centre, radius


def _valley(xs: np.ndarray, ys: np.ndarray, lowest: bool) -> tuple[float, float]:
    """The extreme between a profile's two outer peaks (groove: ``lowest``; notch: highest), sub-bin by a parabola."""
    prof = ys if lowest else -ys
    mid = len(xs) // 2
    left, right = int(np.argmax(prof[:mid])), mid + int(np.argmax(prof[mid:]))
    i = left + 1 + int(np.argmin(prof[left + 1:right])) if right - left >= 2 else mid
    x, y = float(xs[i]), float(prof[i])
    if 0 < i < len(xs) - 1:
        y0, y1, y2 = float(prof[i - 1]), float(prof[i]), float(prof[i + 1])
        den = y0 - 2.0 * y1 + y2
        if den > 1e-9:
            off = float(np.clip(0.5 * (y0 - y2) / den, -0.5, 0.5))
            x += off * float(xs[i + 1] - xs[i])
            y = y1 - 0.25 * (y0 - y2) * off
    return x, (y if lowest else -y)


def _cap(points: np.ndarray, direction: np.ndarray, depth_mm: float = 1.5) -> np.ndarray:
    """Centroid of the points within ``depth_mm`` of the most prominent one along ``direction``."""
    h = points @ direction
    return points[h > h.max() - depth_mm].mean(axis=0)


def _profile_extreme(mesh: trimesh.Trimesh, frame: BoneFrame, half_mm: float, levels_mm: np.ndarray,
                     front: bool) -> np.ndarray:
    """Mean over levels of the valley of a ray-cast profile across the knee (mm, bundle frame).

    ``front``: rays toward posterior, the valley is the trochlear groove (least anterior
    between the facets); else rays toward anterior, the valley is the intercondylar notch."""
    xs = np.arange(-half_mm, half_mm + 1e-9, 0.5)
    d = -frame.anterior if front else frame.anterior
    pts = []
    for zl in levels_mm:
        o = frame.origin_mm + np.outer(xs, frame.lateral) + zl * frame.superior - 150.0 * d
        loc, ray_idx, _ = mesh.ray.intersects_location(o, np.tile(d, (len(xs), 1)), multiple_hits=False)
        y = np.full(len(xs), np.nan)
        y[ray_idx] = (loc - frame.origin_mm) @ frame.anterior
        ok = np.isfinite(y)
        if ok.sum() < 8:
            continue
        gx, gy = _valley(xs[ok], y[ok] if front else y[ok], lowest=front)
        pts.append(frame.origin_mm + gx * frame.lateral + gy * frame.anterior + zl * frame.superior)
    if not pts:
        raise ValueError("distal femur: no trochlea/notch profile; is the mesh a femur?")
    return np.mean(pts, axis=0)


FEMUR_OVERRIDES = ("hip_centre_mm", "medial_epicondyle_mm", "lateral_epicondyle_mm")
TIBIA_OVERRIDES = ("medial_plateau_mm", "lateral_plateau_mm", "ankle_centre_mm")


def _overrides(given: Mapping[str, Sequence[float]] | None, allowed: tuple[str, ...]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for k, val in (given or {}).items():
        if k not in allowed:
            raise ValueError(f"landmark override {k!r} is not known; use one of {', '.join(allowed)}")
        arr = np.asarray(val, dtype=float)
        if arr.shape != (3,) or not np.isfinite(arr).all():
            raise ValueError(f"landmark override {k!r} must be three finite numbers (mm), got {val!r}")
        out[k] = arr
    return out


def femur_landmarks(mesh: trimesh.Trimesh, *, side: Side | None = None, valgus_deg: float = 6.0,
                    hip_centre_mm: np.ndarray | None = None,
                    overrides: Mapping[str, Sequence[float]] | None = None) -> FemurLandmarks:
    """Landmarks of a femur surface (mm): whole femur or the distal part of a knee CT.

    ``side``: left/right; ``None`` decides from geometry (the head is medial; else the
    medial condyle reaches further distally along the IM axis). ``hip_centre_mm`` or
    ``overrides`` (keys :data:`FEMUR_OVERRIDES`, bundle mm) replace computed points, as a
    scenario may; everything that depends on them is derived from the given values."""
    notes: list[str] = []
    given = _overrides(overrides, FEMUR_OVERRIDES)
    if hip_centre_mm is not None:
        given.setdefault("hip_centre_mm", np.asarray(hip_centre_mm, dtype=float))
    hip_centre_mm = given.get("hip_centre_mm")
    v = np.asarray(mesh.vertices, dtype=float)
    nrm = np.asarray(mesh.vertex_normals, dtype=float)
    axis0 = _long_axis(v, _SUPERIOR_HINT)
    h = v @ axis0
    length = float(h.max() - h.min())
    bottom = float(h.min())
    point, im = _shaft_axis(mesh, axis0, bottom + min(100.0, 0.45 * length), bottom + min(220.0, 0.85 * length))
    hip: np.ndarray | None = None
    radius: float | None = None
    if hip_centre_mm is not None:
        hip = np.asarray(hip_centre_mm, dtype=float)
        notes.append("femoral head centre: given by the scenario")
    elif length > 250.0:
        found = _femoral_head(v, nrm, im)
        if found is not None:
            hip, radius = found
    # preliminary mechanical axis (from a knee point on the IM axis) for the distal frame
    hd = v @ im
    d0 = float(hd.min())
    knee0 = point + (d0 + 25.0 - float(point @ im)) * im
    slab = (hd > d0 + 5.0) & (hd < d0 + 45.0)
    q = v[slab] - v[slab].mean(axis=0)
    q = q - np.outer(q @ im, im)
    _, _, vt = np.linalg.svd(q, full_matrices=False)
    ml = _perp(vt[0], im)
    ant = _perp(np.cross(im, ml), im)
    if ant @ _ANTERIOR_HINT < 0:
        ant = -ant
    mcoord = (v - knee0) @ ml
    distal_band = hd < d0 + 30.0
    end_pos = float(hd[distal_band & (mcoord > 10.0)].min())
    end_neg = float(hd[distal_band & (mcoord < -10.0)].min())
    if hip is not None:
        medial = ml if float((hip - point) @ ml) > 0 else -ml
        how = "the femoral head is medial"
    else:
        medial = ml if end_pos < end_neg else -ml
        how = "the medial condyle reaches further distally"
    geo_side: Side = "right" if float(np.cross(ant, im) @ -medial) > 0 else "left"
    if side is None:
        side = geo_side
        notes.append(f"side {side}: from geometry ({how})")
    elif side != geo_side:
        notes.append(f"side {side} given; geometry suggests {geo_side} ({how})")
        medial = -medial
    sgn = 1.0 if side == "right" else -1.0
    t = np.radians(valgus_deg)
    mech0 = _unit(hip - knee0) if hip is not None else _unit(np.cos(t) * im + np.sin(t) * _perp(medial, im))
    # epicondyles: the most prominent caps across the mechanical axis, refined along the TEA itself
    hm = (v - knee0) @ mech0
    idx = np.flatnonzero((hm > -15.0) & (hm < 20.0))
    medial = _perp(medial, mech0)
    for _ in range(3):
        med_e, lat_e = _cap(v[idx], medial), _cap(v[idx], -medial)
        medial = _perp(med_e - lat_e, mech0)
    for key in ("medial_epicondyle_mm", "lateral_epicondyle_mm"):
        if key in given:
            notes.append(f"{key.removesuffix('_mm').replace('_', ' ')}: given by the scenario")
    med_e = given.get("medial_epicondyle_mm", med_e)
    lat_e = given.get("lateral_epicondyle_mm", lat_e)
    knee = 0.5 * (med_e + lat_e)
    if hip is not None:
        mech = _unit(hip - knee)
        valgus = float(np.degrees(np.arccos(np.clip(mech @ im, -1, 1))))
    else:
        mech = _unit(np.cos(t) * im + np.sin(t) * _perp(medial, im))
        valgus = float(valgus_deg)
        notes.append(f"femoral mechanical axis: no femoral head in the bundle; intramedullary axis + "
                     f"{valgus_deg:g} deg valgus")
    lateral = _perp(lat_e - med_e, mech)
    frame = BoneFrame(origin_mm=knee, superior=mech, lateral=lateral, anterior=sgn * np.cross(mech, lateral))
    loc = frame.local(v)
    x, y, z = loc[:, 0], loc[:, 1], loc[:, 2]
    cond = z < 20.0
    med_side, lat_side = cond & (x < -5.0), cond & (x > 5.0)
    med_d = v[np.flatnonzero(med_side)[int(np.argmin(z[med_side]))]]
    lat_d = v[np.flatnonzero(lat_side)[int(np.argmin(z[lat_side]))]]
    med_p = v[np.flatnonzero(med_side)[int(np.argmin(y[med_side]))]]
    lat_p = v[np.flatnonzero(lat_side)[int(np.argmin(y[lat_side]))]]
    # Whiteside's line: the trochlear groove seen from the front, the notch seen from behind
    half = 0.3 * float(np.linalg.norm(lat_e - med_e))
    groove = _profile_extreme(mesh, frame, half, np.arange(0.0, 25.1, 5.0), front=True)
    pz = float(frame.local(np.stack([med_p, lat_p]))[:, 2].mean())
    notch = _profile_extreme(mesh, frame, half, pz + np.arange(-5.0, 5.1, 5.0), front=False)
    return FemurLandmarks(
        side=side, hip_centre_mm=hip, head_radius_mm=radius, knee_centre_mm=knee,
        medial_epicondyle_mm=med_e, lateral_epicondyle_mm=lat_e, medial_distal_mm=med_d,
        lateral_distal_mm=lat_d, medial_posterior_mm=med_p, lateral_posterior_mm=lat_p,
        trochlear_groove_mm=groove, notch_mm=notch, whiteside_axis=_perp(groove - notch, mech),
        im_axis=im, mechanical_axis=mech, valgus_deg=valgus, frame=frame, notes=notes)


def tibia_landmarks(mesh: trimesh.Trimesh, *, side: Side | None = None,
                    overrides: Mapping[str, Sequence[float]] | None = None) -> TibiaLandmarks:
    """Landmarks of a tibia surface (mm): whole tibia or the proximal part of a knee CT.

    ``overrides`` (keys :data:`TIBIA_OVERRIDES`, bundle mm) replace computed points.

    ``side``: left/right; ``None`` decides from the medial malleolus (needs the ankle),
    else assumes right and says so in ``notes``."""
    notes: list[str] = []
    v = np.asarray(mesh.vertices, dtype=float)
    nrm = np.asarray(mesh.vertex_normals, dtype=float)
    axis0 = _long_axis(v, _SUPERIOR_HINT)
    h = v @ axis0
    top, bottom = float(h.max()), float(h.min())
    length = top - bottom

    def width(sel: np.ndarray) -> float:
        q = v[sel] - v[sel].mean(axis=0)
        q = q - np.outer(q @ axis0, axis0)
        return float(np.linalg.norm(q, axis=1).max())

    mid = np.abs(h - (top + bottom) / 2) < 10.0
    has_ankle = length > 250.0 and width(h < bottom + 20.0) > 1.4 * width(mid)
    if has_ankle:
        lo, hi = top - 0.8 * length, top - 0.3 * length
    else:
        lo, hi = bottom + 5.0, top - min(70.0, 0.5 * length)
    point, shaft = _shaft_axis(mesh, axis0, lo, hi)
    hs = v @ shaft
    t0 = float(hs.max())
    slab = (hs > t0 - 25.0) & (hs < t0 - 5.0)
    q = v[slab] - v[slab].mean(axis=0)
    q = q - np.outer(q @ shaft, shaft)
    _, _, vt = np.linalg.svd(q, full_matrices=False)
    ml = _perp(vt[0], shaft)
    ant = _perp(np.cross(shaft, ml), shaft)
    if ant @ _ANTERIOR_HINT < 0:
        ant = -ant
    ankle: np.ndarray | None = None
    if has_ankle:
        b0 = float(hs.min())
        ankle = _section_centroids(mesh, np.zeros(3), shaft, np.array([b0 + 25.0, b0 + 26.0]))[0]
        tip = v[int(np.argmin(hs))]
        medial = ml if float((tip - ankle) @ ml) > 0 else -ml
        geo: Side = "right" if float(np.cross(ant, shaft) @ -medial) > 0 else "left"
        if side is None:
            side = geo
            notes.append(f"side {side}: from geometry (the medial malleolus)")
        elif side != geo:
            notes.append(f"side {side} given; geometry suggests {geo} (the medial malleolus)")
    if side is None:
        side = "right"
        notes.append("side: not given and no ankle to tell; assumed right")
    sgn = 1.0 if side == "right" else -1.0
    lateral0 = sgn * _perp(np.cross(ant, shaft), shaft)
    up = (hs > t0 - 20.0) & (nrm @ shaft > 0.8)
    centre = v[up].mean(axis=0)
    mco = (v - centre) @ lateral0
    pts = []
    for sel in (up & (mco < -5.0), up & (mco > 5.0)):
        c = v[sel].mean(axis=0)  # centre of the compartment's articular (upward) patch
        hit, _, _ = mesh.ray.intersects_location([c + 100.0 * shaft], [-shaft], multiple_hits=False)
        if len(hit):
            pts.append(np.asarray(hit[0], dtype=float))
        else:  # the centre overhangs no surface (a ring-shaped patch): the nearest patch vertex
            pts.append(v[np.flatnonzero(sel)[int(np.argmin(np.linalg.norm(v[sel] - c, axis=1)))]])
    given = _overrides(overrides, TIBIA_OVERRIDES)
    for key in given:
        notes.append(f"{key.removesuffix('_mm').replace('_', ' ')}: given by the scenario")
    med_p = given.get("medial_plateau_mm", pts[0])
    lat_p = given.get("lateral_plateau_mm", pts[1])
    ankle = given.get("ankle_centre_mm", ankle)
    knee = 0.5 * (med_p + lat_p)
    if ankle is not None:
        mech = _unit(knee - ankle)
    else:
        mech = shaft
        notes.append("tibial mechanical axis: no ankle in the bundle; the shaft axis")
    lateral = _perp(lat_p - med_p, mech)
    frame = BoneFrame(origin_mm=knee, superior=mech, lateral=lateral, anterior=sgn * np.cross(mech, lateral))
    return TibiaLandmarks(side=side, medial_plateau_mm=med_p, lateral_plateau_mm=lat_p, knee_centre_mm=knee,
                          ankle_centre_mm=ankle, shaft_axis=shaft, mechanical_axis=mech, frame=frame, notes=notes)


__all__ = ["FEMUR_OVERRIDES", "TIBIA_OVERRIDES", "BoneFrame", "FemurLandmarks", "TibiaLandmarks", "femur_landmarks",
           "tibia_landmarks", "fit_sphere"]
