"""The endoscope's own view: a camera at the scope tip (30-degree lens, wide angle), lit only
by the light at the tip, with the round image of a rod-lens scope. Rendered once per
snapshot into a small off-screen target; :class:`~vr_trainer.render.renderer.SceneRenderer`
composites it as a picture-in-picture inset into each eye and keeps the picture for the
endoscope monitor and the mentor (:meth:`EndoscopeView.read_rgb`).

Camera: the tool frame has the tip at the origin and the shaft along +z to the handle, so
the scope looks along -z, tilted by ``lens_angle_deg`` towards the tool's +y (a 30-degree
scope looks 30 degrees off its axis, the way its lens bevel faces). As in a real working-channel
endoscope the optic sits beside the channel: the lens is ``LENS_OFFSET_MM`` off the axis towards
the tool's -y (on the axis itself the camera would sit inside the forceps' shaft). The picture is
shown with the working channel at 6 o'clock, as the camera head is usually held (its roll is
free on a real scope): the forceps, which come out along the axis, enter from below and reach up
past the centre as they extend (a 30-degree lens sees the axis 30 degrees above the centre).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import moderngl
import numpy as np

from vr_trainer.sim.scene import DrawItem, EndoscopeCamera, SceneSnapshot
from vr_trainer.sim.transforms import projection_from_fov, rigid_inverse

if TYPE_CHECKING:
    from vr_trainer.render.renderer import GpuMesh

ENDOSCOPE_SIZE_PX = (256, 256)
NEAR_MM = 0.5
FAR_MM = 60.0
LENS_OFFSET_MM = 2.5  # optic beside the working channel (6.9 mm scope, 3.7 mm channel)
LIGHT_REACH_MM = 14.0  # distance at which the tip light falls to half
LIGHT_GAIN = 1.6
LOD_FACES_PER_PX = 0.05  # levels of detail: triangles per covered pixel (0.05: the picture of the default
# scene does not change visibly against full detail, and the pass costs less; see the H4 note)


def world_from_lens(cam: EndoscopeCamera) -> np.ndarray:
    """The scope camera's pose (GL convention: looks along its -z, +y up) in the world."""
    a = np.radians(cam.lens_angle_deg)
    tilt = np.eye(4)
    c, s = np.cos(a), np.sin(a)
    tilt[1:3, 1:3] = [[c, -s], [s, c]]  # rotates the view direction -z towards +y
    tilt[1, 3] = -LENS_OFFSET_MM
    roll = np.diag([-1.0, -1.0, 1.0, 1.0])  # the channel at 6 o'clock in the picture
    return np.asarray(cam.world_from_tool, float) @ tilt @ roll


def lens_matrices(cam: EndoscopeCamera, near_mm: float = NEAR_MM,
                  far_mm: float = FAR_MM) -> tuple[np.ndarray, np.ndarray]:
    """(view_from_world, projection) of the scope's square, symmetric field of view."""
    half = np.radians(cam.fov_deg) / 2.0
    proj = projection_from_fov(-half, half, half, -half, near_mm, far_mm)
    return rigid_inverse(world_from_lens(cam)), proj


