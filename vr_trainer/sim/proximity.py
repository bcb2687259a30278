"""Signed distance from instrument points to anatomy surfaces, fast enough for every fixed step.

Method: a k-d tree over refined triangles, exact point-triangle distances on a few candidates.
Each structure is indexed once per session: its long edges are split (conformingly, so the
surface and its topology stay exact) until every edge is at most ``max_edge_mm``, and a k-d tree
is built over the triangle centroids. A query takes, per point, the ``k`` triangles with the
nearest centroids and computes the exact point-triangle distance on them (vectorised, every
structure in one pass). If the nearest triangle is not among them the answer is still within
the largest centroid-to-corner distance (about ``max_edge_mm / 1.7``) of the truth; on the
shipped bundle the measured error within 20 mm of a surface is below 0.01 mm against libigl's
and trimesh's exact distances (``vr-trainer bench proximity``, ``tests/sim/test_proximity*.py``;
the target is 0.25 mm). Why not a distance field precomputed in the bundle or a BVH: see
:mod:`vr_trainer.bench.proximity`.

Far values: points farther than ``exact_mm`` (20 mm) from a structure's bounding box, or with no
triangle centroid within ``exact_mm`` + a centroid's reach, skip the exact pass and get
``max(box distance, exact_mm)``: a lower bound, never below 20 mm. Every scored use is unchanged
by it: margins, contacts and invasions are decided within a few millimetres of a surface, and
``min_risk_distance_mm`` (the minimum over the run) reads 20 when nothing came nearer.

The chain query (:meth:`ProximityField.clearance`, what the simulation asks every fixed step:
per structure the smallest signed distance over the instrument's points, and whether the tip is
inside) interpolates before it searches. Built on first use (or by :meth:`ProximityField.prepare_clearance`):
per structure a 3 mm grid of exact signed distances over its box grown by ``exact_mm``
(:mod:`vr_trainer.sim.distance_grid`, bounds), a 1.5 mm one over the same box (float32, packed:
:mod:`vr_trainer.sim.fine_grid`), and one k-d tree over every structure's centroids (each
structure moved far from the others, so one call serves every structure). A query takes every
(structure, point) pair's trilinear value from the fine grid in one gather, with a bound on its
error that holds for any 1-Lipschitz function; it searches exactly only the pairs that may hold a
structure's minimum and whose bound leaves open their side of 0 or of the caller's ``contact_mm``
(an instrument's radius), the tip where its side is open, and minimum candidates in cells the grid
marks unreliable (gradient jumps: the middle of a thin root, creases). So contact, "inside" and
the sign of every minimum are the exact search's; other values are within the interpolation's
error (measured below 0.2 mm within 20 mm of the shipped structures; ``vr-trainer bench
proximity``). Without a fine grid (``fine_spacing_mm=None``) the coarse grid's bounds pick the pairs
to search (the minimum within ``exact_mm`` comes out exact). Usually no pair is searched at all.

Repeated queries: :class:`ProximityField` keeps its last answers keyed on the query's bytes (the
fixed-step loop runs several steps per displayed frame with the same hand pose); the answer is
a pure function of the points, so replays reproduce runs exactly.

The sign comes from the angle-weighted pseudonormal of the closest feature (face, edge or
vertex; Baerentzen and Aanaes, IEEE TVCG 11(3), 2005): negative inside a closed surface. An
open surface has no inside; its distances are unsigned (never negative).

Units: millimetres, in whatever frame the vertices are given (the bundle's patient RAS).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from scipy.spatial import cKDTree

from vr_trainer.sim.distance_grid import DistanceGrid, edge_tables
from vr_trainer.sim.fine_grid import FineDistanceGrid
from vr_trainer.sim.triangle_geometry import (_EDGE_FEATURE, _pseudonormals, closest_points_on_triangles, is_closed,
                                              refine_to_edge_length)

MEMO_MAX_POINTS = 4096  # larger queries (a planner's batches) are not kept
PAIR_TREE_SEPARATION_MM = 1.0e4  # structures' offsets in the clearance query's one k-d tree
__all__ = ["Clearance", "ProximityField", "SurfaceIndex", "closest_points_on_triangles", "is_closed",
           "refine_to_edge_length", "shaft_points"]


@dataclass
class SurfaceIndex:
    """One structure's surface, indexed for distance queries (build once per session)."""

    name: str
    a: np.ndarray  # (F, 3) first corners, mm
    ab: np.ndarray  # (F, 3) b - a
    ac: np.ndarray  # (F, 3) c - a
    dots: np.ndarray  # (F, 3) ab.ab, ab.ac, ac.ac
    pseudonormals: np.ndarray  # (F, 7, 3)
    tree: cKDTree
    box_mm: np.ndarray  # (2, 3) lower and upper corner
    reach_mm: float  # largest distance from a triangle's centroid to one of its corners
    closed: bool  # watertight: signed distances; else unsigned

    @classmethod
    def from_mesh(cls, name: str, vertices_mm: np.ndarray, faces: np.ndarray, max_edge_mm: float = 3.0,
                  closed: bool | None = None) -> "SurfaceIndex":
        """``vertices_mm``: (V, 3) float; ``faces``: (F, 3) int, outward (counter-clockwise)
        winding. ``closed``: whether the surface bounds a volume (default: every edge has two faces)."""
        v = np.asarray(vertices_mm, float)
        f = np.asarray(faces, np.int64)
        if f.ndim != 2 or f.shape[1] != 3 or not len(f):
            raise ValueError(f"structure {name!r}: faces must be a non-empty (F, 3) array")
        if closed is None:
            closed = is_closed(f)
        v, f = refine_to_edge_length(v, f, max_edge_mm)
        tri = v[f]
        ab, ac = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
        dots = np.stack([(ab * ab).sum(1), (ab * ac).sum(1), (ac * ac).sum(1)], 1)
        centroids = tri.mean(axis=1)
        reach = float(np.sqrt(((tri - centroids[:, None]) ** 2).sum(2)).max())
        return cls(name, tri[:, 0].copy(), ab, ac, dots, _pseudonormals(v, f), cKDTree(centroids),
                   np.stack([v.min(0), v.max(0)]), reach, closed)

    @property
    def face_count(self) -> int:
        return len(self.a)


