"""Safe transforaminal approaches and skin entry points for the spine phantom.

For each Kambin triangle the approach is searched, not typed in: straight
lines from the triangle's incentre outwards, at axial angles of 10-60 degrees
from the coronal plane and cranial tilts of 0-40 degrees (the entry above the
target, the needle aiming caudally), are walked through the painted label
volumes until they leave the skin.  A line is safe when no bone (vertebrae,
sacrum, ilium), nerve, dura or vessel voxel lies within ``CLEARANCE_MM`` of it
(sampled on the axis and on an 8-point ring every 0.5 mm; within ``NEAR_MM``
of the incentre, in the foramen, ``NEAR_CLEARANCE_MM``).  The safe line
closest to the textbook one (30 degrees from the coronal plane, in the axial
plane; cost |axial - 30| + 0.5 cranial) is kept; at L5-S1 the iliac crest usually forces a cranial tilt.

Skin entry: where that line leaves the shipped skin mesh (a ray against the
mesh, after meshing), with its distance from the midline (|x|: the phantom's
midline is x = 0) and the depth from skin to the incentre.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .phantom_sdf import Canvas

CLEARANCE_MM = 2.0
NEAR_CLEARANCE_MM = 1.0
NEAR_MM = 10.0
NOMINAL_AXIAL_DEG = 30.0
AXIAL_DEG = np.arange(10.0, 60.1, 2.5)
CRANIAL_DEG = np.arange(0.0, 40.1, 2.5)
#: a degree of cranial tilt costs half a degree of axial change (surgeons tilt the needle caudally
#: over a high crest rather than enter far more medially)
CRANIAL_COST = 0.5


def direction(side_sign: float, axial_deg: float, cranial_deg: float) -> np.ndarray:
    """Unit vector from the target outwards: ``axial_deg`` from the coronal plane (towards posterior),
    ``cranial_deg`` above the axial plane."""
    a, c = math.radians(axial_deg), math.radians(cranial_deg)
    return np.array([side_sign * math.cos(a) * math.cos(c), -math.sin(a) * math.cos(c), math.sin(c)])


def lookup(canvas: Canvas, pts: np.ndarray) -> np.ndarray:
    """Labels at the nearest voxels of ``pts`` (n, 3) mm; 0 outside the canvas."""
    idx = np.round((pts - canvas.lo) / canvas.spacing).astype(int)
    ok = np.all((idx >= 0) & (idx < np.asarray(canvas.shape)), axis=1)
    out = np.zeros(len(pts), np.uint8)
    i = idx[ok]
    out[ok] = canvas.labels[i[:, 0], i[:, 1], i[:, 2]]
    return out


class Obstacles:
    """Forbidden labels per canvas and the skin canvas (label > 0 = inside the body)."""

    def __init__(self, forbidden: Sequence[tuple[Canvas, Sequence[int]]], skin: Canvas) -> None:
        self.forbidden = [(c, np.asarray(sorted(ids), np.uint8)) for c, ids in forbidden]
        self.skin = skin

    def clear_length(self, origin: np.ndarray, d: np.ndarray, start_mm: float = 0.0,
                     max_mm: float = 300.0, step_mm: float = 0.5, ring: bool = True) -> tuple[bool, float]:
        """(safe all the way out of the skin, length inside the body) for the ray ``origin + t d``;
        ``ring=False``: the line itself only."""
        t = np.arange(start_mm, max_mm, step_mm)
        axis = origin + t[:, None] * d
        inside = lookup(self.skin, axis) > 0
        out = np.flatnonzero(~inside & (t > 5.0))
        if len(out) == 0:
            return False, max_mm
        t_skin = float(t[out[0]])
        keep = t <= t_skin
        e1 = np.cross(d, [0.0, 0.0, 1.0] if abs(d[2]) < 0.9 else [1.0, 0.0, 0.0])
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(d, e1)
        ring_dirs = [math.cos(k * math.pi / 4) * e1 + math.sin(k * math.pi / 4) * e2 for k in range(8)]
        # at the foramen the needle passes close to the exiting root (that is the skill): there the line
        # itself must be free and 1 mm around it; beyond NEAR_MM the full clearance
        near = keep & (t <= NEAR_MM)
        far = keep & (t > NEAR_MM)
        pts = np.concatenate([axis[keep]] + [axis[near] + NEAR_CLEARANCE_MM * r for r in ring_dirs]
                             + [axis[far] + CLEARANCE_MM * r for r in ring_dirs]) if ring else axis[keep]
        for canvas, ids in self.forbidden:
            if np.isin(lookup(canvas, pts), ids).any():
                return False, t_skin
        return True, t_skin


#: barycentric weights of the triangle's core points whose parallel lines must be free too: every
#: weight >= 0.25, a core about a quarter of the way in from each side (the vertices lie on the exiting
#: root's centreline, so points nearer the hypotenuse are inside the root itself)
CORE_WEIGHTS = np.array([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.25, 0.25, 0.5], [1 / 3, 1 / 3, 1 / 3]])


def safe_approach(obst: Obstacles, incenter: Any, side_sign: float,
                  vertices: Any | None = None) -> dict[str, Any]:
    """The safe outward direction closest to the nominal one; raises when none is safe.  With the
    triangle's ``vertices``, lines parallel to it from the triangle's core (``CORE_WEIGHTS``) must be
    free as well: the whole working channel, not one line, passes the foramen."""
    o = np.asarray(incenter, float)
    core = [] if vertices is None else list(CORE_WEIGHTS @ np.asarray(vertices, float))
    best: tuple[float, float, float, np.ndarray, float] | None = None
    for cran in CRANIAL_DEG:
        for ax in AXIAL_DEG:
            d = direction(side_sign, float(ax), float(cran))
            dev = abs(float(ax) - NOMINAL_AXIAL_DEG) + CRANIAL_COST * float(cran)
            if best is not None and dev >= best[0]:
                continue
            ok, length = obst.clear_length(o, d)
            ok = ok and all(obst.clear_length(p, d, ring=False)[0] for p in core)
            if ok:
                best = (dev, float(ax), float(cran), d, length)
    if best is None:
        raise RuntimeError(f"no safe approach from {o.tolist()}")
    dev, ax, cran, d, length = best
    return {"direction": d, "axial_deg": ax, "cranial_deg": cran, "deviation_deg": dev, "length_mm": length}


def skin_entry(skin_mesh: Any, incenter: Any, d: Any) -> np.ndarray | None:
    """First point where the ray from ``incenter`` along ``d`` leaves the skin mesh."""
    o = np.asarray(incenter, float)
    dd = np.asarray(d, float)
    loc, _r, _t = skin_mesh.ray.intersects_location(o[None], dd[None])
    ts = [(float((p - o) @ dd), p) for p in loc if float((p - o) @ dd) > 0]
    if not ts:
        return None
    return np.asarray(min(ts, key=lambda x: x[0])[1], float)


def add_entries(landmarks: dict[str, Any], approaches: dict[str, dict[str, Any]], skin_mesh: Any) -> None:
    """Set each Kambin landmark's ``approach_direction`` and skin-entry fields, and add the
    ``skin_entry_<level>_<side>`` landmarks."""
    for name, ap in approaches.items():
        lm = landmarks[name]
        o = np.asarray(lm["incenter_mm"], float)
        d = np.asarray(ap["direction"], float)
        p = skin_entry(skin_mesh, o, d)
        if p is None:
            raise RuntimeError(f"{name}: the approach never leaves the skin")
        depth = float(np.linalg.norm(p - o))
        lm["approach_direction"] = np.round(d, 4).tolist()
        lm["approach_axial_from_coronal_deg"] = ap["axial_deg"]
        lm["approach_cranial_deg"] = ap["cranial_deg"]
        lm["note"] = (f"safe posterolateral approach (searched: nothing solid within {CLEARANCE_MM} mm of the line "
                      f"to the skin), {ap['axial_deg']:.1f} deg from the coronal plane, {ap['cranial_deg']:.1f} deg "
                      "cranial; the direction points away from the disc, towards the skin")
        if isinstance(lm.get("derived"), dict):
            lm["derived"]["approach"] = ("searched on the phantom's label volumes (phantom_approach.safe_approach: "
                                         "bone incl. the ilium, roots, sac, vessels, out to the skin) from the "
                                         "derived incentre")
        lm["skin_entry_mm"] = np.round(p, 2).tolist()
        lm["skin_depth_mm"] = round(depth, 1)
        lm["skin_entry_from_midline_mm"] = round(abs(float(p[0])), 1)
        landmarks[f"skin_entry_{lm['level']}_{lm['side']}"] = {
            "level": lm["level"], "side": lm["side"], "kambin": name,
            "point_mm": np.round(p, 2).tolist(),
            "target_mm": lm["incenter_mm"],
            "direction": np.round(-d, 4).tolist(),
            "depth_mm": round(depth, 1),
            "from_midline_mm": round(abs(float(p[0])), 1),
            "axial_angle_from_coronal_deg": ap["axial_deg"],
            "craniocaudal_deg": ap["cranial_deg"],
            "note": "where the safe straight line through the Kambin incentre meets the skin; direction = needle "
                    "direction (skin to target); craniocaudal_deg > 0: entry cranial to the target",
        }
