"""Image panels (C-arm and endoscope monitors): the picture shows in the eye, framed, and is
uploaded again only when its version changes."""

from __future__ import annotations

import numpy as np
import pytest

from vr_trainer.frame import Fov, View
from vr_trainer.render.renderer import SceneRenderer
from vr_trainer.sim.scene import ImagePanelItem, SceneSnapshot
from vr_trainer.sim.transforms import look_at_pose, pose_from_axis

pytestmark = pytest.mark.gl
W, H = 128, 96


def _read(fb) -> np.ndarray:
    w, h = fb.size
    return np.frombuffer(fb.read(components=3, alignment=1), np.uint8).reshape(h, w, 3)[::-1].copy()


def _quadrants(tl, tr, bl, br) -> np.ndarray:
    img = np.zeros((64, 96, 3), np.uint8)  # wider than tall: the panel keeps the aspect
    img[:32, :48], img[:32, 48:], img[32:, :48], img[32:, 48:] = tl, tr, bl, br
    return img


def test_image_panel_shows_its_picture_framed_and_uploads_once_per_version(gl_ctx):
    r = SceneRenderer(gl_ctx, samples=0)
    fb = gl_ctx.framebuffer(color_attachments=[gl_ctx.texture((W, H), 4)],
                            depth_attachment=gl_ctx.depth_renderbuffer((W, H)))
    # a 300 mm wide panel 400 mm in front of the eye, facing it; 60 deg fov: it fills about half the width
    view = View(0, look_at_pose(np.array([0.0, 0.0, 400.0]), np.zeros(3)), Fov.symmetric(60.0, W / H), W, H)
    pose = pose_from_axis(np.zeros(3), np.array([0.0, 0.0, 1.0]))
    red, green, blue, white = (230, 20, 20), (20, 220, 30), (30, 40, 230), (240, 240, 240)
    pic = _quadrants(red, green, blue, white)
    snap = SceneSnapshot(0.0, 0, (), images=(ImagePanelItem("carm_monitor", pic, 1, pose, 300.0),))
    r.render(view, snap, fb)
    img = _read(fb).astype(int)
    # where the quadrant centres land: panel 300 x 200 mm, centres at (+-75, +-50) mm
    f_px = (W / 2) / np.tan(np.radians(30.0))  # 60 deg is the horizontal field
    def px(x_mm, y_mm):
        return img[int(H / 2 - y_mm / 400 * f_px), int(W / 2 + x_mm / 400 * f_px)]
    for (x, y), want in {(-75, 50): red, (75, 50): green, (-75, -50): blue, (75, -50): white}.items():
        assert np.abs(px(x, y) - np.array(want)).max() < 20, ((x, y), px(x, y), want)  # top left is red: not flipped
    rim = px(0, 104.0)  # the 10 mm frame above the picture's top edge
    assert rim.max() < 50, rim
    assert np.abs(px(0, 125.0) - np.array(r.clear_rgb) * 255).max() < 3, "outside the panel: the background"
    assert r.images.uploads == 1
    r.render(view, snap, fb)  # same version: no upload
    assert r.images.uploads == 1
    pic2 = _quadrants(white, blue, green, red)
    snap2 = SceneSnapshot(0.1, 1, (), images=(ImagePanelItem("carm_monitor", pic2, 2, pose, 300.0),))
    r.render(view, snap2, fb)
    img = _read(fb).astype(int)
    assert r.images.uploads == 2
    assert np.abs(px(-75, 50) - np.array(white)).max() < 20, "the new shot replaced the old one"
    # seen from behind: the panel's dark back, not a mirrored picture
    back = View(0, look_at_pose(np.array([0.0, 0.0, -400.0]), np.zeros(3)), Fov.symmetric(60.0, W / H), W, H)
    r.render(back, snap2, fb)
    assert _read(fb).astype(int)[H // 2, W // 2].max() < 50
