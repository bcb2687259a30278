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
  for the skin entry landmark (when the bundle gives one), the Kambin landmark's approach
  direction, a skin entry ``ENTRY_LATERAL_MM`` from the midline and a usual axial angle;
* **skin entry**: where ``L`` leaves the skin surface (tissue ``skin``), else where it leaves
  every structure;
* **docking point**: the cannula's tip, the point of ``L`` nearest ``K`` from which the cannula's
  shaft, out to the skin, keeps the risk margins (plus ``DOCK_SPARE_MM``): the foraminal dock;
* **guidewire depth**: a few millimetres past ``K`` along ``L``, inside the disc when the
  guidewire step asks for it, keeping the margins;
* **grasp points**: per fragment piece (``procedures.pted_fragment.split_fragment`` of the
  fragment structure, as the simulation splits it), the point within the forceps' reach of the
  scope tip that is inside or beside the piece and clearest of the risk structures.

Units: millimetres, patient frame (RAS), unit vectors; ``s`` is the distance from ``K`` along
``L``'s outward direction (negative: past ``K``, deeper).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from vr_trainer.procedures.reach import OBSTACLE_TISSUES, PlanningContext
from vr_trainer.scenario.conditions import Call, Compare, ConditionError, nodes, parse
from vr_trainer.sim.instruments import CATALOGUE

ENTRY_LATERAL_MM = (90.0, 140.0)  # the usual skin entry from the midline at L4-L5 (10-14 cm), tolerated band
AXIAL_USUAL_DEG = (15.0, 40.0)  # usual angle of the line from the coronal plane
DOCK_SPARE_MM = 0.4  # the docked cannula keeps this much beyond the risk margins
DOCK_MAX_MM = 14.0  # the dock is at most this far out from K
NEEDLE_SPARE_MM = 0.8
GRASP_REACH_MM = 3.0  # a grasp takes a piece whose surface is this close to the forceps tip (H3's rule)
FORCEPS_MAX_ANGLE_DEG = 25.0  # how far the forceps may angle from the scope's axis (planner's own limit)
FORCEPS_MAX_EXTENSION_MM = 30.0
BODY_MAX_MM = 220.0  # the line is followed out to here looking for the skin
PLAN_EXACT_MM = 8.0  # clearances beyond this decide nothing


def unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return np.asarray(v, float) / n if n > 1e-12 else np.asarray(v, float)


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

    target_mm: np.ndarray  # K
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

    def point(self, s_mm: float | np.ndarray) -> np.ndarray:
        s = np.asarray(s_mm, float)
        return self.target_mm + s[..., None] * self.direction


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


def _radius(kind: str, default_mm: float) -> float:
    spec = CATALOGUE.get(kind)
    return spec.shaft_diameter_mm / 2.0 if spec is not None else default_mm


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
    r_needle = _radius("spinal_needle", 0.64)
    r_cannula = max(_radius("working_cannula", 3.75), _radius("dilator", 3.15))
    aa, cc = np.meshgrid(np.arange(4.0, 62.0, 6.0), np.arange(-36.0, 37.0, 6.0), indexing="ij")
    dirs = fr.direction(aa.ravel(), cc.ravel())
    prefer: list[tuple[np.ndarray, str]] = []
    lm = tgt.landmark or {}
    if lm.get("approach_direction") is not None:
        prefer.append((unit(np.asarray(lm["approach_direction"], float)), "kambin landmark approach_direction"))
    if lm.get("skin_entry_mm") is not None:  # the bundle's derived skin entry for this triangle
        prefer.append((unit(np.asarray(lm["skin_entry_mm"], float) - k), "kambin landmark skin_entry_mm"))
    tol = tgt.tolerance_mm
    best = _best(ctx, ob, fr, k, dirs, prefer, r_needle, r_cannula, ids.dock_within_mm, tol)
    # refine about the best
    a0, c0 = fr.angles_deg(best[0])
    aa, cc = np.meshgrid(a0 + np.arange(-6.0, 6.1, 1.5), c0 + np.arange(-6.0, 6.1, 1.5), indexing="ij")
    fine = np.vstack([best[0][None], fr.direction(aa.ravel(), cc.ravel())])
    best2 = _best(ctx, ob, fr, k, fine, prefer, r_needle, r_cannula, ids.dock_within_mm, tol)
    if best2[1] > best[1]:
        best = best2
    d, _, src = best
    nclear, cclear, hard = (x[0] for x in _clearances(ctx, ob, k, d[None], r_needle, r_cannula))
    dock = _dock_s(cclear, hard, ids.dock_within_mm - 0.6)
    dock = float(min(ids.dock_within_mm - 0.6, 6.0)) if dock is None else dock
    skin_s = _skin_s(ctx, ob, k, d, fr)
    gw = guidewire_s(ctx, ob, ids, k, d)
    a, c = fr.angles_deg(d)
    entry = k + skin_s * d
    return Trajectory(k, d, entry, skin_s, dock, gw, float(nclear[S_PATH_MM > 0.0].min()),
                      float(cclear[S_PATH_MM >= dock].min()), a, c, fr.lateral_mm(entry), src)


