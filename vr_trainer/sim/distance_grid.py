"""Per-structure signed distance grids that bound every (structure, point) distance of a query in
one vectorised pass, so the exact search runs only where it can change the answer.

Built once per session from a :class:`~vr_trainer.sim.proximity.ProximityField`, from whatever
geometry the bundle holds: per structure, the signed distance (the field's exact evaluator) at
the nodes of a uniform grid of ``spacing_mm`` over its bounding box grown by the field's
``exact_mm`` plus one cell. Packed: one array of node values for all structures.

The bounds: the signed distance is 1-Lipschitz, so a point's distance differs from a node's by at
most its distance to that node. A cheap pass for every pair takes the nearest node (at most
``spacing * sqrt(3) / 2`` wide); a tight pass for the pairs that survive it takes the best of the
8 corners of the cell (where the distance changes steadily across the cell, the corner along its
gradient makes the bound nearly exact). The grid decides which pairs need the exact
search (see :meth:`ProximityField.clearance`); its values are reported only as bounds. Points
outside a structure's grid are more than ``exact_mm`` + one cell from its box.

Units: millimetres, in the field's frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from vr_trainer.sim.proximity import ProximityField

# the 8 cell corners (dx, dy, dz), in cells
CORNERS = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)
NODE_SLACK_MM = 0.01  # the node values' own error (the field's evaluator), added to every bound
EVAL_CHUNK = 4096  # points per pass of the exact evaluation in a build


@dataclass
class DistanceGrid:
    """Every structure's node distances, packed (see the module)."""

    spacing_mm: float
    origin_mm: np.ndarray  # (S, 3) node (0, 0, 0) of each structure's grid
    cells: np.ndarray  # (S, 3) cells per axis (nodes: cells + 1)
    node_stride: np.ndarray  # (S, 3) flat-index step per axis, within ``values_mm``
    node_base: np.ndarray  # (S,) each structure's first node in ``values_mm``
    corner_offset: np.ndarray  # (S, 8) flat-index offset of each cell corner from its corner (0, 0, 0)
    values_mm: np.ndarray  # (nodes,) signed distance at every node
    origin_cells: np.ndarray  # (S, 3) ``origin_mm / spacing_mm``
    cells_u: np.ndarray  # (S, 3) ``cells`` as unsigned

    @classmethod
    def build(cls, field: "ProximityField", spacing_mm: float = 3.0) -> "DistanceGrid":
        """The grids of every structure of ``field`` (nodes ``spacing_mm`` apart)."""
        h = float(spacing_mm)
        margin = field.exact_mm + h
        origins, cells, strides, bases, offsets, values = [], [], [], [], [], []
        n_nodes = 0
        for j, s in enumerate(field.surfaces.values()):
            lo = s.box_mm[0] - margin
            nc = np.maximum(np.ceil((s.box_mm[1] + margin - lo) / h).astype(np.int64), 1)
            nn = nc + 1
            ns = np.array([nn[1] * nn[2], nn[2], 1], np.int64)
            axes = [lo[k] + h * np.arange(nn[k]) for k in range(3)]
            nodes = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
            # the field's evaluator (its pair search, in chunks), with an exact range that reaches
            # every node (the grid's corners are up to sqrt(3) * margin from the box)
            v = evaluate_pairs(field, j, nodes, 2.0 * margin)
            origins.append(lo)
            cells.append(nc)
            strides.append(ns)
            bases.append(n_nodes)
            offsets.append(CORNERS.astype(np.int64) @ ns)
            values.append(v)
            n_nodes += len(v)
        if not values:
            z = np.zeros((0, 3))
            return cls(h, z, z.astype(np.int64), z.astype(np.int64), np.zeros(0, np.int64),
                       np.zeros((0, 8), np.int64), np.zeros(0), z, z.astype(np.uint64))
        origin = np.array(origins)
        return cls(h, origin, np.array(cells), np.array(strides), np.array(bases), np.array(offsets),
                   np.concatenate(values), origin / h, np.array(cells).astype(np.uint64))

    @property
    def node_count(self) -> int:
        return len(self.values_mm)

    def near_bounds(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The cheap pass, for points ``p`` (n, 3): per structure and point (S, n) the signed distance
        at the nearest node, its bound (the distance to that node plus the nodes' own error), and
        whether the point lies in the structure's grid (elsewhere the first two are meaningless:
        the point is more than ``exact_mm`` + half a cell from the structure's box); and the points
        in each grid's cell units (S, n, 3), for :meth:`corner_bounds`."""
        u = p[None] * (1.0 / self.spacing_mm) - self.origin_cells[:, None]  # (S, n, 3) in cells
        r = np.rint(u)
        i = r.astype(np.int64)
        ingrid = (i.view(np.uint64) <= self.cells_u[:, None]).all(2)  # negatives wrap to huge
        node = np.matmul(i, self.node_stride[:, :, None])[:, :, 0] + self.node_base[:, None]
        v = self.values_mm.take(node, mode="clip")  # outside the grid: any value, masked by ingrid
        du = u - r
        return v, np.sqrt((du * du).sum(2)) * self.spacing_mm + NODE_SLACK_MM, ingrid, u

    def corner_bounds(self, u: np.ndarray, js: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The tight pass, for pairs in the grids (``u``: (m, 3) points in cell units of structure
        ``js``): a lower and an upper bound on each pair's signed distance (mm) from the 8 corners
        of its cell, ``max_k (v_k - |x - c_k|)`` and ``min_k (v_k + |x - c_k|)`` (1-Lipschitz),
        widened by the nodes' own error."""
        i = np.clip(np.floor(u), 0.0, self.cells[js] - 1.0)
        df = (u - i)[:, None, :] - CORNERS  # (m, 8, 3) from each corner, in cells
        node = (i.astype(np.int64) * self.node_stride[js]).sum(1) + self.node_base[js]
        cv = self.values_mm[node[:, None] + self.corner_offset[js]]  # (m, 8)
        dk = np.sqrt((df * df).sum(2)) * self.spacing_mm + NODE_SLACK_MM
        return (cv - dk).max(1), (cv + dk).min(1)


def evaluate_pairs(field: "ProximityField", j: int, points: np.ndarray, radius_mm: float) -> np.ndarray:
    """The field's exact signed distance from ``points`` (m, 3) to its structure ``j`` (the chain
    query's pair search, ``k`` nearest centroids; nan where none is within ``radius_mm`` + a
    centroid's reach), in chunks of ``EVAL_CHUNK`` points (temporaries of ~2 MB: measured fastest).
    Points with no centroid that near get the full evaluator's answer (a bound beyond ``radius_mm``,
    or the side of the nearest triangle deep inside)."""
    from vr_trainer.sim.proximity import ProximityField

    out = np.empty(len(points))
    for a in range(0, len(points), EVAL_CHUNK):
        q = points[a:a + EVAL_CHUNK]
        out[a:a + len(q)] = field._exact_pairs(q, np.full(len(q), j), np.arange(len(q)), radius_mm)
    lost = np.nonzero(np.isnan(out))[0]
    if len(lost):
        name, s = list(field.surfaces.items())[j]
        one = ProximityField({name: s}, k=field.k, exact_mm=radius_mm, memo_size=0, fine_spacing_mm=None)
        out[lost] = one.signed_distances(points[lost], memo=False)[name]
    return out


def edge_tables(geom: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per packed triangle (rows of ``geom``: a, b - a, c - a, ...): each edge's start (F, 3, 3),
    vector (F, 3, 3), inverse squared length (F, 3; 0 for a zero-length edge), in-plane normal
    towards the inside (F, 3, 3; nan for a zero-area triangle, which has no inside), and the unit
    face normal (F, 3; 0 for a zero-area triangle)."""
    a, ab, ac = geom[:, 0:3], geom[:, 3:6], geom[:, 6:9]
    b, c = a + ab, a + ac
    start = np.stack([a, b, c], 1)
    vec = np.stack([b - a, c - b, a - c], 1)
    ll = (vec * vec).sum(2)
    inv = np.where(ll > 0.0, 1.0 / np.where(ll > 0.0, ll, 1.0), 0.0)
    n = np.cross(ab, ac)
    ln = np.linalg.norm(n, axis=1)
    n = n / np.where(ln > 0.0, ln, 1.0)[:, None]
    inward = np.cross(n[:, None, :], vec)  # left of each edge of a counter-clockwise face
    inward[ln <= 0.0] = np.nan
    return start, vec, inv, inward, n
