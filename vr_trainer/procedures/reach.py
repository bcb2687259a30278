"""The generic "reach the targets" planner: one straight, clear path per target, from the bundle's geometry.

For every step whose completion condition names a target (``reached(T)``), the planner picks the
direction the instrument comes from (a unit vector from the target outward):

* the target's landmark ``approach_direction`` when the bundle gives one (e.g. Kambin's triangle);
* otherwise a search: about 200 candidate directions on the hemisphere toward the room's ceiling
  for the patient's orientation (prone: the back, supine: the front, lateral: the upper side);
  each straight path, from the target out to ``ENTRY_MAX_MM``, is scored by its clearance from the
  obstacles (the scenario's risk structures with their margins, and bone, cartilage, nerve, dura,
  vessels of the bundle, less the instrument's shaft radius; signed distances from
  :mod:`vr_trainer.sim.proximity`), with a mild preference for upward paths; the clearest wins.

The tip stops inside the target's tolerance: on the target, or short of it along the path when
the last millimetres would bring the shaft closer to an obstacle than its margin. Nothing here
knows a shipped file's coordinates: every number comes from the scenario and its bundle.
Timing (speeds, errors) is :mod:`vr_trainer.procedures.autopilot`'s business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from vr_trainer.scenario.conditions import Call, Compare, ConditionError, Trigger, first_reached_target, nodes, parse
from vr_trainer.scenario.schema import Scenario
from vr_trainer.sim.instruments import CATALOGUE
from vr_trainer.sim.proximity import ProximityField

ENTRY_MAX_MM = 150.0  # candidate paths are scored from the target out to here
OBSTACLE_TISSUES = ("bone", "cortical_bone", "cartilage", "nerve", "dura", "vessel", "organ", "implant")
OBSTACLE_MARGIN_MM = 0.5  # for obstacles that are not risk structures
CLEAR_ENOUGH_MM = 6.0  # clearance beyond this earns nothing more in the search
REFINE_DEG = 10.0  # the search looks again, finer, within this angle of the best coarse direction
EXACT_WITHIN_MM = 10.0  # distance queries are exact this close to a surface
# the patient-frame (RAS) direction that faces the ceiling, per orientation on the table
UP_BY_ORIENTATION = {"prone": (0.0, -1.0, 0.0), "supine": (0.0, 1.0, 0.0),
                     "lateral_left": (1.0, 0.0, 0.0), "lateral_right": (-1.0, 0.0, 0.0)}


@dataclass(frozen=True)
class StructureGeometry:
    """A bundle structure in the patient frame: ``vertices_mm`` (V, 3) float, ``faces`` (F, 3) int."""

    name: str
    tissue: str
    vertices_mm: np.ndarray
    faces: np.ndarray


@dataclass(frozen=True)
class TargetPoint:
    target_id: str
    point_mm: np.ndarray  # (3,) RAS
    tolerance_mm: float
    landmark: Mapping[str, Any] | None = None
    structure: str | None = None  # the target is this structure's centroid: not an obstacle
    on_structure: str | None = None  # the target lies on this structure: an obstacle only a little way out


@dataclass
class PlanningContext:
    """What a planner reads of a built session (all in the patient frame, RAS mm).

    ``structures``: the visible bundle structures; ``up``: the unit RAS direction that faces
    the room's ceiling; ``fps``: the pace of the pose track the plan becomes.
    """

    scenario: Scenario
    structures: dict[str, StructureGeometry]
    targets: dict[str, TargetPoint]
    up: np.ndarray
    fps: float = 30.0
    _field: ProximityField | None = field(default=None, repr=False)
    _routes: list[tuple["StepGoal", "Route | None"]] | None = field(default=None, repr=False)

    @property
    def proximity(self) -> ProximityField:
        if self._field is None:
            # exact near the surfaces, where clearances decide; beyond, an upper bound is enough
            self._field = ProximityField.from_meshes(
                {n: (s.vertices_mm, s.faces) for n, s in self.structures.items()}, max_edge_mm=6.0, k=12,
                exact_mm=EXACT_WITHIN_MM)
        return self._field

    def risk_margins(self) -> dict[str, float]:
        """Bundle structure name -> margin (mm) of the scenario's risk structures present here."""
        out: dict[str, float] = {}
        for r in self.scenario.risk_structures:
            if r.structure in self.structures:
                out[r.structure] = max(out.get(r.structure, 0.0), r.margin_mm)
        return out

    def distances(self, points_mm: np.ndarray, names: list[str] | None = None) -> dict[str, np.ndarray]:
        """Signed distances (mm) from ``points_mm`` (n, 3) to the named structures (default all)."""
        d = self.proximity.signed_distances(np.asarray(points_mm, float).reshape(-1, 3))
        return d if names is None else {n: d[n] for n in names if n in d}


