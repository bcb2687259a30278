"""The candidate direct plane cut of `bench cut`: watertight, consistently wound, the same solid as manifold3d."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh

from vr_trainer.sim.cut_direct import direct_cut
from vr_trainer.sim.cutting import Plane, plane_cut


def torus() -> trimesh.Trimesh:
    return trimesh.creation.torus(major_radius=30.0, minor_radius=8.0, major_sections=64, minor_sections=24)


@pytest.mark.parametrize("origin, normal, loops", [
    ([0.0, 0.0, 1.0], [0.0, 0.2, 1.0], "annulus: an outer ring with a hole"),
    ([0.0, 3.0, 0.0], [0.0, 1.0, 0.1], "two separate disks"),
    ([0.0, 0.0, 5.0], [0.0, 0.0, -1.0], "the other side"),
])
def test_direct_cut_is_the_same_watertight_solid_as_manifold3d(origin: list[float], normal: list[float],
                                                               loops: str) -> None:
    m = torus()
    p = Plane.make(origin, normal)
    ours = direct_cut(m.vertices, m.faces, p.normal, p.offset_mm)
    ref = plane_cut(m, p)
    assert ours.is_watertight and ours.is_winding_consistent and ours.volume > 0, loops
    assert abs(ours.volume - ref.mesh.volume) < 1e-6 * ref.mesh.volume, loops
    # the cap lies on the plane and faces the removed side (ear-clipping may add zero-area slivers between
    # collinear boundary points: they keep the surface closed and have no direction)
    on = np.abs(p.signed_distance_mm(ours.vertices)) < 1e-9
    cap = on[ours.faces].all(axis=1)
    assert abs(float(ours.area_faces[cap].sum()) - ref.cut_area_mm2) < 1e-6 * ref.cut_area_mm2
    real = cap & (ours.area_faces > 1e-9)
    assert real.sum() > 20 and (ours.face_normals[real] @ p.normal < -0.999).all()


def test_direct_cut_of_nothing_and_of_everything() -> None:
    m = torus()
    whole = direct_cut(m.vertices, m.faces, np.array([0.0, 0.0, 1.0]), -50.0)
    assert len(whole.faces) == len(m.faces) and abs(whole.volume - m.volume) < 1e-9
    assert len(direct_cut(m.vertices, m.faces, np.array([0.0, 0.0, 1.0]), 50.0).faces) == 0


def test_an_open_mesh_is_refused() -> None:
    m = torus()
    m.update_faces(np.arange(len(m.faces)) != 5)
    with pytest.raises(ValueError, match="does not close"):
        direct_cut(m.vertices, m.faces, np.array([0.0, 1.0, 0.0]), 0.0)
