"""Scripted head and instrument poses (keyframes interpolated over time)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vr_trainer.sim.transforms import look_at_pose, pose_from_axis, slerp_pose


@dataclass
class PoseTrack:
    """Keyframes: head (t_s, position_mm, look_at_mm), tool (t_s, tip_mm, toward_mm, trigger);
    ``actions``: (t_s, name) discrete inputs, each held for the one frame nearest ``t_s``
    (``next_instrument`` is the primary button; other names reach the frame as keys)."""

    head_t: np.ndarray
    head_pos: np.ndarray
    head_look: np.ndarray
    tool_t: np.ndarray
    tool_tip: np.ndarray
    tool_toward: np.ndarray
    tool_trigger: np.ndarray
    fps: float = 30.0
    actions: tuple[tuple[float, str], ...] = ()

    @classmethod
    def from_keys(cls, head: list[dict], tool: list[dict], fps: float = 30.0) -> "PoseTrack":
        if not head:
            raise ValueError("a pose track needs at least one head keyframe")
        return cls(
            np.array([k["t_s"] for k in head], float),
            np.array([k["position_mm"] for k in head], float).reshape(-1, 3),
            np.array([k["look_at_mm"] for k in head], float).reshape(-1, 3),
            np.array([k["t_s"] for k in tool], float),
            np.array([k["tip_mm"] for k in tool], float).reshape(-1, 3),
            np.array([k["toward_mm"] for k in tool], float).reshape(-1, 3),
            np.array([k.get("trigger", 0.0) for k in tool], float),
            fps,
        )

    @property
    def duration_s(self) -> float:
        return float(max(self.head_t.max(initial=0.0), self.tool_t.max(initial=0.0)))

    @staticmethod
    def _interp(ts: np.ndarray, vals: np.ndarray, t: float) -> np.ndarray:
        return np.stack([np.interp(t, ts, vals[:, k]) for k in range(vals.shape[1])])

    def head_pose(self, t_s: float) -> np.ndarray:
        """world_from_head at time ``t_s`` (smooth position, look-at orientation)."""
        pos = self._interp(self.head_t, self.head_pos, t_s)
        look = self._interp(self.head_t, self.head_look, t_s)
        return look_at_pose(pos, look)

    def tool_pose(self, t_s: float) -> np.ndarray | None:
        """world_from_tool (tip at origin, +z to the handle), or None without tool keys."""
        if len(self.tool_t) == 0:
            return None
        tip = self._interp(self.tool_t, self.tool_tip, t_s)
        toward = self._interp(self.tool_t, self.tool_toward, t_s)
        return pose_from_axis(tip, toward - tip)

    def trigger(self, t_s: float) -> float:
        if len(self.tool_t) == 0:
            return 0.0
        return float(np.interp(t_s, self.tool_t, self.tool_trigger))

    def actions_at(self, t_s: float) -> frozenset[str]:
        """The actions whose frame (at ``fps``) is the one at ``t_s``."""
        frame = int(round(t_s * self.fps))
        return frozenset(name for t, name in self.actions if int(round(t * self.fps)) == frame)


def eye_poses(world_from_head: np.ndarray, ipd_mm: float = 63.0) -> list[np.ndarray]:
    """Left and right eye poses: the head pose shifted half the IPD along its x axis."""
    out = []
    for sign in (-1.0, 1.0):
        m = world_from_head.copy()
        m[:3, 3] = world_from_head[:3, 3] + sign * (ipd_mm / 2.0) * world_from_head[:3, 0]
        out.append(m)
    return out


def blend(a: np.ndarray, b: np.ndarray, u: float) -> np.ndarray:
    return slerp_pose(a, b, u)
