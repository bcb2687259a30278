"""Per-structure signed distance grids that bound every (structure, point) distance of a query in
one vectorised pass, so the exact search runs only where it can change the answer.

Built once per session from a :class:`~vr_trainer.sim.proximity.ProximityField`, from whatever
geometry the bundle holds: per structure, the signed distance (the field's exact evaluator) at
the nodes of a uniform grid of ``spacing_mm`` over its bounding box grown by the field's
``exact_mm`` plus one cell. Packed: one array of node values for all structures.

The bound: the signed distance is 1-Lipschitz, so a point's distance differs from each corner
value of its cell by at most its distance to that corner; the tightest of the 8 (where the
distance changes steadily across the cell, the corner along its gradient makes the bound nearly
exact; never wider than the nearest corner's ``spacing * sqrt(3) / 2``). The grid decides which pairs need the exact
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

    @classmethod
    def build(cls, field: "ProximityField", spacing_mm: float = 3.0) -> "DistanceGrid":
        """The grids of every structure of ``field`` (nodes ``spacing_mm`` apart)."""
        from vr_trainer.sim.proximity import ProximityField

        h = float(spacing_mm)
        margin = field.exact_mm + h
        origins, cells, strides, bases, offsets, values = [], [], [], [], [], []
        n_nodes = 0
        for name, s in field.surfaces.items():
            lo = s.box_mm[0] - margin
            nc = np.maximum(np.ceil((s.box_mm[1] + margin - lo) / h).astype(np.int64), 1)
            nn = nc + 1
            ns = np.array([nn[1] * nn[2], nn[2], 1], np.int64)
            axes = [lo[k] + h * np.arange(nn[k]) for k in range(3)]
            nodes = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
            # the field's evaluator, with an exact range that reaches every node (the grid's corners
            # are up to sqrt(3) * margin from the box)
            one = ProximityField({name: s}, k=field.k, exact_mm=2.0 * margin, memo_size=0)
            v = one.signed_distances(nodes, memo=False)[name]
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
                       np.zeros((0, 8), np.int64), np.zeros(0), z)
        origin = np.array(origins)
        return cls(h, origin, np.array(cells), np.array(strides), np.array(bases), np.array(offsets),
                   np.concatenate(values), origin / h)

    @property
    def node_count(self) -> int:
        return len(self.values_mm)

    def bounds(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For points ``p`` (n, 3): per structure and point (S, n) a lower and an upper bound on the
        signed distance (mm), from the 8 corners of the point's cell: ``max_k (v_k - |x - c_k|)``
        and ``min_k (v_k + |x - c_k|)`` (1-Lipschitz), widened by the nodes' own error; and whether
        the point lies in the structure's grid (elsewhere the bounds are meaningless: the point is
        more than ``exact_mm`` + one cell from the structure's box)."""
        u = p[None] * (1.0 / self.spacing_mm) - self.origin_cells[:, None]  # (S, n, 3) in cells
        i = np.floor(u).astype(np.int64)
        ingrid = ((i >= 0) & (i < self.cells[:, None])).all(2)
        i = np.clip(i, 0, self.cells[:, None] - 1)
        node = np.matmul(i, self.node_stride[:, :, None])[:, :, 0] + self.node_base[:, None]
        cv = self.values_mm[node[:, :, None] + self.corner_offset[:, None, :]]  # (S, n, 8)
        df = (u - i)[:, :, None, :] - CORNERS  # (S, n, 8, 3) from each corner, in cells
        dk = np.sqrt(np.einsum("sncj,sncj->snc", df, df)) * self.spacing_mm + NODE_SLACK_MM
        return (cv - dk).max(2), (cv + dk).min(2), ingrid
