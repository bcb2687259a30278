"""Collateral ligaments and gaps on the shipped knee (assets/knee_tka): what a resident balancing the knee sees."""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import trimesh

from vr_trainer.procedures import tka_readouts as R
from vr_trainer.procedures.tka_gaps import KneeBalance, Ligament, gap_summary, knee_balance
from vr_trainer.procedures.tka_landmarks import FemurLandmarks, TibiaLandmarks, femur_landmarks, tibia_landmarks
from vr_trainer.sim.cutting import Plane

BUNDLE = Path(__file__).resolve().parents[2] / "assets" / "knee_tka"


@lru_cache(maxsize=1)
def knee() -> tuple[FemurLandmarks, TibiaLandmarks, trimesh.Trimesh, trimesh.Trimesh]:
    from vr_trainer.anatomy.bundle import load_bundle

    b = load_bundle(BUNDLE)
    f = femur_landmarks(b["femur"].mesh)
    return f, tibia_landmarks(b["tibia"].mesh, side=f.side), b["tibia"].mesh, b["fibula"].mesh


def balance(**kw: float) -> KneeBalance:
    f, t, tm, fm = knee()
    return knee_balance(f, t, tm, fm, **kw)


def cuts(distal_mm: float = 9.0, tibial_mm: float = 8.0, posterior_mm: float = 9.0, tibial_varus_deg: float = 0.0,
         femoral_er_deg: float = 0.0) -> tuple[Plane, Plane, Plane]:
    """Distal femoral, tibial and posterior femoral cuts, each ``*_mm`` into the bone from the
    condyles' / plateau's mean level (perpendicular to the mechanical axes, parallel to the TEA)."""
    f, t, _, _ = knee()
    fr = f.frame
    mid_d = 0.5 * (f.medial_distal_mm + f.lateral_distal_mm)
    mid_p = 0.5 * (f.medial_posterior_mm + f.lateral_posterior_mm)
    distal = R.plane_in_frame(fr, mid_d + distal_mm * fr.superior)
    posterior = R.plane_in_frame(fr, mid_p + posterior_mm * fr.anterior, around="anterior",
                                 lateral_tilt_deg=femoral_er_deg if f.side == "right" else -femoral_er_deg)
    tibial = R.plane_in_frame(t.frame, t.knee_centre_mm - tibial_mm * t.frame.superior,
                              lateral_tilt_deg=-tibial_varus_deg)
    return distal, tibial, posterior


def test_ligaments_come_from_the_landmarks_and_have_plausible_lengths() -> None:
    k = balance()
    f, t, _, _ = knee()
    assert np.allclose(k.mcl.origin_mm, f.medial_epicondyle_mm)
    assert np.allclose(k.lcl.origin_mm, f.lateral_epicondyle_mm)
    # the MCL inserts on the medial tibia ~55 mm below the plateau, the LCL on the fibular head
    below = float((t.medial_plateau_mm - k.mcl.insertion_mm) @ t.frame.superior)
    assert 50.0 < below < 60.0
    assert float((k.mcl.insertion_mm - t.knee_centre_mm) @ t.frame.lateral) < -15.0
    assert float((k.lcl.insertion_mm - t.knee_centre_mm) @ t.frame.lateral) > 25.0
    assert 80.0 < k.mcl.reference_length_mm < 115.0 and 45.0 < k.lcl.reference_length_mm < 75.0
    # calibrated: each pulls with the tensioner's force in the reference (balanced native) pose
    assert abs(k.mcl.force_n(k.mcl.reference_length_mm) - k.tension_n) < 1e-6
    assert abs(k.lcl.force_n(k.lcl.reference_length_mm) - k.tension_n) < 1e-6


@pytest.mark.parametrize("force", [0.0, 10.0, 50.0, 82.5, 300.0])
def test_spring_law_inverts(force: float) -> None:
    lig = Ligament("x", np.zeros(3), np.array([0.0, 0.0, -90.0]), 85.0, 2750.0)
    assert abs(lig.force_n(lig.length_at(force)) - force) < 1e-9
    # Blankevoort & Huiskes: quadratic toe up to twice the transition strain, then linear and continuous
    e = 2 * lig.transition_strain
    assert abs(lig.force_n(85.0 * (1 + e)) - 2750.0 * lig.transition_strain) < 1e-9


def test_symmetric_cuts_on_a_neutral_knee_give_equal_gaps() -> None:
    k = balance()
    distal, tibial, posterior = cuts()
    ext, flex = k.extension_gaps(distal, tibial), k.flexion_gaps(posterior, tibial)
    assert abs(ext.imbalance_mm) < 0.5 and abs(flex.imbalance_mm) < 0.5
    assert ext.rectangular and flex.rectangular
    assert 10.0 < ext.medial_mm < 40.0 and 10.0 < flex.medial_mm < 50.0


