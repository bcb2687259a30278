"""Digitally reconstructed radiographs (DRR) on the GPU: the virtual C-arm's image.

The CT (Hounsfield units) becomes a texture of linear attenuation
``mu = 0.022 / mm * (1 + HU / 1000)`` (water at 50 keV after NIST; 0 at or below -800 HU,
i.e. air), the same conversion plastimatch's ``drr`` uses, so the two agree pixel for pixel up
to their sampling. One fragment per detector pixel marches the ray from the source to the
pixel centre through the volume's box, sampling one slice at a time along the volume axis
nearest the beam (Joseph's method: bilinear in each slice, i.e. trilinear at the slice centres;
or, ``method="march"``, at a fixed step with trilinear samples of a 3D texture), and returns
the line integral ``sum(mu * length_mm)`` (dimensionless). Instruments are
radio-opaque steel cylinders added analytically: the ray's chord through each cylinder
(mm, hollow tubes minus their lumen) times ``MU_STEEL_PER_MM`` (iron at 50 keV: 1.96 cm2/g
x 7.9 g/cm3 after NIST, about 1.5 / mm).

Geometry: :class:`vr_trainer.sim.carm.CArmGeometry` (patient RAS mm). Image row 0 is the top
(``detector_v`` runs down the rows), column 0 the left (``detector_u``).

Display (:func:`to_rgb`): as a clinical C-arm monitor shows fluoroscopy, the transmitted
intensity: bone and metal **dark** on a **bright** background (air white), soft tissue grey,
in the round field of an image intensifier.
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Protocol, Sequence

import moderngl
import numpy as np

from vr_trainer.render.glsync import finisher
from vr_trainer.sim.carm import CArmGeometry

MU_WATER_PER_MM = 0.022
MU_MIN_HU = -800.0
MU_STEEL_PER_MM = 1.5
MAX_SEGMENTS = 16

#: one radio-opaque instrument part: (p0_ras_mm, p1_ras_mm, radius_mm) or with an inner radius
#: (a tube: the cannula) as a fourth element
Segment = tuple[Any, ...]


class HuVolumeLike(Protocol):
    """What the renderer reads of a volume: ``array[i, j, k]`` (HU) at ``affine @ [i, j, k, 1]`` (RAS mm)."""

    array: np.ndarray
    affine: np.ndarray


def attenuation_per_mm(hu: np.ndarray) -> np.ndarray:
    """HU -> linear attenuation (1/mm), float32: ``0.022 * (1 + HU/1000)``, 0 at or below -800 HU."""
    h = np.asarray(hu, np.float32)
    return np.where(h <= MU_MIN_HU, 0.0, MU_WATER_PER_MM * (1.0 + h / 1000.0)).astype(np.float32)


def _program(ctx: moderngl.Context, define: str | None) -> moderngl.Program:
    src = resources.files("vr_trainer.render").joinpath("shaders/drr.glsl").read_text()
    extra = f"\n#define {define}" if define else ""

    def stage(name: str) -> str:
        return src.replace("#version 330 core", f"#version 330 core{extra}\n#define {name}", 1)

    return ctx.program(vertex_shader=stage("VERTEX_SHADER"), fragment_shader=stage("FRAGMENT_SHADER"))


class DrrRenderer:
    """Ray-casts DRRs of one volume on ``ctx`` (owns its textures, programs and targets).

    ``method``: ``slices`` (default; Joseph's method: one bilinear sample per slice along the
    volume axis nearest the beam, i.e. trilinear at the slice centres; about 1.5x faster on
    llvmpipe than the march and equal to it at r = 0.99997 on the example CT) or ``march``
    (trilinear samples of a 3D texture every ``step_voxels`` of the smallest voxel side)."""

    def __init__(self, ctx: moderngl.Context, volume: HuVolumeLike, method: str = "slices",
                 step_voxels: float = 1.0) -> None:
        if method not in ("slices", "march"):
            raise ValueError(f"DRR: method must be 'slices' or 'march', not {method!r}")
        self.ctx = ctx
        self.method = method
        arr = np.asarray(volume.array)
        if arr.ndim != 3:
            raise ValueError(f"DRR: the volume must be 3D, not shape {arr.shape}")
        self.shape: tuple[int, int, int] = (int(arr.shape[0]), int(arr.shape[1]), int(arr.shape[2]))
        self.affine = np.asarray(volume.affine, float)
        spacing = np.linalg.norm(self.affine[:3, :3], axis=0)
        self.step_mm = float(step_voxels * spacing.min())
        self.ijk_from_ras = np.linalg.inv(self.affine)
        self._mu = attenuation_per_mm(arr)
        self._slices: dict[int, moderngl.TextureArray] = {}
        self.texture: moderngl.Texture3D | None = None
        if method == "march":
            # texture x runs along array axis 0: upload with axis 0 fastest
            self.texture = ctx.texture3d(self.shape, 1, np.ascontiguousarray(self._mu.transpose(2, 1, 0)).tobytes(),
                                         dtype="f4")
            self.texture.filter = (moderngl.LINEAR, moderngl.LINEAR)
            self.texture.repeat_x = self.texture.repeat_y = self.texture.repeat_z = False
        tex_from_ijk = np.eye(4)
        tex_from_ijk[:3, :3] = np.diag(1.0 / np.asarray(self.shape, float))
        tex_from_ijk[:3, 3] = 0.5 / np.asarray(self.shape, float)
        self.tex_from_ras = tex_from_ijk @ self.ijk_from_ras
        self.prog = _program(ctx, "SLICES" if method == "slices" else None)
        quad = np.array([-1, -1, 1, -1, -1, 1, 1, 1], np.float32)
        self._vbo = ctx.buffer(quad.tobytes())
        self._vao = ctx.vertex_array(self.prog, [(self._vbo, "2f", "in_pos")])
        self._targets: dict[tuple[int, int], tuple[moderngl.Texture, moderngl.Framebuffer]] = {}
        # wait for the rasteriser outside the GIL (moderngl holds it in every call): a shot
        # rendered on a worker thread then never stalls the frame loop's thread
        self._finish = finisher(str(ctx.info.get("GL_RENDERER", "")))

    def prepare(self) -> None:
        """Upload the textures every view needs now (the slice stacks along each axis), so no
        later shot pays for an upload."""
        if self.method == "slices":
            for a in range(3):
                b1, b2 = (i for i in range(3) if i != a)
                self._slice_texture((b1, b2, a))

    def _slice_axes(self, geometry: CArmGeometry) -> tuple[int, int, int]:
        """(b1, b2, a): ``a`` the array axis the central ray crosses most slices of per mm."""
        along = np.abs(self.ijk_from_ras[:3, :3] @ geometry.beam_direction)
        a = int(np.argmax(along))
        b1, b2 = (i for i in range(3) if i != a)
        return b1, b2, a

    def _slice_texture(self, axes: tuple[int, int, int]) -> moderngl.TextureArray:
        b1, b2, a = axes
        if a not in self._slices:
            data = np.ascontiguousarray(self._mu.transpose(a, b2, b1))  # layers, rows (b2), columns (b1)
            tex = self.ctx.texture_array((self.shape[b1], self.shape[b2], self.shape[a]), 1, data.tobytes(),
                                         dtype="f4")
            tex.filter = (moderngl.LINEAR, moderngl.LINEAR)
            tex.repeat_x = tex.repeat_y = False
            self._slices[a] = tex
        return self._slices[a]

    def _target(self, size: tuple[int, int]) -> tuple[moderngl.Texture, moderngl.Framebuffer]:
        if size not in self._targets:
            tex = self.ctx.texture(size, 2, dtype="f4")
            self._targets[size] = (tex, self.ctx.framebuffer(color_attachments=[tex]))
        return self._targets[size]

    def render(self, geometry: CArmGeometry, instruments: Sequence[Segment] = ()) -> np.ndarray:
        """(h, w) float32: the line integral of attenuation per detector pixel (row 0 the top).
        ``instruments``: up to 16 steel segments ``(p0_ras_mm, p1_ras_mm, radius_mm[, inner_radius_mm])``."""
        anatomy, metal = self.render_layers(geometry, instruments)
        return anatomy + metal

    def render_layers(self, geometry: CArmGeometry,
                      instruments: Sequence[Segment] = ()) -> tuple[np.ndarray, np.ndarray]:
        """The anatomy's and the instruments' line integrals apart, (h, w) float32 each, in one pass
        (the display's exposure follows the anatomy; metal saturates)."""
        w, h = geometry.pixels
        _tex, fbo = self._target((w, h))
        p = self.prog

        def put(name: str, value: Any) -> None:
            if name in p:
                p[name].value = value  # type: ignore[union-attr]

        put("u_source_mm", tuple(map(float, geometry.source_ras_mm)))
        put("u_det_centre_mm", tuple(map(float, geometry.detector_centre_ras_mm)))
        put("u_det_u", tuple(map(float, geometry.detector_u)))
        put("u_det_v", tuple(map(float, geometry.detector_v)))
        put("u_spacing_mm", tuple(map(float, geometry.pixel_spacing_mm)))
        put("u_pixels", (float(w), float(h)))
        if self.method == "slices":
            axes = self._slice_axes(geometry)
            perm = np.zeros((4, 4))
            perm[3, 3] = 1.0
            for row, col in enumerate(axes):
                perm[row, col] = 1.0
            p["u_idx_from_ras"].write((perm @ self.ijk_from_ras).T.astype("f4").tobytes())  # type: ignore[union-attr]
            put("u_dims", tuple(float(self.shape[i]) for i in axes))
            self._slice_texture(axes).use(0)
            put("u_slices", 0)
        else:
            assert self.texture is not None
            p["u_tex_from_ras"].write(self.tex_from_ras.T.astype("f4").tobytes())  # type: ignore[union-attr]
            put("u_step_mm", self.step_mm)
            self.texture.use(0)
            put("u_mu", 0)
        put("u_mu_steel", MU_STEEL_PER_MM)
        segs = list(instruments)[:MAX_SEGMENTS]
        put("u_nseg", len(segs))
        if segs:
            p0 = np.zeros((MAX_SEGMENTS, 3), "f4")
            p1 = np.zeros((MAX_SEGMENTS, 3), "f4")
            r = np.zeros((MAX_SEGMENTS, 3), "f4")
            for k, seg in enumerate(segs):
                p0[k], p1[k] = np.asarray(seg[0], float), np.asarray(seg[1], float)
                r[k] = _radii(geometry, p0[k], p1[k], float(seg[2]), float(seg[3]) if len(seg) > 3 else 0.0)
            p["u_seg_p0"].write(p0.tobytes())  # type: ignore[union-attr]
            p["u_seg_p1"].write(p1.tobytes())  # type: ignore[union-attr]
            p["u_seg_r"].write(r.tobytes())  # type: ignore[union-attr]
        fbo.use()
        fbo.viewport = (0, 0, w, h)
        self.ctx.disable(moderngl.DEPTH_TEST | moderngl.BLEND | moderngl.CULL_FACE)
        self._vao.render(moderngl.TRIANGLE_STRIP)
        self._finish()
        out = np.frombuffer(fbo.read(components=2, dtype="f4"), np.float32).reshape(h, w, 2)
        return out[:, :, 0].copy(), out[:, :, 1].copy()

    def release(self) -> None:
        for tex, fbo in self._targets.values():
            fbo.release()
            tex.release()
        self._targets.clear()
        self._vao.release()
        self._vbo.release()
        self.prog.release()
        for t in self._slices.values():
            t.release()
        self._slices.clear()
        if self.texture is not None:
            self.texture.release()


def _radii(geometry: CArmGeometry, p0: np.ndarray, p1: np.ndarray, radius_mm: float,
           inner_mm: float) -> tuple[float, float, float]:
    """(outer, inner, mu scale) for one instrument segment. A solid wire thinner than a detector
    pixel's footprint at its depth would fall between pixel centres: it is widened to 0.6 pixel
    with its attenuation scaled by (r / r_wide)^2, so each pixel still sees the steel it covers
    (the area integral is kept, as a detector pixel integrates over its area)."""
    if inner_mm > 0.0:
        return radius_mm, inner_mm, 1.0
    mid = 0.5 * (np.asarray(p0, float) + np.asarray(p1, float))
    depth = float((mid - geometry.source_ras_mm) @ geometry.beam_direction)
    footprint = min(geometry.pixel_spacing_mm) * max(depth, 1.0) / geometry.sid_mm
    wide = max(radius_mm, 0.6 * footprint)
    return wide, 0.0, (radius_mm / wide) ** 2 if wide > 0 else 0.0


def to_rgb(integral: np.ndarray, window: tuple[float, float] | None = None, round_field: bool = True,
           anatomy: np.ndarray | None = None) -> np.ndarray:
    """(h, w) line integral -> (h, w, 3) uint8 as a C-arm monitor shows fluoroscopy: the
    transmitted intensity (log), so bone and metal **dark** on a **bright** background (air white).

    ``window`` = (integral shown light, integral shown dark); default automatic exposure (as a
    C-arm's automatic brightness control, which meters the centre of the field) from the 1st and
    99.5th percentiles of ``anatomy`` (the anatomy-only integral; default ``integral``) over the
    pixels within half the field's radius that saw anything: the anatomy there spans grey levels
    250 -> 35 and metal, beyond the window, goes on to black.
    ``round_field``: black outside the inscribed circle (an image intensifier's round field)."""
    a = np.asarray(integral, np.float32)
    h, w = a.shape
    yy, xx = np.mgrid[0:h, 0:w]
    r2 = ((xx + 0.5 - w / 2.0) / (w / 2.0)) ** 2 + ((yy + 0.5 - h / 2.0) / (h / 2.0)) ** 2
    if window is None:
        ref = np.asarray(anatomy if anatomy is not None else a, np.float32)
        seen = ref[(ref > 1e-3) & (r2 <= 0.25)]
        if seen.size < 16:
            seen = ref[ref > 1e-3]
        if seen.size:
            lo, hi = float(np.percentile(seen, 1.0)), float(np.percentile(seen, 99.5))
            window = (max(0.0, lo - 0.05 * (hi - lo)), hi)
        else:
            window = (0.0, 1.0)
    lo, hi = window
    t = np.maximum((a - lo) / max(hi - lo, 1e-6), 0.0)
    g = np.clip(250.0 - 215.0 * t, 0.0, 255.0).astype(np.uint8)
    if round_field:
        g[r2 > 1.0] = 0
    return np.repeat(g[:, :, None], 3, axis=2)
