"""2D marks on a mirror frame -> world points, using its depth and matrices."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vr_trainer.sim.transforms import look_at_pose, projection_from_fov, rigid_inverse
from vr_trainer.sim.unproject import project_points, unproject_pixels, view_at


@dataclass
class V:
    rect_px: tuple[int, int, int, int]
    view_from_world: np.ndarray
    projection: np.ndarray


def plane_depth(view: V, shape: tuple[int, int], z_plane_mm: float, hole: tuple[slice, slice] | None = None):
    """Window depth of the plane z = z_plane_mm seen by ``view`` (background elsewhere)."""
    h, w = shape
    depth = np.ones((h, w), np.float32)
    rx, ry, rw, rh = view.rect_px
    ys, xs = np.mgrid[ry:ry + rh, rx:rx + rw]
    ndc = np.stack([2 * (xs + 0.5 - rx) / rw - 1, 1 - 2 * (ys + 0.5 - ry) / rh], -1)
    inv_p = np.linalg.inv(view.projection)
    world_from_view = rigid_inverse(view.view_from_world)
    d = (np.c_[ndc.reshape(-1, 2), -np.ones(rw * rh), np.ones(rw * rh)] @ inv_p.T)
    d = d[:, :3] / d[:, 3:]
    o = world_from_view[:3, 3]
    dirs = d @ world_from_view[:3, :3].T
    t = (z_plane_mm - o[2]) / dirs[:, 2]
    pts = o + dirs * t[:, None]
    _, win = project_points(pts, view)
    depth[ry:ry + rh, rx:rx + rw] = win.reshape(rh, rw)
    if hole is not None:
        depth[hole] = 1.0
    return depth


def two_views(w: int = 320, h: int = 240) -> list[V]:
    proj = projection_from_fov(-0.8, 0.7, 0.6, -0.6, 30.0, 20000.0)
    views = []
    for k, x in enumerate((-31.5, 31.5)):
        pose = look_at_pose(np.array([x, 0, 600.0]), np.array([x, 0, 0.0]))
        views.append(V((k * w, 0, w, h), rigid_inverse(pose), proj))
    return views


def test_points_land_on_the_surface_they_were_drawn_on():
    views = two_views()
    depth = plane_depth(views[0], (240, 640), 10.0)
    px = np.array([[100.5, 120.5], [160.25, 60.75], [250.0, 200.0]])
    res = unproject_pixels(px, depth, views)
    assert res is not None and res.view_index == 0 and res.hit.all()
    np.testing.assert_allclose(res.points_mm[:, 2], 10.0, atol=0.5)
    back, _ = project_points(res.points_mm, views[0])
    np.testing.assert_allclose(back, px, atol=0.6)


def test_the_view_under_the_first_point_is_used_and_others_dropped():
    views = two_views()
    depth = np.minimum(plane_depth(views[0], (240, 640), 10.0), plane_depth(views[1], (240, 640), 10.0))
    assert view_at(views, 400, 10) == 1 and view_at(views, 700, 10) is None
    res = unproject_pixels(np.array([[400.0, 100.0], [450.0, 100.0], [200.0, 100.0]]), depth, views)
    assert res.view_index == 1 and res.kept.tolist() == [True, True, False] and len(res.points_mm) == 2
    np.testing.assert_allclose(res.points_mm[:, 2], 10.0, atol=0.5)


def test_points_over_a_hole_take_depth_from_their_neighbours():
    views = two_views()
    depth = plane_depth(views[0], (240, 640), 10.0, hole=(slice(100, 140), slice(140, 180)))
    px = np.array([[x, 120.0] for x in range(100, 221, 10)], float)
    res = unproject_pixels(px, depth, views)
    assert res is not None and not res.hit.all() and res.hit.any()
    np.testing.assert_allclose(res.points_mm[:, 2], 10.0, atol=1.0)  # the stroke keeps its shape
    back, _ = project_points(res.points_mm, views[0])
    np.testing.assert_allclose(back, px, atol=0.6)


def test_near_miss_snaps_and_empty_space_refuses():
    views = two_views()
    depth = plane_depth(views[0], (240, 640), 10.0, hole=(slice(0, 240), slice(0, 100)))
    res = unproject_pixels(np.array([[98.0, 50.0]]), depth, views, search_radius_px=4)
    assert res is not None and res.hit.all()
    assert unproject_pixels(np.array([[20.0, 50.0]]), depth, views) is None
    assert unproject_pixels(np.array([[np.nan, 5.0]]), depth, views) is None
    assert unproject_pixels(np.zeros((0, 2)), depth, views) is None
