"""The one small interface every display backend implements.

A backend yields :class:`~vr_trainer.frame.Frame` objects (the frame contract lives
in :mod:`vr_trainer.frame`). The frame loop renders each view into the target the
backend hands out for it (:meth:`DisplayBackend.render_target`) and then calls
:meth:`DisplayBackend.end_frame`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - annotations only: the frame contract is imported from vr_trainer.frame
    import moderngl

    from vr_trainer.frame import Frame, View


def read_rgb(fbo: "moderngl.Framebuffer") -> np.ndarray:
    """A framebuffer's colour as HxWx3 uint8, top row first (GL stores bottom row first)."""
    w, h = fbo.size
    return np.frombuffer(fbo.read(components=3, alignment=1), np.uint8).reshape(h, w, 3)[::-1].copy()


class BackendError(RuntimeError):
    """A backend cannot start; the message says what to install or use instead."""


class DisplayBackend(ABC):
    """A source of frames and input, and a sink of rendered eye images."""

    name: str = "abstract"

    @abstractmethod
    def open(self) -> "moderngl.Context":
        """Start the backend and return the moderngl context to render with.

        GL lives on the calling thread from here on."""

    @abstractmethod
    def frames(self) -> Iterator[Frame]:
        """Yield frames until the user or the runtime ends the session."""

    @abstractmethod
    def render_target(self, view: View) -> "moderngl.Framebuffer":
        """The framebuffer to draw ``view`` into (colour and depth), valid until :meth:`end_frame`."""

    @abstractmethod
    def end_frame(self, frame: Frame) -> None:
        """Hand the rendered views to the display (swapchain release, swap)."""

    def set_depth_range(self, near_mm: float, far_mm: float) -> None:
        """The near and far planes the views are rendered with (for a depth layer); ignored by default."""
        return None

    def haptic_pulse(self, hand: int, amplitude: float, duration_s: float, frequency_hz: float = 0.0) -> None:
        """Vibrate a controller; backends without haptics ignore it."""
        return None

    def eye_images(self) -> list[np.ndarray] | None:
        """The last frame's eye images as HxWx3 uint8 (top row first), if the backend keeps them."""
        return None

    def info(self) -> dict[str, Any]:
        """Facts for summary.json (runtime name, display period ...)."""
        return {"backend": self.name}

    @abstractmethod
    def close(self) -> None:
        """Release everything; safe to call twice."""
