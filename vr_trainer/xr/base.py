"""The one small interface every display backend implements.

A backend yields :class:`Frame` objects; each frame carries the per-eye
:class:`View` list (pose, asymmetric field of view in OpenXR's convention,
render target size) and the :class:`InputState` sampled for that frame.
The frame loop renders each view into the target the backend hands out
(``view.framebuffer``) and then calls :meth:`DisplayBackend.end_frame`.

Units: millimetres, seconds, radians for the field of view (as OpenXR), a
right-handed frame (x right, y up, -z forward for a view).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import moderngl


@dataclass(frozen=True)
class Fov:
    """Asymmetric field of view, OpenXR convention: angles in radians,
    ``angle_left`` and ``angle_down`` are negative for a centred view."""

    angle_left: float
    angle_right: float
    angle_up: float
    angle_down: float

    @classmethod
    def symmetric(cls, horizontal_deg: float, aspect: float) -> "Fov":
        h = np.radians(horizontal_deg) / 2.0
        v = float(np.arctan(np.tan(h) / aspect))
        return cls(-float(h), float(h), v, -v)


@dataclass
class View:
    """One eye (or the single desktop view) for one frame."""

    eye_index: int
    pose_world_from_eye: np.ndarray  # 4x4, millimetres
    fov: Fov
    width: int
    height: int
    framebuffer: "moderngl.Framebuffer | None" = None


@dataclass
class HandInput:
    """One hand or motion controller, sampled for a frame."""

    pose_world_from_hand: np.ndarray | None = None  # 4x4 mm; None when not tracked
    trigger: float = 0.0  # 0..1
    grip: float = 0.0  # 0..1
    primary_pressed: bool = False
    secondary_pressed: bool = False


@dataclass
class InputState:
    """Everything the user did this frame. ``active_hand`` drives the instrument."""

    hands: list[HandInput] = field(default_factory=lambda: [HandInput(), HandInput()])
    active_hand: int = 1  # 0 left, 1 right
    focused: bool = True  # False while the runtime has taken input focus away
    quit_requested: bool = False
    keys: frozenset[str] = frozenset()

    @property
    def active(self) -> HandInput:
        return self.hands[self.active_hand]


@dataclass
class Frame:
    """One display frame: views to render, input to apply."""

    index: int
    predicted_display_time_s: float
    views: list[View]
    input: InputState
    should_render: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


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
    def end_frame(self, frame: Frame) -> None:
        """Hand the rendered views to the display (swapchain release, swap)."""

    def haptic_pulse(self, hand: int, amplitude: float, duration_s: float, frequency_hz: float = 0.0) -> None:
        """Vibrate a controller; backends without haptics ignore it."""

    def eye_images(self) -> list[np.ndarray] | None:
        """The last frame's eye images as HxWx3 uint8 (top row first), if the backend keeps them."""
        return None

    def info(self) -> dict[str, Any]:
        """Facts for summary.json (runtime name, display period ...)."""
        return {"backend": self.name}

    @abstractmethod
    def close(self) -> None:
        """Release everything; safe to call twice."""
