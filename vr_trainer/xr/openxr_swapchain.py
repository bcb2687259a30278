"""Per-eye swapchains (after pyopenxr's ``SwapchainSet``): one sRGB colour swapchain per
eye at the runtime's recommended size, an optional depth swapchain for
``XR_KHR_composition_layer_depth``, moderngl framebuffers around the runtime's
images, and a copy of the last submitted image for readback.

Acquiring waits for the runtime to free an image in short slices under a hard
deadline (pyopenxr waits forever)."""

from __future__ import annotations

import ctypes
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import moderngl
import numpy as np
import xr

from vr_trainer.xr.base import BackendError, read_rgb
from vr_trainer.xr.openxr_gl import DepthCopier, RawFramebuffers
from vr_trainer.xr.openxr_session import PRIMARY_STEREO
from vr_trainer.xr.openxr_support import DEPTH_FORMATS, LINEAR_FALLBACK, SRGB_FORMATS, ReleaseStack

log = logging.getLogger(__name__)

GL_DEPTH24_STENCIL8 = 0x88F0
GL_SRGB8_ALPHA8 = 0x8C43
WAIT_SLICE_NS = 100_000_000  # one xrWaitSwapchainImage call; the deadline is checked between slices


def acquire_image(swapchain: Any, timeout_s: float, acquired: list[Any]) -> int:
    """Acquire the next image of ``swapchain`` and wait until the runtime frees it (at most ``timeout_s``).

    ``swapchain`` is added to ``acquired`` as soon as it has handed out an image, so
    that the image is released even when the wait fails."""
    idx = xr.acquire_swapchain_image(swapchain, xr.SwapchainImageAcquireInfo())
    acquired.append(swapchain)
    deadline = time.monotonic() + timeout_s
    while True:
        res = xr.check_result(xr.raw_functions.xrWaitSwapchainImage(
            swapchain, xr.SwapchainImageWaitInfo(timeout=WAIT_SLICE_NS)))
        if res.is_exception():
            raise res
        if res != xr.Result.TIMEOUT_EXPIRED:
            return int(idx)
        if time.monotonic() > deadline:
            raise BackendError(f"the OpenXR runtime did not free a swapchain image within {timeout_s:.0f} s")


def _rect(size: tuple[int, int]) -> Any:
    return xr.Rect2Di(xr.Offset2Di(0, 0), xr.Extent2Di(*size))


@dataclass
class EyeSwapchain:
    """One eye's swapchains and the GL objects around them.

    The renderer copies colour and depth into :attr:`target` (the acquired colour
    image with :attr:`depth_texture` as its depth, D24 like the renderer's own);
    at submit the colour goes to :attr:`eye_copy` for readback and, with a depth
    swapchain, the depth is drawn into the acquired depth image."""

    size: tuple[int, int]  # pixels
    color_format: int  # GL enum
    depth_format: int | None  # GL enum; None without a depth swapchain
    color: Any  # XrSwapchain
    framebuffers: list[moderngl.Framebuffer]  # one per colour image
    depth_texture: moderngl.Texture
    eye_copy: moderngl.Framebuffer
    depth: Any = None  # XrSwapchain of depth images
    depth_framebuffers: list[moderngl.Framebuffer] = field(default_factory=list)
    index: int = -1  # acquired colour image, -1 when none
    depth_index: int = -1
    acquired: list[Any] = field(default_factory=list)  # swapchains with an image to release

    @classmethod
    def create(cls, session: Any, ctx: moderngl.Context, raw: RawFramebuffers, size: tuple[int, int],
               color_format: int, depth_format: int | None, releases: ReleaseStack) -> EyeSwapchain:
        w, h = size
        usage = xr.SwapchainUsageFlags
        color = xr.create_swapchain(session, xr.SwapchainCreateInfo(
            usage_flags=usage.COLOR_ATTACHMENT_BIT | usage.SAMPLED_BIT | usage.TRANSFER_SRC_BIT,
            format=color_format, sample_count=1, width=w, height=h, face_count=1, array_size=1, mip_count=1))
        releases.runtime(xr.destroy_swapchain, color)
        depth_texture = ctx.depth_texture(size)
        releases.local(depth_texture.release)
        framebuffers = []
        for img in xr.enumerate_swapchain_images(color, xr.SwapchainImageOpenGLKHR):
            tex = ctx.external_texture(img.image, size, 4, 0, "f1")
            fbo = ctx.framebuffer([tex], depth_texture)
            releases.local(tex.release)
            releases.local(fbo.release)
            framebuffers.append(fbo)
        depth = None
        depth_framebuffers = []
        if depth_format is not None:
            depth = xr.create_swapchain(session, xr.SwapchainCreateInfo(
                usage_flags=usage.DEPTH_STENCIL_ATTACHMENT_BIT | usage.SAMPLED_BIT, format=depth_format,
                sample_count=1, width=w, height=h, face_count=1, array_size=1, mip_count=1))
            releases.runtime(xr.destroy_swapchain, depth)
            for img in xr.enumerate_swapchain_images(depth, xr.SwapchainImageOpenGLKHR):
                fbo = raw.depth_only(img.image, size, stencil=depth_format == GL_DEPTH24_STENCIL8)
                releases.local(fbo.release)
                depth_framebuffers.append(fbo)
        copy = ctx.texture(size, 4, internal_format=GL_SRGB8_ALPHA8 if color_format in SRGB_FORMATS else None)
        eye_copy = ctx.framebuffer([copy])
        releases.local(copy.release)
        releases.local(eye_copy.release)
        return cls(size, color_format, depth_format, color, framebuffers, depth_texture, eye_copy, depth,
                   depth_framebuffers)

    @property
    def target(self) -> moderngl.Framebuffer:
        """The framebuffer around the acquired colour image (valid between acquire and release)."""
        if self.index < 0:
            raise BackendError("no swapchain image is acquired: a view's render target is valid from the frame "
                               "that holds the view until end_frame()")
        return self.framebuffers[self.index]

    def acquire(self, timeout_s: float) -> None:
        """Acquire and wait for this frame's colour (and depth) image."""
        self.index = acquire_image(self.color, timeout_s, self.acquired)
        if self.depth is not None:
            self.depth_index = acquire_image(self.depth, timeout_s, self.acquired)

    def projection_view(self, pv: Any, xr_view: Any, ctx: moderngl.Context, depth_copier: DepthCopier | None,
                        near_mm: float, far_mm: float) -> Any:
        """Copy the rendered image out for readback, fill the layer's view ``pv`` for this eye;
        returns the depth info ``pv.next`` points at (the caller keeps it alive until xrEndFrame), or None."""
        ctx.copy_framebuffer(self.eye_copy, self.target)
        pv.type = xr.StructureType.COMPOSITION_LAYER_PROJECTION_VIEW
        pv.pose, pv.fov = xr_view.pose, xr_view.fov
        pv.sub_image.swapchain = self.color
        pv.sub_image.image_rect = _rect(self.size)
        if self.depth is None or depth_copier is None:
            return None
        depth_copier.copy(self.depth_texture, self.depth_framebuffers[self.depth_index])
        return xr.CompositionLayerDepthInfoKHR(sub_image=xr.SwapchainSubImage(self.depth, _rect(self.size), 0),
                                               min_depth=0.0, max_depth=1.0,
                                               near_z=near_mm / 1000.0, far_z=far_mm / 1000.0)

    def release_images(self) -> None:
        """Hand every acquired image back to the runtime."""
        self.index = self.depth_index = -1
        for swapchain in self.acquired:
            xr.release_swapchain_image(swapchain, xr.SwapchainImageReleaseInfo())
        self.acquired.clear()


