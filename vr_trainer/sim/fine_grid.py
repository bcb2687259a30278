"""A fine packed signed-distance grid that answers the chain query's (structure, point) pairs by
trilinear interpolation, every structure in one gather, so the exact search runs only where a
decision or the interpolation's accuracy needs it.

Built once per session from a :class:`~vr_trainer.sim.proximity.ProximityField` (its exact
evaluator, the same as the coarse :class:`~vr_trainer.sim.distance_grid.DistanceGrid`): per
structure a uniform grid of ``spacing_mm`` (1 mm by default) over its bounding box grown by the
field's ``exact_mm`` plus one cell, float32, all structures' nodes in one array. Nodes that the
coarse grid's bounds place farther than ``exact_mm`` plus a cell's diagonal from the surface are
not evaluated: they hold that bound (every point of their cells is beyond ``exact_mm``).

Two things a query learns per pair besides the value:

- an error bound that holds for any 1-Lipschitz function (a signed distance is one): with
  trilinear weights ``w_k`` and corners ``c_k``, ``|sum w_k v_k - d(x)| <= sum w_k |x - c_k|
  <= spacing * sqrt(sum_i t_i (1 - t_i))`` (Jensen), plus the nodes' own error. A pair whose
  interval about the interpolated value holds a decision threshold (0: inside or not; the
  caller's contact distance) is searched exactly, so those decisions never change.
- whether its cell is reliable. Trilinear interpolation is accurate where the distance is smooth
  (error about ``spacing^2 * curvature / 8``) but not where its gradient jumps (the medial axis:
  the middle of a thin root, creases between structures), up to half a cell there. Per cell, from
  the second differences ``D2`` of the node values along each axis at its 8 corners: the error is
  at most about ``D2 / 8`` where smooth and ``D2 / 2`` at a kink (1-D: a kink ``a`` from a node
  gives ``D2 = 2 max(a, h - a)`` and an error of ``2 a (h - a) / h``). A cell is reliable if even
  the kink estimate is within ``tolerance_mm``; unreliable if the smooth one is not; in between,
  the exact distance at its centre decides (twice the centre's error bounds the cell's for a 1-D
  kink). Unreliable cells are searched exactly where they may hold a structure's minimum.

Units: millimetres, in the field's frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from vr_trainer.sim.distance_grid import CORNERS, NODE_SLACK_MM, DistanceGrid

if TYPE_CHECKING:
    from vr_trainer.sim.proximity import ProximityField

FINE_SLACK_MM = NODE_SLACK_MM + 1e-4  # the nodes' error, plus float32 rounding (values below ~100 mm)
EVAL_CHUNK = 16384  # nodes per exact-evaluation pass (bounds the temporary arrays, ~10 MB)


@dataclass
class FineDistanceGrid:
    """Every structure's fine node distances and cell reliability, packed (see the module)."""

    spacing_mm: float
    origin_cells: np.ndarray  # (S, 3) node (0, 0, 0) of each structure's grid, in cells
    cells_u: np.ndarray  # (S, 3) cells per axis, unsigned
    node_stride: np.ndarray  # (S, 3) flat-index step per axis
    node_base: np.ndarray  # (S,) each structure's first node
    corner_offset: np.ndarray  # (S, 8) flat-index offset of each cell corner from corner (0, 0, 0)
    values_mm: np.ndarray  # (N,) float32 signed distance at every node
    cell_ok: np.ndarray  # (N,) bool: the cell whose corner (0, 0, 0) is this node interpolates well
    evaluated: int  # nodes and cell centres evaluated exactly in the build

    def __post_init__(self) -> None:
        # the query's per-structure constants, laid out for (3, S, n) and (S, n) arrays
        self._origin_t = np.ascontiguousarray(self.origin_cells.T[:, :, None])
        self._cells_t = np.ascontiguousarray(self.cells_u.T[:, :, None])
        self._stride_t = (self.node_stride[:, 0:1].copy(), self.node_stride[:, 1:2].copy(),
                          self.node_base[:, None].copy(), np.ascontiguousarray(self.corner_offset.T[:, :, None]))

    @classmethod
    def build(cls, field: "ProximityField", coarse: DistanceGrid, spacing_mm: float = 1.0,
              tolerance_mm: float = 0.15) -> "FineDistanceGrid":
        """The grids of every structure of ``field`` (nodes ``spacing_mm`` apart); ``coarse``: the
        field's coarse grid (its bounds skip far nodes); ``tolerance_mm``: the interpolation error
        a cell may have and still be reliable (estimated, see the module)."""
        h = float(spacing_mm)
        margin = field.exact_mm + h
        far_mm = field.exact_mm + h * np.sqrt(3.0) + NODE_SLACK_MM
        strides, bases, offsets, values, oks = [], [], [], [], []
        origins, cells = [], []
        n_nodes = evaluated = 0
        for j, s in enumerate(field.surfaces.values()):
            lo = s.box_mm[0] - margin
            nc = np.maximum(np.ceil((s.box_mm[1] + margin - lo) / h).astype(np.int64), 1)
            nn = nc + 1
            ns = np.array([nn[1] * nn[2], nn[2], 1], np.int64)
            axes = [lo[k] + h * np.arange(nn[k]) for k in range(3)]
            nodes = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
            # the coarse grid's bounds: nodes surely beyond far_mm keep a bound
            b_lo, b_up = _coarse_bounds(coarse, j, nodes, far_mm)
            far = (b_lo > far_mm) | (b_up < -far_mm)
            v = np.where(b_lo > far_mm, b_lo, b_up)
            near = np.nonzero(~far)[0]
            v[near] = _evaluate(field, j, nodes[near], 2.0 * margin)
            evaluated += len(near)
            grid = v.reshape(tuple(nn))
            ok, centres = _reliable_cells(grid, far.reshape(tuple(nn)), tolerance_mm)
            if len(centres):  # the ambiguous cells: the exact distance at the centre decides
                c = np.array(centres).T  # (m, 3) cell indices
                x = lo + (c + 0.5) * h
                exact = _evaluate(field, j, x, 2.0 * margin)
                evaluated += len(c)
                interp = sum(grid[c[:, 0] + dx, c[:, 1] + dy, c[:, 2] + dz]
                             for dx in (0, 1) for dy in (0, 1) for dz in (0, 1)) / 8.0
                ok[tuple(centres)] = 2.0 * np.abs(interp - exact) <= tolerance_mm
            full_ok = np.zeros(tuple(nn), bool)
            full_ok[:-1, :-1, :-1] = ok
            origins.append(lo / h)
            cells.append(nc)
            strides.append(ns)
            bases.append(n_nodes)
            offsets.append(CORNERS.astype(np.int64) @ ns)
            values.append(v.astype(np.float32))
            oks.append(full_ok.reshape(-1))
            n_nodes += len(v)
        if not values:
            z = np.zeros((0, 3))
            return cls(h, z, z.astype(np.uint64), z.astype(np.int64), np.zeros(0, np.int64),
                       np.zeros((0, 8), np.int64), np.zeros(0, np.float32), np.zeros(0, bool), 0)
        return cls(h, np.array(origins), np.array(cells).astype(np.uint64), np.array(strides), np.array(bases),
                   np.array(offsets), np.concatenate(values), np.concatenate(oks), evaluated)

    @property
    def node_count(self) -> int:
        return len(self.values_mm)

    @property
    def nbytes(self) -> int:
        """Memory held by the node values and cell flags (bytes)."""
        return int(self.values_mm.nbytes + self.cell_ok.nbytes)

    @property
    def max_error_mm(self) -> float:
        """The error bound at a cell's centre, the largest anywhere (mm)."""
        return float(self.spacing_mm * np.sqrt(0.75) + FINE_SLACK_MM)

    def interpolate(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For points ``p`` (n, 3), per structure and point (S, n): the trilinear signed distance
        (mm), whether its cell is reliable, whether the point lies in the structure's grid (elsewhere
        the first two are meaningless: the point is more than ``exact_mm`` + a cell from the
        structure's box); and the points' place in their cells (3, S, n), for :meth:`error_mm`.
        One gather of the 8 corners of every pair's cell over all structures; the axis of corners
        and coordinates leads, so every step works on contiguous (S, n) planes."""
        pc = np.ascontiguousarray(p.T) * (1.0 / self.spacing_mm)
        u = pc[:, None, :] - self._origin_t  # (3, S, n) in cells
        f = np.floor(u)
        i = f.astype(np.int64)
        inside = i.view(np.uint64) < self._cells_t  # negatives wrap to huge
        ingrid = inside[0] & inside[1] & inside[2]
        sx, sy, base0, offs = self._stride_t
        base = i[0] * sx + i[1] * sy + i[2] + base0  # (S, n): the cell's corner (0, 0, 0)
        c = self.values_mm.take(base[None] + offs, mode="clip").astype(float)
        t = u - f
        cx = c[:4] + (c[4:] - c[:4]) * t[0]  # (4, S, n): along x (corners x-major, then y, then z)
        cy = cx[:2] + (cx[2:] - cx[:2]) * t[1]  # (2, S, n): along y
        v = cy[0] + (cy[1] - cy[0]) * t[2]
        return v, ingrid & self.cell_ok.take(base, mode="clip"), ingrid, t

    def error_mm(self, t: np.ndarray) -> np.ndarray:
        """The error bound (mm) of interpolated values at places ``t`` (3, ...) in their cells (the
        module's: any 1-Lipschitz function, plus the nodes' own error)."""
        return np.sqrt((t * (1.0 - t)).sum(0)) * self.spacing_mm + FINE_SLACK_MM


def _coarse_bounds(coarse: DistanceGrid, j: int, points: np.ndarray, far_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds (mm) on the signed distance from ``points`` (m, 3) to structure ``j``
    from the coarse grid: its nearest node, then its cell's 8 corners where that leaves open
    whether the point is beyond ``far_mm``."""
    u = points * (1.0 / coarse.spacing_mm) - coarse.origin_cells[j]
    i = np.clip(np.rint(u), 0, coarse.cells[j]).astype(np.int64)
    v = coarse.values_mm[i @ coarse.node_stride[j] + coarse.node_base[j]]
    du = u - i
    r = np.sqrt((du * du).sum(1)) * coarse.spacing_mm + NODE_SLACK_MM
    lo, up = v - r, v + r
    open_ = np.nonzero((lo <= far_mm) & (up >= -far_mm) & (np.abs(v) > far_mm - 2.0 * coarse.spacing_mm))[0]
    if len(open_):
        lo[open_], up[open_] = coarse.corner_bounds(u[open_], np.full(len(open_), j))
    return lo, up


def _evaluate(field: "ProximityField", j: int, points: np.ndarray, radius_mm: float) -> np.ndarray:
    """The field's exact signed distance from ``points`` (m, 3) to structure ``j``, in chunks."""
    out = np.empty(len(points))
    for a in range(0, len(points), EVAL_CHUNK):
        q = points[a:a + EVAL_CHUNK]
        out[a:a + len(q)] = field._exact_pairs(q, np.full(len(q), j), np.arange(len(q)), radius_mm)
    return out


def _reliable_cells(grid: np.ndarray, far: np.ndarray, tolerance_mm: float
                    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Per cell of ``grid`` (node values, 3-D): reliable (the module's estimate), and the indices of
    the cells it leaves open (for a check at the centre). Cells with a node in ``far`` (beyond the
    exact range) are reliable: no value there needs accuracy."""
    d2 = np.zeros(grid.shape)
    for ax in range(3):
        g = np.moveaxis(grid, ax, 0)
        out = np.moveaxis(d2, ax, 0)  # a view: writes land in d2
        out[1:-1] = np.maximum(out[1:-1], np.abs(g[:-2] - 2.0 * g[1:-1] + g[2:]))
    sl = (slice(0, -1), slice(1, None))
    cell = np.max([d2[a, b, c] for a in sl for b in sl for c in sl], axis=0)  # (cells): over its 8 corners
    cell_far = np.any([far[a, b, c] for a in sl for b in sl for c in sl], axis=0)
    # second differences that reach a far node (a bound, not a distance) say nothing: such cells
    # are checked at the centre
    nb = far.copy()
    for ax in range(3):
        f, o = np.moveaxis(far, ax, 0), np.moveaxis(nb, ax, 0)
        o[1:] |= f[:-1]
        o[:-1] |= f[1:]
    touch = np.any([nb[a, b, c] for a in sl for b in sl for c in sl], axis=0)
    ok = cell_far | (~touch & (cell / 2.0 <= tolerance_mm))
    open_ = ~ok & (touch | (cell / 8.0 <= tolerance_mm))
    return ok, np.nonzero(open_)
