"""Pick and construct a display backend by name; imports each lazily."""

from __future__ import annotations

import os

from vr_trainer.xr.base import BackendError, DisplayBackend
from vr_trainer.xr.posetrack import PoseTrack

BACKENDS = ("auto", "headless", "desktop", "openxr")


def display_available() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def openxr_available() -> bool:
    try:
        from vr_trainer.xr import openxr as xrmod
    except ImportError:
        return False
    try:
        return bool(xrmod.runtime_available())
    except Exception:  # noqa: BLE001 - auto falls through quietly
        return False


def resolve_backend_name(name: str) -> str:
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name != "auto":
        return name
    if openxr_available():
        return "openxr"
    if display_available():
        return "desktop"
    return "headless"


def create_backend(name: str, track: PoseTrack, size: tuple[int, int], frames: int | None,
                   desktop_layout: str = "side_by_side", live: bool = False) -> DisplayBackend:
    """``live``: someone watches (a mentor): the headless backend runs at the track's
    pace and, with no frame limit, replays the track until stopped."""
    name = resolve_backend_name(name)
    if name == "headless":
        from vr_trainer.xr.headless import HeadlessBackend

        return HeadlessBackend(track, size=size, frames=frames, paced=live, loop_track=live)
    if name == "desktop":
        from vr_trainer.xr.desktop import DesktopBackend

        return DesktopBackend(size=size, frames=frames, layout=desktop_layout, track=track)
    from vr_trainer.xr.openxr import OpenXRBackend

    return OpenXRBackend(max_frames=frames, track=track)  # aligned to the scenario's first head pose