@dataclass(frozen=True)
class Clearance:
    """How close a chain of points (an instrument's tip and shaft) comes to each structure.

    ``distance_mm``: per structure, the smallest signed distance over the points (negative:
    some point is inside); ``tip_mm``: the first point's signed distance; ``inside``: the
    structures whose closed surface contains the first point."""

    distance_mm: dict[str, float]
    tip_mm: dict[str, float]
    inside: frozenset[str]


class ProximityField:
    """Signed distances from points to several structures at once.

    ``k``: candidate triangles per point and structure. ``exact_mm``: within this distance of a
    surface the answer is exact (to the refinement bound); farther, it is a lower bound (at least
    ``exact_mm``), which keeps far points from costing a full search.

    ``grid_spacing_mm``, ``fine_spacing_mm``: the chain query's bounding and interpolated grids
    (the fine spacing a whole fraction of the coarse; ``fine_spacing_mm=None``: no fine grid, the
    chain query searches what the bounds leave open).

    ``memo_size``: the last queries' answers are kept, keyed on the query's exact bytes, and a
    repeated query returns them without searching. The answer is a pure function of the points,
    so this changes no value; it pays because the fixed-step loop runs several 120 Hz steps per
    displayed frame with the same hand pose (a 30 Hz replay: 3 of every 4 steps; 0 turns it off)."""

    def __init__(self, surfaces: Mapping[str, SurfaceIndex], k: int = 8, exact_mm: float = 20.0,
                 memo_size: int = 8, grid_spacing_mm: float = 3.0, fine_spacing_mm: float | None = 1.5) -> None:
        self.surfaces = dict(surfaces)
        self.k = k
        self.exact_mm = exact_mm
        self.memo_size = memo_size
        self._memo: dict[tuple[str, bytes], Any] = {}
        self._memo_lock = threading.Lock()
        # every surface's triangles packed in one table, so a query gathers once
        sur = list(self.surfaces.values())
        self._offset = dict(zip(self.surfaces, np.cumsum([0] + [s.face_count for s in sur])[:-1].tolist()))
        self._geom = (np.concatenate([np.hstack([s.a, s.ab, s.ac, s.dots]) for s in sur]) if sur
                      else np.zeros((0, 12)))
        self._pn = np.concatenate([s.pseudonormals for s in sur]) if sur else np.zeros((0, 7, 3))
        # every surface's box, so one vectorised pass finds which structures a query comes near
        self._boxes = np.stack([s.box_mm for s in sur]) if sur else np.zeros((0, 2, 3))
        self._reach = np.array([s.reach_mm for s in sur])
        self._closed = np.array([s.closed for s in sur], bool)
        self.grid_spacing_mm = grid_spacing_mm
        self.fine_spacing_mm = fine_spacing_mm  # None: no fine grid (bounds and exact search only)
        self._fine: FineDistanceGrid | None = None
        self._grid: DistanceGrid | None = None  # the clearance query's grids and pair tree: built
        self._pair_tree: cKDTree | None = None  # on first use, or by prepare_clearance()
        self._edges: tuple[np.ndarray, ...] | None = None
        self._build_lock = threading.Lock()

    @classmethod
    def from_meshes(cls, meshes: Mapping[str, tuple[np.ndarray, np.ndarray]], max_edge_mm: float = 3.0,
                    k: int = 8, exact_mm: float = 20.0) -> "ProximityField":
        """``meshes``: name -> (vertices (V, 3) mm, faces (F, 3))."""
        return cls({n: SurfaceIndex.from_mesh(n, v, f, max_edge_mm) for n, (v, f) in meshes.items()}, k, exact_mm)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.surfaces)

    def signed_distances(self, points_mm: np.ndarray, memo: bool = True) -> dict[str, np.ndarray]:
        """``points_mm``: (n, 3) float. Returns, per structure, the (n,) signed distance in mm
        (negative inside a closed surface). ``memo``: use (and fill) the memo of recent queries."""
        p = np.ascontiguousarray(points_mm, float).reshape(-1, 3)
        memo = memo and len(p) <= MEMO_MAX_POINTS
        key = ("d", p.tobytes() if memo else b"")
        hit = self._recall(key) if memo else None
        if hit is None:
            hit = dict(zip(self.surfaces, self._evaluate_all(p)))
            if memo:
                self._remember(key, hit)
        return {n: v.copy() for n, v in hit.items()}

    def clearance(self, points_mm: np.ndarray, memo: bool = True, contact_mm: float = 0.0) -> Clearance:
        """The smallest signed distance over a chain of points ``points_mm`` (n, 3), the first
        row being the tip, per structure; and which closed structures contain the tip.
        ``contact_mm``: a distance the caller decides at (an instrument's radius: contact where the
        minimum is below it); whether the minimum is below 0 or below ``contact_mm``, and whether the
        tip is inside, come out as the exact search says. ``memo``: use (and fill) the memo of
        recent queries."""
        p = np.ascontiguousarray(points_mm, float).reshape(-1, 3)
        if not len(p):
            return Clearance({}, {}, frozenset())
        memo = memo and len(p) <= MEMO_MAX_POINTS
        key = ("c", (p.tobytes() + np.float64(contact_mm).tobytes()) if memo else b"")
        hit = self._recall(key) if memo else None
        if hit is None:
            dmin, dtip = self._clearance_values(p, float(contact_mm))
            names = list(self.surfaces)
            tip = dict(zip(names, dtip.tolist()))
            hit = Clearance(dict(zip(names, dmin.tolist())), tip, frozenset(n for n, v in tip.items() if v < 0))
            if not memo:
                return hit  # not kept: nobody else holds it
            self._remember(key, hit)
        return Clearance(dict(hit.distance_mm), dict(hit.tip_mm), hit.inside)

    @property
    def grid_node_count(self) -> int:
        """Nodes of the clearance query's distance grids, coarse and fine (0 until built)."""
        return sum(0 if g is None else g.node_count for g in (self._grid, self._fine))

    @property
    def grid_nbytes(self) -> int:
        """Memory the clearance query's distance grids hold (bytes; 0 until built)."""
        coarse = 0 if self._grid is None else self._grid.values_mm.nbytes
        return int(coarse + (0 if self._fine is None else self._fine.nbytes))

    def prepare_clearance(self) -> None:
        """Build what :meth:`clearance` searches with (its first call does it otherwise): every
        structure's distance grid (:class:`~vr_trainer.sim.distance_grid.DistanceGrid`) and one
        k-d tree over all structures' triangle centroids, each structure moved far from the others."""
        with self._build_lock:
            if self._grid is not None:
                return
            sur = list(self.surfaces.values())
            cent = [(s.a + (s.ab + s.ac) / 3.0) + self._shift(j) for j, s in enumerate(sur)]
            # unbalanced, 32 a leaf: a third faster to query here than scipy's default (measured)
            self._pair_tree = cKDTree(np.concatenate(cent) if cent else np.zeros((0, 3)), leafsize=32,
                                      balanced_tree=False, compact_nodes=False)
            self._edges = edge_tables(self._geom)
            grid = DistanceGrid.build(self, self.grid_spacing_mm)
            if self.fine_spacing_mm is not None:
                self._fine = FineDistanceGrid.build(self, grid, self.fine_spacing_mm)
            self._grid = grid  # last: it says the build is done

    def _shift(self, j: np.ndarray | int) -> np.ndarray:
        """Where structure ``j`` is moved in the pair tree (far beyond any search radius)."""
        return np.multiply.outer(np.asarray(j, float), np.array([PAIR_TREE_SEPARATION_MM, 0.0, 0.0]))

    def _clearance_values(self, p: np.ndarray, contact_mm: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Per structure (S,): the smallest signed distance over the chain ``p`` (n, 3) and its first
        point's; from the fine grid where it has one (:meth:`_fine_values`), else :meth:`_bound_values`."""
        if self._grid is None:
            self.prepare_clearance()
        if self._fine is not None and self.surfaces:
            return self._fine_values(p, contact_mm)
        return self._bound_values(p)

    def _fine_values(self, p: np.ndarray, contact_mm: float) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_clearance_values` from the fine grid's trilinear values
        (:class:`~vr_trainer.sim.fine_grid.FineDistanceGrid`), every pair in one gather. Searched
        exactly (within ``exact_mm``): the pairs whose error bound leaves open their side of 0 or of
        ``contact_mm``, so the minimum's and the tip's decisions are the exact search's; and pairs in
        cells the grid marks unreliable that may hold a structure's minimum. A point outside a
        structure's grid gets ``max(box distance, exact_mm + spacing)``, a lower bound."""
        fine = self._fine
        assert fine is not None
        v, code, ingrid, t = fine.interpolate(p)
        e = fine.max_error_mm
        vm = np.where(ingrid, v, np.inf)
        m = vm.min(1)  # (S,)
        # structures where a pair may need the exact search: a candidate for the minimum (within 2 e
        # of it) near a decision (0, contact_mm), the tip near 0, or an unreliable candidate
        ec = e if contact_mm <= fine.contact_limit_mm else fine.coarse_error_mm  # (the module's)
        rows = ((m <= e) & (m >= -3.0 * e)) | ((m <= contact_mm + ec) & (m >= contact_mm - 3.0 * ec))
        rows |= np.abs(vm[:, 0]) <= e
        bad = ingrid & (code == 0)
        if bad.any():
            rows |= (bad & (vm <= m[:, None] + 2.0 * e)).any(1)
        rows &= m - e <= self.exact_mm
        res = vm
        if rows.any():
            r = np.nonzero(rows)[0]
            vr, tr = vm[r], t[:, r]
            err = fine.error_mm(tr, code[r])
            cand = vr - err <= (vr + err).min(1)[:, None]
            dec = cand & ((np.abs(vr) <= err) | (np.abs(vr - contact_mm) <= err))
            dec[:, 0] |= np.abs(vr[:, 0]) <= err[:, 0]  # the tip's side
            ks, ip = np.nonzero((dec | (cand & (code[r] == 0))) & (np.abs(vr) - err <= self.exact_mm))
            if len(ks):
                js = r[ks]
                x = self._exact_pairs(p, js, ip, self.exact_mm)
                g = vm[js, ip]  # nan: no surface within exact_mm (the grid's value stands, beyond exact_mm)
                res = vm.copy()
                res[js, ip] = np.where(np.isnan(x), np.where(g < 0.0, g, np.maximum(g, self.exact_mm)), x)
                m = res.min(1)
        tip = res[:, 0]
        far_rows = ~ingrid[:, 0] | (m > self.exact_mm)
        if far_rows.any():  # beyond the grids: max(box distance, exact_mm + spacing), a lower bound
            boxes = self._boxes
            gap = np.maximum(np.maximum(boxes[:, None, 0] - p[None], p[None] - boxes[:, None, 1]), 0.0)
            far = np.where(ingrid, np.inf, np.maximum(np.sqrt((gap * gap).sum(2)), self.exact_mm + fine.spacing_mm))
            m = np.minimum(m, far.min(1))
            tip = np.where(ingrid[:, 0], tip, far[:, 0])
        return m, tip

    def _bound_values(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per structure (S,): the smallest signed distance over the chain ``p`` (n, 3) and its first
        point's. The grids bound every (structure, point) pair in one pass (from the corners of
        its cell, :meth:`DistanceGrid.bounds`); the exact search runs only on the pairs whose lower bound is at most
        the structure's smallest upper bound (the chain's minimum is among them, so it comes out
        exact), and on the tip where the bounds leave its sign open (inside or not); only within
        ``exact_mm``: a pair whose lower bound is farther is not searched. So the tip's value is
        exact where it is the minimum or its side is in doubt, else within its bounds (at most
        ``spacing * sqrt(3) / 2``, typically a few tenths of a millimetre); its side is always right.
        A pair not searched reports the middle of its bounds (within half their width of the
        truth, and above the minimum where the minimum is within ``exact_mm``); a point outside a
        structure's grid ``max(box distance, exact_mm + spacing / 2)``, a lower bound."""
        grid = self._grid
        assert grid is not None
        if not self.surfaces:
            return np.zeros(0), np.zeros(0)
        v, err, ingrid, u = grid.near_bounds(p)
        lower = np.where(ingrid, v - err, np.inf)  # outside the grid: farther than exact_mm
        upper = np.where(ingrid, v + err, np.inf)
        # pairs that may hold a structure's minimum, and tips whose sign or value is open
        cand = (lower <= upper.min(1)[:, None]) & (lower <= self.exact_mm)
        cand[:, 0] |= (lower[:, 0] <= 0.0) & (upper[:, 0] >= 0.0)
        res = v
        if not ingrid.all():
            boxes = self._boxes
            gap = np.maximum(np.maximum(boxes[:, None, 0] - p[None], p[None] - boxes[:, None, 1]), 0.0)
            res = np.where(ingrid, v, np.maximum(np.sqrt((gap * gap).sum(2)), self.exact_mm + grid.spacing_mm / 2))
        js, ip = np.nonzero(cand)
        if not len(js):
            return res.min(1), res[:, 0]
        res = res.copy()
        lo, up = grid.corner_bounds(u[js, ip], js)  # tighter
        res[js, ip] = (lo + up) * 0.5
        best = np.full(len(self._boxes), np.inf)
        np.minimum.at(best, js, up)
        need = ((lo <= best[js]) & (lo <= self.exact_mm)) | ((ip == 0) & (lo <= 0.0) & (up >= 0.0))
        js, ip, lo, up = js[need], ip[need], lo[need], up[need]
        if len(js):
            x = self._exact_pairs(p, js, ip, self.exact_mm)
            # nan: no surface within exact_mm; deep inside (the bounds say so) or beyond exact_mm
            res[js, ip] = np.where(np.isnan(x), np.where(up < 0.0, (lo + up) * 0.5,
                                                         np.maximum((lo + up) * 0.5, self.exact_mm)), x)
        return res.min(1), res[:, 0]

    def _exact_pairs(self, p: np.ndarray, js: np.ndarray, ip: np.ndarray, radius_mm: float) -> np.ndarray:
        """Signed distance of point ``p[ip]`` to structure ``js`` per pair: one k-d search of the pair
        tree for the ``k`` nearest centroids, then the exact point-triangle distance on those (as
        :meth:`_evaluate_all`, in fewer array passes: each triangle's three edges at once, the face's
        projection tested against its in-plane edge normals); nan where no centroid is within
        ``radius_mm`` + a centroid's reach."""
        assert self._pair_tree is not None and self._edges is not None
        k = self.k
        m = len(js)
        reach = radius_mm + self._reach[js]
        dd, idx = self._pair_tree.query(p[ip] + self._shift(js), k=k, distance_upper_bound=float(reach.max()))
        dd, fi = np.asarray(dd).reshape(m, k), np.asarray(idx, np.int64).reshape(m, k)
        within = dd < reach[:, None]
        fi = np.where(within, fi, fi[:, :1])  # missing neighbours: repeat the first
        found = within[:, 0]
        fi[~found] = 0
        e0, ed, einv, em, nrm = self._edges
        w = p[ip][:, None, None, :] - e0[fi]  # (m, k, 3 edges, 3): from each edge's start
        dvec = ed[fi]
        t = np.clip(np.einsum("mkij,mkij->mki", w, dvec) * einv[fi], 0.0, 1.0)
        r = w - t[..., None] * dvec  # from the closest point of each edge
        ed2 = np.einsum("mkij,mkij->mki", r, r)
        inside = (np.einsum("mkij,mkij->mki", w, em[fi]) >= 0.0).all(2)  # projection within the face
        h = np.einsum("mkj,mkj->mk", w[:, :, 0], nrm[fi])  # height above the face's plane
        ek = ed2.argmin(2)
        d2 = np.where(inside, h * h, np.take_along_axis(ed2, ek[..., None], 2)[..., 0])
        rows = np.arange(m)
        kb = d2.argmin(1)
        e_b = ek[rows, kb]
        ins = inside[rows, kb]
        state = (t[rows, kb, e_b] > 0.0).astype(np.int64) + (t[rows, kb, e_b] >= 1.0)  # start, edge, end
        pn = self._pn[fi[rows, kb], _EDGE_FEATURE[e_b, state]]
        side = np.where(ins, h[rows, kb], np.einsum("mj,mj->m", r[rows, kb, e_b], pn))
        d = np.sqrt(d2[rows, kb])
        v = np.where(side < 0.0, -d, d)
        v = np.where(self._closed[js], v, d)
        return np.where(found, v, np.nan)

    def _recall(self, key: tuple[str, bytes]) -> Any:
        if self.memo_size <= 0:
            return None
        with self._memo_lock:
            return self._memo.get(key)

    def _remember(self, key: tuple[str, bytes], value: Any) -> None:
        if self.memo_size <= 0:
            return
        with self._memo_lock:
            self._memo[key] = value
            while len(self._memo) > self.memo_size:
                del self._memo[next(iter(self._memo))]  # the oldest

    def _evaluate_all(self, p: np.ndarray) -> list[np.ndarray]:
        """Every structure's signed distances for the points ``p`` (n, 3), in ``surfaces`` order,
        in one pass: which (structure, point) pairs are near a structure's box, one k-d tree
        search for all of them, one exact point-triangle pass."""
        if not self.surfaces or not len(p):
            return [np.zeros(len(p)) for _ in self.surfaces]
        boxes = self._boxes
        gap = np.maximum(np.maximum(boxes[:, None, 0] - p[None], p[None] - boxes[:, None, 1]), 0.0)
        box_d = np.sqrt((gap * gap).sum(2))  # (S, n): each point's distance to each structure's box
        res = np.maximum(box_d, self.exact_mm)  # far from the surface: a lower bound
        js, ip = np.nonzero(box_d <= self.exact_mm)
        if len(js):
            k = self.k
            dd = np.full((len(js), k), np.inf)
            idx = np.zeros((len(js), k), np.int64)
            bounds = np.searchsorted(js, np.arange(len(boxes) + 1))  # js is sorted: each structure's pairs
            for j, s in enumerate(self.surfaces.values()):
                a, b = int(bounds[j]), int(bounds[j + 1])
                if a == b:
                    continue
                kj = min(k, s.face_count)
                d_j, i_j = s.tree.query(p[ip[a:b]], k=kj, distance_upper_bound=self.exact_mm + s.reach_mm)
                dd[a:b, :kj] = np.asarray(d_j).reshape(b - a, kj)
                idx[a:b, :kj] = np.asarray(i_j, np.int64).reshape(b - a, kj) + self._offset[s.name]
            reach = self.exact_mm + self._reach[js]  # each pair's search radius
            within = dd < reach[:, None]  # inf: none (fewer than k within the radius)
            found = within[:, 0]
            if not found.all():
                # no surface within reach: outside, unless so deep in the box that it may be inside
                lost = np.nonzero(~found & self._closed[js])[0]
                if len(lost):
                    lo, hi = boxes[js[lost], 0], boxes[js[lost], 1]
                    inner = np.minimum(p[ip[lost]] - lo, hi - p[ip[lost]]).min(1)
                    deep = lost[inner >= self.exact_mm]
                    if len(deep):  # the triangle of the nearest centroid says which side (all at once)
                        res[js[deep], ip[deep]] = self._nearest_centroid_side(js[deep], p[ip[deep]])
                js, ip, idx, within = js[found], ip[found], idx[found], within[found]
        if len(js):
            idx = np.where(within, idx, idx[:, :1])  # missing neighbours: repeat the first
            m, k = idx.shape
            fi = idx.reshape(-1)  # rows of the packed table
            g = self._geom[fi]
            pp = np.repeat(p[ip], k, axis=0)
            cq, feat = closest_points_on_triangles(pp, g[:, 0:3], g[:, 3:6], g[:, 6:9], g[:, 9], g[:, 10], g[:, 11])
            diff = pp - cq
            dist = np.sqrt((diff * diff).sum(1))
            signed = np.where((diff * self._pn[fi, feat]).sum(1) < 0, -dist, dist)
            v = signed.reshape(m, k)[np.arange(m), np.argmin(dist.reshape(m, k), axis=1)]
            res[js, ip] = np.where(self._closed[js], v, np.abs(v))
        return list(res)

    def _nearest_centroid_side(self, js: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Signed distance of each point to the triangle of its nearest centroid on structure
        ``js`` (points far from every triangle, deep in a closed structure's box: the sign is
        what matters there), one k-d search per structure and one exact pass."""
        fi = np.zeros(len(js), np.int64)
        sur = list(self.surfaces.values())
        for j in np.unique(js):
            sel = np.nonzero(js == j)[0]
            _, i0 = sur[j].tree.query(points[sel], k=1)
            fi[sel] = np.asarray(i0, np.int64).reshape(-1) + self._offset[sur[j].name]
        g = self._geom[fi]
        q, feat = closest_points_on_triangles(points, g[:, 0:3], g[:, 3:6], g[:, 6:9], g[:, 9], g[:, 10], g[:, 11])
        diff = points - q
        d = np.sqrt((diff * diff).sum(1))
        return np.where((diff * self._pn[fi, feat]).sum(1) < 0, -d, d)


def shaft_points(world_from_tool: np.ndarray, length_mm: float, spacing_mm: float = 2.0) -> np.ndarray:
    """Points on an instrument's axis from the tip (first row) towards the handle (tool +z),
    every ``spacing_mm`` over ``length_mm``: (n, 3) float in the pose's frame, mm."""
    n = int(np.floor(max(length_mm, 0.0) / spacing_mm)) + 1
    z = np.arange(n) * spacing_mm
    m = np.asarray(world_from_tool, float)
    axis = m[:3, 2] / max(float(np.linalg.norm(m[:3, 2])), 1e-12)
    return m[:3, 3] + z[:, None] * axis