class EndoscopeView:
    """The off-screen endoscope target, its program and the mesh bindings it needs."""

    def __init__(self, ctx: moderngl.Context, size: tuple[int, int] = ENDOSCOPE_SIZE_PX,
                 near_mm: float = NEAR_MM, far_mm: float = FAR_MM) -> None:
        from vr_trainer.render.renderer import load_program

        self.ctx = ctx
        self.size = size
        self.near_mm, self.far_mm = near_mm, far_mm
        self.prog = load_program(ctx, "endoscope")
        self.color = ctx.texture(size, 4)
        self.color.filter = (moderngl.LINEAR, moderngl.LINEAR)
        self._depth = ctx.depth_renderbuffer(size)
        self.fbo = ctx.framebuffer(color_attachments=[self.color], depth_attachment=self._depth)
        self._vaos: dict[tuple[str, int], tuple[GpuMesh, moderngl.VertexArray]] = {}
        self.lod_faces_per_px = LOD_FACES_PER_PX  # <= 0: always full detail
        self._m4 = np.zeros((4, 4), dtype="f4")
        self.version = 0  # increments with each picture rendered
        self.key: object = None  # what the current picture was rendered from
        self._rgb: np.ndarray | None = None
        self.draw_calls = 0

    def _vao(self, mesh_id: str, gm: GpuMesh, level: int) -> moderngl.VertexArray:
        """A binding of an uploaded mesh's level of detail to the endoscope program (made once)."""
        got = self._vaos.get((mesh_id, level))
        if got is not None and got[0] is gm:
            return got[1]
        if got is not None:
            got[1].release()
        vbo, ibo = gm.buffers[2 * level], gm.buffers[2 * level + 1]
        vao = self.ctx.vertex_array(self.prog, [(vbo, "3f 3f", "in_position", "in_normal")],
                                    index_buffer=ibo, index_element_size=4)
        self._vaos[(mesh_id, level)] = (gm, vao)
        return vao

    def _level(self, gm: GpuMesh, dist_mm: float, focal_px: float) -> int:
        """The coarsest level with enough triangles for the pixels the mesh covers (at most the
        whole picture: a vertebra filling the view needs no more than the picture has pixels)."""
        if len(gm.levels) == 1 or self.lod_faces_per_px <= 0:
            return 0
        r_px = focal_px * gm.radius_mm / max(dist_mm, self.near_mm)
        want = min(np.pi * r_px * r_px, float(self.size[0] * self.size[1])) * self.lod_faces_per_px
        best = 0
        for k, (_, faces) in enumerate(gm.levels[1:], start=1):
            if faces < want:
                break
            best = k
        return best

    def _write(self, name: str, m: np.ndarray) -> None:
        self._m4[...] = m.T
        self.prog[name].write(self._m4)  # type: ignore[union-attr]

    def render(self, cam: EndoscopeCamera, snap: SceneSnapshot, meshes: dict[str, GpuMesh]) -> None:
        """Draw the snapshot's meshes from the scope tip: opaque first, translucent tissue
        after, back to front, each culled against the scope's short viewing distance."""
        ctx = self.ctx
        view_m, proj = lens_matrices(cam, self.near_mm, self.far_mm)
        lens = world_from_lens(cam)
        eye, fwd = lens[:3, 3], -lens[:3, 2]
        w, h = self.size
        self.fbo.use()
        ctx.viewport = (0, 0, w, h)
        ctx.clear(0.0, 0.0, 0.0, 1.0, depth=1.0)
        ctx.enable(moderngl.DEPTH_TEST)
        p = self.prog
        self._write("u_view_proj", proj @ view_m)
        p["u_eye_mm"].value = tuple(eye)  # type: ignore[union-attr]
        p["u_view_dir"].value = tuple(fwd)  # type: ignore[union-attr]
        half = np.radians(cam.fov_deg) / 2.0
        p["u_light"].value = (LIGHT_REACH_MM, float(np.cos(half * 0.6)),  # type: ignore[union-attr]
                              float(np.cos(min(half * 1.25, np.pi / 2))), LIGHT_GAIN)
        p["u_viewport"].value = (0.0, 0.0, float(w), float(h))  # type: ignore[union-attr]
        cone_rad = half * np.sqrt(2.0)  # the square picture's corner
        focal_px = 0.5 * h / np.tan(half)
        opaque: list[tuple[float, DrawItem, GpuMesh]] = []
        clear: list[tuple[float, DrawItem, GpuMesh]] = []
        for it in snap.items:
            gm = meshes.get(it.mesh_id)
            if gm is None or not it.visible:
                continue
            c = it.world_from_model[:3, :3] @ gm.centroid_mm + it.world_from_model[:3, 3]
            dist = float(np.linalg.norm(c - eye))
            if dist - gm.radius_mm > self.far_mm or float((c - eye) @ fwd) + gm.radius_mm < self.near_mm:
                continue  # out of the scope's reach or behind the lens
            if dist > gm.radius_mm:  # outside the bounding sphere: is the sphere inside the view cone?
                off = np.arccos(np.clip(float((c - eye) @ fwd) / dist, -1.0, 1.0))
                if off - np.arcsin(gm.radius_mm / dist) > cone_rad:
                    continue
            (clear if gm.material.translucent else opaque).append((dist, it, gm))
        opaque.sort(key=lambda e: e[0])  # front to back: hidden surfaces are not shaded
        clear.sort(key=lambda e: -(e[0] - e[2].radius_mm))  # back to front
        n = 0
        ctx.disable(moderngl.BLEND)
        for group in (opaque, clear):
            if group is clear and clear:
                ctx.enable(moderngl.BLEND)
                ctx.blend_func = moderngl.SRC_ALPHA, moderngl.ONE_MINUS_SRC_ALPHA
                ctx.depth_mask = False  # type: ignore[attr-defined]
            for dist, it, gm in group:
                mat = gm.material
                self._write("u_model", it.world_from_model)
                rgb = tuple(mat.color_rgb)
                if it.tint_rgba is not None:
                    a = float(it.tint_rgba[3])
                    rgb = tuple((1.0 - a) * c + a * t for c, t in zip(rgb, it.tint_rgba[:3]))
                p["u_color"].value = (*rgb, mat.alpha)  # type: ignore[union-attr]
                p["u_material"].value = (mat.specular, mat.shininess, mat.rim, mat.wrap)  # type: ignore[union-attr]
                if gm.double_sided:
                    ctx.disable(moderngl.CULL_FACE)
                else:
                    ctx.enable(moderngl.CULL_FACE)
                self._vao(it.mesh_id, gm, self._level(gm, dist - gm.radius_mm, focal_px)).render(moderngl.TRIANGLES)
                n += 1
        ctx.depth_mask = True  # type: ignore[attr-defined]
        ctx.disable(moderngl.BLEND)
        ctx.disable(moderngl.CULL_FACE)
        self.draw_calls = n
        self.version += 1
        self._rgb = None

    def read_rgb(self) -> np.ndarray:
        """The last picture, (h, w, 3) uint8 with row 0 at the top (read once per picture)."""
        if self._rgb is None:
            w, h = self.size
            raw = self.color.read(alignment=1)
            self._rgb = np.frombuffer(raw, np.uint8).reshape(h, w, 4)[::-1, :, :3].copy()
        return self._rgb

    def release(self) -> None:
        for _, vao in self._vaos.values():
            vao.release()
        self._vaos.clear()
        for o in (self.fbo, self.color, self._depth, self.prog):
            o.release()
