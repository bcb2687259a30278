"""The mirror: the eyes' rendered images composed into one framebuffer (one eye or
side by side) with colour and depth, read back asynchronously through two pixel
buffers so that the frame loop never waits on the GPU for the stream/recording."""

from __future__ import annotations

import moderngl
import numpy as np

from vr_trainer.frame import MirrorViewInfo
from vr_trainer.render.glsync import finisher, is_software_renderer
from vr_trainer.render.renderer import EyeTarget, load_program, uniform


class TextureBlitter:
    """Draws a texture (and optionally its depth) into a rectangle of the bound framebuffer."""

    def __init__(self, ctx: moderngl.Context) -> None:
        self.ctx = ctx
        self.prog = load_program(ctx, "blit")
        self.vbo = ctx.buffer(np.array([0, 0, 1, 0, 0, 1, 1, 1], dtype="f4").tobytes())
        self.vao = ctx.vertex_array(self.prog, [(self.vbo, "2f", "in_uv")])

    def draw(self, color: moderngl.Texture, rect_ndc: tuple[float, float, float, float],
             depth: moderngl.Texture | None = None) -> None:
        color.use(0)
        uniform(self.prog, "u_color").value = 0
        uniform(self.prog, "u_has_depth").value = depth is not None
        if depth is not None:
            depth.compare_func = ""
            depth.use(1)
            uniform(self.prog, "u_depth").value = 1
        uniform(self.prog, "u_rect").value = rect_ndc
        self.vao.render(moderngl.TRIANGLE_STRIP)


class MirrorCompositor:
    """Composes eye targets into the mirror image and reads it back without stalling."""

    def __init__(self, ctx: moderngl.Context, size: tuple[int, int], layout: str = "side_by_side") -> None:
        if layout not in ("side_by_side", "left", "right"):
            raise ValueError(f"mirror layout must be side_by_side, left or right, not {layout!r}")
        self.ctx = ctx
        self.size = size
        self.layout = layout
        self.color = ctx.texture(size, 4)
        self.depth = ctx.depth_texture(size)
        self.fbo = ctx.framebuffer(color_attachments=[self.color], depth_attachment=self.depth)
        self.blitter = TextureBlitter(ctx)
        w, h = size
        self._pbo = [ctx.buffer(reserve=w * h * 3) for _ in range(2)]
        self._pbo_depth = [ctx.buffer(reserve=w * h * 4) for _ in range(2)]
        self._pending: list[tuple[int, bool, list[MirrorViewInfo]] | None] = [None, None]
        self._turn = 0
        self.views: list[MirrorViewInfo] = []
        renderer = ctx.info.get("GL_RENDERER", "")
        self.wait_for_gpu = finisher(renderer)
        # A software rasteriser has finished the copy when read_into returns: hand over
        # this frame at once instead of one frame late.
        self.immediate = is_software_renderer(renderer)

    def compose(self, targets: list[EyeTarget]) -> list[MirrorViewInfo]:
        ctx = self.ctx
        w, h = self.size
        self.fbo.use()
        ctx.viewport = (0, 0, w, h)
        ctx.clear(0.0, 0.0, 0.0, 1.0, depth=1.0)
        ctx.enable(moderngl.DEPTH_TEST)
        ctx.depth_func = "<="
        picks = targets if self.layout == "side_by_side" else [targets[0 if self.layout == "left" else -1]]
        n = len(picks)
        infos = []
        for i, t in enumerate(picks):
            x0 = 2.0 * i / n - 1.0
            self.blitter.draw(t.color, (x0, -1.0, 2.0 / n, 2.0), t.depth)
            px0 = int(round(w * i / n))
            px1 = int(round(w * (i + 1) / n))
            infos.append(MirrorViewInfo((px0, 0, px1 - px0, h), t.view_from_world.copy(), t.projection.copy()))
        ctx.depth_func = "<"
        self.views = infos
        return infos

    def read_now(self) -> np.ndarray:
        """Synchronous colour readback (HxWx3, top row first): screenshots."""
        w, h = self.size
        self.wait_for_gpu()
        raw = self.fbo.read(components=3, alignment=1)
        return np.frombuffer(raw, np.uint8).reshape(h, w, 3)[::-1].copy()

    def read_depth_now(self) -> np.ndarray:
        w, h = self.size
        raw = self.fbo.read(attachment=-1, components=1, dtype="f4", alignment=1)
        return np.frombuffer(raw, np.float32).reshape(h, w)[::-1].copy()

    def read_async(self, frame_id: int, with_depth: bool) -> tuple[int, np.ndarray, np.ndarray | None,
                                                                   list[MirrorViewInfo]] | None:
        """Start reading this frame into a pixel buffer; return the previous frame's pixels.

        One frame of latency, no pipeline stall: the GPU copies into one buffer while
        the CPU maps the other. On a software rasteriser the copy is synchronous, so
        the current frame is returned with no added latency."""
        w, h = self.size
        self.wait_for_gpu()
        cur = self._turn
        self.fbo.read_into(self._pbo[cur], components=3, alignment=1)
        if with_depth:
            self.fbo.read_into(self._pbo_depth[cur], attachment=-1, components=1, dtype="f4", alignment=1)
        self._pending[cur] = (frame_id, with_depth, self.views)
        if not self.immediate:
            self._turn = 1 - cur
        prev = self._pending[self._turn]
        if prev is None:
            return None
        fid, had_depth, views = prev
        rgb = np.frombuffer(self._pbo[self._turn].read(), np.uint8).reshape(h, w, 3)[::-1]
        depth = None
        if had_depth:
            depth = np.frombuffer(self._pbo_depth[self._turn].read(), np.float32).reshape(h, w)[::-1]
        self._pending[self._turn] = None
        return fid, rgb, depth, views