def up_from_world(world_from_patient: np.ndarray) -> np.ndarray:
    """The RAS unit vector that points to the room's +y (up) for this patient placement."""
    v = np.asarray(world_from_patient, float)[:3, :3].T @ np.array([0.0, 1.0, 0.0])
    return v / np.linalg.norm(v)


def context_from_bundle(scenario: Scenario, bundle: Any, world_from_patient: np.ndarray | None = None,
                        target_points_mm: Mapping[str, np.ndarray] | None = None, fps: float | None = None
                        ) -> PlanningContext:
    """A planning context from a scenario and its loaded bundle (``vr_trainer.anatomy.bundle.Bundle``).

    Targets resolve as the session does (a point, a landmark's ``incenter_mm`` or ``centroid_mm``,
    a structure's vertex mean) unless ``target_points_mm`` gives them (RAS mm, e.g. the built
    session's). ``world_from_patient`` (4x4) gives the up direction; without it the patient
    orientation of the scenario does.
    """
    hidden = set(scenario.anatomy.hide)
    structs = {s.name: StructureGeometry(s.name, s.tissue, np.asarray(s.mesh.vertices, float),
                                         np.asarray(s.mesh.faces, np.int64))
               for s in bundle.structures if s.name not in hidden}
    landmarks = bundle.landmarks
    targets: dict[str, TargetPoint] = {}
    for t in scenario.targets:
        lm = landmarks.get(t.landmark) if t.landmark else None
        if target_points_mm is not None and t.id in target_points_mm:
            p = np.asarray(target_points_mm[t.id], float)
        elif t.point_mm is not None:
            p = np.asarray(t.point_mm, float)
        elif isinstance(lm, Mapping):
            p = np.asarray(lm.get("incenter_mm") or lm["centroid_mm"], float)
        elif t.structure in structs:
            p = structs[t.structure].vertices_mm.mean(0)
        else:
            continue  # the session refuses such a scenario with a located error
        targets[t.id] = TargetPoint(t.id, p, t.tolerance_mm, lm if isinstance(lm, Mapping) else None, t.structure)
    up = up_from_world(world_from_patient) if world_from_patient is not None else \
        np.array(UP_BY_ORIENTATION[scenario.anatomy.patient_orientation], float)
    return PlanningContext(scenario, structs, targets, up, fps if fps is not None else scenario.demo.fps)


@dataclass(frozen=True)
class Route:
    """The geometry of one reach: where the tip goes and along which straight path.

    ``direction``: unit RAS vector from the target outward; ``stop_mm``: the tip stops this far
    from the target along it; ``entry_mm``: distance out where the advance starts (past every
    structure); ``clearance_mm``: the smallest clearance of the path beyond the stop point.
    """

    step_id: str
    instrument_id: str | None
    target_id: str
    target_mm: np.ndarray
    tolerance_mm: float
    direction: np.ndarray
    source: str  # "landmark" or "search"
    clearance_mm: float
    stop_mm: float
    entry_mm: float
    shaft_radius_mm: float

    def point(self, s_mm: float | np.ndarray) -> np.ndarray:
        """Point(s) on the path ``s_mm`` from the target: (3,) or (n, 3)."""
        s = np.asarray(s_mm, float)
        return self.target_mm + s[..., None] * self.direction

    @property
    def stop_point(self) -> np.ndarray:
        return self.point(self.stop_mm)

    @property
    def entry_point(self) -> np.ndarray:
        return self.point(self.entry_mm)


