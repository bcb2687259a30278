"""The operating room: the table under the prone patient, a posable C-arm, the monitors."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from vr_trainer.frame import Fov, View
from vr_trainer.sim.room import SAD_MM, build_room
from vr_trainer.sim.scene import DrawItem, SceneSnapshot
from vr_trainer.sim.transforms import look_at_pose

PRONE = np.array([[0, 0, 1], [0, -1, 0], [1, 0, 0]], float)  # as app.session.ORIENTATIONS["prone"]
RESIDENT = np.array([-90.0, 1200.0, -250.0])  # the default scenario's head: the patient's left


def _patient() -> tuple[np.ndarray, trimesh.Trimesh, np.ndarray]:
    wfp = np.eye(4)
    wfp[:3, :3] = PRONE
    wfp[:3, 3] = [0.0, 950.0, 0.0]
    body = trimesh.creation.box([320.0, 220.0, 400.0])  # RAS: wide, deep, long
    pts = body.vertices @ PRONE.T + wfp[:3, 3]
    return wfp, body, np.stack([pts.min(0), pts.max(0)])


def test_table_carm_and_monitors_are_placed_for_a_prone_patient():
    wfp, _, bbox = _patient()
    room = build_room(wfp, bbox, RESIDENT)
    assert bbox[0, 1] - 5.0 < room.table_top_y_mm < bbox[0, 1], "the table top just under the body"
    np.testing.assert_allclose(room.approach_side_world, [0, 0, -1], atol=1e-9)  # towards the resident
    up = np.array([0.0, 1.0, 0.0])
    np.testing.assert_allclose(room.beam_direction_world(0.0), up, atol=1e-9)  # AP: PA beam, tube under the table
    lateral = room.world_from_carm(90.0)
    source = lateral[:3, :3] @ np.array([0.0, -SAD_MM, 0.0]) + lateral[:3, 3]
    assert source[2] > bbox[1, 2], "lateral: the tube on the side opposite the approach"
    assert room.view_angle_from_beam(room.beam_direction_world(30.0)) == pytest.approx(30.0)
    ap = room.world_from_carm(0.0)
    assert ap[:3, :3] @ np.array([0.0, -SAD_MM, 0.0]) @ up + ap[1, 3] < room.table_top_y_mm, "AP tube below the table"
    for name, m in room.meshes.items():
        mesh = trimesh.Trimesh(m.vertices_mm, m.faces, process=False)
        closed_outward = mesh.is_watertight and mesh.volume > 0
        assert m.double_sided or closed_outward, f"{name}: closed, outward (back faces are culled)"
    for name in ("carm_monitor", "endoscope_monitor"):
        p = room.monitors[name].world_from_panel
        to_resident = RESIDENT - p[:3, 3]
        to_resident[1] = 0.0
        assert p[:3, 2] @ to_resident / np.linalg.norm(to_resident) > 0.99, f"{name} faces the resident"
        assert p[2, 3] > bbox[1, 2], f"{name} stands across the table"
    big = build_room(wfp, bbox, RESIDENT, sad_mm=700.0, sid_mm=1200.0)  # the scenario's C-arm sizes
    tube, face = big.meshes["room:carm_tube"].vertices_mm, big.meshes["room:carm_detector_face"].vertices_mm
    assert tube[:, 1].min() < -700.0 < tube[:, 1].max(), "the focal spot inside the tube housing"
    assert abs(face[:, 1].max() - 501.0) < 1.0, "the detector's face at SID - SAD above the isocentre"
    items = room.draw_items(30.0)
    assert {it.mesh_id for it in items} == set(room.meshes)
    panel = room.image_panel("carm_monitor", np.zeros((512, 512, 3), np.uint8), 3)
    assert panel.version == 3 and panel.width_mm <= room.monitors["carm_monitor"].width_mm


@pytest.mark.gl
def test_room_renders_the_table_under_the_patient(gl_ctx):
    from vr_trainer.render.materials import TISSUES
    from vr_trainer.render.renderer import SceneRenderer

    wfp, body, bbox = _patient()
    room = build_room(wfp, bbox, RESIDENT)
    r = SceneRenderer(gl_ctx, samples=0)
    r.add_mesh("skin", body.vertices, body.faces, "skin")
    for mid, m in room.meshes.items():
        r.add_mesh(mid, m.vertices_mm, m.faces, m.material, double_sided=m.double_sided)
    w, h = 160, 120
    fb = gl_ctx.framebuffer(color_attachments=[gl_ctx.texture((w, h), 4)],
                            depth_attachment=gl_ctx.depth_renderbuffer((w, h)))
    # from the resident's side, level with the table top, looking across under the C-arm's arc
    view = View(0, look_at_pose(np.array([0.0, 860.0, -1400.0]), np.array([0.0, 860.0, 0.0])),
                Fov.symmetric(60.0, w / h), w, h)
    r.render(view, SceneSnapshot(0.0, 0, (DrawItem("skin", wfp),) + room.draw_items(0.0)), fb)
    img = np.frombuffer(fb.read(components=3, alignment=1), np.uint8).reshape(h, w, 3)[::-1].astype(int)
    pad = (np.array(TISSUES["table_pad"].color_rgb) ** (1 / 2.2)) * 255
    f_px = (w / 2) / np.tan(np.radians(30.0))
    def row(y_mm: float, z_mm: float) -> int:  # the image row of a point at height y_mm, depth z_mm
        return int(h / 2 - (y_mm - 860.0) / (z_mm + 1400.0) * f_px)
    body_row = row(900.0, -160.0)
    pad_row = row(room.table_top_y_mm - 30.0, -270.0)  # the pad's front face, 30 mm under the top
    col = w // 2
    pad_px = img[pad_row, col]
    assert np.abs(pad_px - pad).max() < 45 and pad_px[2] > pad_px[0], f"table pad under the patient: {pad_px}"
    skin_px = img[body_row, col]
    assert skin_px[0] > pad_px[0] + 40, f"the skin above the pad: {skin_px}"
    assert body_row < pad_row


def test_carm_pose_matches_the_shot_geometry():
    """The C drawn in the room points its beam where the DRR's geometry does (same angles)."""
    carm = pytest.importorskip("vr_trainer.sim.carm")
    wfp, _, bbox = _patient()
    for side in ("left", "right"):
        room = build_room(wfp, bbox, RESIDENT, approach_side=side)
        for view in ("ap", "lateral", "oblique"):
            g = carm.carm_geometry(view, (0.0, 0.0, 0.0), side)
            beam_ras = g.detector_centre_ras_mm - g.source_ras_mm
            beam_world = wfp[:3, :3] @ (beam_ras / np.linalg.norm(beam_ras))
            np.testing.assert_allclose(room.beam_direction_world(g.angle_deg), beam_world, atol=1e-9)
            assert room.view_angle_from_beam(beam_world) == pytest.approx(g.angle_deg)


