"""OpenGL plumbing for the OpenXR backend, through ctypes (no PyOpenGL, no ``xr``):

- :class:`EGLContext`: an EGL OpenGL context without a display (surfaceless Mesa
  or the default display), with the handles ``XR_MNDX_egl_enable`` needs;
- :class:`GLXHandles`: the current GLX context's handles for ``XR_KHR_opengl_enable``;
- :class:`RawFramebuffers`: framebuffers around runtime-owned depth images, which
  moderngl cannot attach itself;
- :class:`DepthCopier`: copies a depth texture into such a framebuffer (formats
  may differ, so it draws instead of blitting).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable
from typing import Any, cast

import moderngl

_vp = ctypes.c_void_p
_i32 = ctypes.c_int32

EGL_NONE = 0x3038
EGL_OPENGL_API = 0x30A2
EGL_PLATFORM_SURFACELESS_MESA = 0x31DD


def _load(names: tuple[str, ...]) -> ctypes.CDLL:
    for n in names:
        try:
            return ctypes.CDLL(n)
        except OSError:
            continue
    raise OSError(f"cannot load any of {', '.join(names)}")


class EGLContext:
    """An OpenGL (not ES) context over EGL, current on the calling thread."""

    def __init__(self) -> None:
        egl = self.egl = _load(("libEGL.so.1", "libEGL.so"))
        egl.eglGetProcAddress.restype = _vp
        egl.eglGetProcAddress.argtypes = [ctypes.c_char_p]
        egl.eglGetDisplay.restype = _vp
        egl.eglGetDisplay.argtypes = [_vp]
        egl.eglInitialize.argtypes = [_vp, ctypes.POINTER(_i32), ctypes.POINTER(_i32)]
        egl.eglChooseConfig.argtypes = [_vp, ctypes.POINTER(_i32), ctypes.POINTER(_vp), _i32, ctypes.POINTER(_i32)]
        egl.eglBindAPI.argtypes = [ctypes.c_uint]
        egl.eglCreateContext.restype = _vp
        egl.eglCreateContext.argtypes = [_vp, _vp, _vp, ctypes.POINTER(_i32)]
        egl.eglMakeCurrent.argtypes = [_vp, _vp, _vp, _vp]
        egl.eglDestroyContext.argtypes = [_vp, _vp]
        egl.eglTerminate.argtypes = [_vp]
        egl.eglGetError.restype = _i32
        egl.eglQueryString.restype = ctypes.c_char_p
        egl.eglQueryString.argtypes = [_vp, _i32]
        self.display = self.config = self.context = None
        display = None
        client_exts = egl.eglQueryString(None, 0x3055) or b""  # EGL_EXTENSIONS of EGL_NO_DISPLAY
        if not os.environ.get("DISPLAY") and b"EGL_MESA_platform_surfaceless" in client_exts:
            fn = ctypes.CFUNCTYPE(_vp, ctypes.c_uint, _vp, ctypes.POINTER(_i32))(
                egl.eglGetProcAddress(b"eglGetPlatformDisplayEXT"))
            display = fn(EGL_PLATFORM_SURFACELESS_MESA, None, None)
        if not display:
            display = egl.eglGetDisplay(None)
        if not display or not egl.eglInitialize(display, None, None):
            raise RuntimeError(f"EGL: no display (error 0x{egl.eglGetError():x})")
        self.display = display
        attrs = (_i32 * 15)(0x3024, 8, 0x3023, 8, 0x3022, 8, 0x3021, 8, 0x3025, 24,  # RGBA8, depth 24
                            0x3040, 0x0008,  # EGL_RENDERABLE_TYPE: EGL_OPENGL_BIT
                            0x3033, 0,  # EGL_SURFACE_TYPE: any (surfaceless has no pbuffer configs)
                            EGL_NONE)
        config, n = _vp(), _i32()
        if not egl.eglChooseConfig(display, attrs, ctypes.byref(config), 1, ctypes.byref(n)) or n.value < 1:
            raise RuntimeError("EGL: no RGBA8 OpenGL config")
        self.config = config.value
        if not egl.eglBindAPI(EGL_OPENGL_API):
            raise RuntimeError("EGL: OpenGL API not available")
        ctx = egl.eglCreateContext(display, self.config, None, (_i32 * 1)(EGL_NONE))
        if not ctx:
            raise RuntimeError(f"EGL: cannot create an OpenGL context (error 0x{egl.eglGetError():x})")
        self.context = ctx
        if not egl.eglMakeCurrent(display, None, None, ctx):
            raise RuntimeError(f"EGL: cannot make the context current (error 0x{egl.eglGetError():x})")

    @property
    def get_proc_address_fn(self) -> Any:
        """The C function ``eglGetProcAddress`` (for ``XrGraphicsBindingEGLMNDX``)."""
        return self.egl.eglGetProcAddress

    def get_proc_address(self, name: bytes) -> int:
        return int(self.egl.eglGetProcAddress(name) or 0)

    def destroy(self) -> None:
        egl = self.egl
        if self.display:
            egl.eglMakeCurrent(self.display, None, None, None)
            if self.context:
                egl.eglDestroyContext(self.display, self.context)
            egl.eglTerminate(self.display)
        self.display = self.context = None


class GLXHandles:
    """Display, drawable, context, FB config and visual of the current GLX context."""

    def __init__(self, display: int, drawable: int, context: int, fbconfig: int, visualid: int,
                 gpa: Callable[[bytes], int]) -> None:
        self.display, self.drawable, self.context = display, drawable, context
        self.fbconfig, self.visualid = fbconfig, visualid
        self.get_proc_address = gpa

    @classmethod
    def current(cls) -> GLXHandles:
        gl = _load(("libGL.so.1", "libGL.so"))
        gl.glXGetCurrentDisplay.restype = _vp
        gl.glXGetCurrentDrawable.restype = ctypes.c_ulong
        gl.glXGetCurrentContext.restype = _vp
        gl.glXQueryContext.argtypes = [_vp, _vp, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
        gl.glXChooseFBConfig.restype = ctypes.POINTER(_vp)
        gl.glXChooseFBConfig.argtypes = [_vp, ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)]
        gl.glXGetFBConfigAttrib.argtypes = [_vp, _vp, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
        gl.glXGetProcAddressARB.restype = _vp
        gl.glXGetProcAddressARB.argtypes = [ctypes.c_char_p]
        dpy, drawable, ctx = gl.glXGetCurrentDisplay(), gl.glXGetCurrentDrawable(), gl.glXGetCurrentContext()
        if not dpy or not ctx:
            raise RuntimeError("GLX: no current context")
        fb_id, screen = ctypes.c_int(), ctypes.c_int()
        gl.glXQueryContext(dpy, ctx, 0x8013, ctypes.byref(fb_id))  # GLX_FBCONFIG_ID
        gl.glXQueryContext(dpy, ctx, 0x800C, ctypes.byref(screen))  # GLX_SCREEN
        n = ctypes.c_int()
        configs = gl.glXChooseFBConfig(dpy, screen.value, (ctypes.c_int * 3)(0x8013, fb_id.value, 0), ctypes.byref(n))
        fbconfig = configs[0] if configs and n.value else None
        visual = ctypes.c_int()
        if fbconfig:
            gl.glXGetFBConfigAttrib(dpy, fbconfig, 0x800B, ctypes.byref(visual))  # GLX_VISUAL_ID
        return cls(dpy, drawable, ctx, fbconfig or 0, visual.value,
                   lambda name: int(gl.glXGetProcAddressARB(name) or 0))


class RawFramebuffers:
    """GL framebuffers made with raw calls, wrapped as moderngl framebuffers."""

    GL_FRAMEBUFFER, GL_FRAMEBUFFER_BINDING = 0x8D40, 0x8CA6
    GL_DEPTH_ATTACHMENT, GL_DEPTH_STENCIL_ATTACHMENT, GL_TEXTURE_2D = 0x8D00, 0x821A, 0x0DE1

    def __init__(self, ctx: moderngl.Context, gpa: Callable[[bytes], int]) -> None:
        self.ctx = ctx
        u, i = ctypes.c_uint, ctypes.c_int

        def fn(name: str, res: Any, *args: Any) -> Any:
            addr = gpa(name.encode())
            if not addr:
                raise RuntimeError(f"OpenGL function {name} not found")
            return ctypes.CFUNCTYPE(res, *args)(addr)
        self._gen = fn("glGenFramebuffers", None, i, ctypes.POINTER(u))
        self._delete = fn("glDeleteFramebuffers", None, i, ctypes.POINTER(u))
        self._bind = fn("glBindFramebuffer", None, u, u)
        self._tex2d = fn("glFramebufferTexture2D", None, u, u, u, u, i)
        self._status = fn("glCheckFramebufferStatus", u, u)
        self._get = fn("glGetIntegerv", None, u, ctypes.POINTER(i))
        self._draw_buffer = fn("glDrawBuffer", None, u)
        self._read_buffer = fn("glReadBuffer", None, u)
        self._made: list[int] = []

    def depth_only(self, depth_image: int, size: tuple[int, int], stencil: bool = False) -> moderngl.Framebuffer:
        """A framebuffer whose only attachment is the GL texture ``depth_image``."""
        prev = ctypes.c_int()
        self._get(self.GL_FRAMEBUFFER_BINDING, ctypes.byref(prev))
        fid = ctypes.c_uint()
        self._gen(1, ctypes.byref(fid))
        self._bind(self.GL_FRAMEBUFFER, fid.value)
        attach = self.GL_DEPTH_STENCIL_ATTACHMENT if stencil else self.GL_DEPTH_ATTACHMENT
        self._tex2d(self.GL_FRAMEBUFFER, attach, self.GL_TEXTURE_2D, depth_image, 0)
        self._draw_buffer(0)  # GL_NONE
        self._read_buffer(0)
        status = self._status(self.GL_FRAMEBUFFER)
        self._bind(self.GL_FRAMEBUFFER, prev.value)
        self._made.append(fid.value)
        if status != 0x8CD5:  # GL_FRAMEBUFFER_COMPLETE
            raise RuntimeError(f"depth swapchain framebuffer incomplete (0x{status:x})")
        fbo = self.ctx.detect_framebuffer(fid.value)
        fbo.viewport = (0, 0, *size)
        return fbo

    def release(self) -> None:
        if self._made:
            arr = (ctypes.c_uint * len(self._made))(*self._made)
            self._delete(len(self._made), arr)
            self._made = []


class DepthCopier:
    """Writes a depth texture's values into the depth buffer of another framebuffer."""

    VS = """#version 330 core
    void main() {
        vec2 p = vec2((gl_VertexID & 1) * 4.0 - 1.0, (gl_VertexID & 2) * 2.0 - 1.0);
        gl_Position = vec4(p, 0.0, 1.0);
    }"""
    FS = """#version 330 core
    uniform sampler2D u_depth;
    void main() { gl_FragDepth = texelFetch(u_depth, ivec2(gl_FragCoord.xy), 0).r; }"""

    def __init__(self, ctx: moderngl.Context) -> None:
        self.ctx = ctx
        self.prog = ctx.program(vertex_shader=self.VS, fragment_shader=self.FS)
        self.vao = ctx.vertex_array(self.prog, [])

    def copy(self, src: moderngl.Texture, dst: moderngl.Framebuffer) -> None:
        ctx = self.ctx
        dst.use()
        ctx.enable(moderngl.DEPTH_TEST)
        ctx.depth_func = "1"  # always pass, always write
        src.compare_func = ""
        src.use(0)
        cast(moderngl.Uniform, self.prog["u_depth"]).value = 0
        self.vao.render(moderngl.TRIANGLES, vertices=3)
        ctx.depth_func = "<"

    def release(self) -> None:
        self.vao.release()
        self.prog.release()
