"""A fine packed signed-distance grid that answers the chain query's (structure, point) pairs by
trilinear interpolation, every structure in one gather, so the exact search runs only where a
decision or the interpolation's accuracy needs it.

Built once per session from a :class:`~vr_trainer.sim.proximity.ProximityField` and its coarse
:class:`~vr_trainer.sim.distance_grid.DistanceGrid` (3 mm), which it refines node for node
(``spacing_mm`` a whole fraction of 3 mm; 1.5 mm by default), over the same box (each structure's
bounding box grown by ``exact_mm`` plus a coarse cell), float32, all structures' nodes in one
array. Which fine nodes get the field's exact evaluator, per coarse cell:

- a corner within ``NEAR_MM`` (9 mm) of the surface: every fine node exact;
- beyond ``exact_mm`` (bounds from its corners): the coarse interpolation (no value there needs
  accuracy);
- between: the exact distance at the cell's centre decides. Where twice its error under the coarse
  interpolation is within ``COARSE_TOLERANCE_MM`` the cell keeps the coarse interpolation (smooth
  there), else its fine nodes are exact. Points in such cells are at least ``NEAR_MM`` less half a
  coarse diagonal (6.4 mm) from the surface, so no contact decision up to that radius falls there.

What a query learns per pair besides the value:

- an error bound that holds for any 1-Lipschitz function (a signed distance is one): with
  trilinear weights ``w_k`` and corners ``c_k``, ``|sum w_k v_k - d(x)| <= sum w_k |x - c_k|
  <= spacing * sqrt(sum_i t_i (1 - t_i))`` (Jensen), plus the nodes' own error; in a cell on the
  coarse interpolation, the coarse cell's centre bound. A pair whose interval about the
  interpolated value holds a decision threshold (0: inside or not; the caller's contact distance)
  is searched exactly, so those decisions never change.
- whether its cell is reliable. Trilinear interpolation is accurate where the distance is smooth
  (error about ``spacing^2 * curvature / 8`` per axis) but not where its gradient jumps (the medial
  axis: the middle of a thin root, creases between structures), up to half a cell there. Per fine
  cell with exact corners, from the second differences ``D2`` of the node values along each axis
  (the largest at its 8 corners, summed over the axes): the error is at most about ``D2 / 8`` where
  smooth and ``D2 / 2`` at a kink (1-D: a kink ``a`` from a node gives ``D2 = 2 max(a, h - a)``
  and an error of ``2 a (h - a) / h``). A cell is reliable if even the kink estimate is within
  ``tolerance_mm``; unreliable if the smooth one is not; in between (or where the second
  differences reach an interpolated node), the exact distance at its centre decides (twice the
  centre's error bounds the cell's for a 1-D kink). Unreliable cells are searched exactly where
  they may hold a structure's minimum. Measured: within 0.14 mm of exact distances on 10,000 points
  within 20 mm of the shipped PTED structures; 0.17 mm on ``vr-trainer bench proximity``'s points.

Units: millimetres, in the field's frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from vr_trainer.sim.distance_grid import CORNERS, NODE_SLACK_MM, DistanceGrid, evaluate_pairs

if TYPE_CHECKING:
    from vr_trainer.sim.proximity import ProximityField

FINE_SLACK_MM = NODE_SLACK_MM + 1e-4  # the nodes' error, plus float32 rounding (values below ~100 mm)
NEAR_MM = 9.0  # coarse cells with a corner this near a surface get exact fine nodes
COARSE_TOLERANCE_MM = 0.2  # a coarse cell whose centre's error, doubled, is within this keeps its interpolation
FINE, COARSE = 1, 2  # reliable cells' codes: exact corners, or the coarse grid's (checked) interpolation


@dataclass
class FineDistanceGrid:
    """Every structure's fine node distances and cell reliability, packed (see the module)."""

    spacing_mm: float
    coarse_spacing_mm: float  # the coarse grid's, which this one refines
    origin_cells: np.ndarray  # (S, 3) node (0, 0, 0) of each structure's grid, in cells
    cells_u: np.ndarray  # (S, 3) cells per axis, unsigned
    node_stride: np.ndarray  # (S, 3) flat-index step per axis
    node_base: np.ndarray  # (S,) each structure's first node
    corner_offset: np.ndarray  # (S, 8) flat-index offset of each cell corner from corner (0, 0, 0)
    values_mm: np.ndarray  # (N,) float32 signed distance at every node
    cell_code: np.ndarray  # (N,) uint8, the cell whose corner (0, 0, 0) is this node: 0 unreliable,
    # FINE reliable (8 exact corners), COARSE reliable (the coarse grid's interpolation, checked)
    evaluated: int  # nodes and cell centres evaluated exactly in the build

    def __post_init__(self) -> None:
        # the query's per-structure constants, laid out for (3, S, n) and (S, n) arrays
        self._origin_t = np.ascontiguousarray(self.origin_cells.T[:, :, None])
        self._cells_t = np.ascontiguousarray(self.cells_u.T[:, :, None])
        self._stride_t = (self.node_stride[:, 0:1].copy(), self.node_stride[:, 1:2].copy(),
                          self.node_base[:, None].copy(), np.ascontiguousarray(self.corner_offset.T[:, :, None]))

    @classmethod
    def build(cls, field: "ProximityField", coarse: DistanceGrid, spacing_mm: float = 1.5,
              tolerance_mm: float = 0.15) -> "FineDistanceGrid":
        """The grids of every structure of ``field`` (nodes ``spacing_mm`` apart, a whole fraction of
        the coarse grid's spacing: the fine grid refines ``coarse``, node for node); ``tolerance_mm``:
        the interpolation error a cell may have and still be reliable (estimated, see the module)."""
        h = float(spacing_mm)
        hc = coarse.spacing_mm
        r = int(round(hc / h))
        if r < 1 or abs(r * h - hc) > 1e-9 * hc:
            raise ValueError(f"the fine spacing {h} mm must divide the coarse spacing {hc} mm")
        radius = 2.0 * (field.exact_mm + hc)  # the evaluator's range: reaches every node
        far_mm = field.exact_mm + hc * np.sqrt(3.0) / 2.0 + h * np.sqrt(3.0) + NODE_SLACK_MM
        strides, bases, offsets, values, codes, cells = [], [], [], [], [], []
        n_nodes = evaluated = 0
        for j in range(len(field.surfaces)):
            ncc = coarse.cells[j]
            vc = coarse.values_mm[coarse.node_base[j]:coarse.node_base[j] + int(np.prod(ncc + 1))].reshape(ncc + 1)
            lo = coarse.origin_mm[j]
            nc = ncc * r
            nn = nc + 1
            ns = np.array([nn[1] * nn[2], nn[2], 1], np.int64)
            # coarse cells: near a surface (fine nodes exact), far (beyond exact_mm), or between,
            # where the coarse interpolation stands if its centre says it is smooth
            cmin = np.min(np.abs(_corners(vc)), 0)
            need = cmin <= NEAR_MM
            mid = np.nonzero(~need & (cmin - hc * np.sqrt(3.0) / 2.0 <= far_mm))
            if len(mid[0]):
                cc = np.stack(mid, 1)
                exact = evaluate_pairs(field, j, lo + (cc + 0.5) * hc, radius)
                evaluated += len(cc)
                interp = _corners(vc)[:, mid[0], mid[1], mid[2]].mean(0)
                need[mid] = 2.0 * np.abs(interp - exact) > COARSE_TOLERANCE_MM
            grid = _upsample(vc, r)  # the coarse interpolation at every fine node
            need_f = need.repeat(r, 0).repeat(r, 1).repeat(r, 2)  # per fine cell
            exact_node = np.zeros(tuple(nn), bool)
            for a in (0, 1):
                for b in (0, 1):
                    for c in (0, 1):
                        exact_node[a:a + nc[0], b:b + nc[1], c:c + nc[2]] |= need_f
            exact_node[::r, ::r, ::r] = False  # the coarse nodes: exact already
            idx = np.nonzero(exact_node)
            grid[idx] = evaluate_pairs(field, j, lo + np.stack(idx, 1) * h, radius)
            evaluated += len(idx[0])
            exact_node[::r, ::r, ::r] = True
            ok, centres = _reliable_cells(grid, ~exact_node, tolerance_mm)
            if len(centres[0]):  # the ambiguous cells: the exact distance at the centre decides
                c3 = np.stack(centres, 1)
                exact = evaluate_pairs(field, j, lo + (c3 + 0.5) * h, radius)
                evaluated += len(c3)
                ok[centres] = 2.0 * np.abs(_corners(grid)[:, centres[0], centres[1], centres[2]].mean(0)
                                           - exact) <= tolerance_mm
            all_exact = np.all(_corners(exact_node), 0)
            code = np.zeros(tuple(nn), np.uint8)
            code[:-1, :-1, :-1] = np.where(ok, np.where(all_exact, FINE, COARSE), 0)
            cells.append(nc)
            strides.append(ns)
            bases.append(n_nodes)
            offsets.append(CORNERS.astype(np.int64) @ ns)
            values.append(grid.reshape(-1).astype(np.float32))
            codes.append(code.reshape(-1))
            n_nodes += int(np.prod(nn))
        if not values:
            z = np.zeros((0, 3))
            return cls(h, hc, z, z.astype(np.uint64), z.astype(np.int64), np.zeros(0, np.int64),
                       np.zeros((0, 8), np.int64), np.zeros(0, np.float32), np.zeros(0, np.uint8), 0)
        return cls(h, hc, coarse.origin_mm / h, np.array(cells).astype(np.uint64), np.array(strides),
                   np.array(bases), np.array(offsets), np.concatenate(values), np.concatenate(codes), evaluated)

    @property
    def node_count(self) -> int:
        return len(self.values_mm)

    @property
    def nbytes(self) -> int:
        """Memory held by the node values and cell flags (bytes)."""
        return int(self.values_mm.nbytes + self.cell_code.nbytes)

    @property
    def max_error_mm(self) -> float:
        """The error bound at a cell's centre, the largest in a ``FINE`` cell (mm)."""
        return float(self.spacing_mm * np.sqrt(0.75) + FINE_SLACK_MM)

    @property
    def coarse_error_mm(self) -> float:
        """The error bound at a coarse cell's centre: that of values in ``COARSE`` cells (mm)."""
        return float(self.coarse_spacing_mm * np.sqrt(0.75) + FINE_SLACK_MM)

    @property
    def contact_limit_mm(self) -> float:
        """Below this, a contact distance is never within a ``COARSE`` cell's reach (its points are
        at least ``NEAR_MM`` less half a coarse diagonal from the surface): the fine bound decides."""
        return NEAR_MM - self.coarse_spacing_mm * np.sqrt(0.75) - self.max_error_mm

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
        return v, self.cell_code.take(base, mode="clip"), ingrid, t

    def error_mm(self, t: np.ndarray, code: np.ndarray) -> np.ndarray:
        """The error bound (mm) of interpolated values at places ``t`` (3, ...) in their cells of
        ``code`` (the module's: any 1-Lipschitz function, plus the nodes' own error; in a ``COARSE``
        cell the coarse cell's centre's)."""
        fine = np.sqrt((t * (1.0 - t)).sum(0)) * self.spacing_mm + FINE_SLACK_MM
        return np.where(code == COARSE, self.coarse_error_mm, fine)