@pytest.mark.gl
def test_spine_stays_visible_through_skin_and_muscle(gl_ctx):
    """Skin around muscle around a bone: the bone still shows through both (translucent tissue,
    sorted back to front so the skin, the outermost, blends last)."""
    from vr_trainer.render.renderer import SceneRenderer

    r = SceneRenderer(gl_ctx, samples=0)
    skin, muscle = trimesh.creation.box([320.0, 220.0, 400.0]), trimesh.creation.box([200.0, 120.0, 300.0])
    bone = trimesh.creation.cylinder(radius=25.0, height=300.0)
    for name, m, tissue in (("skin", skin, "skin"), ("muscle", muscle, "muscle"), ("bone", bone, "bone")):
        r.add_mesh(name, m.vertices, m.faces, tissue)
    w, h = 96, 96
    fb = gl_ctx.framebuffer(color_attachments=[gl_ctx.texture((w, h), 4)],
                            depth_attachment=gl_ctx.depth_renderbuffer((w, h)))
    view = View(0, look_at_pose(np.array([0.0, 600.0, 0.0]), np.zeros(3), np.array([0.0, 0.0, -1.0])),
                Fov.symmetric(50.0, 1.0), w, h)
    def shot(names: tuple[str, ...]) -> np.ndarray:
        r.render(view, SceneSnapshot(0.0, 0, tuple(DrawItem(n, np.eye(4)) for n in names)), fb)
        return np.frombuffer(fb.read(components=3, alignment=1), np.uint8).reshape(h, w, 3)[::-1].astype(int)
    with_bone, without = shot(("skin", "muscle", "bone")), shot(("skin", "muscle"))
    centre = (slice(h // 2 - 3, h // 2 + 4), slice(w // 2 - 3, w // 2 + 4))
    seen = with_bone[centre].mean((0, 1))
    assert (seen - without[centre].mean((0, 1))).sum() > 150, "the bone is plainly visible through skin and muscle"
    assert seen.min() > 110, f"pale bone, not hidden under red muscle: {seen}"


def test_the_flexed_tibia_hangs_beyond_the_tables_end():
    """The knee workflow flexes the tibia 90 degrees about the knee: nothing that moves may pass through the
    table (its foot section is dropped), and the table still carries the thigh."""
    from vr_trainer.app.session import build_session
    from vr_trainer.scenario.loader import load_scenario

    scene, meshes = build_session(load_scenario("scenarios/tka_knee.yaml"))
    assert scene.room is not None
    top = scene.room.table_top_y_mm
    pad_item = next(it for it in scene.room.draw_items(0.0) if it.mesh_id == "room:table_pad")
    pad = trimesh.Trimesh(meshes["room:table_pad"].vertices_mm, meshes["room:table_pad"].faces)
    pad.apply_transform(pad_item.world_from_model)
    lo, hi = pad.bounds
    moved = scene.procedure.motion_poses()
    assert {"tibia", "fibula"} <= set(moved), "the tibia and fibula flex"
    lowest = np.inf
    for part in scene.parts:
        for pose in moved.get(part.name, []):
            v = meshes[part.mesh_id].vertices_mm
            w = (scene.world_from_patient @ pose @ np.c_[v, np.ones(len(v))].T)[:3].T
            lowest = min(lowest, float(w[:, 1].min()))
            under = np.all((w[:, [0, 2]] > lo[[0, 2]]) & (w[:, [0, 2]] < hi[[0, 2]]), axis=1) & (w[:, 1] < top)
            assert not under.any(), f"{part.name}: {int(under.sum())} points of the flexed leg inside the table"
    assert lowest < top - 200.0, "flexed, the tibia hangs well below the table top"
    femur = next(p for p in scene.parts if p.name == "femur")
    fw = meshes[femur.mesh_id].vertices_mm @ scene.world_from_patient[:3, :3].T + scene.world_from_patient[:3, 3]
    over = np.all((fw[:, [0, 2]] > lo[[0, 2]]) & (fw[:, [0, 2]] < hi[[0, 2]]), axis=1)
    assert over.mean() > 0.5, "most of the femur lies over the table"
