"""PTED trajectory planning: the working channel's line from the bundle's own landmarks and geometry.

An expert plans one straight line ``L`` through Kambin's triangle that the needle, the guidewire,
the dilators, the working cannula and the endoscope all follow (exchanges keep the trajectory).
Everything here is computed from the scenario and its bundle, never from coordinates of a
shipped phantom, so the same planner works on another patient's bundle:

* **target** ``K``: the Kambin landmark's incentre (the ``needle_to_kambin`` step's target);
* **frame**: posterior = from the level's disc centroid toward the dural sac, cranial = the
  sac's long axis, lateral = the rest (pointing to the operated side); the midline is the
  sagittal plane through the disc centroid;
* **line**: directions ``d(a, c) = cos c (cos a lateral + sin a posterior) + sin c cranial``
  (``a`` the axial angle from the coronal plane, ``c`` the cranio-caudal tilt) on a grid; each
  straight path from ``K`` out to the skin is scored by its clearance: the needle's shaft from
  ``K`` and the working cannula's shaft from the docking point must keep the risk structures'
  margins and stay out of bone (facets, pedicles, the iliac crest) and organs; then a preference
  for the Kambin landmark's approach direction, a skin entry ``ENTRY_LATERAL_MM`` from the
  midline and a usual axial angle. When the landmark's own approach (or its ``skin_entry_mm``)
  keeps every margin with the skin entry in that band, the expert takes it as planned;
* **skin entry**: where ``L`` leaves the skin surface (tissue ``skin``), else where it leaves
  every structure;
* **docking point**: the cannula's tip, the point of ``L`` nearest ``K`` from which the cannula's
  shaft, out to the skin, keeps the risk margins (plus ``DOCK_SPARE_MM``): the foraminal dock;
* **guidewire depth**: a few millimetres past ``K`` along ``L``, inside the disc when the
  guidewire step asks for it, keeping the margins;
* **fragment**: the line and the dock are also scored by how much of the fragment the forceps
  reach from the dock (:mod:`vr_trainer.procedures.pted_plan_fragment`: pieces, grasp points).

Units: millimetres, patient frame (RAS), unit vectors; ``s`` is the distance from ``K`` along
``L``'s outward direction (negative: past ``K``, deeper).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from vr_trainer.procedures.pted_plan_fragment import (distances, piece_points, radius_mm, reach_fraction,
                                                      reaching_dock, unit)
from vr_trainer.procedures.reach import OBSTACLE_TISSUES, PlanningContext
from vr_trainer.scenario.conditions import Call, Compare, ConditionError, nodes, parse

ENTRY_LATERAL_MM = (90.0, 140.0)  # the usual skin entry from the midline at L4-L5 (10-14 cm), tolerated band
AXIAL_USUAL_DEG = (15.0, 40.0)  # usual angle of the line from the coronal plane
DOCK_SPARE_MM = 0.4  # the docked cannula keeps this much beyond the risk margins
DOCK_MAX_MM = 14.0  # the dock is at most this far out from K
NEEDLE_SPARE_MM = 0.8
REACH_WEIGHT = 8.0  # score per share of the fragment the forceps reach from the dock (a clear line first)
BODY_MAX_MM = 220.0  # the line is followed out to here looking for the skin


@dataclass(frozen=True)
class PtedFrame:
    """The patient's anatomical axes at the level (unit RAS vectors) and the midline origin."""

    lateral: np.ndarray  # toward the operated side
    posterior: np.ndarray
    cranial: np.ndarray
    origin_mm: np.ndarray  # the level's disc centroid (on the midline)

    def direction(self, axial_deg: float | np.ndarray, cc_deg: float | np.ndarray) -> np.ndarray:
        a, c = np.radians(axial_deg), np.radians(cc_deg)
        a, c = np.broadcast_arrays(np.asarray(a, float), np.asarray(c, float))
        d = (np.cos(c)[..., None] * (np.cos(a)[..., None] * self.lateral + np.sin(a)[..., None] * self.posterior)
             + np.sin(c)[..., None] * self.cranial)
        return d / np.linalg.norm(d, axis=-1, keepdims=True)

    def lateral_mm(self, p: np.ndarray) -> float:
        """Distance of ``p`` from the midline plane toward the operated side (mm)."""
        return float((np.asarray(p, float) - self.origin_mm) @ self.lateral)

    def angles_deg(self, d: np.ndarray) -> tuple[float, float]:
        """(axial from the coronal plane, cranio-caudal) of the outward direction ``d``."""
        d = unit(d)
        c = float(np.degrees(np.arcsin(np.clip(d @ self.cranial, -1, 1))))
        a = float(np.degrees(np.arctan2(d @ self.posterior, d @ self.lateral)))
        return a, c