class SwapchainSet:
    """The eyes' swapchains of a session, in view order (PRIMARY_STEREO: left, right)."""

    def __init__(self, session: Any, instance: Any, system_id: Any, extensions: set[str], ctx: moderngl.Context,
                 raw: RawFramebuffers, releases: ReleaseStack) -> None:
        self.ctx = ctx
        formats = list(xr.enumerate_swapchain_formats(session))
        color_fmt = next((f for f in SRGB_FORMATS if f in formats), None)
        if color_fmt is None:
            color_fmt = next((f for f in LINEAR_FALLBACK if f in formats), None)
            log.warning("OpenXR runtime offers no sRGB swapchain format; colours will look too bright")
        if color_fmt is None:
            offered = [hex(f) for f in formats]
            raise BackendError(f"the OpenXR runtime offers no 8-bit colour swapchain format ({offered})")
        depth_fmt = next((f for f in DEPTH_FORMATS if f in formats), None) \
            if "XR_KHR_composition_layer_depth" in extensions else None
        self.eyes: list[EyeSwapchain] = []
        for vc in xr.enumerate_view_configuration_views(instance, system_id, PRIMARY_STEREO):
            size = (vc.recommended_image_rect_width, vc.recommended_image_rect_height)
            self.eyes.append(EyeSwapchain.create(session, ctx, raw, size, color_fmt, depth_fmt, releases))
        self.depth_copier: DepthCopier | None = None
        if depth_fmt is not None:
            self.depth_copier = DepthCopier(ctx)
            releases.local(self.depth_copier.release)

    def __len__(self) -> int:
        return len(self.eyes)

    def __getitem__(self, eye: int) -> EyeSwapchain:
        return self.eyes[eye]

    def acquire(self, timeout_s: float) -> None:
        for sc in self.eyes:
            sc.acquire(timeout_s)

    def release_images(self) -> None:
        for sc in self.eyes:
            sc.release_images()

    def submit_views(self, xr_views: Any, near_mm: float, far_mm: float) -> tuple[Any, list[Any]]:
        """The projection views of this frame's layer, one per eye, and the depth infos they point at."""
        proj_views = (xr.CompositionLayerProjectionView * len(self.eyes))()
        keep: list[Any] = []
        for k, sc in enumerate(self.eyes):
            di = sc.projection_view(proj_views[k], xr_views[k], self.ctx, self.depth_copier, near_mm, far_mm)
            if di is not None:
                keep.append(di)
                proj_views[k].next = ctypes.cast(ctypes.pointer(di), ctypes.c_void_p)
        return proj_views, keep

    def eye_images(self) -> list[np.ndarray]:
        """The last submitted eye images as HxWx3 uint8, top row first (display-encoded sRGB values)."""
        return [read_rgb(sc.eye_copy) for sc in self.eyes]

    def describe(self) -> dict[str, Any]:
        """Facts for summary.json: size, colour format and depth layer format (None without one)."""
        sc = self.eyes[0] if self.eyes else None
        fmt = None if sc is None else {**SRGB_FORMATS, **LINEAR_FALLBACK}.get(sc.color_format, hex(sc.color_format))
        return {"swapchain_size": list(sc.size) if sc else None, "swapchain_format": fmt,
                "depth_layer": None if sc is None or sc.depth_format is None else DEPTH_FORMATS[sc.depth_format]}