def _best(ctx: PlanningContext, ob: _Obstacles, fr: PtedFrame, k: np.ndarray, dirs: np.ndarray,
          prefer: list[tuple[np.ndarray, str]], r_needle: float, r_cannula: float, dock_within: float,
          tol: float) -> tuple[np.ndarray, float, str]:
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
        can = float(cclear[i][S_PATH_MM >= dock].min())
        a, c = fr.angles_deg(d)
        lo, hi = ENTRY_LATERAL_MM
        lat = fr.lateral_mm(k + skin[i] * d) if skin is not None else 0.5 * (lo + hi)
        s = (4.0 * min(needle_ok, 0.0) + 4.0 * min(bone_ok, 0.0) + min(needle_ok, 3.0) + min(bone_ok, 3.0)
             + min(can, 3.0) - 0.15 * dock - 0.04 * max(lo - lat, lat - hi, 0.0)
             - 0.03 * max(AXIAL_USUAL_DEG[0] - a, a - AXIAL_USUAL_DEG[1], 0.0) - 0.01 * abs(c))
        for p, _ in prefer:
            s += 1.5 * float(d @ p)
        score[i] = s
    i = int(np.argmax(score))
    src = "search"
    for p, name in prefer:
        if float(dirs[i] @ p) > 0.9999:
            src = name
    return dirs[i], float(score[i]), src


def guidewire_s(ctx: PlanningContext, ob: _Obstacles, ids: PtedStepIds, k: np.ndarray, d: np.ndarray) -> float:
    """How deep past K the guidewire goes (negative s): the first depth >= 3 mm with its tip
    inside the structure the step names (2 mm in), keeping the margins; else 4 mm past K."""
    r = _radius("guidewire", 0.4)
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


def fragment_pieces(ctx: PlanningContext, ids: PtedStepIds) -> list[Any]:
    """The fragment's pieces as the simulation splits them (``split_fragment``); [] without one."""
    if ids.fragment_structure is None or ids.fragment_structure not in ctx.structures:
        return []
    try:
        from vr_trainer.procedures.pted_fragment import split_fragment  # type: ignore[import-not-found]
    except ImportError:
        return []
    st = ctx.structures[ids.fragment_structure]
    return list(split_fragment(st.vertices_mm, st.faces))


def grasp_points(ctx: PlanningContext, traj: Trajectory, pieces: list[Any], ids: PtedStepIds) -> list[GraspPoint]:
    """Where the forceps closes on each piece: a point inside the piece's reach (its vertices and
    centroid, pulled toward the scope tip) within the forceps' angle and extension from the scope
    tip, clearest of the risk structures; nearest pieces first. Pieces out of reach are left."""
    risk = ctx.risk_margins()
    r = _radius("grasping_forceps", 1.25)
    tip = traj.point(traj.dock_s_mm)
    axis = -traj.direction
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
        ok = (ext <= FORCEPS_MAX_EXTENSION_MM) & (ang <= FORCEPS_MAX_ANGLE_DEG) & (ext >= 1.0)
        if not ok.any():
            continue
        cand = cand[ok]
        # along the forceps shaft from the scope tip to the candidate: the smallest clearance
        u = np.linspace(0.0, 1.0, 9)
        seg = tip + u[None, :, None] * (cand - tip)[:, None, :]
        clear = np.full(len(cand), np.inf)
        if risk:
            dd = distances(ctx, seg.reshape(-1, 3), list(risk))
            for n, m in risk.items():
                clear = np.minimum(clear, dd[n].reshape(seg.shape[:2]).min(axis=1) - r - m)
        j = int(np.argmax(clear - 0.02 * np.linalg.norm(cand - c, axis=1)))
        out.append(GraspPoint(i, cand[j], c, float(getattr(p, "volume_mm3", 0.0)), float(clear[j])))
    out.sort(key=lambda g: float(np.linalg.norm(g.point_mm - tip)))
    return out


def unit_rows(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(n, 1e-12)
