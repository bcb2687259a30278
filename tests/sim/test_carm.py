"""C-arm geometry: prone patient, PA beam (source anterior), views about the S axis, image axes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vr_trainer.sim.carm import CArmGeometry, carm_geometry

ISO = np.array([10.0, -20.0, 30.0])


def test_ap_source_is_anterior_under_the_table_and_detector_posterior():
    g = carm_geometry("ap", ISO, "left", sad_mm=600, sid_mm=1000, detector_mm=300, pixels=256)
    np.testing.assert_allclose(g.source_ras_mm, ISO + [0, 600, 0])
    np.testing.assert_allclose(g.detector_centre_ras_mm, ISO + [0, -400, 0])
    np.testing.assert_allclose(g.beam_direction, [0, -1, 0], atol=1e-12)
    # image seen from the detector (the prone back): patient's left on the image's left, head up
    np.testing.assert_allclose(g.detector_u, [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(g.detector_v, [0, 0, -1], atol=1e-12)
    assert g.pixel_spacing_mm == (300 / 256, 300 / 256)


@pytest.mark.parametrize("side, source_x", [("left", 1.0), ("right", -1.0)])
def test_lateral_source_opposite_the_approach(side, source_x):
    g = carm_geometry("lateral", ISO, side, sad_mm=600, sid_mm=1000)
    rel = (g.source_ras_mm - ISO) / 600
    np.testing.assert_allclose(rel, [source_x, 0, 0], atol=1e-12)
    np.testing.assert_allclose(g.detector_v, [0, 0, -1], atol=1e-12)


def test_oblique_turns_thirty_degrees_towards_the_approach_side():
    ap = carm_geometry("ap", ISO, "right")
    ob = carm_geometry("oblique", ISO, "right")
    cos = float(ap.beam_direction @ ob.beam_direction)
    assert np.degrees(np.arccos(cos)) == pytest.approx(30.0)
    assert ob.detector_centre_ras_mm[0] > ISO[0]  # the detector swings towards the right side
    assert ob.source_ras_mm[1] > ISO[1]  # the source stays anterior (under the table)
    custom = carm_geometry("oblique", ISO, "right", angle_deg=45)
    assert np.degrees(np.arccos(ap.beam_direction @ custom.beam_direction)) == pytest.approx(45.0)


def test_projection_puts_anatomy_where_a_surgeon_expects_it():
    g = carm_geometry("ap", ISO, "left", pixels=(200, 100), detector_mm=(300, 150))
    col, row = g.project(np.array([ISO, ISO + [-20, 0, 0], ISO + [0, 0, 25]])).T
    assert col[0] == pytest.approx(100) and row[0] == pytest.approx(50)
    assert col[1] < 100  # patient's left -> image left
    assert row[2] < 50  # superior -> image top
    # magnification SID/SAD at the isocentre: 20 mm -> 20 * 1000/600 mm on the detector
    assert (100 - col[1]) * g.pixel_spacing_mm[0] == pytest.approx(20 * 1000 / 600)
    lat = carm_geometry("lateral", ISO, "left")
    c, _ = lat.project(np.array([ISO + [0, 20, 0]]))[0]
    assert c < 128  # left lateral: anterior on the image's left


def test_pixel_centres_lie_on_the_detector_plane():
    g = carm_geometry("oblique", ISO, "left", pixels=8)
    p = g.pixel_centres_mm()
    assert p.shape == (8, 8, 3)
    np.testing.assert_allclose((p - g.detector_centre_ras_mm) @ g.beam_direction, 0, atol=1e-9)
    np.testing.assert_allclose(g.project(p.reshape(-1, 3)).reshape(8, 8, 2)[2, 5], [5.5, 2.5], atol=1e-9)


def test_json_round_trip():
    g = carm_geometry("lateral", ISO, "right", 1000, 1500, 400, 512)
    d = json.loads(json.dumps(g.to_json()))
    assert d["view"] == "lateral" and d["pixels"] == [512, 512] and d["sid_mm"] == 1500
    assert d["pixel_spacing_mm"] == [pytest.approx(400 / 512)] * 2
    back = CArmGeometry.from_json(d)
    np.testing.assert_allclose(back.source_ras_mm, g.source_ras_mm, atol=1e-3)
    np.testing.assert_allclose(back.detector_u, g.detector_u, atol=1e-4)


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(ValueError, match="unknown C-arm view"):
        carm_geometry("pa", ISO)
    with pytest.raises(ValueError, match="sad_mm"):
        carm_geometry("ap", ISO, sad_mm=1200, sid_mm=1000)
    with pytest.raises(ValueError, match="side"):
        carm_geometry("ap", ISO, side="up")
