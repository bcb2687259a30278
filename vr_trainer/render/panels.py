"""Pictures in the scene (:class:`~vr_trainer.sim.scene.ImagePanelItem`): the C-arm monitor
and the endoscope monitor. Each is a textured quad in the world, drawn opaque and depth
tested, with a dark frame on its rim and a dark back; the texture is uploaded again only
when the panel's ``version`` changes (a new shot), so a still picture costs one quad."""

from __future__ import annotations

from dataclasses import dataclass

import moderngl
import numpy as np

from vr_trainer.sim.scene import ImagePanelItem

FRAME_MM = 10.0
ENDOSCOPE_MONITOR = "endoscope_monitor"  # this panel shows the live endoscope picture while there is one
FRAME_SRGB = (0.11, 0.12, 0.13)


@dataclass
class _PanelTexture:
    version: int
    texture: moderngl.Texture
    aspect: float  # height / width


class ImagePanelRenderer:
    """Draws image panels; keeps one texture per ``panel_id``."""

    def __init__(self, ctx: moderngl.Context, quad_vbo: moderngl.Buffer) -> None:
        from vr_trainer.render.renderer import load_program

        self.ctx = ctx
        self.prog = load_program(ctx, "image_panel")
        self.vao = ctx.vertex_array(self.prog, [(quad_vbo, "2f", "in_uv")])
        self.textures: dict[str, _PanelTexture] = {}
        self.uploads = 0  # texture uploads so far (a test and the bench read it)
        self._m4 = np.zeros((4, 4), dtype="f4")

    def _texture(self, item: ImagePanelItem) -> _PanelTexture:
        got = self.textures.get(item.panel_id)
        if got is not None and got.version == item.version:
            return got
        img = np.ascontiguousarray(item.image_rgb, dtype=np.uint8)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        if img.ndim != 3 or img.shape[2] not in (3, 4) or img.shape[0] == 0 or img.shape[1] == 0:
            raise ValueError(f"image panel '{item.panel_id}': need an (h, w, 3) uint8 picture, got {img.shape}")
        img = np.ascontiguousarray(img[..., :3])
        h, w = img.shape[:2]
        if got is not None and got.texture.size == (w, h):
            tex = got.texture  # same size: rewrite in place
            tex.write(img.tobytes(), alignment=1)
        else:
            if got is not None:
                got.texture.release()
            tex = self.ctx.texture((w, h), 3, img.tobytes(), alignment=1)
        tex.build_mipmaps()  # a 512 px shot seen across the room: no shimmering
        tex.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
        self.uploads += 1
        got = _PanelTexture(item.version, tex, h / w)
        self.textures[item.panel_id] = got
        return got

    def draw(self, view_proj: np.ndarray, images: tuple[ImagePanelItem, ...],
             live: dict[str, moderngl.Texture] | None = None) -> int:
        """Draw every panel (depth tested, both sides); returns the draw calls. A panel whose
        id is in ``live`` shows that texture (the endoscope's picture of this frame, straight
        from the GPU: no read back and upload again) instead of its own picture."""
        if not images:
            return 0
        ctx = self.ctx
        ctx.disable(moderngl.CULL_FACE)
        ctx.disable(moderngl.BLEND)
        p = self.prog
        self._m4[...] = view_proj.T
        p["u_view_proj"].write(self._m4)  # type: ignore[union-attr]
        p["u_frame_rgb"].value = FRAME_SRGB  # type: ignore[union-attr]
        p["u_texture"].value = 0  # type: ignore[union-attr]
        for item in images:
            tex = live.get(item.panel_id) if live else None
            from_gl = tex is not None
            if tex is None:
                pt = self._texture(item)
                tex, aspect = pt.texture, pt.aspect
            else:
                aspect = tex.size[1] / tex.size[0]
            w_mm = float(item.width_mm)
            h_mm = w_mm * aspect
            outer_w, outer_h = w_mm + 2 * FRAME_MM, h_mm + 2 * FRAME_MM
            scale = np.diag([outer_w, outer_h, 1.0, 1.0])
            self._m4[...] = (np.asarray(item.world_from_panel, float) @ scale).T
            p["u_model"].write(self._m4)  # type: ignore[union-attr]
            p["u_border"].value = (FRAME_MM / outer_w, FRAME_MM / outer_h)  # type: ignore[union-attr]
            p["u_rows_down"].value = 0.0 if from_gl else 1.0  # type: ignore[union-attr]
            tex.use(0)
            self.vao.render(moderngl.TRIANGLE_STRIP)
        return len(images)

    def forget(self, keep: set[str]) -> None:
        """Release the textures of panels no longer shown."""
        for pid in [k for k in self.textures if k not in keep]:
            self.textures.pop(pid).texture.release()

    def release(self) -> None:
        self.forget(set())
        self.vao.release()
        self.prog.release()
