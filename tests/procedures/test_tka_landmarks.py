"""TKA landmarks on the real femur and tibia (TKA grand challenge, metres, imported to mm RAS)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import trimesh

from vr_trainer.procedures.tka_landmarks import femur_landmarks, fit_sphere, tibia_landmarks
from vr_trainer.sim.cutting import Plane, plane_cut

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "meshes" / "tka-grand-challenge"
needs_data = pytest.mark.skipif(not (DATA / "Femur.stl").is_file(),
                                reason=f"real TKA meshes not found at {DATA} (../shared/data is not in a fresh clone)")


@lru_cache(maxsize=1)
def bones() -> tuple[trimesh.Trimesh, trimesh.Trimesh]:
    """Femur and tibia through the project's own mesh importer (metres -> mm, OpenSim ASR -> RAS)."""
    from vr_trainer.anatomy.meshes import structures_from_meshes

    structs, *_ = structures_from_meshes([DATA / "Femur.stl", DATA / "Tibia.stl"], units="m", frame="ASR")
    return structs[0].mesh, structs[1].mesh


def _rigid(deg: float = 25.0) -> np.ndarray:
    axis = np.array([0.3, -0.5, 0.8])
    t = trimesh.transformations.rotation_matrix(np.radians(deg), axis / np.linalg.norm(axis))
    t[:3, 3] = [30.0, -20.0, 15.0]
    return t


POINTS_F = ["hip_centre_mm", "knee_centre_mm", "medial_epicondyle_mm", "lateral_epicondyle_mm", "medial_distal_mm",
            "lateral_distal_mm", "medial_posterior_mm", "lateral_posterior_mm", "trochlear_groove_mm", "notch_mm"]
AXES_F = ["im_axis", "mechanical_axis", "whiteside_axis"]


def test_sphere_fit_recovers_a_sphere() -> None:
    rng = np.random.default_rng(0)
    d = rng.normal(size=(500, 3))
    pts = np.array([3.0, -4.0, 5.0]) + 22.5 * d / np.linalg.norm(d, axis=1)[:, None]
    c, r, rms = fit_sphere(pts)
    assert np.allclose(c, [3, -4, 5], atol=1e-9) and abs(r - 22.5) < 1e-9 and rms < 1e-9


@needs_data
def test_femur_landmarks_are_plausible() -> None:
    f = femur_landmarks(bones()[0])
    assert f.side == "right"  # the data set's femur is a right femur (greater trochanter at +x)
    assert f.hip_centre_mm is not None and f.head_radius_mm is not None
    assert 18.0 < f.head_radius_mm < 30.0
    assert not any("fallback" in n or "valgus" in n for n in f.notes)
    assert 70.0 < f.transepicondylar_width_mm < 95.0
    assert 3.0 < f.valgus_deg < 9.0  # anatomical-mechanical angle of a normal femur
    assert abs(f.whiteside_to_tea_deg) < 10.0  # Whiteside's line ~ perpendicular to the TEA
    assert -2.0 < f.posterior_condylar_angle_deg < 10.0
    loc = f.frame.local(np.stack([f.medial_epicondyle_mm, f.lateral_epicondyle_mm, f.hip_centre_mm]))
    assert loc[0, 0] < -30 and loc[1, 0] > 30  # medial / lateral on their sides
    assert 380.0 < loc[2, 2] < 480.0  # hip 38-48 cm above the knee
    dist = f.frame.local(np.stack([f.medial_distal_mm, f.lateral_distal_mm]))[:, 2]
    assert (dist < -5.0).all()  # distal condyle points below the epicondyles


@needs_data
def test_tibia_landmarks_are_plausible() -> None:
    t = tibia_landmarks(bones()[1])
    assert t.side == "right" and t.ankle_centre_mm is not None
    assert not any("shaft axis" in n for n in t.notes)
    loc = t.frame.local(np.stack([t.medial_plateau_mm, t.lateral_plateau_mm, t.ankle_centre_mm]))
    assert loc[0, 0] < -10 and loc[1, 0] > 10
    assert 300.0 < -loc[2, 2] < 420.0  # ankle 30-42 cm below the knee
    angle = np.degrees(np.arccos(np.clip(t.mechanical_axis @ t.shaft_axis, -1, 1)))
    assert angle < 5.0  # tibial mechanical and shaft axes nearly coincide


