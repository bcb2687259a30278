"""The shipped spine phantom's radiographs read as a spine: its stored HU volume through the DRR."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vr_trainer.anatomy.bundle import load_bundle
from vr_trainer.anatomy.hu_volume import load_hu_volume
from vr_trainer.render.drr import DrrRenderer, to_rgb
from vr_trainer.sim.carm import carm_geometry

BUNDLE = Path(__file__).resolve().parents[2] / "assets" / "spine_l3_s1"


@pytest.fixture(scope="module")
def phantom():
    vol = load_hu_volume(BUNDLE)
    if vol is None:
        pytest.fail(f"{BUNDLE} has no volume/hu.npz: regenerate it (python -m vr_trainer.anatomy.phantoms)")
    return load_bundle(BUNDLE), vol


def test_ap_shows_the_spine_darker_than_the_flanks_and_the_discs_lighter(gl_ctx, phantom):
    bundle, vol = phantom
    drr = DrrRenderer(gl_ctx, vol)
    g = carm_geometry("ap", np.zeros(3), "left", sad_mm=600, sid_mm=1000, detector_mm=300, pixels=128)
    rgb = to_rgb(drr.render(g))[:, :, 0].astype(int)
    disc = np.asarray(bundle["disc_L4_L5"].centroid_mm)
    l4 = 0.5 * (disc + np.asarray(bundle["disc_L3_L4"].centroid_mm))  # the L4 body between its discs
    (cb, rb), (cf, rf), (cd, rd) = g.project(np.array([l4, l4 + [-75, 0, 0], disc])).astype(int)
    body, flank = rgb[rb - 2 : rb + 3, cb - 2 : cb + 3].mean(), rgb[rf - 2 : rf + 3, cf - 2 : cf + 3].mean()
    assert body < flank - 30  # the vertebral column is the dark band, soft tissue beside it light
    assert rgb[rd, cd - 2 : cd + 3].mean() > rgb[rb, cb - 2 : cb + 3].mean()  # the disc space lighter than bone
    drr.release()


def test_lateral_shows_vertebral_bodies_between_lighter_discs(gl_ctx, phantom):
    bundle, vol = phantom
    drr = DrrRenderer(gl_ctx, vol)
    g = carm_geometry("lateral", np.zeros(3), "left", sad_mm=600, sid_mm=1000, detector_mm=300, pixels=128)
    img = drr.render(g)
    disc = np.asarray(bundle["disc_L3_L4"].centroid_mm)  # above the iliac crests (at L4-L5)
    l4 = 0.5 * (disc + np.asarray(bundle["disc_L4_L5"].centroid_mm))
    sac = np.asarray(bundle["dural_sac"].centroid_mm)
    (cb, rb), (cd, rd), (cs, _) = g.project(np.array([l4, disc, [sac[0], sac[1], l4[2]]])).astype(int)
    assert cb < cs  # left lateral: anterior (the body) on the image's left, the canal behind it
    assert img[rb - 1 : rb + 2, cb].mean() > img[rd, cd - 1 : cd + 2].mean() + 0.1  # bone body vs disc
    drr.release()
