"""PTED planning helpers: distance queries on the planning context, and the fragment as the forceps
see it from the docked scope (pieces, grasp points, how much of the fragment is within reach).

The pieces are :func:`vr_trainer.procedures.pted_fragment.split_fragment`'s, as the simulation
splits the fragment, so a grasp planned here takes the piece the simulation removes. The forceps'
reach is the simulation's (``procedures/pted_model.py``: angle off the channel's line and length
past the scope tip), less a little spare. Patient frame (RAS), millimetres.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from vr_trainer.procedures import pted_model
from vr_trainer.procedures.reach import PlanningContext
from vr_trainer.sim.instruments import CATALOGUE

# the forceps' reach as the simulation allows it (procedures/pted_model.py), less a little spare
FORCEPS_ANGLE_DEG = pted_model.FORCEPS_MAX_ANGLE_DEG - 2.0
FORCEPS_EXTENSION_MM = pted_model.FORCEPS_MAX_EXTENSION_MM - 1.0
SHAFT_MM = 80.0  # how much of an instrument's shaft the simulation measures back from its tip
PLAN_EXACT_MM = 8.0  # clearances beyond this decide nothing


def unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return np.asarray(v, float) / n if n > 1e-12 else np.asarray(v, float)


@dataclass(frozen=True)
class GraspPoint:
    piece: int
    point_mm: np.ndarray  # where the forceps tip closes
    centroid_mm: np.ndarray
    volume_mm3: float
    clearance_mm: float  # from the risk structures, less the forceps radius and margins


def distances(ctx: PlanningContext, points_mm: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """Signed distances (mm) from ``points_mm`` (n, 3) to the named structures only (the context's
    surface indexes, shared; exact within ``PLAN_EXACT_MM`` of a surface, a lower bound beyond)."""
    from vr_trainer.sim.proximity import ProximityField, SurfaceIndex

    names = [n for n in names if n in ctx.structures]
    if not names:
        return {}
    cache = vars(ctx).setdefault("_pted_cache", {})
    key = ("field", tuple(sorted(names)))
    if key not in cache:
        built = ctx._field.surfaces if ctx._field is not None else {}
        surf = cache.setdefault("surfaces", {})
        for n in key[1]:
            if n not in surf:
                st = ctx.structures[n]
                surf[n] = built.get(n) or SurfaceIndex.from_mesh(n, st.vertices_mm, st.faces, 6.0)
        cache[key] = ProximityField({n: surf[n] for n in key[1]}, k=12, exact_mm=PLAN_EXACT_MM, memo_size=0)
    return cast(dict[str, np.ndarray], cache[key].signed_distances(np.asarray(points_mm, float).reshape(-1, 3),
                                                                   memo=False))


def piece_points(ctx: PlanningContext, fragment: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Per fragment piece 20 points (n, 20, 3) and the pieces' volume shares (n,) (empty without a fragment)."""
    pieces = fragment_pieces(ctx, fragment)
    if not pieces:
        return np.zeros((0, 20, 3)), np.zeros(0)
    vol = np.array([max(float(p.volume_mm3), 1e-6) for p in pieces])
    pts = []
    for p in pieces:  # the centroid and 19 of the vertices: where the jaws may close
        v = np.asarray(p.vertices_mm, float)
        idx = np.linspace(0, len(v) - 1, 19).astype(int)
        pts.append(np.vstack([np.asarray(p.centroid_mm, float)[None], v[idx]]))
    return np.array(pts), vol / vol.sum()


def reach_fraction(frag: tuple[np.ndarray, np.ndarray], tip: np.ndarray, d: np.ndarray) -> float:
    """The share of the fragment's volume whose pieces have a point (centroid or vertex) within the
    forceps' angle and extension (less 2 degrees and 2 mm) from a scope tip at ``tip`` looking
    along ``-d``."""
    pts, share = frag
    if not len(pts):
        return 0.0
    rel = pts - tip
    ext = np.linalg.norm(rel, axis=2)
    ang = np.degrees(np.arccos(np.clip((rel @ -d) / np.maximum(ext, 1e-9), -1, 1)))
    ok = ((ang <= FORCEPS_ANGLE_DEG - 2.0) & (ext <= FORCEPS_EXTENSION_MM - 2.0)).any(axis=1)
    return float(share[ok].sum())