@dataclass(frozen=True)
class PtedStepIds:
    """Which scenario step, instrument and target does what (read from the scenario)."""

    kambin_target: str
    fragment_target: str | None
    fragment_structure: str | None
    disc_structure: str | None
    guidewire_inside: str | None  # the structure the guidewire step wants the tip inside
    dock_within_mm: float  # the dock steps' distance(kambin) bound
    steps: tuple[tuple[str, str | None], ...]  # (step id, its instrument id) in order


@dataclass(frozen=True)
class Trajectory:
    """The planned line and its points (patient RAS mm)."""

    target_mm: np.ndarray  # the aim point in Kambin's triangle (K in the formulas)
    direction: np.ndarray  # outward unit vector
    skin_entry_mm: np.ndarray
    skin_s_mm: float
    dock_s_mm: float
    guidewire_s_mm: float  # negative: past K
    needle_clearance_mm: float
    cannula_clearance_mm: float
    axial_deg: float
    craniocaudal_deg: float
    entry_lateral_mm: float
    source: str  # what chose it
    kambin_mm: np.ndarray | None = None  # the Kambin incentre (target_mm is the aim point beside it)
    fragment_reach: float = 0.0  # share of the fragment's volume within the forceps' reach from the dock

    def point(self, s_mm: float | np.ndarray) -> np.ndarray:
        s = np.asarray(s_mm, float)
        return self.target_mm + s[..., None] * self.direction


def step_ids(ctx: PlanningContext) -> PtedStepIds:
    """Read the PTED roles from the scenario: the needle step's reached() target is Kambin's,
    the removal step's removed() target is the fragment, and so on."""
    sc = ctx.scenario
    kambin = fragment = inside = None
    dock = DOCK_MAX_MM
    for st in sc.steps:
        try:
            ast = parse(st.complete_when)
        except ConditionError:
            continue
        for n in nodes(ast):
            if isinstance(n, Call) and n.fn == "reached" and kambin is None:
                kambin = n.arg
            elif isinstance(n, Compare) and n.value.fn == "removed" and fragment is None:
                fragment = n.value.arg
            elif isinstance(n, Call) and n.fn == "inside" and st.id == "guidewire":
                inside = n.arg
            elif (isinstance(n, Compare) and n.value.fn == "distance" and n.op in ("<", "<=")
                  and st.id in ("dilate", "dock_cannula", "endoscope")):
                dock = min(dock, float(n.number))
    if kambin is None:
        kambin = next((t for t, tp in ctx.targets.items() if tp.landmark and "incenter_mm" in tp.landmark),
                      next(iter(ctx.targets)))
    frag_struct = None
    if fragment is not None:
        tref = next((t for t in sc.targets if t.id == fragment), None)
        frag_struct = tref.structure if tref is not None and tref.structure else fragment
    k = ctx.targets[kambin].point_mm
    discs = [n for n, s in ctx.structures.items() if s.tissue == "disc"]
    disc = min(discs, key=lambda n: float(np.linalg.norm(ctx.structures[n].vertices_mm.mean(0) - k))) if discs else None
    if inside is not None:
        inside = next((r.structure for r in sc.risk_structures if r.id == inside), inside)
    steps = tuple((st.id, st.instruments[0] if st.instruments else None) for st in sc.steps)
    return PtedStepIds(kambin, fragment, frag_struct, disc, inside, dock, steps)