@needs_data
def test_landmarks_move_with_the_bone() -> None:
    femur, tibia = bones()
    tr = _rigid()
    a, b = femur_landmarks(femur), femur_landmarks(femur.copy().apply_transform(tr))
    rot = tr[:3, :3]
    for name in POINTS_F:
        p = trimesh.transform_points(np.atleast_2d(getattr(a, name)), tr)[0]
        assert np.linalg.norm(p - getattr(b, name)) < 0.5, name
    for name in AXES_F:
        ang = np.degrees(np.arccos(np.clip((rot @ getattr(a, name)) @ getattr(b, name), -1, 1)))
        assert ang < 0.1, name
    ta, tb = tibia_landmarks(tibia), tibia_landmarks(tibia.copy().apply_transform(tr))
    for name in ["medial_plateau_mm", "lateral_plateau_mm", "knee_centre_mm", "ankle_centre_mm"]:
        p = trimesh.transform_points(np.atleast_2d(getattr(ta, name)), tr)[0]
        assert np.linalg.norm(p - getattr(tb, name)) < 0.5, name


@needs_data
def test_knee_ct_crop_uses_the_fallbacks_and_says_so() -> None:
    femur, tibia = bones()
    full_f, full_t = femur_landmarks(femur), tibia_landmarks(tibia)
    # a knee CT: 150 mm of distal femur and 120 mm of proximal tibia
    fz = float(full_f.medial_distal_mm @ full_f.im_axis)
    crop_f = plane_cut(femur, Plane.make(full_f.im_axis * (fz + 150.0), -full_f.im_axis)).mesh
    tz = float(full_t.knee_centre_mm @ full_t.shaft_axis)
    crop_t = plane_cut(tibia, Plane.make(full_t.shaft_axis * (tz - 120.0), full_t.shaft_axis)).mesh
    f = femur_landmarks(crop_f)
    assert f.hip_centre_mm is None and f.side == "right"
    assert any("no femoral head" in n and "6 deg valgus" in n for n in f.notes)
    assert abs(np.degrees(np.arccos(f.mechanical_axis @ f.im_axis)) - 6.0) < 1e-6
    assert abs(f.transepicondylar_width_mm - full_f.transepicondylar_width_mm) < 3.0
    t = tibia_landmarks(crop_t, side=f.side)
    assert t.ankle_centre_mm is None
    assert any("shaft axis" in n for n in t.notes)
    assert np.allclose(t.mechanical_axis, t.shaft_axis)
    f9 = femur_landmarks(crop_f, valgus_deg=9.0)
    assert abs(np.degrees(np.arccos(f9.mechanical_axis @ f9.im_axis)) - 9.0) < 1e-6


@needs_data
def test_scenario_overrides_replace_points_and_what_follows_from_them() -> None:
    femur, tibia = bones()
    a = femur_landmarks(femur)
    med = a.medial_epicondyle_mm + 3.0 * a.frame.anterior
    b = femur_landmarks(femur, overrides={"medial_epicondyle_mm": med.tolist(),
                                          "hip_centre_mm": (a.hip_centre_mm + [5.0, 0, 0]).tolist()})
    assert np.allclose(b.medial_epicondyle_mm, med)
    assert np.allclose(b.knee_centre_mm, 0.5 * (med + b.lateral_epicondyle_mm))
    assert np.allclose(b.mechanical_axis, (b.hip_centre_mm - b.knee_centre_mm) / np.linalg.norm(
        b.hip_centre_mm - b.knee_centre_mm))
    assert any("medial epicondyle: given by the scenario" in n for n in b.notes)
    with pytest.raises(ValueError, match="not known"):
        femur_landmarks(femur, overrides={"medial_condyle": [0, 0, 0]})
    with pytest.raises(ValueError, match="three finite numbers"):
        femur_landmarks(femur, overrides={"hip_centre_mm": [0, 0]})
    # a knee CT tibia with the ankle given by the scenario: the mechanical axis runs to it
    t = tibia_landmarks(tibia)
    tz = float(t.knee_centre_mm @ t.shaft_axis)
    crop = plane_cut(tibia, Plane.make(t.shaft_axis * (tz - 120.0), t.shaft_axis)).mesh
    assert t.ankle_centre_mm is not None
    c = tibia_landmarks(crop, side="right", overrides={"ankle_centre_mm": t.ankle_centre_mm.tolist()})
    assert not any("shaft axis" in n for n in c.notes)
    assert np.degrees(np.arccos(np.clip(c.mechanical_axis @ t.mechanical_axis, -1, 1))) < 0.5
