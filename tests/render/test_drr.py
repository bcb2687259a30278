"""The DRR ray-caster: analytic line integrals of a known volume, radio-opaque instruments, views."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from vr_trainer.render.drr import MU_STEEL_PER_MM, MU_WATER_PER_MM, DrrRenderer, attenuation_per_mm, to_rgb
from vr_trainer.sim.carm import carm_geometry


@dataclass
class Vol:
    array: np.ndarray
    affine: np.ndarray


def grid(shape=(48, 40, 56), spacing_mm=2.0, fill_hu=-1000.0) -> Vol:
    """Air volume centred on the origin (RAS mm), cubic voxels."""
    aff = np.eye(4)
    aff[:3, :3] *= spacing_mm
    aff[:3, 3] = -spacing_mm * (np.asarray(shape) - 1) / 2.0
    return Vol(np.full(shape, fill_hu, np.float32), aff)


def centres(v: Vol) -> np.ndarray:
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in v.array.shape], indexing="ij"), -1).reshape(-1, 3)
    return (ijk * np.diag(v.affine)[:3] + v.affine[:3, 3]).reshape(*v.array.shape, 3)


def box_chord_mm(origin: np.ndarray, ends: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Length of each segment origin -> ends[k] inside the axis-aligned box [lo, hi] (slab method)."""
    d = ends - origin
    length = np.linalg.norm(d, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_a, t_b = (lo - origin) / d, (hi - origin) / d
    t0 = np.nanmax(np.minimum(t_a, t_b), axis=-1).clip(0, 1)
    t1 = np.nanmin(np.maximum(t_a, t_b), axis=-1).clip(0, 1)
    return np.maximum(t1 - t0, 0) * length


def test_hu_to_attenuation_is_plastimatchs():
    mu = attenuation_per_mm(np.array([-1000, -800, -799, 0, 1000]))
    np.testing.assert_allclose(mu, [0, 0, 0.022 * 0.201, 0.022, 0.044], rtol=1e-5)


@pytest.mark.parametrize("method", ["slices", "march"])
def test_line_integral_of_a_water_box_matches_the_analytic_chord(gl_ctx, method):
    v = grid()
    c = centres(v)
    lo, hi = np.array([-20.0, -16.0, -30.0]), np.array([22.0, 18.0, 26.0])
    inside = np.all((c >= lo) & (c <= hi), axis=-1)
    v.array[inside] = 0.0  # water
    drr = DrrRenderer(gl_ctx, v, method=method)
    for view in ("ap", "lateral", "oblique"):
        g = carm_geometry(view, np.zeros(3), "left", sad_mm=300, sid_mm=500, detector_mm=160, pixels=64)
        img = drr.render(g)
        # lo/hi lie on voxel faces (centres at odd mm): the water fills exactly [lo, hi]
        expect = MU_WATER_PER_MM * box_chord_mm(g.source_ras_mm, g.pixel_centres_mm(), lo, hi)
        assert img.shape == (64, 64)
        deep = expect > 0.5  # rays crossing more than ~23 mm of water
        assert deep.sum() > 500
        rel = np.abs(img[deep] - expect[deep]) / expect[deep]
        assert np.median(rel) < 0.01, view
        assert np.percentile(rel, 90) < 0.05, view
        # rays missing the box by more than a voxel (trilinear blur reaches one) see nothing
        far = box_chord_mm(g.source_ras_mm, g.pixel_centres_mm(), lo - 2.0, hi + 2.0) == 0
        assert far.sum() > 200 and np.abs(img[far]).max() < 1e-6
    drr.release()


def test_instrument_is_dark_where_it_projects(gl_ctx):
    v = grid(fill_hu=0.0)
    drr = DrrRenderer(gl_ctx, v)
    g = carm_geometry("ap", np.zeros(3), "left", sad_mm=300, sid_mm=500, detector_mm=160, pixels=96)
    p0, p1 = np.array([8.0, 0.0, -30.0]), np.array([8.0, 0.0, 30.0])  # a needle running cranio-caudally
    plain = drr.render(g)
    with_needle = drr.render(g, [(p0, p1, 2.0)])  # a 4 mm dilator
    col, row = g.project(np.array([[8.0, 0.0, 0.0]]))[0]
    r, c = int(row), int(col)
    added = with_needle - plain
    # the ray closest to the axis crosses about the diameter of steel
    assert added[r, c - 2 : c + 3].max() == pytest.approx(MU_STEEL_PER_MM * 4.0, rel=0.08)
    assert np.abs(added[:, : c - 4]).max() < 1e-4 and np.abs(added[:, c + 5:]).max() < 1e-4
    top, bottom = (g.project(np.array([p1, p0]))[:, 1]).astype(int)
    assert added[top + 2 : bottom - 2, c].min() > 0.5  # the whole length shows
    assert added[: max(top - 2, 0), c].max() < 1e-4  # beyond its ends, nothing
    rgb = to_rgb(with_needle, round_field=False)
    assert rgb[r, c, 0] < 0.5 * rgb[r, c + 8, 0]  # clearly darker than the tissue beside it
    tube = drr.render(g, [(p0, p1, 3.75, 3.0)])  # a working cannula: a steel tube
    ring = tube - plain
    assert ring[r, c] < ring[r, int(col + 3.4 * 500 / 300 / g.pixel_spacing_mm[0])]  # walls darker than the lumen
    drr.release()


def test_ap_and_lateral_show_a_transverse_bar_differently(gl_ctx):
    """A bone bar along left-right (a transverse process): long in AP, a dot in the lateral."""
    v = grid(fill_hu=0.0)
    c = centres(v)
    bar = (np.abs(c[..., 1]) <= 4) & (np.abs(c[..., 2] - 20) <= 4) & (c[..., 0] >= -36) & (c[..., 0] <= -4)
    v.array[bar] = 1200.0  # bone, on the patient's left, superior
    drr = DrrRenderer(gl_ctx, v)
    kw = dict(sad_mm=300, sid_mm=500, detector_mm=200, pixels=80)
    ap = drr.render(carm_geometry("ap", np.zeros(3), "left", **kw))
    lat = drr.render(carm_geometry("lateral", np.zeros(3), "left", **kw))

    def dense(img: np.ndarray) -> np.ndarray:
        return img > np.median(img) + 0.5 * (img.max() - np.median(img))

    ya, xa = np.nonzero(dense(ap))
    yl, xl = np.nonzero(dense(lat))
    assert (xa.max() - xa.min()) > 3 * (xl.max() - xl.min())  # long across in AP, short in the lateral
    assert xa.mean() < 40 and ya.mean() < 40  # AP: patient's left on the image left, superior at the top
    assert yl.mean() < 40  # lateral: superior still at the top
    assert not np.allclose(ap, lat)
    drr.release()


def test_display_is_bright_background_dark_bone(gl_ctx):
    v = grid()
    c = centres(v)
    v.array[np.linalg.norm(c, axis=-1) < 25] = 40.0
    v.array[np.linalg.norm(c - [0, 0, 0], axis=-1) < 8] = 1500.0
    drr = DrrRenderer(gl_ctx, v)
    g = carm_geometry("ap", np.zeros(3), "left", sad_mm=300, sid_mm=500, detector_mm=160, pixels=64)
    rgb = to_rgb(drr.render(g))
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    air, soft, bone = rgb[32, 9, 0], rgb[32, 20, 0], rgb[32, 32, 0]
    assert air > soft > bone
    assert rgb[0, 0, 0] == 0  # outside the round field
    drr.release()
