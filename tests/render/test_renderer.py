"""Renderer: golden images of fixed scenes, stereo, MSAA, annotations, CJK text, readback."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from vr_trainer.render.materials import TISSUES
from vr_trainer.render.renderer import SceneRenderer
from vr_trainer.sim.annotations import AnnotationSet, Pin, Stroke
from vr_trainer.sim.scene import DrawItem, PanelItem, SceneSnapshot
from vr_trainer.sim.transforms import look_at_pose, pose_from_axis, translation
from vr_trainer.frame import Fov, View

pytestmark = pytest.mark.gl
W, H = 128, 128


def _view(ctx, eye=0, pos=(0, 300, 600), target=(0, 0, 0), size=(W, H)):
    """A view and the framebuffer it is rendered into (as a backend hands out)."""
    fb = ctx.framebuffer(color_attachments=[ctx.texture(size, 4)], depth_attachment=ctx.depth_renderbuffer(size))
    return View(eye, look_at_pose(np.array(pos, float), np.array(target, float)),
                Fov.symmetric(60.0, size[0] / size[1]), size[0], size[1]), fb


def _project(view: View, p_mm) -> tuple[int, int]:
    """Pixel (column, row from the top) where a world point appears."""
    from vr_trainer.sim.transforms import projection_from_fov, rigid_inverse

    f = view.fov
    proj = projection_from_fov(f.angle_left, f.angle_right, f.angle_up, f.angle_down, 30, 20000)
    clip = proj @ rigid_inverse(view.pose_world_from_eye) @ np.append(np.asarray(p_mm, float), 1.0)
    return (int((clip[0] / clip[3] * 0.5 + 0.5) * view.width), int((0.5 - clip[1] / clip[3] * 0.5) * view.height))


def _read(fb) -> np.ndarray:
    w, h = fb.size
    raw = fb.read(components=3, alignment=1)
    return np.frombuffer(raw, np.uint8).reshape(h, w, 3)[::-1].copy()


@pytest.fixture
def renderer(gl_ctx):
    r = SceneRenderer(gl_ctx, samples=4)  # MSAA on, as on a GPU, whatever renders the tests
    yield r


def test_tissue_materials_golden(gl_ctx, renderer, goldens):
    names = ["bone", "disc", "nerve", "dura", "vessel", "cartilage", "muscle", "skin"]
    s = trimesh.creation.icosphere(3, 40.0)
    items = []
    for i, n in enumerate(names):
        renderer.add_mesh(n, s.vertices, s.faces, n)
        x, y = (i % 4) * 100 - 150, 60 - (i // 4) * 110
        items.append(DrawItem(n, translation([x, y, 0])))
    view, fb = _view(gl_ctx, pos=(0, 0, 600), size=(160, 128))
    renderer.render(view, SceneSnapshot(0.0, 0, tuple(items)), fb)
    img = _read(fb)
    goldens.check("tissues", img)
    # what a user sees: bone is pale, nerve is yellow, vessel is red (pixel at each sphere centre)
    def px(i):
        x, y = (i % 4) * 100 - 150, 60 - (i // 4) * 110
        c = np.array([x, y, 0, 1.0])
        from vr_trainer.sim.transforms import projection_from_fov, rigid_inverse
        f = view.fov
        p = projection_from_fov(f.angle_left, f.angle_right, f.angle_up, f.angle_down, 30, 20000)
        clip = p @ rigid_inverse(view.pose_world_from_eye) @ c
        u = int((clip[0] / clip[3] * 0.5 + 0.5) * view.width)
        v = int((0.5 - clip[1] / clip[3] * 0.5) * view.height)
        return np.median(img[v - 6:v + 7, u - 6:u + 7].reshape(-1, 3), axis=0).astype(int)
    bone, nerve, vessel = px(0), px(2), px(4)
    assert bone.min() > 150, bone
    assert nerve[0] > 180 and nerve[1] > 140 and nerve[2] < nerve[1] - 60, nerve
    assert vessel[0] > 130 and vessel[1] < 80 and vessel[2] < 80, vessel
    assert set(TISSUES) >= set(names)


def test_stereo_views_differ_and_msaa_smooths_edges(gl_ctx, renderer):
    box = trimesh.creation.box([200, 200, 200])
    renderer.add_mesh("box", box.vertices, box.faces, "bone")
    snap = SceneSnapshot(0.0, 0,
                         (DrawItem("box", np.eye(4) @ trimesh.transformations.rotation_matrix(0.4, [0, 1, 0])),))
    left, left_fb = _view(gl_ctx, 0, pos=(-32, 300, 600))
    right, right_fb = _view(gl_ctx, 1, pos=(32, 300, 600))
    renderer.render(left, snap, left_fb)
    renderer.render(right, snap, right_fb)
    a, b = _read(left_fb), _read(right_fb)
    assert np.abs(a.astype(int) - b.astype(int)).max(axis=-1).mean() > 1.0, "the two eyes must see different images"
    # anti-aliased edges: some pixels are between background and bone
    bg = np.array(renderer.clear_rgb) ** (1 / 1) * 255
    grey = a.astype(int).sum(-1)
    mid = ((grey > bg.sum() + 60) & (grey < 600)).sum()
    assert renderer.samples >= 2 and mid > 20


def test_annotations_golden_and_anchored(gl_ctx, renderer, goldens):
    box = trimesh.creation.box([300, 20, 300])
    renderer.add_mesh("table", box.vertices, box.faces, "muscle")
    ann = AnnotationSet()
    ann.add_stroke(Stroke("s", np.array([[-100, 11, 0], [0, 11, 80], [100, 11, 0]], float),
                          (0.1, 1.0, 0.3, 1.0), 4, 0.0))
    ann.add_pin(Pin("p", np.array([0.0, 10.0, -80.0]), (1.0, 0.15, 0.15, 1.0), 0.0))
    snap = SceneSnapshot(0.0, 0, (DrawItem("table", np.eye(4)),), (), ann)
    v, fb = _view(gl_ctx, pos=(0, 250, 350))
    renderer.render(v, snap, fb)
    img = _read(fb)
    goldens.check("annotations", img)
    green = (img[..., 1] > 180) & (img[..., 0] < 120)
    red = (img[..., 0] > 150) & (img[..., 1] < 120) & (img[..., 2] < 120)
    assert green.sum() > 30, "the stroke is visible"
    assert red.sum() >= 5, "the pin is visible"
    ys, xs = np.nonzero(red)
    pu, pv = _project(v, (0.0, 10.0, -80.0))
    assert abs(xs.mean() - pu) < 4 and pv - 8 < ys.mean() <= pv + 1, "the pin stands on its anchor point"
    # undo removes the pin, clear removes everything
    ann.undo()
    renderer.render(v, snap, fb)
    img2 = _read(fb)
    assert ((img2[..., 0] > 150) & (img2[..., 1] < 120) & (img2[..., 2] < 120)).sum() < 2
    ann.clear()
    renderer.render(v, snap, fb)
    assert ((_read(fb)[..., 1] > 180) & (_read(fb)[..., 0] < 120)).sum() == 0


def test_text_panel_renders_chinese_glyphs(gl_ctx, renderer, goldens):
    from vr_trainer.render.text import covers_cjk, render_text_rgba

    assert covers_cjk(), "a CJK font must be installed (fonts-wqy-microhei)"
    zh = render_text_rgba(["椎间孔镜"], font_px=32, width_px=200)
    tofu = render_text_rgba(["\u0378\u0379\u0380\u0381"], font_px=32, width_px=200)  # unassigned code points
    # real glyphs differ from one another; missing glyphs render as identical boxes
    glyphs = [render_text_rgba([c], font_px=32, width_px=64)[..., 3].astype(int) for c in "椎间孔镜"]
    assert np.abs(glyphs[0] - glyphs[1]).sum() > 1000 and np.abs(glyphs[2] - glyphs[3]).sum() > 1000
    assert not np.array_equal(zh, tofu)
    snap = SceneSnapshot(0.0, 0, (), (PanelItem("p", ("L4-L5 椎间孔镜", "12.5 mm"),
                                                 pose_from_axis([0, 300, 0], [0, 0.5, 1]), 500.0),))
    v, fb = _view(gl_ctx, pos=(0, 300, 500), target=(0, 300, 0), size=(192, 96))
    renderer.render(v, snap, fb)
    img = _read(fb)
    goldens.check("text_panel", img)
    assert (img.sum(-1) > 400).sum() > 30, "text is drawn in light colour on the panel"


def test_depth_readback_gives_surface_distance(gl_ctx, renderer):
    from vr_trainer.render.mirror import MirrorCompositor

    box = trimesh.creation.box([400, 400, 10])
    renderer.add_mesh("wall", box.vertices, box.faces, "bone")
    v, fb = _view(gl_ctx, pos=(0, 0, 500), target=(0, 0, 0))
    t = renderer.render(v, SceneSnapshot(0.0, 0, (DrawItem("wall", np.eye(4)),)), fb)
    m = MirrorCompositor(gl_ctx, (W, H), "left")
    m.compose([t])
    d = m.read_depth_now()[H // 2, W // 2]
    # window depth -> eye distance: the wall's front face is 495 mm away
    n, f = renderer.near_mm, renderer.far_mm
    z_ndc = d * 2 - 1
    dist = 2 * n * f / (f + n - z_ndc * (f - n))
    assert abs(dist - 495.0) < 2.0, dist


def test_levels_of_detail_are_invisible_in_the_default_scene(gl_ctx):
    """Coarser meshes are used where they cover few pixels; the picture must not change."""
    from vr_trainer.bench.render import _scene_arrays
    from vr_trainer.xr.headless import headset_fov
    from vr_trainer.xr.posetrack import eye_poses

    meshes, items, scene = _scene_arrays()
    r = SceneRenderer(gl_ctx, samples=4)
    for mid, m in meshes.items():
        r.add_mesh(mid, m.vertices_mm, m.faces, m.tissue, double_sided=m.double_sided, lods=m.lods)
    assert any(len(g.levels) > 1 for g in r.meshes.values()), "the anatomy has coarser levels"
    snap = SceneSnapshot(0.0, 0, tuple(DrawItem(m, x) for m, x in items))
    w, h = 320, 240
    fb = gl_ctx.framebuffer(color_attachments=[gl_ctx.texture((w, h), 4)])
    view = View(0, eye_poses(scene.track.head_pose(0.0))[0], headset_fov(0, w, h), w, h)
    imgs = []
    for density in (0.0, r.lod_faces_per_px):
        r.lod_faces_per_px = density
        r.render(view, snap, fb)
        imgs.append(_read(fb).astype(int))
    diff = np.abs(imgs[0] - imgs[1]).max(-1)
    assert (diff > 24).mean() < 0.005, f"{(diff > 24).mean():.2%} of pixels changed"
