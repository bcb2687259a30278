"""Signed distances from instrument points to anatomy surfaces: exact against brute force
(trimesh's point-triangle routine over every triangle, the sign from the winding number),
on a sphere, a box (large faces, sharp edges and corners) and a bundle nerve root."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from vr_trainer.bench.proximity import winding_number
from vr_trainer.sim.proximity import ProximityField, SurfaceIndex, refine_to_edge_length, shaft_points

REPO = Path(__file__).resolve().parents[2]


def brute_signed(mesh: trimesh.Trimesh, points: np.ndarray) -> np.ndarray:
    tri = mesh.triangles
    d = np.array([np.linalg.norm(trimesh.triangles.closest_point(tri, np.repeat(p[None], len(tri), 0)) - p,
                                 axis=1).min() for p in points])
    return np.where(winding_number(np.asarray(mesh.triangles), points) > 0.5, -d, d)


def field_for(mesh: trimesh.Trimesh, name: str = "s") -> ProximityField:
    return ProximityField.from_meshes({name: (np.asarray(mesh.vertices), np.asarray(mesh.faces))})


def around(mesh: trimesh.Trimesh, n: int, spread_mm: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pts, _ = trimesh.sample.sample_surface(mesh, n, seed=seed)
    return pts + rng.normal(0.0, spread_mm, (n, 3))


def test_sphere_matches_brute_force_inside_and_out():
    sphere = trimesh.creation.icosphere(3, 20.0)
    pts = around(sphere, 300, 6.0, 1)
    got = field_for(sphere).signed_distances(pts)["s"]
    ref = brute_signed(sphere, pts)
    assert (ref < 0).sum() > 50 and (ref > 0).sum() > 50, "points on both sides"
    near = ref < 20.0
    np.testing.assert_allclose(got[near], ref[near], atol=0.25)
    assert np.all(np.sign(got) == np.sign(ref))
    # and the mesh is a sphere: |p| - 20 within its chordal error
    np.testing.assert_allclose(got[near], np.linalg.norm(pts[near], axis=1) - 20.0, atol=0.2)


def test_box_with_large_faces_edges_and_corners():
    box = trimesh.creation.box((40.0, 30.0, 20.0))  # 12 triangles, edges 20-40 mm long
    rng = np.random.default_rng(2)
    pts = rng.uniform(-35, 35, (500, 3))
    q = np.abs(pts) - np.array([20.0, 15.0, 10.0])  # the box's exact signed distance
    exact = np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(1), 0)
    got = field_for(box).signed_distances(pts)["s"]
    near = np.abs(exact) < 20
    assert near.sum() > 200 and (exact < 0).sum() > 15
    np.testing.assert_allclose(got[near], exact[near], atol=0.25)
    assert np.all((got < 0) == (exact < 0))
    far = ~near & (exact > 0)
    assert np.all(got[far] >= 20.0 - 1e-9) and np.all(got[far] <= exact[far] + 1e-9), \
        "beyond 20 mm a lower bound of at least 20 mm"


@pytest.fixture(scope="module")
def root_mesh() -> trimesh.Trimesh:
    from vr_trainer.anatomy.bundle import load_bundle

    bundle = load_bundle(REPO / "assets" / "spine_l3_s1")
    return next(s.mesh for s in bundle.structures if s.name == "nerve_root_L4_exiting_left")


def test_bundle_nerve_root_within_a_quarter_millimetre(root_mesh):
    pts = np.vstack([around(root_mesh, 150, 1.5, 3), around(root_mesh, 150, 8.0, 4)])
    got = field_for(root_mesh, "root").signed_distances(pts)["root"]
    ref = brute_signed(root_mesh, pts)
    assert (ref < 0).sum() > 30
    near = np.abs(ref) < 20
    assert np.abs(got[near] - ref[near]).max() < 0.25
    assert np.all(np.sign(got[near]) == np.sign(ref[near]))


def test_shaft_through_a_structure_is_a_negative_clearance_and_tip_inside(root_mesh):
    f = field_for(root_mesh, "root")
    # a point just inside the surface: step from a surface sample against its face normal
    pts, fid = trimesh.sample.sample_surface(root_mesh, 1, seed=5)
    inside_pt = pts[0] - 0.5 * root_mesh.face_normals[fid[0]]
    out_dir = root_mesh.face_normals[fid[0]]
    pose = np.eye(4)
    pose[:3, 3] = inside_pt
    pose[:3, 2] = out_dir  # the handle side points out of the root
    chain = shaft_points(pose, 60.0, 2.0)
    c = f.clearance(chain)
    ref = brute_signed(root_mesh, chain)
    assert c.inside == frozenset({"root"}) and c.tip_mm["root"] < 0
    assert c.distance_mm["root"] == pytest.approx(ref.min(), abs=0.25) and c.distance_mm["root"] < 0
    # the same needle pulled back 5 mm: outside, clearance = the smallest point distance
    pose[:3, 3] = inside_pt + 5.5 * out_dir
    chain = shaft_points(pose, 60.0, 2.0)
    c = f.clearance(chain)
    ref = brute_signed(root_mesh, chain)
    assert not c.inside and c.distance_mm["root"] == pytest.approx(ref.min(), abs=0.25) and ref.min() > 0


def test_open_surface_is_unsigned():
    plane = trimesh.Trimesh([[-50, -50, 0], [50, -50, 0], [50, 50, 0], [-50, 50, 0]], [[0, 1, 2], [0, 2, 3]])
    idx = SurfaceIndex.from_mesh("plane", plane.vertices, plane.faces)
    assert not idx.closed
    d = ProximityField({"plane": idx}).signed_distances(np.array([[0, 0, 3.0], [10, -5, -4.0], [49, 0, -1.5]]))
    np.testing.assert_allclose(d["plane"], [3.0, 4.0, 1.5], atol=1e-9)


def test_refinement_keeps_the_surface_closed_and_its_area():
    box = trimesh.creation.box((40.0, 30.0, 20.0))
    v, f = refine_to_edge_length(box.vertices, box.faces, 3.0)
    m = trimesh.Trimesh(v, f, process=False)
    edges = np.linalg.norm(m.vertices[m.edges_unique[:, 0]] - m.vertices[m.edges_unique[:, 1]], axis=1)
    assert edges.max() <= 3.0 + 1e-9
    assert m.is_watertight and m.is_winding_consistent
    assert m.area == pytest.approx(box.area) and m.volume == pytest.approx(box.volume)


def test_shaft_points_run_from_the_tip_towards_the_handle():
    pose = np.eye(4)
    pose[:3, 3] = [1.0, 2.0, 3.0]
    pts = shaft_points(pose, 10.0, 2.0)
    np.testing.assert_allclose(pts, [[1, 2, 3 + z] for z in (0, 2, 4, 6, 8, 10)])