def pted_frame(ctx: PlanningContext, ids: PtedStepIds) -> PtedFrame:
    """The anatomical axes at the level, from the disc and the dural sac (``ctx.up`` and RAS S as
    fallbacks)."""
    k = ctx.targets[ids.kambin_target].point_mm
    disc = ctx.structures[ids.disc_structure].vertices_mm.mean(0) if ids.disc_structure else None
    duras = [s for s in ctx.structures.values() if s.tissue == "dura"]
    cranial = np.array([0.0, 0.0, 1.0])
    posterior = np.asarray(ctx.up, float)
    if duras:
        v = duras[0].vertices_mm
        c = v.mean(0)
        _, _, vt = np.linalg.svd(v - c, full_matrices=False)
        cranial = vt[0] if vt[0] @ np.array([0.0, 0.0, 1.0]) >= 0 else -vt[0]
        if disc is not None:
            # the sac's axis point nearest the disc, minus the disc: backwards
            q = c + ((disc - c) @ cranial) * cranial
            posterior = q - disc
    origin = disc if disc is not None else k
    posterior = unit(posterior - (posterior @ cranial) * cranial)
    lat = k - origin
    lat = lat - (lat @ cranial) * cranial - (lat @ posterior) * posterior
    if np.linalg.norm(lat) < 1e-6:
        lat = np.cross(cranial, posterior)
        side = ctx.scenario.anatomy.side
        if side == "left":  # RAS: left is -R
            lat = -lat if lat[0] > 0 else lat
    return PtedFrame(unit(lat), posterior, unit(cranial), np.asarray(origin, float))


class _Obstacles:
    """Names and margins of what the channel must keep clear of."""

    def __init__(self, ctx: PlanningContext, ids: PtedStepIds) -> None:
        risk = ctx.risk_margins()
        self.risk = list(risk)
        self.margin = np.array([risk[n] for n in self.risk])
        frag = {ids.fragment_structure, ids.disc_structure}
        self.hard = [n for n, s in ctx.structures.items()
                     if n not in risk and n not in frag and s.tissue in OBSTACLE_TISSUES]
        self.skin = [n for n, s in ctx.structures.items() if s.tissue == "skin"]


S_PATH_MM = np.concatenate([np.arange(0.0, 20.0, 0.75), np.arange(20.0, 60.0, 2.0), np.arange(60.0, BODY_MAX_MM, 5.0)])


