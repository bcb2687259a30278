"""From a 2D mark on a mirror frame to world points on the anatomy.

A mentor draws on the video of the mirror view. Each mirror frame carries, per eye
shown, its pixel rectangle, ``view_from_world`` (mm) and GL ``projection``, plus the
window depth of every pixel. A point (x, y) in mirror pixels (origin top-left,
continuous: pixel (i, j) spans [i, i+1) x [j, j+1)) is unprojected with the depth
under it. Points over the background look for the nearest surface pixel within
``search_radius_px``; points still without a surface take an eye depth interpolated
along the stroke from the points that hit, so a stroke that strays off an edge keeps
its shape. No GL, no asyncio: numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

BACKGROUND_DEPTH = 1.0 - 1e-6


class ViewLike(Protocol):
    rect_px: tuple[int, int, int, int]  # x, y from the top, width, height
    view_from_world: np.ndarray
    projection: np.ndarray


@dataclass
class UnprojectResult:
    points_mm: np.ndarray  # Mx3 world points for the kept input points
    kept: np.ndarray  # N bool: which input points were inside the chosen view
    hit: np.ndarray  # N bool: which input points had a surface under them (or near)
    view_index: int

    @property
    def hit_fraction(self) -> float:
        k = int(self.kept.sum())
        return float(self.hit[self.kept].sum()) / k if k else 0.0


def view_at(views: Sequence[ViewLike], x_px: float, y_px: float) -> int | None:
    """Index of the view whose rectangle contains the mirror pixel (x, y), or None."""
    for k, v in enumerate(views):
        rx, ry, rw, rh = v.rect_px
        if rx <= x_px < rx + rw and ry <= y_px < ry + rh:
            return k
    return None


def _offsets(radius_px: int) -> np.ndarray:
    r = int(radius_px)
    g = np.stack(np.meshgrid(np.arange(-r, r + 1), np.arange(-r, r + 1), indexing="xy"), -1).reshape(-1, 2)
    g = g[(g ** 2).sum(1) <= r * r]
    return g[np.argsort((g ** 2).sum(1), kind="stable")]


def _sample_depth(depth: np.ndarray, ix: np.ndarray, iy: np.ndarray, rect: tuple[int, int, int, int],
                  radius_px: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Depth at (ix, iy) or the nearest surface pixel within the radius (inside the rect)."""
    rx, ry, rw, rh = rect
    offs = _offsets(radius_px)  # K x 2, nearest first
    sx = np.clip(ix[:, None] + offs[None, :, 0], rx, rx + rw - 1)
    sy = np.clip(iy[:, None] + offs[None, :, 1], ry, ry + rh - 1)
    d = depth[sy, sx]  # N x K
    ok = d < BACKGROUND_DEPTH
    first = np.argmax(ok, axis=1)
    hit = ok[np.arange(len(ix)), first]
    rows = np.arange(len(ix))
    return d[rows, first], hit, sx[rows, first], sy[rows, first]


def unproject_pixels(points_px: np.ndarray, depth: np.ndarray, views: Sequence[ViewLike],
                     view_index: int | None = None, search_radius_px: int = 4) -> UnprojectResult | None:
    """Unproject mirror-pixel points (Nx2) onto the surface seen in one view.

    The view is ``view_index`` or the one under the first point; points outside it are
    dropped. Returns None when no point lies on (or near) a surface."""
    pts = np.asarray(points_px, dtype=np.float64).reshape(-1, 2)
    if not len(pts) or not views or depth is None:
        return None
    if not np.all(np.isfinite(pts)):
        return None
    h, w = depth.shape[:2]
    if view_index is None:
        view_index = view_at(views, float(pts[0, 0]), float(pts[0, 1]))
        if view_index is None:
            return None
    view = views[view_index]
    rx, ry, rw, rh = view.rect_px
    kept = (pts[:, 0] >= rx) & (pts[:, 0] < rx + rw) & (pts[:, 1] >= ry) & (pts[:, 1] < ry + rh)
    if not kept.any():
        return None
    p = pts[kept]
    ix = np.clip(np.floor(p[:, 0]).astype(np.int64), 0, w - 1)
    iy = np.clip(np.floor(p[:, 1]).astype(np.int64), 0, h - 1)
    d, hit_k, sx, sy = _sample_depth(np.asarray(depth), ix, iy, (rx, ry, rw, rh), search_radius_px)
    if not hit_k.any():
        return None
    inv_proj = np.linalg.inv(np.asarray(view.projection, dtype=np.float64))
    world_from_view = np.linalg.inv(np.asarray(view.view_from_world, dtype=np.float64))

    def to_view(x: np.ndarray, y: np.ndarray, win_z: np.ndarray) -> np.ndarray:
        ndc = np.stack([2.0 * (x - rx) / rw - 1.0, 1.0 - 2.0 * (y - ry) / rh, 2.0 * win_z - 1.0,
                        np.ones_like(x)], axis=1)
        v = ndc @ inv_proj.T
        return v[:, :3] / v[:, 3:4]

    # eye-space depth of the surface points found (at the pixel actually hit, so nearby
    # hits found by the search give the right distance), then along the stroke
    hit_view = to_view(sx[hit_k] + 0.5, sy[hit_k] + 0.5, d[hit_k])
    z_eye = np.empty(len(p))
    idx = np.arange(len(p))
    z_eye[:] = np.interp(idx, idx[hit_k], hit_view[:, 2])
    # the ray through each drawn point, scaled to its eye depth
    ray = to_view(p[:, 0], p[:, 1], np.zeros(len(p)))
    view_pts = ray * (z_eye / ray[:, 2])[:, None]
    world = np.c_[view_pts, np.ones(len(p))] @ world_from_view.T
    hit = np.zeros(len(pts), bool)
    hit[np.flatnonzero(kept)[hit_k]] = True
    return UnprojectResult(world[:, :3], kept, hit, view_index)


def project_points(points_mm: np.ndarray, view: ViewLike) -> tuple[np.ndarray, np.ndarray]:
    """World points (Nx3) -> mirror pixel coordinates (Nx2) and window depth (N) in ``view``."""
    p = np.c_[np.asarray(points_mm, dtype=np.float64).reshape(-1, 3), np.ones(len(points_mm))]
    clip = p @ (np.asarray(view.projection) @ np.asarray(view.view_from_world)).T
    ndc = clip[:, :3] / clip[:, 3:4]
    rx, ry, rw, rh = view.rect_px
    x = rx + (ndc[:, 0] + 1.0) * 0.5 * rw
    y = ry + (1.0 - ndc[:, 1]) * 0.5 * rh
    return np.stack([x, y], axis=1), (ndc[:, 2] + 1.0) * 0.5
