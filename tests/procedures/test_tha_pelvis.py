"""THA pelvic frame (APP), Murray's cup angles, Lewinnek zone, native acetabulum, reaming and leg length."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from vr_trainer.anatomy.bundle import load_bundle
from vr_trainer.procedures.tha_pelvis import (anterior_pelvic_plane, cup_angles_deg, cup_axis, in_lewinnek_zone,
                                              leg_length_and_offset_mm, native_acetabulum, reaming)
from vr_trainer.sim.cutting import from_manifold, to_manifold

HIP = Path(__file__).resolve().parents[2] / "assets" / "hip"


@pytest.fixture(scope="module")
def pelvis() -> list[trimesh.Trimesh]:
    b = load_bundle(HIP)
    return [b["hip_right"].mesh, b["hip_left"].mesh]


def test_app_of_the_hip_phantom(pelvis: list[trimesh.Trimesh]) -> None:
    fr = anterior_pelvic_plane(pelvis)
    assert fr.asis_right_mm[0] > 60 and fr.asis_left_mm[0] < -60
    assert fr.pubic_right_mm[2] < fr.asis_right_mm[2] - 50  # pubic tubercles well below the ASIS
    # the four points lie on the plane (it is their supporting plane)
    for p in (fr.asis_right_mm, fr.asis_left_mm, fr.pubic_right_mm, fr.pubic_left_mm):
        assert abs((p - fr.origin_mm) @ fr.anterior) < 1.0
    assert abs(np.linalg.det(np.stack([fr.right, fr.anterior, fr.superior])) - 1.0) < 1e-9


def test_app_follows_pelvic_tilt(pelvis: list[trimesh.Trimesh]) -> None:
    a = anterior_pelvic_plane(pelvis)
    tr = trimesh.transformations.rotation_matrix(np.radians(10.0), [1.0, 0.0, 0.0])
    tr[:3, 3] = [5.0, -3.0, 8.0]
    b = anterior_pelvic_plane([m.copy().apply_transform(tr) for m in pelvis])
    assert abs((a.tilt_deg - b.tilt_deg) - 10.0) < 0.5  # +10 deg about +x takes the top of the pelvis back
    for name in ("asis_right_mm", "asis_left_mm", "pubic_right_mm", "pubic_left_mm"):
        moved = trimesh.transform_points(np.atleast_2d(getattr(a, name)), tr)[0]
        assert np.linalg.norm(moved - getattr(b, name)) < 0.5, name


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("inc, av", [(40.0, 15.0), (55.0, 5.0), (30.0, 25.0), (45.0, -5.0)])
def test_murray_angles_round_trip(pelvis: list[trimesh.Trimesh], side: str, inc: float, av: float) -> None:
    fr = anterior_pelvic_plane(pelvis)
    a = cup_axis(inc, av, fr, side)  # type: ignore[arg-type]
    got = cup_angles_deg(a, fr, side)  # type: ignore[arg-type]
    assert abs(got[0] - inc) < 1e-9 and abs(got[1] - av) < 1e-9
    assert (a @ fr.lateral(side)) > 0 and (a @ fr.superior) < 0  # type: ignore[arg-type]  # opens out and down


def test_lewinnek_zone() -> None:
    assert in_lewinnek_zone(40.0, 15.0) and in_lewinnek_zone(50.0, 5.0)
    assert not in_lewinnek_zone(51.0, 15.0) and not in_lewinnek_zone(40.0, 26.0)
    assert in_lewinnek_zone(45.0, 20.0, inclination_target_deg=45.0, anteversion_target_deg=20.0, tolerance_deg=5.0)


def test_native_acetabulum_of_a_constructed_cavity() -> None:
    # a block with a spherical cavity (r 25) opening through its +z face, then rotated
    block = to_manifold(trimesh.creation.box(extents=(90.0, 90.0, 90.0)))
    ball = to_manifold(trimesh.creation.icosphere(subdivisions=5, radius=25.0).apply_translation([0, 0, 30.0]))
    cavity = from_manifold(block - ball)
    tr = trimesh.transformations.rotation_matrix(np.radians(35.0), [0.2, 1.0, 0.3])
    tr[:3, 3] = [80.0, 5.0, -10.0]
    cavity.apply_transform(tr)
    centre = trimesh.transform_points([[0.0, 0.0, 30.0]], tr)[0]
    axis = tr[:3, :3] @ np.array([0.0, 0.0, 1.0])
    ac = native_acetabulum(cavity, centre + [2.0, -1.5, 1.0], seed_radius_mm=23.0)
    assert np.linalg.norm(ac.centre_mm - centre) < 0.2 and abs(ac.radius_mm - 25.0) < 0.2
    assert np.degrees(np.arccos(np.clip(ac.axis @ axis, -1, 1))) < 3.0


def test_reaming_and_leg_length(pelvis: list[trimesh.Trimesh]) -> None:
    fr = anterior_pelvic_plane(pelvis)
    b = load_bundle(HIP)
    native = native_acetabulum(b["hip_right"].mesh, np.asarray(b.manifest["landmarks"]["hip_center_right_mm"]))
    reamed = native.centre_mm - 3.0 * native.axis
    r = reaming(native, reamed, fr, "right")
    assert abs(r.depth_mm - 3.0) < 1e-9
    assert abs(r.medialisation_mm - 3.0 * float(native.axis @ fr.right)) < 1e-9
    longer, offset = leg_length_and_offset_mm(native.centre_mm, native.centre_mm - 4.0 * fr.superior
                                              + 2.0 * fr.right, fr, "right")
    assert abs(longer - 4.0) < 1e-9 and abs(offset - 2.0) < 1e-9


def test_the_phantom_acetabulum_is_a_closed_cup_at_native_angles(pelvis: list[trimesh.Trimesh]) -> None:
    """Measured from the bone: the socket opens at a native acetabulum's radiographic angles (40-50 deg
    inclination, 15-20 deg anteversion, Murray), and every direction within 60 deg of its pole meets bone
    (a medial wall behind it, no open floor)."""
    from vr_trainer.procedures.tha_reaming import inner_wall_mm

    fr = anterior_pelvic_plane(pelvis)
    b = load_bundle(HIP)
    native = native_acetabulum(b["hip_right"].mesh, np.asarray(b.manifest["landmarks"]["hip_center_right_mm"]))
    inc, av = cup_angles_deg(native.axis, fr, "right")
    assert 40.0 <= inc <= 50.0 and 15.0 <= av <= 20.0, (inc, av)
    k = np.arange(400) + 0.5
    polar, azim = np.arccos(1.0 - 2.0 * k / 400), np.pi * (1.0 + 5.0 ** 0.5) * k
    dirs = np.stack([np.cos(azim) * np.sin(polar), np.sin(azim) * np.sin(polar), np.cos(polar)], axis=1)
    deep = dirs[dirs @ -native.axis >= np.cos(np.radians(60.0))]
    walls = [inner_wall_mm(b["hip_right"].mesh, native.centre_mm, d) for d in deep]
    assert all(w is not None and w > native.radius_mm + 3.0 for w in walls)