def _clearances(ctx: PlanningContext, ob: _Obstacles, k: np.ndarray, dirs: np.ndarray, r_needle: float,
                r_cannula: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per direction and path sample: (needle clearance from risk - margins, cannula clearance
    from risk - margins, clearance from hard obstacles less the needle radius); mm."""
    pts = k + dirs[:, None, :] * S_PATH_MM[None, :, None]
    shape = pts.shape[:2]
    d = distances(ctx, pts.reshape(-1, 3), ob.risk + ob.hard)
    risk = np.full(shape, np.inf)
    for j, n in enumerate(ob.risk):
        risk = np.minimum(risk, d[n].reshape(shape) - ob.margin[j])
    hard = np.full(shape, np.inf)
    for n in ob.hard:
        hard = np.minimum(hard, d[n].reshape(shape))
    return risk - r_needle, risk - r_cannula, hard - r_needle


def _skin_s(ctx: PlanningContext, ob: _Obstacles, k: np.ndarray, d: np.ndarray, fr: PtedFrame | None = None
            ) -> float:
    """How far out along the line the skin is crossed (the last crossing); without a skin in the
    bundle, where a usual entry would be (see below)."""
    s = np.arange(0.0, BODY_MAX_MM, 1.0)
    pts = k + s[:, None] * d
    if ob.skin:
        dd = distances(ctx, pts, ob.skin)
        inside = np.min(np.stack([dd[n] for n in ob.skin]), axis=0) <= 0.0
        if inside.any():
            return float(s[np.nonzero(inside)[0].max()] + 1.0)
    # no skin in the bundle: the usual entry, ENTRY_LATERAL_MM's middle from the midline, and
    # at least 30 mm past the last structure the line comes near
    dd = distances(ctx, pts, list(ctx.structures))
    near = np.min(np.stack(list(dd.values())), axis=0) < 3.0
    last = float(s[np.nonzero(near)[0].max()] + 30.0) if near.any() else 60.0
    if fr is None:
        return last
    lat0 = fr.lateral_mm(k)
    per = float(d @ fr.lateral)
    usual = (float(np.mean(ENTRY_LATERAL_MM)) - lat0) / per if per > 0.1 else BODY_MAX_MM
    return float(np.clip(max(usual, last), last, BODY_MAX_MM))


def _skin_s_batch(ctx: PlanningContext, ob: _Obstacles, k: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """(k,) the last skin crossing of each direction's line (3 mm steps), for the search."""
    s = np.arange(20.0, BODY_MAX_MM, 3.0)
    pts = k + dirs[:, None, :] * s[None, :, None]
    dd = distances(ctx, pts.reshape(-1, 3), ob.skin)
    inside = (np.min(np.stack([dd[n] for n in ob.skin]), axis=0) <= 0.0).reshape(len(dirs), len(s))
    last = np.where(inside.any(axis=1), len(s) - 1 - np.argmax(inside[:, ::-1], axis=1), 0)
    return s[last] + 1.5


def _dock_s(cannula_clear: np.ndarray, hard: np.ndarray, limit_mm: float) -> float | None:
    """The smallest s from which the cannula's shaft out to the skin keeps the margins (spare
    ``DOCK_SPARE_MM``) and crosses no bone beyond 8 mm past the dock."""
    ok = cannula_clear >= DOCK_SPARE_MM
    suffix = np.flip(np.minimum.accumulate(np.flip(ok.astype(int))))
    for j, s in enumerate(S_PATH_MM):
        if s > limit_mm:
            return None
        if suffix[j] and (hard[S_PATH_MM >= s + 8.0] > -0.5).all():
            return float(s)
    return None


def plan_trajectory(ctx: PlanningContext, ids: PtedStepIds | None = None) -> Trajectory:
    """The expert's line through Kambin's triangle (see the module docstring); computed once per
    context (it depends on the anatomy and the scenario, not on skill or seed)."""
    cache = vars(ctx).setdefault("_pted_cache", {})
    if "trajectory" not in cache:
        cache["trajectory"] = _plan_trajectory(ctx, ids or step_ids(ctx))
    return cast(Trajectory, cache["trajectory"])


def _plan_trajectory(ctx: PlanningContext, ids: PtedStepIds) -> Trajectory:
    fr = pted_frame(ctx, ids)
    tgt = ctx.targets[ids.kambin_target]
    k = np.asarray(tgt.point_mm, float)
    ob = _Obstacles(ctx, ids)
    r_needle = radius_mm("spinal_needle", 0.64)
    r_cannula = max(radius_mm("working_cannula", 3.75), radius_mm("dilator", 3.15))
    aa, cc = np.meshgrid(np.arange(4.0, 62.0, 6.0), np.arange(-36.0, 37.0, 6.0), indexing="ij")
    dirs = fr.direction(aa.ravel(), cc.ravel())
    prefer: list[tuple[np.ndarray, str]] = []
    lm = tgt.landmark or {}
    if lm.get("approach_direction") is not None:
        prefer.append((unit(np.asarray(lm["approach_direction"], float)), "kambin landmark approach_direction"))
    if lm.get("skin_entry_mm") is not None:  # the bundle's derived skin entry for this triangle
        prefer.append((unit(np.asarray(lm["skin_entry_mm"], float) - k), "kambin landmark skin_entry_mm"))
    tol = tgt.tolerance_mm
    kambin = k
    k = aim_point(ctx, ob, tgt.point_mm, tgt.landmark, tol, r_needle)
    frag = piece_points(ctx, ids.fragment_structure)
    best = _best(ctx, ob, fr, k, dirs, prefer, r_needle, r_cannula, ids.dock_within_mm, tol, frag)
    # refine about the best
    a0, c0 = fr.angles_deg(best[0])
    aa, cc = np.meshgrid(a0 + np.arange(-6.0, 6.1, 1.5), c0 + np.arange(-6.0, 6.1, 1.5), indexing="ij")
    fine = np.vstack([best[0][None], fr.direction(aa.ravel(), cc.ravel())])
    if best[2] == "search":
        best2 = _best(ctx, ob, fr, k, fine, [], r_needle, r_cannula, ids.dock_within_mm, tol, frag)
        if best2[1] > best[1]:
            best = best2
    d, _, src = best
    nclear, cclear, hard = (x[0] for x in _clearances(ctx, ob, k, d[None], r_needle, r_cannula))
    dock = _dock_s(cclear, hard, ids.dock_within_mm - 0.6)
    dock = float(min(ids.dock_within_mm - 0.6, 6.0)) if dock is None else \
        reaching_dock(frag, k, d, dock, ids.dock_within_mm - 0.6)
    skin_s = _skin_s(ctx, ob, k, d, fr)
    gw = guidewire_s(ctx, ob, ids, k, d)
    a, c = fr.angles_deg(d)
    entry = k + skin_s * d
    return Trajectory(k, d, entry, skin_s, dock, gw, float(nclear[S_PATH_MM > 0.0].min()),
                      float(cclear[S_PATH_MM >= dock].min()), a, c, fr.lateral_mm(entry), src, kambin,
                      reach_fraction(frag, k + dock * d, d))


def _best(ctx: PlanningContext, ob: _Obstacles, fr: PtedFrame, k: np.ndarray, dirs: np.ndarray,
          prefer: list[tuple[np.ndarray, str]], r_needle: float, r_cannula: float, dock_within: float,
          tol: float, frag: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, float, str]:
    n_grid = len(dirs)
    dirs = np.vstack([dirs] + [p[None] for p, _ in prefer])
    nclear, cclear, hard = _clearances(ctx, ob, k, dirs, r_needle, r_cannula)
    skin = _skin_s_batch(ctx, ob, k, dirs) if ob.skin else None
    beyond = S_PATH_MM >= tol + 2.0
    score = np.full(len(dirs), -np.inf)
    for i, d in enumerate(dirs):
        needle_ok = float(nclear[i].min()) - NEEDLE_SPARE_MM
        bone_ok = float(hard[i][beyond].min())
        dock = _dock_s(cclear[i], hard[i], dock_within - 0.6)
        if dock is None:
            continue
        dock = reaching_dock(frag, k, d, dock, dock_within - 0.6)
        can = float(cclear[i][S_PATH_MM >= dock].min())
        a, c = fr.angles_deg(d)
        lo, hi = ENTRY_LATERAL_MM
        lat = fr.lateral_mm(k + skin[i] * d) if skin is not None else 0.5 * (lo + hi)
        s = (4.0 * min(needle_ok, 0.0) + 4.0 * min(bone_ok, 0.0) + min(needle_ok, 3.0) + min(bone_ok, 3.0)
             + min(can, 3.0) - 0.15 * dock - 0.04 * max(lo - lat, lat - hi, 0.0)
             - 0.03 * max(AXIAL_USUAL_DEG[0] - a, a - AXIAL_USUAL_DEG[1], 0.0) - 0.01 * abs(c))
        for p, _ in prefer:
            s += 1.5 * float(d @ p)
        s += REACH_WEIGHT * reach_fraction(frag, k + dock * d, d)  # the forceps reach the fragment from the dock
        score[i] = s
        feasible = (needle_ok >= 0.3 - NEEDLE_SPARE_MM and bone_ok >= 0.0 and can >= DOCK_SPARE_MM
                    and (skin is None or lo <= lat <= hi))
        if i >= n_grid and feasible:  # the bundle's own plan keeps every margin: the expert takes it
            return d, np.inf, prefer[i - n_grid][1]
    i = int(np.argmax(score[:n_grid]))
    return dirs[i], float(score[i]), "search"


def aim_point(ctx: PlanningContext, ob: _Obstacles, incentre: np.ndarray, landmark: Any, tolerance_mm: float,
              r_needle: float) -> np.ndarray:
    """Where in Kambin's triangle the needle aims: the point within ``min(2, 0.6 tolerance)`` mm of the
    incentre, inside the triangle (when the landmark gives its vertices), clearest of the risk
    structures (the safe zone by the superior articular process, away from the exiting root), with
    a small pull toward the incentre."""
    k = np.asarray(incentre, float)
    if not ob.risk:
        return k
    verts = np.asarray(landmark["vertices_mm"], float).reshape(3, 3) if isinstance(landmark, dict) \
        and landmark.get("vertices_mm") is not None else None
    if verts is not None:
        e1 = unit(verts[1] - verts[0])
        e2 = unit(np.cross(np.cross(e1, verts[2] - verts[0]), e1))
    else:
        e1 = unit(np.cross(ctx.up, [0.0, 0.0, 1.0]) if abs(ctx.up[2]) < 0.9 else np.cross(ctx.up, [1.0, 0.0, 0.0]))
        e2 = np.cross(unit(ctx.up), e1)
    r_max = min(2.0, 0.6 * tolerance_mm)
    rr, th = np.meshgrid(np.linspace(0.0, r_max, 5)[1:], np.radians(np.arange(0.0, 360.0, 30.0)), indexing="ij")
    cand = np.vstack([k[None], k + (rr.ravel() * np.cos(th.ravel()))[:, None] * e1
                      + (rr.ravel() * np.sin(th.ravel()))[:, None] * e2])
    if verts is not None:
        inside = np.array([_in_triangle(verts, q) for q in cand])
        cand = cand[inside] if inside.any() else cand[:1]
    d = distances(ctx, cand, ob.risk)
    clear = np.min(np.stack([d[n] - m for n, m in zip(ob.risk, ob.margin)]), axis=0) - r_needle
    off = np.linalg.norm(cand - k, axis=1)
    return np.asarray(cand[int(np.argmax(np.minimum(clear, 1.5) - 0.25 * off))], float)


def _in_triangle(v: np.ndarray, q: np.ndarray) -> bool:
    a, b, c = v
    v0, v1, v2 = b - a, c - a, q - a
    d00, d01, d11, d20, d21 = v0 @ v0, v0 @ v1, v1 @ v1, v2 @ v0, v2 @ v1
    den = d00 * d11 - d01 * d01
    if abs(den) < 1e-12:
        return False
    y = (d11 * d20 - d01 * d21) / den
    z = (d00 * d21 - d01 * d20) / den
    return bool(y >= 0 and z >= 0 and y + z <= 1)


def guidewire_s(ctx: PlanningContext, ob: _Obstacles, ids: PtedStepIds, k: np.ndarray, d: np.ndarray) -> float:
    """How deep past K the guidewire goes (negative s): the first depth >= 3 mm with its tip
    inside the structure the step names (2 mm in), keeping the margins; else 4 mm past K."""
    r = radius_mm("guidewire", 0.4)
    depths = np.arange(3.0, 16.0, 0.5)
    pts = k - depths[:, None] * d
    dr = distances(ctx, pts, ob.risk) if ob.risk else {}
    clear = np.full(len(depths), np.inf)
    for j, n in enumerate(ob.risk):
        clear = np.minimum(clear, dr[n] - r - ob.margin[j])
    ok = clear >= 0.5
    if ids.guidewire_inside and ids.guidewire_inside in ctx.structures:
        di = distances(ctx, pts, [ids.guidewire_inside])[ids.guidewire_inside]
        good = ok & (di <= -2.0)
        if good.any():
            return -float(depths[np.argmax(good)])
        good = ok & (di <= 0.0)
        if good.any():
            return -float(depths[np.argmax(good)])
    return -4.0 if ok[:3].all() else -3.0


