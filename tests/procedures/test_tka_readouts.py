"""Navigation readouts: planes constructed at known angles/depths against the computed axes of the real bones."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from test_tka_landmarks import bones, needs_data  # type: ignore[import-not-found]
from vr_trainer.procedures import tka_readouts as R
from vr_trainer.procedures.tka_landmarks import FemurLandmarks, TibiaLandmarks, femur_landmarks, tibia_landmarks
from vr_trainer.sim.cutting import Plane, plane_cut


@lru_cache(maxsize=1)
def marks() -> tuple[FemurLandmarks, TibiaLandmarks]:
    f, t = bones()
    return femur_landmarks(f), tibia_landmarks(t)


def _through(point: np.ndarray, plane: Plane, depth_mm: float, up: np.ndarray) -> Plane:
    """``plane`` shifted so that ``point`` lies ``depth_mm`` on the removed side (along ``up``)."""
    return Plane.make(point + depth_mm * up, plane.normal)


@needs_data
@pytest.mark.parametrize("varus, flexion, depth", [(0.0, 0.0, 9.0), (3.0, 5.0, 10.0), (-4.5, -2.0, 8.0),
                                                   (7.3, 1.1, 11.5)])
def test_distal_femoral_readouts_match_constructed_planes(varus: float, flexion: float, depth: float) -> None:
    f, _ = marks()
    p = R.plane_in_frame(f.frame, f.medial_distal_mm, lateral_tilt_deg=varus, anterior_tilt_deg=flexion)
    p = _through(f.medial_distal_mm, p, depth, p.normal)
    r = R.distal_femoral(p, f)
    assert abs(r.varus_deg - varus) < 0.1 and abs(r.flexion_deg - flexion) < 0.1
    assert abs(r.medial_resection_mm - depth) < 0.1
    # the lateral depth is the same plane measured at the lateral condyle
    expected = float((p.origin_mm - f.lateral_distal_mm) @ p.normal)
    assert abs(r.lateral_resection_mm - expected) < 0.1
    # a flipped normal reads the same
    assert R.distal_femoral(p.flipped(), f) == r


@needs_data
def test_varus_femoral_cut_takes_more_medial_bone() -> None:
    f, _ = marks()
    mid = 0.5 * (f.medial_distal_mm + f.lateral_distal_mm)
    neutral = R.distal_femoral(R.plane_in_frame(f.frame, mid + 9.0 * f.frame.superior), f)
    varus = R.distal_femoral(R.plane_in_frame(f.frame, mid + 9.0 * f.frame.superior, lateral_tilt_deg=3.0), f)
    gain = (varus.medial_resection_mm - neutral.medial_resection_mm) - \
        (varus.lateral_resection_mm - neutral.lateral_resection_mm)
    assert varus.varus_deg > 2.9 and gain > 1.0


@needs_data
@pytest.mark.parametrize("varus, slope, depth", [(0.0, 0.0, 8.0), (2.0, 7.0, 10.0), (-3.0, 3.0, 6.5)])
def test_tibial_readouts_match_constructed_planes(varus: float, slope: float, depth: float) -> None:
    _, t = marks()
    # tibial varus tilts the plane's normal medially, posterior slope tilts it anteriorly-down
    p = R.plane_in_frame(t.frame, t.lateral_plateau_mm, lateral_tilt_deg=-varus, anterior_tilt_deg=-slope)
    p = _through(t.lateral_plateau_mm, p, -depth, p.normal)
    r = R.tibial(p, t)
    assert abs(r.varus_deg - varus) < 0.1 and abs(r.posterior_slope_deg - slope) < 0.1
    assert abs(r.lateral_resection_mm - depth) < 0.1
    assert abs(r.medial_resection_mm - float((t.medial_plateau_mm - p.origin_mm) @ p.normal)) < 0.1


@needs_data
def test_tibial_depth_is_the_bone_the_cut_removes() -> None:
    tibia = bones()[1]
    _, t = marks()
    p = R.plane_in_frame(t.frame, t.lateral_plateau_mm - 9.0 * t.frame.superior, lateral_tilt_deg=-2.0,
                         anterior_tilt_deg=-5.0)
    r = R.tibial(p, t)
    kept = plane_cut(tibia, p.flipped() if p.normal @ t.frame.superior > 0 else p).mesh
    d = np.abs(Plane.make(p.origin_mm, p.normal).signed_distance_mm(t.lateral_plateau_mm))[0]
    assert abs(r.lateral_resection_mm - d) < 0.1
    assert kept.is_watertight and kept.bounds is not None


@needs_data
@pytest.mark.parametrize("rotation", [0.0, 3.0, -2.5, 6.0])
def test_femoral_rotation_against_the_tea(rotation: float) -> None:
    f, _ = marks()
    p = R.plane_in_frame(f.frame, f.medial_posterior_mm + 8.0 * f.frame.anterior, lateral_tilt_deg=rotation,
                         around="anterior")
    r = R.femoral_rotation(p, f)
    assert abs(r.external_rotation_deg - rotation) < 0.1
    assert abs(r.medial_resection_mm - 8.0 * float(f.frame.anterior @ p.normal)) < 0.1
    if rotation > 0:  # external rotation removes more of the medial posterior condyle
        neutral = R.femoral_rotation(R.plane_in_frame(f.frame, p.origin_mm, around="anterior"), f)
        assert (r.medial_resection_mm - neutral.medial_resection_mm) > (
            r.lateral_resection_mm - neutral.lateral_resection_mm)


@needs_data
def test_readouts_do_not_change_when_bone_and_plane_move_together() -> None:
    import trimesh

    from test_tka_landmarks import _rigid  # type: ignore[import-not-found]

    femur, tibia = bones()
    f, t = marks()
    tr = _rigid(30.0)
    f2 = femur_landmarks(femur.copy().apply_transform(tr))
    t2 = tibia_landmarks(tibia.copy().apply_transform(tr), side="right")

    def moved(p: Plane) -> Plane:
        return Plane.make(trimesh.transform_points(np.atleast_2d(p.origin_mm), tr)[0], tr[:3, :3] @ p.normal)

    pf = R.plane_in_frame(f.frame, f.medial_distal_mm + 9.0 * f.frame.superior, lateral_tilt_deg=2.0,
                          anterior_tilt_deg=4.0)
    pt = R.plane_in_frame(t.frame, t.lateral_plateau_mm - 8.0 * t.frame.superior, lateral_tilt_deg=-1.0,
                          anterior_tilt_deg=-6.0)
    a, b = R.as_dict(R.distal_femoral(pf, f)), R.as_dict(R.distal_femoral(moved(pf), f2))
    c, d = R.as_dict(R.tibial(pt, t)), R.as_dict(R.tibial(moved(pt), t2))
    for k in a:
        assert abs(a[k] - b[k]) < 0.1, k
    for k in c:
        assert abs(c[k] - d[k]) < 0.1, k
