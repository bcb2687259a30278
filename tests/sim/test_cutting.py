"""Plane cuts (sim/cutting.py): watertight results, the cut face on the plane, exact removed volumes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from vr_trainer.sim.cutting import Plane, cut_sequence, plane_cut, to_manifold

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "meshes" / "tka-grand-challenge"
needs_data = pytest.mark.skipif(not (DATA / "Femur.stl").is_file(),
                                reason=f"real TKA meshes not found at {DATA} (../shared/data is not in a fresh clone)")


@pytest.fixture(scope="module")
def femur() -> trimesh.Trimesh:
    from vr_trainer.anatomy.meshes import structures_from_meshes

    structs, *_ = structures_from_meshes([DATA / "Femur.stl"], units="m", frame="ASR")
    return structs[0].mesh


def test_oblique_cut_of_a_cube_removes_the_analytic_wedge() -> None:
    cube = trimesh.creation.box(extents=(40.0, 40.0, 40.0))  # centred at 0
    # plane through (0, 0, 10) tilted 20 deg about y: removes the wedge above z = 10 + tan(20) x
    t = np.tan(np.radians(20.0))
    res = plane_cut(cube, Plane.make([0.0, 0.0, 10.0], [t, 0.0, -1.0]))
    removed = 40.0 * 40.0 * 10.0  # mean height of the removed prism over x in [-20, 20] is 10 mm
    assert res.watertight
    assert abs(res.removed_volume_mm3 - removed) < 1e-6 * removed
    assert abs(res.mesh.volume - (64000.0 - removed)) < 1e-6 * removed
    assert abs(res.cut_area_mm2 - 40.0 * 40.0 / np.cos(np.radians(20.0))) < 1e-6
    assert len(res.outline_mm) == 1 and len(res.outline_mm[0]) >= 4


def test_plane_missing_the_bone_keeps_or_drops_it_whole() -> None:
    cube = trimesh.creation.box(extents=(10.0, 10.0, 10.0))
    keep = plane_cut(cube, Plane.make([0, 0, -50.0], [0, 0, 1.0]))
    gone = plane_cut(cube, Plane.make([0, 0, 50.0], [0, 0, 1.0]))
    assert not keep.touched and abs(keep.mesh.volume - 1000.0) < 1e-9
    assert len(gone.mesh.faces) == 0 and abs(gone.removed_volume_mm3 - 1000.0) < 1e-9


@needs_data
def test_distal_cut_of_the_real_femur(femur: trimesh.Trimesh) -> None:
    v = femur.vertices
    z0 = float(v[:, 2].min())
    n = np.array([0.05, 0.03, 1.0])  # a few degrees off the long axis
    plane = Plane.make([0.0, 0.0, z0 + 12.0], n)
    res = plane_cut(femur, plane)
    assert res.watertight and res.touched
    on = np.unique(res.mesh.faces[res.cut_faces])
    assert np.abs(plane.signed_distance_mm(res.mesh.vertices[on])).max() < 0.01
    assert (plane.signed_distance_mm(res.mesh.vertices) > -0.01).all()  # nothing left beyond the plane
    # removed volume: the kept part's loss equals the other half computed on its own
    other = plane_cut(femur, plane.flipped())
    assert abs(res.removed_volume_mm3 - other.mesh.volume) < 1e-6 * femur.volume
    assert abs(femur.volume - res.mesh.volume - res.removed_volume_mm3) < 1e-6 * femur.volume
    # cut face area and outline agree with trimesh's section of the same plane
    section = femur.section(plane_origin=plane.origin_mm, plane_normal=plane.normal)
    planar, _ = section.to_2D()
    assert abs(res.cut_area_mm2 - planar.area) < 1e-3 * planar.area
    assert len(res.outline_mm) == len(planar.polygons_full)
    # what is left cuts on: a second pass 3 mm higher removes a 3 mm slab
    second = plane_cut(res.solid if res.solid is not None else res.mesh,
                       Plane.make(plane.origin_mm + 3.0 * plane.normal, plane.normal))
    slab = 3.0 * res.cut_area_mm2
    assert second.watertight and abs(second.removed_volume_mm3 - slab) < 0.03 * slab
    again = plane_cut(femur, plane)
    assert np.array_equal(again.mesh.vertices, res.mesh.vertices) and np.array_equal(again.mesh.faces, res.mesh.faces)


@needs_data
def test_five_femoral_cuts_stay_watertight(femur: trimesh.Trimesh) -> None:
    v = femur.vertices
    z0, y0, y1 = float(v[:, 2].min()), float(v[v[:, 2] < v[:, 2].min() + 40, 1].min()), \
        float(v[v[:, 2] < v[:, 2].min() + 40, 1].max())
    c = np.array([0.0, 0.0, z0])
    planes = [Plane.make(c + [0, 0, 9.0], [0, 0, 1.0]),                      # distal
              Plane.make(c + [0, y1 - 4.0, 0], [0, -1.0, 0]),                 # anterior
              Plane.make(c + [0, y0 + 8.0, 0], [0, 1.0, 0]),                  # posterior
              Plane.make(c + [0, y1 - 10.0, 20.0], [0, -1.0, 1.0]),           # anterior chamfer
              Plane.make(c + [0, y0 + 14.0, 20.0], [0, 1.0, 1.0])]            # posterior chamfer
    res = cut_sequence(femur, planes)
    assert res.watertight and res.touched
    solid = to_manifold(res.mesh)  # the result is a valid manifold again (can be cut next)
    assert abs(solid.volume() - res.mesh.volume) < 1e-6 * res.mesh.volume
    assert 0 < res.removed_volume_mm3 < femur.volume
    for p in planes:
        assert (p.signed_distance_mm(res.mesh.vertices) > -0.01).all()
