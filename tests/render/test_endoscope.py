"""The endoscope view: a picture from the scope tip composited as an inset into each eye,
kept for the endoscope monitor; no scope, no inset."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from vr_trainer.frame import Fov, View
from vr_trainer.render.endoscope import LENS_OFFSET_MM, lens_matrices, world_from_lens
from vr_trainer.render.renderer import SceneRenderer
from vr_trainer.sim.instruments import CATALOGUE, instrument_mesh
from vr_trainer.sim.scene import DrawItem, EndoscopeCamera, SceneSnapshot
from vr_trainer.sim.transforms import look_at_pose, pose_from_axis, translation

W, H = 160, 120


def test_lens_looks_down_the_shaft_tilted_towards_tool_y():
    tool = pose_from_axis(np.array([10.0, 20.0, 30.0]), np.array([0.0, 0.0, 1.0]))
    for angle in (0.0, 30.0):
        lens = world_from_lens(EndoscopeCamera(tool, lens_angle_deg=angle))
        fwd = -lens[:3, 2]
        want = -np.cos(np.radians(angle)) * tool[:3, 2] + np.sin(np.radians(angle)) * tool[:3, 1]
        np.testing.assert_allclose(fwd, want, atol=1e-9)
        np.testing.assert_allclose(lens[:3, 3], tool[:3, 3] - LENS_OFFSET_MM * tool[:3, 1])  # beside the channel
    view_m, proj = lens_matrices(EndoscopeCamera(tool, fov_deg=85.0))
    lens = world_from_lens(EndoscopeCamera(tool, fov_deg=85.0))
    p = proj @ view_m @ np.append(lens[:3, 3] + 0.3 * fwd, 1.0)
    assert p[2] / p[3] < -1.0, "0.3 mm from the lens is nearer than the near plane (0.5 mm)"


def _read(fb) -> np.ndarray:
    w, h = fb.size
    return np.frombuffer(fb.read(components=3, alignment=1), np.uint8).reshape(h, w, 3)[::-1].copy()


@pytest.mark.gl
def test_endoscope_inset_shows_what_is_in_front_of_the_tip(gl_ctx):
    r = SceneRenderer(gl_ctx, samples=0)
    ball = trimesh.creation.icosphere(3, 5.0)
    r.add_mesh("root", ball.vertices, ball.faces, "nerve")  # yellow
    r.add_mesh("far_vessel", ball.vertices, ball.faces, "vessel")  # red, beyond the scope's reach
    scope = instrument_mesh(CATALOGUE["endoscope"])
    r.add_mesh("scope", scope.vertices, scope.faces, "instrument")
    needle = instrument_mesh(CATALOGUE["spinal_needle"])
    r.add_mesh("forceps", needle.vertices, needle.faces, "instrument")
    tool = pose_from_axis(np.array([0.0, 900.0, 0.0]), np.array([0.0, 1.0, 0.4]))  # pointing down into the body
    cam = EndoscopeCamera(tool, lens_angle_deg=30.0)
    lens = world_from_lens(cam)
    fwd = -lens[:3, 2]
    # the forceps beside the root in the lower right of the scope picture, its jaw 9 mm from the lens
    jaw = lens[:3, 3] + 9.0 * fwd + 2.5 * lens[:3, 0] - 2.5 * lens[:3, 1]
    items = (DrawItem("root", translation(lens[:3, 3] + 14.0 * fwd)),
             DrawItem("far_vessel", translation(lens[:3, 3] + 120.0 * fwd)),
             DrawItem("scope", tool), DrawItem("forceps", pose_from_axis(jaw, tool[:3, 2])))
    fb = gl_ctx.framebuffer(color_attachments=[gl_ctx.texture((W, H), 4)],
                            depth_attachment=gl_ctx.depth_renderbuffer((W, H)))
    view = View(0, look_at_pose(np.array([0.0, 1300.0, -400.0]), np.array([0.0, 900.0, 0.0])),
                Fov.symmetric(60.0, W / H), W, H)
    # without the scope: no inset, the lower right corner is the background
    r.render(view, SceneSnapshot(0.0, 0, items), fb)
    plain = _read(fb).astype(int)
    assert r.endoscope_image() is None
    # with it: the round inset in the lower right shows the yellow root
    r.render(view, SceneSnapshot(0.0, 1, items, endoscope=cam), fb)
    img = _read(fb).astype(int)
    side = int(0.3 * W)
    m = int(0.03 * W)
    cx, cy = W - m - side // 2, H - m - side // 2
    centre = img[cy - 3:cy + 4, cx - 3:cx + 4].reshape(-1, 3).mean(0)
    assert centre[0] > 150 and centre[1] > 120 and centre[2] < centre[1] - 60, centre
    assert np.abs(plain[cy, cx] - np.array(r.clear_rgb) * 255).max() < 3
    # outside the inset's circle (its square's corner) the scene stays
    assert np.abs(img[H - m - side + 2, W - m - side + 2] - plain[H - m - side + 2, W - m - side + 2]).max() < 3
    # the picture itself: round (black corners), the root in the middle, the steel forceps lower right
    pic = r.endoscope_image()
    assert pic is not None and pic.shape == (256, 256, 3) and pic.dtype == np.uint8
    assert pic[:8, :8].max() == 0 and pic[-8:, -8:].max() == 0
    mid = pic[120:136, 120:136].reshape(-1, 3).astype(int).mean(0)
    assert mid[0] > 150 and mid[2] < mid[1] - 60, mid
    view_m, proj = lens_matrices(cam)
    q = proj @ view_m @ np.append(jaw + 1.0 * tool[:3, 2], 1.0)
    u, v = int((q[0] / q[3] * 0.5 + 0.5) * 256), int((0.5 - q[1] / q[3] * 0.5) * 256)
    steel = pic[v - 2:v + 3, u - 2:u + 3].reshape(-1, 3).astype(int).mean(0)
    assert steel.min() > 90 and steel.max() - steel.min() < 40, f"the forceps are grey steel at {(u, v)}: {steel}"
    red = (pic[..., 0] > 120) & (pic[..., 1] < 60)
    assert not red.any(), "the vessel 120 mm away is beyond the light and the far plane"
    # one picture per frame, whichever eye asks first; the next frame draws a new one
    snap = SceneSnapshot(0.1, 2, items, endoscope=cam)
    r.render(view, snap, fb)
    v0 = r.endoscope.version  # type: ignore[union-attr]
    r.render(View(1, view.pose_world_from_eye, view.fov, W, H), snap, fb)
    assert r.endoscope.version == v0  # type: ignore[union-attr]
    r.render(view, SceneSnapshot(0.2, 3, items, endoscope=cam), fb)
    assert r.endoscope.version == v0 + 1  # type: ignore[union-attr]


@pytest.mark.gl
def test_endoscope_monitor_panel_shows_the_live_picture_upright(gl_ctx):
    from vr_trainer.sim.scene import ImagePanelItem

    r = SceneRenderer(gl_ctx, samples=0)
    ball = trimesh.creation.icosphere(3, 3.0)
    r.add_mesh("root", ball.vertices, ball.faces, "nerve")
    tool = pose_from_axis(np.array([0.0, 900.0, 0.0]), np.array([0.0, 1.0, 0.0]))
    cam = EndoscopeCamera(tool, lens_angle_deg=0.0)
    lens = world_from_lens(cam)
    fwd = -lens[:3, 2]
    # the root in the upper part of the scope's picture (towards the lens's +y)
    items = (DrawItem("root", translation(lens[:3, 3] + 12.0 * fwd + 4.0 * lens[:3, 1])),)
    monitor = ImagePanelItem("endoscope_monitor", np.zeros((2, 2, 3), np.uint8), 0,
                             pose_from_axis(np.array([0.0, 1500.0, 0.0]), np.array([0.0, 0.0, 1.0])), 300.0)
    fb = gl_ctx.framebuffer(color_attachments=[gl_ctx.texture((W, H), 4)],
                            depth_attachment=gl_ctx.depth_renderbuffer((W, H)))
    view = View(0, look_at_pose(np.array([0.0, 1500.0, 500.0]), np.array([0.0, 1500.0, 0.0])),
                Fov.symmetric(60.0, W / H), W, H)
    r.inset_fraction = 0.0  # only the monitor
    r.render(view, SceneSnapshot(0.0, 0, items, images=(monitor,)), fb)
    dark = _read(fb).astype(int)
    r.render(view, SceneSnapshot(0.0, 1, items, images=(monitor,), endoscope=cam), fb)
    img = _read(fb).astype(int)
    yellow = (img[..., 0] > 150) & (img[..., 1] > 110) & (img[..., 2] < 90)
    assert yellow.sum() > 20, "the live endoscope picture is on the monitor"
    assert not ((dark[..., 0] > 150) & (dark[..., 1] > 110) & (dark[..., 2] < 90)).any(), "no scope: a black screen"
    ys, _ = np.nonzero(yellow)
    assert ys.mean() < H / 2, "upright: what is above the lens axis shows in the upper half"
    pic = r.endoscope_image()
    assert pic is not None
    ys2, _ = np.nonzero((pic[..., 0] > 150) & (pic[..., 2] < 90))
    assert ys2.mean() < 128, "the picture for the mentor is upright too"


@pytest.mark.gl
def test_forceps_through_the_working_channel_show_in_the_picture(gl_ctx):
    """Forceps coming out along the scope's axis (as the procedure model places them) reach into
    the picture from below, towards its centre as they extend."""
    r = SceneRenderer(gl_ctx, samples=0)
    spec = CATALOGUE.get("grasping_forceps", CATALOGUE["spinal_needle"])
    forceps = instrument_mesh(spec)
    r.add_mesh("forceps", forceps.vertices, forceps.faces, "instrument")
    tool = pose_from_axis(np.array([0.0, 900.0, 0.0]), np.array([0.0, 1.0, 0.0]))
    cam = EndoscopeCamera(tool)
    fb = gl_ctx.framebuffer(color_attachments=[gl_ctx.texture((W, H), 4)])
    view = View(0, look_at_pose(np.array([0.0, 1300.0, -400.0]), np.array([0.0, 900.0, 0.0])),
                Fov.symmetric(60.0, W / H), W, H)
    rows = []
    for k, extend_mm in enumerate((4.0, 12.0)):
        tip = tool.copy()
        tip[:3, 3] = tool[:3, 3] - extend_mm * tool[:3, 2]  # out of the scope along its axis
        r.render(view, SceneSnapshot(0.0, k, (DrawItem("forceps", tip),), endoscope=cam), fb)
        pic = r.endoscope_image()
        assert pic is not None
        steel = pic.astype(int).min(-1) > 60  # lit grey metal on the black background
        assert steel.sum() > 200, f"the forceps are in the picture ({extend_mm} mm out)"
        ys, _ = np.nonzero(steel)
        rows.append(ys.min())
        assert ys.max() > 200, "they come in from the bottom (the channel at 6 o'clock)"
    assert rows[0] < 128 and rows[1] < rows[0] - 20, "their tip reaches past the centre, higher as they extend"