@dataclass(frozen=True)
class StepGoal:
    """What a step asks for, read from its completion condition."""

    step_id: str
    instrument_id: str | None
    target_id: str | None
    tolerance_mm: float | None
    actions: tuple[str, ...]  # discrete actions to take once there (carm_shot ...)
    trigger: bool


def step_goals(scenario: Scenario) -> list[StepGoal]:
    """Per step: the instrument to hold, the target to reach, the actions the condition counts."""
    out = []
    for st in scenario.steps:
        try:
            ast = parse(st.complete_when)
        except ConditionError:
            ast = None
        target = first_reached_target(ast) if ast is not None else None
        tol = None
        actions: list[str] = []
        trigger = False
        for n in (nodes(ast) if ast is not None else []):
            if isinstance(n, Call) and n.fn == "reached" and n.arg == target and n.number is not None:
                tol = n.number
            elif isinstance(n, Call) and n.fn == "action":
                actions.append(n.arg)
            elif isinstance(n, Trigger):
                trigger = True
            elif isinstance(n, Compare) and n.value.fn == "shots" and n.op in (">=", ">", "=="):
                need = int(np.ceil(n.number)) + (1 if n.op == ">" and float(n.number).is_integer() else 0)
                actions += ["carm_shot"] * max(0, min(need, 50))
        out.append(StepGoal(st.id, st.instruments[0] if st.instruments else None, target, tol,
                            tuple(actions), trigger))
    return out