def _corners(v: np.ndarray) -> np.ndarray:
    """(8, cells...) the values of ``v`` (nodes, 3-D) at every cell's 8 corners, ``CORNERS`` order."""
    sl = (slice(0, -1), slice(1, None))
    return np.stack([v[a, b, c] for a in sl for b in sl for c in sl])


def _upsample(v: np.ndarray, r: int) -> np.ndarray:
    """The trilinear interpolation of node values ``v`` (3-D) at ``r`` times the node density."""
    for ax in range(3):
        a = np.moveaxis(v, ax, 0)
        out = np.empty((r * (a.shape[0] - 1) + 1,) + a.shape[1:])
        for s in range(r):
            out[s:-1:r] = a[:-1] * (1.0 - s / r) + a[1:] * (s / r)
        out[-1] = a[-1]
        v = np.moveaxis(out, 0, ax)
    return np.ascontiguousarray(v)


def _reliable_cells(grid: np.ndarray, far: np.ndarray, tolerance_mm: float
                    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Per cell of ``grid`` (node values, 3-D): reliable (the module's estimate), and the indices of
    the cells it leaves open (for a check at the centre). Cells with a node in ``far`` (beyond the
    exact range) are reliable: no value there needs accuracy."""
    sl = (slice(0, -1), slice(1, None))
    cell = np.zeros(tuple(np.array(grid.shape) - 1))
    for ax in range(3):  # per axis the largest |D2| at the cell's 8 corners, summed over the axes
        d2 = np.zeros(grid.shape)
        g = np.moveaxis(grid, ax, 0)
        np.moveaxis(d2, ax, 0)[1:-1] = np.abs(g[:-2] - 2.0 * g[1:-1] + g[2:])  # a view: writes land in d2
        cell += np.max([d2[a, b, c] for a in sl for b in sl for c in sl], axis=0)
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
