"""The scene renderer: per-eye view/projection, tissue materials, instruments,
world-space annotations, text and image panels, the endoscope's picture-in-picture,
MSAA with a resolved colour+depth target per eye (for the mirror, readback and picking).

Meshes are uploaded once (:meth:`SceneRenderer.add_mesh`); drawing reuses
buffers, programs and per-eye targets; uniforms are written from preallocated
arrays, so the draw path allocates no GL objects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import cast
from importlib import resources

import moderngl
import numpy as np

from vr_trainer.frame import View
from vr_trainer.render.endoscope import EndoscopeView
from vr_trainer.render.glsync import finisher, is_software_renderer
from vr_trainer.render.materials import TissueMaterial, material_for
from vr_trainer.render.panels import ENDOSCOPE_MONITOR, ImagePanelRenderer
from vr_trainer.render.text import render_text_rgba
from vr_trainer.sim.scene import DrawItem, SceneSnapshot
from vr_trainer.sim.transforms import projection_from_fov, rigid_inverse

DEFAULT_GPU_SAMPLES = 4
KEY_LIGHT_DIR = np.array([0.25, 0.9, 0.35]) / np.linalg.norm([0.25, 0.9, 0.35])


def uniform(prog: moderngl.Program, name: str) -> moderngl.Uniform:
    """A program's uniform by name (typed: indexing a program may also give attributes)."""
    return cast(moderngl.Uniform, prog[name])


_INCLUDE = re.compile(r'^#include "([\w.]+)"$', re.M)


def load_program(ctx: moderngl.Context, name: str, defines: tuple[str, ...] = ()) -> moderngl.Program:
    """A program from ``shaders/NAME.glsl`` (one file, stages picked by #define); ``defines``
    select a variant (``mesh`` with ``MATTE``: the room's cheaper shading). A line ``#include "F.glsl"``
    is replaced by that file of ``shaders/`` (a stage two programs share)."""
    shaders = resources.files("vr_trainer.render").joinpath("shaders")
    src = shaders.joinpath(f"{name}.glsl").read_text()
    src = _INCLUDE.sub(lambda m: shaders.joinpath(m.group(1)).read_text(), src)  # shared stages, one level
    stages = {"vertex_shader": "VERTEX_SHADER", "fragment_shader": "FRAGMENT_SHADER"}
    if "GEOMETRY_SHADER" in src:
        stages["geometry_shader"] = "GEOMETRY_SHADER"
    extra = "".join(f"\n#define {d}" for d in defines)
    kw = {k: src.replace("#version 330 core", f"#version 330 core\n#define {v}{extra}", 1) for k, v in stages.items()}
    return ctx.program(**kw)  # type: ignore[arg-type]


@dataclass
class GpuMesh:
    """An uploaded mesh; ``levels`` are (vao, face_count) from full detail to coarsest."""

    levels: list[tuple[moderngl.VertexArray, int]]
    material: TissueMaterial
    centroid_mm: np.ndarray
    radius_mm: float
    buffers: tuple[moderngl.Buffer, ...]
    double_sided: bool = False
    program: moderngl.Program | None = None  # the program its vertex arrays are bound to

    @property
    def face_count(self) -> int:
        return self.levels[0][1]

    def pick(self, covered_px: float, faces_per_px: float) -> tuple[moderngl.VertexArray, int]:
        """The coarsest level that still has ``faces_per_px`` triangles per covered pixel."""
        want = covered_px * faces_per_px
        best = self.levels[0]
        for lvl in self.levels[1:]:
            if lvl[1] < want:
                break
            best = lvl
        return best


@dataclass
class EyeTarget:
    size: tuple[int, int]
    msaa: moderngl.Framebuffer
    resolved: moderngl.Framebuffer
    color: moderngl.Texture
    depth: moderngl.Texture
    view_from_world: np.ndarray
    projection: np.ndarray