def test_varus_tibial_cut_opens_the_medial_extension_gap() -> None:
    # a varus tibial cut (+3 deg: the medial side cut lower) takes more medial bone, so the medial gap opens
    # and the lateral closes; the difference is tan(3 deg) times the condyles' medio-lateral distance
    k = balance()
    f, t, _, _ = knee()
    distal, tibial, _ = cuts(tibial_varus_deg=3.0)
    assert abs(R.tibial(tibial, t).varus_deg - 3.0) < 1e-6
    ext = k.extension_gaps(distal, tibial)
    width = float((f.lateral_distal_mm - f.medial_distal_mm) @ t.frame.lateral)
    assert ext.imbalance_mm > 2.0
    assert abs(ext.imbalance_mm - math.tan(math.radians(3.0)) * width) < 0.1
    assert not ext.rectangular


def test_external_rotation_of_the_femoral_component_opens_the_medial_flexion_gap() -> None:
    k = balance()
    f, _, _, _ = knee()
    _, tibial, posterior = cuts(femoral_er_deg=3.0)
    assert R.femoral_rotation(posterior, f).external_rotation_deg > 2.9
    flex = k.flexion_gaps(posterior, tibial)
    assert flex.imbalance_mm > 2.0  # more medial posterior condyle taken


@pytest.mark.parametrize("which", ["distal", "tibial", "posterior"])
def test_a_cut_two_mm_deeper_opens_its_gaps_by_exactly_two_mm(which: str) -> None:
    k = balance(mcl_tightness_mm=2.0)
    base = cuts()
    deeper = cuts(**{f"{which}_mm": (8.0 if which == "tibial" else 9.0) + 2.0})
    e0, e1 = k.extension_gaps(base[0], base[1]), k.extension_gaps(deeper[0], deeper[1])
    f0, f1 = k.flexion_gaps(base[2], base[1]), k.flexion_gaps(deeper[2], deeper[1])
    ext_gain = 2.0 if which in ("distal", "tibial") else 0.0
    flex_gain = 2.0 if which in ("posterior", "tibial") else 0.0
    for a, b, gain in ((e0, e1, ext_gain), (f0, f1, flex_gain)):
        assert abs(b.medial_mm - a.medial_mm - gain) < 1e-6 and abs(b.lateral_mm - a.lateral_mm - gain) < 1e-6


def test_tight_mcl_gives_a_trapezoidal_gap_that_the_right_release_balances() -> None:
    k = balance(mcl_tightness_mm=3.0)
    distal, tibial, posterior = cuts()
    ext, flex = k.extension_gaps(distal, tibial), k.flexion_gaps(posterior, tibial)
    # a varus knee's tight medial side: the medial gaps are ~3 mm smaller, in extension and in flexion
    assert ext.imbalance_mm < -2.5 and flex.imbalance_mm < -2.5 and not ext.rectangular
    # an insert sized for the lateral side is tight medially: the MCL pulls far above the tension
    fit = k.insert_fit(ext, ext.lateral_mm)
    assert fit.laxity_mm[0] < -2.5 and fit.force_n[0] > 1.5 * k.tension_n and not fit.fits
    side, mm = k.release_to_balance(ext)
    assert side == "medial" and abs(mm - 3.0) < 0.05
    too_little = balance(mcl_tightness_mm=3.0)
    too_little.release_mcl(1.0)
    assert too_little.extension_gaps(distal, tibial).imbalance_mm < -2.0
    k.release_mcl(mm)
    assert k.releases == [("mcl", mm)]
    ext2, flex2 = k.extension_gaps(distal, tibial), k.flexion_gaps(posterior, tibial)
    assert abs(ext2.imbalance_mm) < 0.5 and abs(flex2.imbalance_mm) < 0.5
    assert k.insert_fit(ext2, round(ext2.lateral_mm - 0.2, 1)).fits
    with pytest.raises(ValueError):
        k.release_mcl(-1.0)


def test_without_a_fibula_the_lcl_inserts_on_the_lateral_tibia_and_says_so() -> None:
    f, t, tm, _ = knee()
    k = knee_balance(f, t, tm, None)
    assert any("no fibula" in n for n in k.notes)
    assert float((k.lcl.insertion_mm - t.knee_centre_mm) @ t.frame.lateral) > 20.0


def test_flexion_and_extension_gaps_match_when_the_posterior_cut_leaves_the_same_space() -> None:
    # the posterior cut placed so that the flexion gap equals the extension gap: a balanced knee; 3 mm
    # less posterior resection leaves the flexion gap 3 mm tighter than extension
    k = balance()
    f, _, _, _ = knee()
    distal, tibial, posterior = cuts()
    ext, flex = k.extension_gaps(distal, tibial), k.flexion_gaps(posterior, tibial)
    depth = 9.0 - (flex.medial_mm + flex.lateral_mm - ext.medial_mm - ext.lateral_mm) / 2
    _, _, matched = cuts(posterior_mm=depth)
    s = gap_summary(ext, k.flexion_gaps(matched, tibial))
    assert s["balanced"] and all(abs(x) < 0.5 for x in s["flexion_minus_extension_mm"])
    _, _, short = cuts(posterior_mm=depth - 3.0)
    s = gap_summary(ext, k.flexion_gaps(short, tibial))
    assert not s["balanced"] and all(abs(x + 3.0) < 0.5 for x in s["flexion_minus_extension_mm"])
