"""The data contract of one frame: what a display backend hands the frame loop, and
what the loop hands anyone watching (the mirror). A leaf module: numpy only, no GL,
no runtime, no asyncio, so the simulation and remote code can use these types.

A backend yields :class:`Frame` objects; each frame carries the per-eye
:class:`View` list (pose, asymmetric field of view in OpenXR's convention, render
target size) and the :class:`InputState` sampled for that frame. A view carries no
GPU resource: the backend hands out the render target for it separately.
The loop publishes :class:`MirrorFrame` objects (the mirror image, its depth and
the matrices of each eye shown in it).

Units: millimetres, seconds, radians for the field of view (as OpenXR), a
right-handed frame (x right, y up, -z forward for a view).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


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
    """One eye (or the single desktop view) for one frame: where it is and what it sees."""

    eye_index: int
    pose_world_from_eye: np.ndarray  # 4x4, millimetres
    fov: Fov
    width: int  # render target size in pixels
    height: int


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
    keys: frozenset[str] = frozenset()

    @property
    def active(self) -> HandInput:
        return self.hands[self.active_hand]


@dataclass
class Frame:
    """One display frame: views to render, input to apply.

    ``extra`` holds backend facts for this frame (``display_period_s``,
    ``xr_time_ns``, ``session_state``, ``xr_idle``)."""

    index: int
    predicted_display_time_s: float
    views: list[View]
    input: InputState
    should_render: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class MirrorViewInfo:
    """Where one eye sits in the mirror image and the matrices it was rendered with."""

    rect_px: tuple[int, int, int, int]  # x, y (from the top), width, height in the mirror image
    view_from_world: np.ndarray  # 4x4, mm
    projection: np.ndarray  # 4x4, OpenGL clip from view


@dataclass
class MirrorFrame:
    """One frame of the mirror view as read back from GL.

    ``rgb`` is HxWx3 uint8, top row first. ``depth`` (optional) is HxW float32
    window depth in [0, 1], top row first. ``views`` lists, for each eye shown in
    the mirror, its pixel rectangle in the mirror image and the matrices it was
    rendered with, so that a 2D point drawn on the picture can be unprojected
    onto the anatomy.
    """

    frame_id: int
    time_s: float
    rgb: np.ndarray | None  # None in the loop's history (only depth and matrices are kept)
    depth: np.ndarray | None
    views: list[MirrorViewInfo]