def smooth_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (fast, numpy only)."""
    v = vertices[faces]
    fn = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    n = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    ln = np.linalg.norm(n, axis=1, keepdims=True)
    return n / np.where(ln > 0, ln, 1.0)


class SceneRenderer:
    """Draws a :class:`SceneSnapshot` into each :class:`View`."""

    def __init__(self, ctx: moderngl.Context, samples: int | None = None, near_mm: float = 30.0,
                 far_mm: float = 20000.0, clear_rgb: tuple[float, float, float] = (0.055, 0.075, 0.105),
                 lod_faces_per_px: float = 0.25, inset_fraction: float = 0.3) -> None:
        self.ctx = ctx
        if samples is None:
            # 4x MSAA on a GPU. On a software rasteriser 4x costs 2-2.4x the frame time and
            # misses a headset's pace (measured: 173-317 of 600 frames missed at 20 Hz on
            # llvmpipe, 0 without), so there the default is none; ask for it explicitly.
            samples = 0 if is_software_renderer(ctx.info.get("GL_RENDERER", "")) else DEFAULT_GPU_SAMPLES
        self.samples = min(samples, max(ctx.max_samples, 0)) if samples > 1 else 0
        self.near_mm, self.far_mm = near_mm, far_mm
        self.clear_rgb = clear_rgb
        self.lod_faces_per_px = lod_faces_per_px  # <= 0 disables levels of detail
        self._focal_px = 1.0
        self.wait_for_gpu = finisher(ctx.info.get("GL_RENDERER", ""))
        self._eye_mm = np.zeros(3)
        self.meshes: dict[str, GpuMesh] = {}
        self.targets: dict[int, EyeTarget] = {}
        self.prog_mesh = load_program(ctx, "mesh")
        self.prog_matte = load_program(ctx, "mesh", ("MATTE",))  # room props: no highlights
        self.prog_lines = load_program(ctx, "lines")
        self.prog_pins = load_program(ctx, "pins")
        self.prog_panel = load_program(ctx, "panel")
        self._m4 = np.zeros((4, 4), dtype="f4")
        # dynamic annotation buffers (grown by doubling, re-filled only when marks change)
        self._line_cap = 0
        self._line_vbo: moderngl.Buffer | None = None
        self._line_vao: moderngl.VertexArray | None = None
        self._line_count = 0
        self._ann_key: tuple[int, int] = (-1, -1)
        self._pin_cap = 0
        self._pin_inst: moderngl.Buffer | None = None
        self._pin_vao: moderngl.VertexArray | None = None
        self._pin_count = 0
        self._pin_geom = self._make_pin_geometry()
        quad = np.array([0, 0, 1, 0, 0, 1, 1, 1], dtype="f4")
        self._quad_vbo = ctx.buffer(quad.tobytes())
        self._panel_vao = ctx.vertex_array(self.prog_panel, [(self._quad_vbo, "2f", "in_uv")])
        self._panels: dict[str, tuple[tuple[str, ...], moderngl.Texture, float]] = {}
        self.images = ImagePanelRenderer(ctx, self._quad_vbo)
        # the endoscope view: made on first use, rendered once per snapshot that has one
        self.endoscope: EndoscopeView | None = None
        self.inset_fraction = inset_fraction  # of the eye image's width
        self._prog_inset: moderngl.Program | None = None
        self._inset_vao: moderngl.VertexArray | None = None
        self.stats = {"draw_calls": 0}

    # ---- upload -------------------------------------------------------------
    def add_mesh(self, mesh_id: str, vertices_mm: np.ndarray, faces: np.ndarray, tissue: str,
                 normals: np.ndarray | None = None, double_sided: bool = False,
                 lods: list[tuple[np.ndarray, np.ndarray]] | None = None) -> None:
        """Upload a triangle mesh once. ``tissue`` picks the material.

        Closed meshes with outward (counter-clockwise) winding are drawn with back faces
        culled, which halves the triangles a software rasteriser must cover; open
        surfaces (a cut, a skin patch) need ``double_sided=True``. ``lods`` are coarser
        versions (see :mod:`vr_trainer.app.lod`) used when the mesh covers few pixels."""
        v = np.ascontiguousarray(vertices_mm, dtype="f4")
        f = np.ascontiguousarray(faces, dtype="u4")
        if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
            raise ValueError(f"mesh '{mesh_id}': need Nx3 vertices and Mx3 faces, got {v.shape} and {f.shape}")
        levels = []
        buffers: list[moderngl.Buffer] = []
        material = material_for(tissue)
        prog = self.prog_matte if material.matte else self.prog_mesh
        for k, (lv, lf) in enumerate([(v, f), *(lods or [])]):
            lv = np.ascontiguousarray(lv, dtype="f4")
            lf = np.ascontiguousarray(lf, dtype="u4")
            n = normals if (k == 0 and normals is not None) else smooth_normals(lv.astype("f8"), lf.astype(np.int64))
            inter = np.hstack([lv, np.asarray(n, dtype="f4")]).astype("f4")
            vbo = self.ctx.buffer(inter.tobytes())
            ibo = self.ctx.buffer(lf.tobytes())
            vao = self.ctx.vertex_array(prog, [(vbo, "3f 3f", "in_position", "in_normal")],
                                        index_buffer=ibo, index_element_size=4)
            levels.append((vao, len(lf)))
            buffers += [vbo, ibo]
        old = self.meshes.pop(mesh_id, None)
        if old is not None:
            self._release_mesh(old)
        centroid = v.mean(axis=0).astype("f8")
        radius = float(np.linalg.norm(v - centroid, axis=1).max())
        self.meshes[mesh_id] = GpuMesh(levels, material, centroid, radius, tuple(buffers), double_sided, prog)

    def _release_mesh(self, m: GpuMesh) -> None:
        for vao, _ in m.levels:
            vao.release()
        for b in m.buffers:
            b.release()

    # ---- per-eye targets ----------------------------------------------------
    def target(self, eye_index: int, width: int, height: int) -> EyeTarget:
        t = self.targets.get(eye_index)
        if t is not None and t.size == (width, height):
            return t
        if t is not None:
            for o in (t.msaa, t.resolved, t.color, t.depth):
                o.release()
        ctx = self.ctx
        if self.samples:
            msaa = ctx.framebuffer(color_attachments=[ctx.renderbuffer((width, height), 4, samples=self.samples)],
                                   depth_attachment=ctx.depth_renderbuffer((width, height), samples=self.samples))
        else:
            msaa = None
        color = ctx.texture((width, height), 4)
        depth = ctx.depth_texture((width, height))
        color.filter = (moderngl.LINEAR, moderngl.LINEAR)
        resolved = ctx.framebuffer(color_attachments=[color], depth_attachment=depth)
        t = EyeTarget((width, height), msaa or resolved, resolved, color, depth, np.eye(4), np.eye(4))
        self.targets[eye_index] = t
        return t

    def matrices(self, view: View) -> tuple[np.ndarray, np.ndarray]:
        f = view.fov
        proj = projection_from_fov(f.angle_left, f.angle_right, f.angle_up, f.angle_down, self.near_mm, self.far_mm)
        return rigid_inverse(view.pose_world_from_eye), proj

    # ---- drawing ------------------------------------------------------------
    def _write(self, prog: moderngl.Program, name: str, m: np.ndarray) -> None:
        self._m4[...] = m.T  # GL is column-major
        uniform(prog, name).write(self._m4)

    def render(self, view: View, snap: SceneSnapshot, out: moderngl.Framebuffer | None = None) -> EyeTarget:
        """Render one view; the result is in ``target(eye)`` and, when ``out`` is given (the
        backend's render target for the view), copied into it (colour and depth)."""
        ctx = self.ctx
        for up in snap.uploads:  # a cut bone: uploaded once, when first seen
            if up.mesh_id not in self.meshes:
                self.add_mesh(up.mesh_id, up.vertices_mm, up.faces, up.tissue)
        scope = snap.endoscope
        if scope is not None:
            self._render_endoscope(snap)
        t = self.target(view.eye_index, view.width, view.height)
        view_m, proj = self.matrices(view)
        t.view_from_world, t.projection = view_m, proj
        vp = proj @ view_m
        eye_mm = view.pose_world_from_eye[:3, 3]
        t.msaa.use()
        ctx.viewport = (0, 0, view.width, view.height)
        ctx.clear(*self.clear_rgb, 1.0, depth=1.0)
        ctx.enable(moderngl.DEPTH_TEST)
        ctx.disable(moderngl.CULL_FACE)
        calls = 0
        for pm in (self.prog_mesh, self.prog_matte):
            self._write(pm, "u_view_proj", vp)
            uniform(pm, "u_eye_mm").value = tuple(eye_mm)
            uniform(pm, "u_key_dir").value = tuple(KEY_LIGHT_DIR)
        opaque: list[tuple[DrawItem, GpuMesh]] = []
        clear_items: list[tuple[DrawItem, GpuMesh]] = []
        for it in snap.items:
            gm = self.meshes.get(it.mesh_id)
            if gm is None or not it.visible:
                continue
            (clear_items if gm.material.translucent else opaque).append((it, gm))
        ctx.disable(moderngl.BLEND)
        self._focal_px = proj[1, 1] * view.height / 2.0
        self._eye_mm = eye_mm
        # opaque front to back (by centre): what the anatomy hides of the table and the floor
        # behind it is rejected by the depth test before shading (cheap on a software rasteriser)
        opaque.sort(key=lambda p: float(np.linalg.norm(
            p[0].world_from_model[:3, :3] @ p[1].centroid_mm + p[0].world_from_model[:3, 3] - eye_mm)))
        for it, gm in opaque:
            calls += self._draw_mesh(it.world_from_model, gm, it.tint_rgba)
        live = {ENDOSCOPE_MONITOR: self.endoscope.color} if scope is not None and self.endoscope is not None else None
        calls += self.images.draw(vp, snap.images, live)  # opaque pictures, before translucent tissue
        if clear_items:
            def dist(p: tuple) -> float:
                # back to front by the nearest point of each bounding sphere, so that the skin
                # (large, around everything) comes after the muscle inside it
                c = p[0].world_from_model[:3, :3] @ p[1].centroid_mm + p[0].world_from_model[:3, 3]
                return -(float(np.linalg.norm(c - eye_mm)) - p[1].radius_mm)
            clear_items.sort(key=dist)
            ctx.enable(moderngl.BLEND)
            ctx.blend_func = moderngl.SRC_ALPHA, moderngl.ONE_MINUS_SRC_ALPHA
            ctx.depth_mask = False  # type: ignore[attr-defined]
            for it, gm in clear_items:
                calls += self._draw_mesh(it.world_from_model, gm, it.tint_rgba)
            ctx.depth_mask = True  # type: ignore[attr-defined]
        # marks after translucent tissue, so a mentor's stroke on the dura reads clearly
        self._draw_annotations(view, view_m, proj, vp, snap)
        calls += self._draw_panels(vp, snap)
        ctx.disable(moderngl.BLEND)
        ctx.disable(moderngl.CULL_FACE)
        if scope is not None:
            calls += self._draw_inset(view)
        self.wait_for_gpu()  # software rasteriser: wait here with the GIL released
        if t.msaa is not t.resolved:
            ctx.copy_framebuffer(t.resolved, t.msaa)
        if out is not None and out is not t.resolved:
            ctx.copy_framebuffer(out, t.resolved)
        self.stats["draw_calls"] = calls
        return t

    # ---- endoscope -----------------------------------------------------------
    def _render_endoscope(self, snap: SceneSnapshot) -> None:
        """The scope's picture for this snapshot (once, whichever eye asks first)."""
        cam = snap.endoscope
        assert cam is not None
        key = (snap.frame_index, snap.time_s, id(snap.items), cam.world_from_tool.tobytes(),
               cam.lens_angle_deg, cam.fov_deg)
        if self.endoscope is None:
            self.endoscope = EndoscopeView(self.ctx)
        if self.endoscope.key == key:
            return
        self.endoscope.render(cam, snap, self.meshes)
        self.endoscope.key = key

    def endoscope_image(self) -> np.ndarray | None:
        """The last endoscope picture ((h, w, 3) uint8, row 0 at the top; round, black outside)
        for the endoscope monitor and the mentor; None before any snapshot had a scope.
        ``self.endoscope.version`` tells a new picture from the last one."""
        return None if self.endoscope is None or self.endoscope.key is None else self.endoscope.read_rgb()

    def _draw_inset(self, view: View) -> int:
        """The endoscope picture as a round inset in the eye's lower right corner."""
        if self.endoscope is None:
            return 0
        if self._prog_inset is None:
            self._prog_inset = load_program(self.ctx, "inset")
            self._inset_vao = self.ctx.vertex_array(self._prog_inset, [(self._quad_vbo, "2f", "in_uv")])
        w_px = self.inset_fraction * view.width
        margin = 0.03 * view.width
        x0 = view.width - margin - w_px
        y0 = margin
        rect = (2.0 * x0 / view.width - 1.0, 2.0 * y0 / view.height - 1.0,
                2.0 * w_px / view.width, 2.0 * w_px / view.height)
        ctx = self.ctx
        ctx.disable(moderngl.DEPTH_TEST)  # on top of the scene; the depth below stays the scene's
        uniform(self._prog_inset, "u_rect").value = rect
        uniform(self._prog_inset, "u_color").value = 0
        self.endoscope.color.use(0)
        self._inset_vao.render(moderngl.TRIANGLE_STRIP)  # type: ignore[union-attr]
        ctx.enable(moderngl.DEPTH_TEST)
        return 1

    def _draw_mesh(self, world_from_model: np.ndarray, gm: GpuMesh,
                   tint_rgba: tuple[float, float, float, float] | None = None) -> int:
        pm = gm.program or self.prog_mesh
        mat = gm.material
        self._write(pm, "u_model", world_from_model)
        rgb = tuple(mat.color_rgb)
        if tint_rgba is not None:  # a highlight: blend towards the tint by its alpha
            a = float(tint_rgba[3])
            rgb = tuple((1.0 - a) * c + a * t for c, t in zip(rgb, tint_rgba[:3]))
        uniform(pm, "u_color").value = (*rgb, mat.alpha)
        uniform(pm, "u_material").value = (mat.specular, mat.shininess, mat.rim, mat.wrap)
        if gm.double_sided:
            self.ctx.disable(moderngl.CULL_FACE)
        else:
            self.ctx.enable(moderngl.CULL_FACE)
        vao = gm.levels[0][0]
        if len(gm.levels) > 1 and self.lod_faces_per_px > 0:
            c = world_from_model[:3, :3] @ gm.centroid_mm + world_from_model[:3, 3]
            dist = max(float(np.linalg.norm(c - self._eye_mm)) - gm.radius_mm, self.near_mm)
            r_px = self._focal_px * gm.radius_mm / dist
            vao, faces = gm.pick(np.pi * r_px * r_px, self.lod_faces_per_px)
        vao.render(moderngl.TRIANGLES)
        return 1

    # ---- annotations --------------------------------------------------------
    @staticmethod
    def _make_pin_geometry() -> np.ndarray:
        """A map pin: a cone whose tip is at the origin and a sphere head above it (unit: 1 = 10 mm)."""
        import trimesh

        cone = trimesh.creation.cone(radius=0.22, height=0.75, sections=16)
        cone.apply_transform(trimesh.transformations.rotation_matrix(np.pi, [1, 0, 0]))
        cone.apply_translation([0, 0, 0.75])
        head = trimesh.creation.icosphere(subdivisions=2, radius=0.32)
        head.apply_translation([0, 0, 0.95])
        m = cast(trimesh.Trimesh, trimesh.util.concatenate([cone, head]))
        # the pin stands along world +y
        m.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0]))
        tri = m.vertices[m.faces].reshape(-1, 3)
        nrm = np.repeat(m.face_normals, 3, axis=0)
        return np.hstack([tri, nrm]).astype("f4")

    def _ensure_line_capacity(self, n_vertices: int) -> None:
        if n_vertices <= self._line_cap and self._line_vbo is not None:
            return
        cap = max(1024, 1 << int(np.ceil(np.log2(max(n_vertices, 1)))))
        if self._line_vao is not None:
            self._line_vao.release()
            self._line_vbo.release()  # type: ignore[union-attr]
        self._line_vbo = self.ctx.buffer(reserve=cap * 7 * 4, dynamic=True)
        self._line_vao = self.ctx.vertex_array(self.prog_lines, [(self._line_vbo, "3f 4f", "in_position", "in_color")])
        self._line_cap = cap

    def _ensure_pin_capacity(self, n: int) -> None:
        if n <= self._pin_cap and self._pin_inst is not None:
            return
        cap = max(64, 1 << int(np.ceil(np.log2(max(n, 1)))))
        if self._pin_vao is not None:
            self._pin_vao.release()
            self._pin_inst.release()  # type: ignore[union-attr]
        geom = getattr(self, "_pin_vbo", None) or self.ctx.buffer(self._pin_geom.tobytes())
        self._pin_vbo = geom
        self._pin_inst = self.ctx.buffer(reserve=cap * 7 * 4, dynamic=True)
        self._pin_vao = self.ctx.vertex_array(self.prog_pins, [
            (geom, "3f 3f", "in_position", "in_normal"),
            (self._pin_inst, "3f 4f/i", "in_offset", "in_color"),
        ])
        self._pin_cap = cap

    def _upload_annotations(self, snap: SceneSnapshot) -> None:
        ann = snap.annotations
        fading = ann.fade_after_s > 0 and (ann.strokes or ann.pins)
        key = (id(ann), ann.version)
        if key == self._ann_key and not fading:
            return
        self._ann_key = key
        segs = []
        for s in ann.strokes:
            p = np.asarray(s.points_mm, dtype="f4")
            a = ann.alpha_at(s.created_s, snap.time_s)
            col = np.array([*s.color_rgba[:3], s.color_rgba[3] * a], dtype="f4")
            seg = np.empty((2 * (len(p) - 1), 7), dtype="f4")
            seg[0::2, :3], seg[1::2, :3] = p[:-1], p[1:]
            seg[:, 3:] = col
            segs.append(seg)
        data = np.concatenate(segs) if segs else np.zeros((0, 7), "f4")
        self._line_count = len(data)
        if len(data):
            self._ensure_line_capacity(len(data))
            self._line_vbo.write(data.tobytes())  # type: ignore[union-attr]
        pins = np.array([[*p.position_mm, *p.color_rgba[:3], p.color_rgba[3] * ann.alpha_at(p.created_s, snap.time_s)]
                         for p in ann.pins], dtype="f4").reshape(-1, 7)
        self._pin_count = len(pins)
        if len(pins):
            self._ensure_pin_capacity(len(pins))
            self._pin_inst.write(pins.tobytes())  # type: ignore[union-attr]

    def _draw_annotations(self, view: View, view_m: np.ndarray, proj: np.ndarray, vp: np.ndarray,
                          snap: SceneSnapshot) -> None:
        self._upload_annotations(snap)
        ctx = self.ctx
        ctx.disable(moderngl.CULL_FACE)  # ribbons face either way
        if self._line_count:
            pl = self.prog_lines
            self._write(pl, "u_view", view_m)
            self._write(pl, "u_proj", proj)
            uniform(pl, "u_viewport_px").value = (float(view.width), float(view.height))
            uniform(pl, "u_width_px").value = max(2.0, view.height / 160.0)
            uniform(pl, "u_lift_mm").value = 1.5
            uniform(pl, "u_alpha").value = 1.0
            ctx.enable(moderngl.BLEND)
            ctx.blend_func = moderngl.SRC_ALPHA, moderngl.ONE_MINUS_SRC_ALPHA
            self._line_vao.render(moderngl.LINES, vertices=self._line_count)  # type: ignore[union-attr]
            ctx.disable(moderngl.BLEND)
        if self._pin_count:
            pp = self.prog_pins
            self._write(pp, "u_view_proj", vp)
            uniform(pp, "u_scale").value = 20.0
            uniform(pp, "u_key_dir").value = tuple(KEY_LIGHT_DIR)
            self._pin_vao.render(moderngl.TRIANGLES, instances=self._pin_count)  # type: ignore[union-attr]

    # ---- text panels --------------------------------------------------------
    def _draw_panels(self, vp: np.ndarray, snap: SceneSnapshot) -> int:
        if not snap.panels:
            return 0
        ctx = self.ctx
        ctx.enable(moderngl.BLEND)
        ctx.blend_func = moderngl.ONE, moderngl.ONE_MINUS_SRC_ALPHA  # premultiplied
        pp = self.prog_panel
        self._write(pp, "u_view_proj", vp)
        n = 0
        for panel in snap.panels:
            cached = self._panels.get(panel.panel_id)
            if cached is None or cached[0] != panel.lines:
                img = render_text_rgba(list(panel.lines))
                if cached is not None and cached[1].size == (img.shape[1], img.shape[0]):
                    tex = cached[1]  # same size: rewrite in place, no new GL object
                    tex.write(img.tobytes())
                else:
                    if cached is not None:
                        cached[1].release()
                    tex = ctx.texture((img.shape[1], img.shape[0]), 4, img.tobytes())
                    tex.filter = (moderngl.LINEAR, moderngl.LINEAR)
                cached = (panel.lines, tex, img.shape[0] / img.shape[1])
                self._panels[panel.panel_id] = cached
            _, tex, aspect = cached
            scale = np.diag([panel.width_mm, panel.width_mm * aspect, 1.0, 1.0])
            self._write(pp, "u_model", panel.world_from_panel @ scale)
            tex.use(0)
            uniform(pp, "u_texture").value = 0
            self._panel_vao.render(moderngl.TRIANGLE_STRIP)
            n += 1
        ctx.disable(moderngl.BLEND)
        return n
