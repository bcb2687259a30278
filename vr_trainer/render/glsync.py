"""Wait for the GL driver without holding Python's GIL.

moderngl keeps the GIL inside every GL call. On a software rasteriser (llvmpipe) a
resolve or readback waits there for the whole frame's rasterisation, and every other
Python thread (the mentoring network thread, audio) stalls with it: measured, a 1 ms
sleeper thread woke after 70 ms at p95. Calling glFinish through ctypes, which releases
the GIL for the duration of the foreign call, first lets those threads run (p95 4 ms)
at no cost to the frame time. On a hardware GPU this would stall the CPU/GPU pipeline,
so it is only used on software rasterisers, where the work is synchronous anyway."""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Callable

SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "swrast", "software rasterizer")


def is_software_renderer(gl_renderer: str) -> bool:
    name = gl_renderer.lower()
    return any(s in name for s in SOFTWARE_RENDERERS)


def _load_finish() -> Callable[[], None] | None:
    for lib in ("libOpenGL.so.0", "libGL.so.1", ctypes.util.find_library("OpenGL"), ctypes.util.find_library("GL")):
        if not lib:
            continue
        try:
            fn = ctypes.CDLL(lib).glFinish
        except (OSError, AttributeError):
            continue
        fn.restype = None
        fn.argtypes = []
        return fn
    return None


_FINISH = _load_finish()


def finisher(gl_renderer: str) -> Callable[[], None]:
    """A function to call before a GL call that would wait for rendering."""
    if _FINISH is not None and is_software_renderer(gl_renderer):
        return _FINISH
    return lambda: None
