"""`vr-trainer preview`: the shipped scenarios' anatomy, targets, risk margins and steps as PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from vr_trainer.app.preview import offset_shell, preview
from vr_trainer.cli import main

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((REPO / "scenarios").glob("*.yaml"))
SIZE = 128
pytestmark = pytest.mark.gl


def risk_hued(img: np.ndarray) -> np.ndarray:
    """Pixels in the red family of risk structures and their shells (bone, disc, nerve and the
    pink of pathology are not)."""
    c = img.astype(int)
    return (c[..., 0] > c[..., 1] + 50) & (c[..., 0] > c[..., 2] + 50)


def pixels(pixel_from_ras: np.ndarray, points_mm: np.ndarray, size: int) -> np.ndarray:
    """(n, 2) integer pixel (x, y) of RAS points inside a ``size`` square view."""
    c = np.hstack([points_mm, np.ones((len(points_mm), 1))]) @ pixel_from_ras.T
    xy = np.stack([(c[:, 0] / c[:, 3] + 1) / 2 * size, (1 - c[:, 1] / c[:, 3]) / 2 * size], 1).astype(int)
    return np.unique(xy[((xy >= 0) & (xy < size)).all(1)], axis=0)


@pytest.fixture(scope="module")
def previews(gl_ctx, tmp_path_factory):
    out = {}
    for s in SCENARIOS:
        d = tmp_path_factory.mktemp(s.stem)
        out[s.stem] = (preview(s, d, SIZE, ctx=gl_ctx), d)
    return out


@pytest.mark.parametrize("name", [s.stem for s in SCENARIOS])
def test_writes_four_pngs_and_views_differ(previews, name):
    res, d = previews[name]
    files = sorted(p.name for p in d.iterdir())
    assert files == ["preview_ap.png", "preview_approach.png", "preview_lateral.png", "preview_sheet.png"]
    imgs = {v.name: np.asarray(Image.open(d / f"preview_{v.name}.png").convert("RGB")) for v in res.views}
    for v in res.views:
        assert imgs[v.name].shape[1] == SIZE and imgs[v.name].shape[0] > SIZE, "the render above the step list"
        assert np.array_equal(imgs[v.name][:SIZE], v.render_rgb)
        assert v.render_rgb.reshape(-1, 3).std(0).max() > 20, f"{v.name} is not blank"
    diff = np.abs(imgs["ap"][:SIZE].astype(int) - imgs["lateral"][:SIZE].astype(int)).mean()
    assert diff > 8, f"AP and lateral look alike (mean difference {diff:.1f})"


@pytest.mark.parametrize("name", [s.stem for s in SCENARIOS])
def test_risk_colour_where_risk_structures_project(previews, name):
    res, _ = previews[name]
    assert res.scene.risks
    checked = {rk.id: 0 for rk in res.scene.risks}
    for v in res.views:
        hue = risk_hued(v.render_rgb)
        free = np.ones((SIZE, SIZE), bool)  # not under a label (labels are drawn over the render)
        for x0, y0, x1, y1 in v.label_boxes:
            free[int(y0):int(np.ceil(y1)) + 1, int(x0):int(np.ceil(x1)) + 1] = False
        yy, xx = np.mgrid[:SIZE, :SIZE]  # nor under a target's marker and ring (drawn in front)
        for x, y in pixels(v.pixel_from_ras, np.stack([t.point_ras_mm for t in res.scene.targets]), SIZE):
            free &= (xx - x) ** 2 + (yy - y) ** 2 > 4 ** 2
        for rk in res.scene.risks:
            px = pixels(v.pixel_from_ras, rk.vertices_mm, SIZE)
            px = px[free[px[:, 1], px[:, 0]]]
            if len(px) < 8:  # under the labels and markers in this view
                continue
            checked[rk.id] += 1
            inside = hue[px[:, 1], px[:, 0]].mean()
            assert inside > 0.6, f"{v.name}: only {inside:.0%} of {rk.id}'s footprint shows the risk colour"
        assert hue.mean() < 0.5, f"{v.name}: the risk colour is everywhere"
    assert min(checked.values()) >= 2, f"risk structures seen in fewer than two views: {checked}"


@pytest.mark.parametrize("name", [s.stem for s in SCENARIOS])
def test_targets_marked(previews, name):
    res, _ = previews[name]
    for v in res.views:
        c = v.render_rgb.astype(int)
        green = (c[..., 1] > c[..., 0] + 60) & (c[..., 1] > c[..., 2] + 30)
        for t in res.scene.targets:
            (x, y), = pixels(v.pixel_from_ras, t.point_ras_mm[None], SIZE)
            assert green[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2].any(), f"{v.name}: no marker on {t.id}"


@pytest.mark.parametrize("name", [s.stem for s in SCENARIOS])
def test_sheet_holds_the_three_views(previews, name):
    res, d = previews[name]
    sheet = np.asarray(Image.open(d / "preview_sheet.png").convert("RGB"))
    assert np.array_equal(sheet, res.sheet_rgb)
    assert len(res.tile_corners) == 3
    for (x, y), v in zip(res.tile_corners, res.views):
        assert np.array_equal(sheet[y:y + SIZE, x:x + SIZE], v.render_rgb), v.name
    assert sheet.shape[1] >= 3 * SIZE


def test_margin_shell_grows_with_margin(gl_ctx, tmp_path):
    """The translucent shell is the margin: a wider margin paints more pixels in the risk colour."""
    src = yaml.safe_load((REPO / "tests" / "scenario" / "data" / "tka_touch.yaml").read_text())
    src["anatomy"]["bundle"] = str(REPO / "assets" / "knee")
    counts = []
    for margin in (0.0, 6.0):
        src["risk_structures"][0]["margin_mm"] = margin
        p = tmp_path / f"m{margin:g}.yaml"
        p.write_text(yaml.safe_dump(src, allow_unicode=True))
        res = preview(p, tmp_path / f"out{margin:g}", 96, ctx=gl_ctx)
        counts.append(int(risk_hued(res.views[0].render_rgb).sum()))
    assert counts[1] > counts[0] * 1.15, counts


def test_offset_shell_lies_margin_outside():
    import trimesh

    ball = trimesh.creation.icosphere(subdivisions=3, radius=10.0)
    shell = offset_shell(np.asarray(ball.vertices), np.asarray(ball.faces), 2.5)
    assert np.allclose(np.linalg.norm(shell, axis=1), 12.5, atol=0.05)


def test_cli_writes_previews(tmp_path, capsys):
    out = tmp_path / "prev"
    assert main(["preview", str(REPO / "scenarios" / "tha_hip.yaml"), "--out", str(out), "--size", "96"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["preview_ap.png", "preview_approach.png",
                                                      "preview_lateral.png", "preview_sheet.png"]
    assert str(out / "preview_sheet.png") in capsys.readouterr().out


def test_bad_scenario_writes_nothing(tmp_path, capsys):
    src = (REPO / "scenarios" / "pted_l4_l5.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(src.replace("structure: nerve_root_L4_exiting_left", "structure: nerve_root_L9_exiting_left")
                   .replace("bundle: spine_l3_s1", f"bundle: {REPO / 'assets' / 'spine_l3_s1'}"))
    out = tmp_path / "prev"
    assert main(["preview", str(bad), "--out", str(out), "--size", "96"]) == 2
    err = capsys.readouterr().err
    assert "nerve_root_L9_exiting_left" in err and "Traceback" not in err
    assert not out.exists()
