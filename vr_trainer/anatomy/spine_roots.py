"""Nerve-root courses and Kambin's triangle from vertebra frames (see :mod:`.spine` for the method)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .spine_geometry import BoneField, VertebraFrame, unit
from .spine_tubes import catmull_rom, keep_clear, polyline_distance


def exiting_waypoints(u: VertebraFrame, lo: VertebraFrame, side: str, sign: float, radius_mm: float,
                      sac_half_width_mm: float, bone: BoneField | None = None, clearance_mm: float = 0.8
                      ) -> np.ndarray | None:
    """Waypoints (k, 3) mm of U's exiting root: sac -> medial of U's pedicle -> under it -> out of the
    foramen -> beside L's body. None when U's pedicle on that side was not found.

    Beside L's body means lateral of its endplate width (:attr:`VertebraFrame.endplate_half_width_mm`) at
    its mid-height; where bone lies there (the sacral ala beside the S1 body), the waypoint moves forward
    (along L's ``a``) until ``bone`` is clear of the root: the L5 root crosses the ala on its anterosuperior
    surface and turns down in front of it (Tamagawa S, Okuda T, Nojiri H, et al., "Anatomy of the L5 nerve
    root", J Spine Res 2022;13(5):733-739, cadaveric dissection: the roots change direction at the most
    anterior surface of the ala; "Anatomy of L4 to S3 nerve roots", J Orthop Surg (Hong Kong)
    2010;18(3):352-355, 52 hemipelves: the L4-S3 roots lie close to the anterior surface of the ala), not
    over its top behind."""
    ped = u.pedicles.get(side)
    if ped is None:
        return None
    rc = radius_mm + 1.0
    front = u.front_a_mm
    w = [
        (sign * 0.5 * sac_half_width_mm, 0.2 * front, ped.superior_s_mm),
        (sign * (ped.medial_mm - rc), front - rc, ped.inferior_s_mm),
        (sign * ped.lateral_mid_mm, front - rc, ped.inferior_s_mm - rc - 0.5),
        (sign * (ped.lateral_mm + rc), front + 1.0, ped.inferior_s_mm - rc - 3.0),
    ]
    pts = [u.world(p) for p in w]
    # beside L's body at its mid-height, then on along the same course
    half_w = min(lo.body_half_width_mm, lo.endplate_half_width_mm)
    side_of_body = lo.local(lo.centroid_mm) + np.array([sign * (half_w + rc + 4.0), 0.0, 0.0])
    p4 = lo.world(side_of_body)
    if bone is not None:
        need = radius_mm + clearance_mm + 1.0
        for _ in range(80):  # 1 mm steps, at most 80 mm forward
            if float(bone.distance(p4[None])[0]) >= need:
                break
            p4 = p4 + lo.a
    pts.append(p4)
    pts.append(p4 + 20.0 * unit(p4 - pts[-2]))
    return np.array(pts)


def traversing_waypoints(u: VertebraFrame, lo: VertebraFrame, side: str, sign: float, radius_mm: float,
                         sac_half_width_mm: float) -> np.ndarray:
    """Waypoints (k, 3) mm of L's traversing root: from the sac above the U-L disc down the lateral
    recess, medial to L's pedicle (or, without one, beside the canal) to below its middle."""
    rc = radius_mm + 1.0
    top_u = u.local(u.centroid_mm)[2] - u.body_half_height_mm + 3.0
    start = u.world((sign * 0.5 * sac_half_width_mm, 0.25 * u.front_a_mm, top_u))
    ped = lo.pedicles.get(side)
    if ped is not None:
        medial = ped.medial_mm - rc
        s_top, s_mid = ped.superior_s_mm, 0.5 * (ped.superior_s_mm + ped.inferior_s_mm)
    else:
        medial = 0.8 * lo.canal_half_width_mm
        s_top = lo.local(lo.centroid_mm)[2] + lo.body_half_height_mm
        s_mid = s_top - 12.0
    front = lo.front_a_mm
    w = [(sign * medial, front - rc, s_top), (sign * medial, front - rc - 0.5, s_mid),
         (sign * medial, front - rc - 1.0, s_mid - 8.0)]
    return np.array([start] + [lo.world(p) for p in w])


def root_course(waypoints: np.ndarray, radius_mm: float, bone: BoneField, clearance_mm: float) -> np.ndarray:
    """A smooth centreline through the waypoints, every sample ``radius + clearance`` clear of bone."""
    path = catmull_rom(waypoints, 1.0)
    return keep_clear(path, np.full(len(path), radius_mm), bone, clearance_mm)


def _plane_crossing(path: np.ndarray, point: np.ndarray, normal: np.ndarray, start: int = 0
                    ) -> tuple[np.ndarray, int] | None:
    d = (path - point) @ normal
    for i in range(start, len(path) - 1):
        if d[i] == 0 or d[i] * d[i + 1] < 0:
            t = d[i] / (d[i] - d[i + 1]) if d[i] != d[i + 1] else 0.0
            return path[i] + t * (path[i + 1] - path[i]), i
    return None


def kambin_triangle(u: VertebraFrame, lo: VertebraFrame, side: str, sign: float, exiting: np.ndarray,
                    endplate_mm: np.ndarray, obstacles: list[tuple[np.ndarray, float]], bone: BoneField
                    ) -> dict[str, Any] | None:
    """The landmark (same fields as the phantom's): apex where U's exiting root crosses the sagittal
    plane of L's pedicle, base on L's superior endplate. ``obstacles``: (centreline, radius) of the
    roots and the sac, kept clear by the approach direction."""
    ped = lo.pedicles.get(side)
    lat = ped.lateral_mid_mm if ped is not None else lo.canal_half_width_mm + 4.0
    plane_pt = lo.world((sign * lat, 0.0, 0.0))
    hit = _plane_crossing(exiting, plane_pt, lo.r)
    base = _plane_crossing(exiting, endplate_mm, lo.s, hit[1] if hit else 0)
    if hit is None or base is None:
        return None
    c, b = hit[0], base[0]
    a = c - ((c - endplate_mm) @ lo.s) * lo.s
    la, lb, lc = np.linalg.norm(b - c), np.linalg.norm(c - a), np.linalg.norm(a - b)
    per = la + lb + lc
    if per < 1e-6 or lb < 1.0:
        return None
    incenter = (la * a + lb * b + lc * c) / per
    inradius = float(np.linalg.norm(np.cross(b - a, c - a))) / per
    approach = approach_direction(incenter, lo, sign, obstacles, bone)
    level = f"{u.name}_{lo.name}"
    return {
        "level": level, "side": side,
        "vertices_mm": [np.round(p, 2).tolist() for p in (a, b, c)],
        "vertex_roles": [f"base_medial ({lo.name} SAP on {lo.name} endplate)", "base_lateral (root on endplate)",
                         f"apex (root over {lo.name} SAP)"],
        "centroid_mm": np.round((a + b + c) / 3, 2).tolist(),
        "incenter_mm": np.round(incenter, 2).tolist(),
        "inradius_mm": round(inradius, 2),
        "approach_direction": np.round(approach, 4).tolist(),
        "exiting_root": f"nerve_root_{u.name}_exiting_{side}",
        "traversing_root": f"nerve_root_{lo.name}_traversing_{side}",
        "disc": f"disc_{level}",
        "note": "posterolateral approach about 30 deg from the coronal plane, pointing away from the disc",
        "derived": {"method": f"exiting {u.name} root x sagittal plane of the {lo.name} pedicle (apex), "
                              f"{lo.name} superior endplate (base); approach turned for clearance",
                    "from": [u.name, lo.name, f"nerve_root_{u.name}_exiting_{side}"]},
    }


def approach_direction(target: np.ndarray, lo: VertebraFrame, sign: float,
                       obstacles: list[tuple[np.ndarray, float]], bone: BoneField,
                       coronal_deg: float = 30.0, search_deg: float = 25.0) -> np.ndarray:
    """Unit direction from ``target`` outward: nominal posterolateral, turned to the clearest nearby."""
    th = np.radians(coronal_deg)
    nominal = unit(sign * np.cos(th) * lo.r - np.sin(th) * lo.a)
    cands = [nominal]
    for ang in np.arange(5.0, search_deg + 0.1, 5.0):
        for phi in np.arange(0.0, 360.0, 30.0):
            e1 = unit(np.cross(nominal, lo.s))
            e2 = np.cross(nominal, e1)
            t, p = np.radians(ang), np.radians(phi)
            cands.append(unit(np.cos(t) * nominal + np.sin(t) * (np.cos(p) * e1 + np.sin(p) * e2)))
    s = np.arange(4.0, 100.0, 1.0)
    best, best_score = nominal, -np.inf
    for d in cands:
        pts = target + s[:, None] * d
        clear = float(bone.distance(pts).min()) - 1.5
        for path, radius in obstacles:
            clear = min(clear, float(polyline_distance(pts, path)[0].min()) - radius - 3.5)
        score = min(clear, 3.0) - 0.02 * (np.degrees(np.arccos(np.clip(d @ nominal, -1, 1))))
        if score > best_score:
            best, best_score = d, score
    return best


def skin_entry(landmark: dict[str, Any], skins: list[Any], midline_mm: np.ndarray, right: np.ndarray) -> None:
    """Add ``skin_entry_mm`` (where the approach from the incentre leaves the body surface), its depth to
    the target and its distance from the midline (mm), when a skin surface (trimesh) is known."""
    o = np.asarray(landmark["incenter_mm"], float)
    d = unit(np.asarray(landmark["approach_direction"], float))
    best: np.ndarray | None = None
    for m in skins:
        loc, _ray, _tri = m.ray.intersects_location(o[None], d[None])
        for p in loc:
            t = float((p - o) @ d)
            if t > 0 and (best is None or t < float((best - o) @ d)):
                best = np.asarray(p, float)
    if best is None:
        return
    landmark["skin_entry_mm"] = np.round(best, 2).tolist()
    landmark["skin_depth_mm"] = round(float(np.linalg.norm(best - o)), 1)
    landmark["skin_entry_from_midline_mm"] = round(abs(float((best - midline_mm) @ right)), 1)
