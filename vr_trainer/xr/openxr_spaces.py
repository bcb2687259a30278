"""The session's reference spaces (LOCAL, STAGE, VIEW) and where the tracking space sits
in the program's world: ``world_from_tracking`` (mm), fixed, or aligned once so the
tracked head lands on the scenario's first head pose."""

from __future__ import annotations

from typing import Any

import numpy as np
import xr

from vr_trainer.xr.openxr_support import ReleaseStack, align_world_from_tracking, pose_matrix_mm

POSE_VALID = xr.SpaceLocationFlags.POSITION_VALID_BIT | xr.SpaceLocationFlags.ORIENTATION_VALID_BIT
STANDING_EYE_HEIGHT_MM = 1650.0


class ReferenceSpaces:
    """The space poses are located in (``space``, STAGE or LOCAL) and its place in the world.

    ``requested``: ``stage`` or ``local`` (LOCAL when the runtime has no STAGE).
    ``world_from_tracking``: a fixed placement; else, with a ``track`` (the scenario's
    pose track), the first located head pose is aligned to ``track.head_pose(0)``
    (``align``: ``auto``, ``yaw`` or ``full``; see :func:`align_world_from_tracking`)."""

    def __init__(self, session: Any, requested: str, world_from_tracking: np.ndarray | None, track: Any,
                 align: str, system_name: str, releases: ReleaseStack) -> None:
        self.spaces: dict[str, Any] = {}
        offered = set(xr.enumerate_reference_spaces(session))
        for name, kind in (("local", xr.ReferenceSpaceType.LOCAL), ("stage", xr.ReferenceSpaceType.STAGE)):
            if kind.value in offered or kind in offered:
                self.spaces[name] = self._create(session, kind, releases)
        self.name = requested if requested in self.spaces else "local"
        self.space = self.spaces[self.name]
        self.spaces["view"] = self._create(session, xr.ReferenceSpaceType.VIEW, releases)
        self._track = track
        self.align = align
        self.system_name = system_name
        self.align_used = "fixed" if world_from_tracking is not None else "none"
        self.aligned = world_from_tracking is not None or track is None
        if world_from_tracking is not None:
            self.world_from_tracking = np.asarray(world_from_tracking, float)
        else:  # until aligned to the scenario's first head pose (first frame)
            self.world_from_tracking = np.eye(4)
            if self.name == "local":  # LOCAL's origin is the head at start: lift it to eye height
                self.world_from_tracking[1, 3] = STANDING_EYE_HEIGHT_MM

    @staticmethod
    def _create(session: Any, kind: Any, releases: ReleaseStack) -> Any:
        space = xr.create_reference_space(session, xr.ReferenceSpaceCreateInfo(
            reference_space_type=kind, pose_in_reference_space=xr.Posef()))
        releases.runtime(xr.destroy_space, space)
        return space

    def align_once(self, display_time: int) -> None:
        """Map the tracked head onto the scenario's first head pose, once it is tracked."""
        if self.aligned:
            return
        loc = xr.locate_space(self.spaces["view"], self.space, display_time)
        if (loc.location_flags & POSE_VALID) != POSE_VALID:
            return
        mode = self.align
        if mode == "auto":  # a simulated headset has nobody inside to look down at the patient
            mode = "full" if "simulated" in self.system_name.lower() else "yaw"
        self.world_from_tracking = align_world_from_tracking(
            self._track.head_pose(0.0), pose_matrix_mm(loc.pose), mode, keep_height=self.name == "stage")
        self.align_used = mode
        self.aligned = True

    def world_pose(self, pose: Any) -> np.ndarray:
        """An ``XrPosef`` in the tracking space as ``world_from_*`` (4x4, mm)."""
        return self.world_from_tracking @ pose_matrix_mm(pose)

    def locate(self, space: Any, display_time: int) -> np.ndarray | None:
        """Where ``space`` is at ``display_time`` as ``world_from_*`` (mm); None when not tracked."""
        loc = xr.locate_space(space, self.space, display_time)
        if (loc.location_flags & POSE_VALID) != POSE_VALID:
            return None
        return self.world_pose(loc.pose)