def hemisphere_directions(up: np.ndarray, n: int = 200, min_elevation_deg: float = 10.0) -> np.ndarray:
    """About ``n`` unit vectors (k, 3) spread evenly (Fibonacci) over the cap of directions at least
    ``min_elevation_deg`` above the plane perpendicular to ``up``."""
    cap = 1.0 - np.sin(np.radians(min_elevation_deg))  # the cap's share of a hemisphere
    total = int(np.ceil(2 * n / cap))
    k = np.arange(total) + 0.5
    z = 1.0 - 2.0 * k / total
    phi = np.pi * (1.0 + 5 ** 0.5) * k
    r = np.sqrt(1.0 - z * z)
    pts = np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)
    u = np.asarray(up, float) / np.linalg.norm(up)
    a = np.array([1.0, 0.0, 0.0]) if abs(u[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(u, a)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(u, e1)
    dirs = pts[:, 0:1] * e1 + pts[:, 1:2] * e2 + pts[:, 2:3] * u
    return dirs[dirs @ u >= np.sin(np.radians(min_elevation_deg))]


# where along a candidate path (mm from the target) clearance is measured: dense near the target
def cone_directions(axis: np.ndarray, half_angle_deg: float, n: int) -> np.ndarray:
    """``n`` unit vectors (n, 3) spread evenly (Fibonacci) over the cone of ``half_angle_deg`` about ``axis``."""
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.arange(n) + 0.5
    z = 1.0 - (1.0 - np.cos(np.radians(half_angle_deg))) * k / n
    phi = np.pi * (1.0 + 5 ** 0.5) * k
    r = np.sqrt(np.maximum(1.0 - z * z, 0.0))
    h = np.array([1.0, 0.0, 0.0]) if abs(a[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(a, h)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(a, e1)
    return (r * np.cos(phi))[:, None] * e1 + (r * np.sin(phi))[:, None] * e2 + z[:, None] * a


PATH_S_MM = np.concatenate([np.arange(0.0, 10.0, 0.5), np.arange(10.0, 40.0, 1.5),
                            np.arange(40.0, ENTRY_MAX_MM + 0.1, 4.0)])


@dataclass
class Obstacles:
    """What a path to one target must keep clear of: risk structures (their margins) and bone,
    cartilage, nerve, dura, vessels (``OBSTACLE_MARGIN_MM``); a structure the target lies on counts
    only from ``tolerance + 2`` mm out."""

    names: list[str]
    margins_mm: np.ndarray  # (k,)
    start_mm: np.ndarray  # (k,) the path is checked against obstacle j only beyond start_mm[j]


def obstacles_for(ctx: PlanningContext, target: TargetPoint) -> Obstacles:
    risk = ctx.risk_margins()
    names = [n for n, s in ctx.structures.items()
             if (n in risk or s.tissue in OBSTACLE_TISSUES) and n != target.structure]
    if not names:
        return Obstacles([], np.zeros(0), np.zeros(0))
    d0 = ctx.distances(target.point_mm[None], names)
    margins, starts = [], []
    for n in names:
        margins.append(risk.get(n, OBSTACLE_MARGIN_MM))
        # a structure the target lies on (or in) is the host: the last millimetres may touch it
        host = n == target.on_structure or (n not in risk and float(d0[n][0]) <= target.tolerance_mm + 1.0)
        starts.append(target.tolerance_mm + 2.0 if host else 0.0)
    return Obstacles(names, np.array(margins), np.array(starts))


def path_clearance(ctx: PlanningContext, target: TargetPoint, dirs: np.ndarray, radius_mm: float,
                   obstacles: Obstacles | None = None) -> np.ndarray:
    """(k, len(PATH_S_MM)) clearance (mm) of each direction's path at each sample: the smallest,
    over obstacles, of signed distance minus shaft radius minus margin (inf where none applies)."""
    obs = obstacles or obstacles_for(ctx, target)
    dirs = np.atleast_2d(dirs)
    pts = target.point_mm + dirs[:, None, :] * PATH_S_MM[None, :, None]
    out = np.full(pts.shape[:2], np.inf)
    if not obs.names:
        return out
    d = ctx.distances(pts.reshape(-1, 3), obs.names)
    for j, n in enumerate(obs.names):
        c = d[n].reshape(pts.shape[:2]) - radius_mm - obs.margins_mm[j]
        c = np.where(PATH_S_MM[None, :] >= obs.start_mm[j], c, np.inf)
        out = np.minimum(out, c)
    return out


def _stop_and_clearance(clear: np.ndarray, tolerance_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Per direction (rows of ``clear``): the smallest stop distance in {0, .25, .5, .7} x tolerance
    whose path beyond it is clear (>= 0) or, when none is, within 0.25 mm of the clearest; and
    that path's clearance."""
    stops = np.array([0.0, 0.25, 0.5, 0.7]) * tolerance_mm
    per_stop = np.stack([np.where(PATH_S_MM[None, :] >= s, clear, np.inf).min(axis=1) for s in stops], axis=1)
    ok = per_stop >= np.minimum(0.0, per_stop.max(axis=1, keepdims=True) - 0.25)
    pick = ok.argmax(axis=1)
    rows = np.arange(len(clear))
    return stops[pick], per_stop[rows, pick]


def _entry_mm(ctx: PlanningContext, target: TargetPoint, direction: np.ndarray, stop_mm: float) -> float:
    """Distance out along the path where the tip is 15 mm clear of every visible structure
    (plus 25 mm of free air), within [stop + 40, ENTRY_MAX_MM]."""
    s = np.arange(0.0, ENTRY_MAX_MM + 0.1, 2.0)
    d = ctx.distances(target.point_mm + s[:, None] * direction)
    near = np.min(np.stack(list(d.values())), axis=0) < 15.0 if d else np.zeros(len(s), bool)
    last = float(s[np.nonzero(near)[0].max()]) if near.any() else 0.0
    return float(np.clip(last + 25.0, stop_mm + 40.0, ENTRY_MAX_MM))


def plan_route(ctx: PlanningContext, goal: StepGoal, n_directions: int = 200) -> Route | None:
    """The route for one step, or None when the step names no target this context has."""
    if goal.target_id is None or goal.target_id not in ctx.targets:
        return None
    target = ctx.targets[goal.target_id]
    tol = min(goal.tolerance_mm or target.tolerance_mm, target.tolerance_mm)
    return route_to(ctx, target, goal.step_id, goal.instrument_id, tol, n_directions)


def route_to(ctx: PlanningContext, target: TargetPoint, step_id: str, instrument_id: str | None,
             tolerance_mm: float, n_directions: int = 200) -> Route:
    """The clearest straight route to ``target`` for the instrument ``instrument_id`` (a scenario id)."""
    tol = tolerance_mm
    kind = next((i.kind for i in ctx.scenario.instruments if i.id == instrument_id), None)
    radius = CATALOGUE[kind].shaft_diameter_mm / 2.0 if kind in CATALOGUE else 0.0
    obs = obstacles_for(ctx, target)
    given = (target.landmark or {}).get("approach_direction")
    if given is not None and np.linalg.norm(np.asarray(given, float)) > 1e-6:
        d = np.asarray(given, float) / np.linalg.norm(np.asarray(given, float))
        stops, clears = _stop_and_clearance(path_clearance(ctx, target, d[None], radius, obs), tol)
        return Route(step_id, instrument_id, target.target_id, target.point_mm, tol, d, "landmark",
                     float(clears[0]), float(stops[0]), _entry_mm(ctx, target, d, float(stops[0])), radius)
    away = target.point_mm - np.mean([s.vertices_mm.mean(0) for s in ctx.structures.values()], axis=0)
    away = away / max(float(np.linalg.norm(away)), 1e-9)

    def best_of(dirs: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        clear_all = path_clearance(ctx, target, dirs, radius, obs)
        stop, clear = _stop_and_clearance(clear_all, tol)
        finite = np.where(np.isfinite(clear_all), clear_all, CLEAR_ENOUGH_MM * 3)
        score = (np.minimum(clear, CLEAR_ENOUGH_MM) - 0.5 * stop
                 + 0.05 * np.minimum(np.median(finite, axis=1), 30.0)
                 + 0.5 * (dirs @ ctx.up) + 0.25 * (dirs @ away))
        i = int(np.argmax(score))
        return dirs[i], float(clear[i]), float(stop[i]), float(score[i])

    d, clear, stop, score = best_of(hemisphere_directions(ctx.up, n_directions))
    # then a finer look within REFINE_DEG of the best (the coarse grid is about 8 degrees apart)
    near = cone_directions(d, REFINE_DEG, n_directions // 3)
    near = near[near @ ctx.up > 0.0]
    if len(near):
        d2, clear2, stop2, score2 = best_of(np.vstack([d[None], near]))
        if score2 > score:
            d, clear, stop = d2, clear2, stop2
    return Route(step_id, instrument_id, target.target_id, target.point_mm, tol, d, "search",
                 clear, stop, _entry_mm(ctx, target, d, stop), radius)


def plan_routes(ctx: PlanningContext) -> list[tuple[StepGoal, Route | None]]:
    """Every step's goal with its route (None for steps that reach no target); computed once per context."""
    if ctx._routes is None:
        ctx._routes = [(g, plan_route(ctx, g)) for g in step_goals(ctx.scenario)]
    return list(ctx._routes)


def nearest_risk(ctx: PlanningContext, route: Route, s_range_mm: tuple[float, float]
                 ) -> tuple[str, float, np.ndarray, np.ndarray] | None:
    """The risk structure closest to the path between ``s_range_mm`` (from the target):
    (name, s_mm on the path, the closest path point (3,), the closest surface point (3,))."""
    risk = [n for n in ctx.risk_margins()]
    if not risk:
        return None
    s = np.arange(s_range_mm[0], s_range_mm[1] + 0.1, 1.0)
    if not len(s):
        return None
    pts = route.point(s)
    d = ctx.distances(pts, risk)
    name = min(risk, key=lambda n: float(d[n].min()))
    i = int(np.argmin(d[name]))
    p = pts[i]
    surf = closest_surface_point(ctx, name, p)
    return name, float(s[i]), p, surf


def closest_surface_point(ctx: PlanningContext, name: str, p: np.ndarray) -> np.ndarray:
    """The point (3,) of structure ``name``'s surface closest to ``p`` (3,), RAS mm."""
    import trimesh

    st = ctx.structures[name]
    tri = st.vertices_mm[st.faces]
    q = trimesh.triangles.closest_point(tri, np.broadcast_to(np.asarray(p, float), (len(tri), 3)))
    return np.asarray(q[int(np.argmin(np.linalg.norm(q - p, axis=1)))], float)