def reaching_dock(frag: tuple[np.ndarray, np.ndarray], k: np.ndarray, d: np.ndarray, s_min: float,
                   s_max: float) -> float:
    """The dock between ``s_min`` (the nearest safe one) and ``s_max`` from which the forceps reach
    the most of the fragment; the nearest of those (farther out the cannula keeps its margins too:
    the clearance out to the skin was checked from ``s_min``)."""
    if not len(frag[0]) or s_max <= s_min:
        return s_min
    cand = np.arange(s_min, s_max + 1e-9, 0.5)
    reach = np.array([reach_fraction(frag, k + c * d, d) for c in cand])
    return float(cand[int(np.argmax(reach >= reach.max() - 1e-9))])


def radius_mm(kind: str, default_mm: float) -> float:
    """An instrument kind's shaft radius (mm) from the catalogue."""
    spec = CATALOGUE.get(kind)
    return spec.shaft_diameter_mm / 2.0 if spec is not None else default_mm


def fragment_pieces(ctx: PlanningContext, fragment: str | None) -> list[Any]:
    """The fragment's pieces as the simulation splits them (``split_fragment``); [] without a fragment."""
    if fragment is None or fragment not in ctx.structures:
        return []
    from vr_trainer.procedures.pted_fragment import split_fragment

    cache = vars(ctx).setdefault("_pted_cache", {})
    if "pieces" not in cache:
        st = ctx.structures[fragment]
        cache["pieces"] = list(split_fragment(st.vertices_mm, st.faces))
    return list(cache["pieces"])


def grasp_points(ctx: PlanningContext, scope_tip_mm: np.ndarray, direction: np.ndarray, pieces: list[Any]
                 ) -> list[GraspPoint]:
    """Where the forceps closes on each piece, nearest pieces first: a point inside the piece's
    reach (its vertices and centroid, pulled toward the scope tip) within the forceps' angle and
    extension from the scope tip ``scope_tip_mm``, clearest of the risk structures along the
    forceps' shaft. ``direction``: the channel's outward unit vector. Pieces out of reach are left."""
    risk = ctx.risk_margins()
    r = radius_mm("grasping_forceps", 1.25)
    tip = np.asarray(scope_tip_mm, float)
    axis = -unit(np.asarray(direction, float))  # the scope looks along the advance
    out: list[GraspPoint] = []
    for i, p in enumerate(pieces):
        v = np.asarray(p.vertices_mm, float)
        c = np.asarray(p.centroid_mm, float)
        cand = np.vstack([c[None], v[:: max(1, len(v) // 60)], 0.5 * (v[:: max(1, len(v) // 60)] + c)])
        # pull each candidate up to 1.5 mm toward the scope tip (the jaws close on the near face)
        to_tip = unit_rows(tip - cand)
        cand = np.vstack([cand, cand + 1.5 * to_tip])
        rel = cand - tip
        ext = np.linalg.norm(rel, axis=1)
        ang = np.degrees(np.arccos(np.clip((rel @ axis) / np.maximum(ext, 1e-9), -1, 1)))
        ok = (ext <= FORCEPS_EXTENSION_MM) & (ang <= FORCEPS_ANGLE_DEG) & (ext >= 1.0)
        if not ok.any():
            continue
        cand = cand[ok]
        # along the forceps' shaft: from its tip back through the scope tip, SHAFT_MM long (the
        # simulation measures the shaft that far back along the forceps' own axis)
        u = np.linspace(0.0, 1.0, 25)
        back = unit_rows(tip - cand)
        seg = cand[:, None, :] + (u[None, :, None] * SHAFT_MM) * back[:, None, :]
        clear = np.full(len(cand), np.inf)
        if risk:
            dd = distances(ctx, seg.reshape(-1, 3), list(risk))
            for n, m in risk.items():
                clear = np.minimum(clear, dd[n].reshape(seg.shape[:2]).min(axis=1) - r - m)
        j = int(np.argmax(np.minimum(clear, 3.0) - 0.05 * np.linalg.norm(cand - c, axis=1) - 0.02 * ang[ok]))
        out.append(GraspPoint(i, cand[j], c, float(getattr(p, "volume_mm3", 0.0)), float(clear[j])))
    out.sort(key=lambda g: float(np.linalg.norm(g.point_mm - tip)))
    return out


def unit_rows(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(n, 1e-12)
