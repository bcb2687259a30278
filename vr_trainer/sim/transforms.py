"""4x4 rigid transforms and camera matrices (millimetres, right-handed, radians)."""

from __future__ import annotations

import numpy as np


def translation(t_mm: np.ndarray | list[float]) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = np.asarray(t_mm, dtype=float)
    return m


def look_at_pose(eye_mm: np.ndarray, target_mm: np.ndarray, up: np.ndarray | None = None) -> np.ndarray:
    """world_from_eye for a camera at ``eye_mm`` looking at ``target_mm`` (-z forward, +y up)."""
    eye = np.asarray(eye_mm, dtype=float)
    fwd = np.asarray(target_mm, dtype=float) - eye
    n = np.linalg.norm(fwd)
    if n < 1e-9:
        raise ValueError("look_at: eye and target coincide")
    fwd /= n
    up_v = np.array([0.0, 1.0, 0.0]) if up is None else np.asarray(up, dtype=float)
    right = np.cross(fwd, up_v)
    if np.linalg.norm(right) < 1e-6:  # looking straight up or down
        right = np.cross(fwd, np.array([0.0, 0.0, -1.0]))
    right /= np.linalg.norm(right)
    true_up = np.cross(right, fwd)
    m = np.eye(4)
    m[:3, 0] = right
    m[:3, 1] = true_up
    m[:3, 2] = -fwd
    m[:3, 3] = eye
    return m


def pose_from_axis(origin_mm: np.ndarray, z_axis: np.ndarray, up_hint: np.ndarray | None = None) -> np.ndarray:
    """A pose whose +z axis points along ``z_axis`` (unit not required) at ``origin_mm``."""
    z = np.asarray(z_axis, dtype=float)
    z = z / np.linalg.norm(z)
    hint = np.array([0.0, 1.0, 0.0]) if up_hint is None else np.asarray(up_hint, dtype=float)
    if abs(float(np.dot(hint, z))) > 0.99:
        hint = np.array([1.0, 0.0, 0.0])
    x = np.cross(hint, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, y, z, np.asarray(origin_mm, dtype=float)
    return m


def rigid_inverse(m: np.ndarray) -> np.ndarray:
    inv = np.eye(4)
    r = m[:3, :3]
    inv[:3, :3] = r.T
    inv[:3, 3] = -r.T @ m[:3, 3]
    return inv


def projection_from_fov(angle_left: float, angle_right: float, angle_up: float, angle_down: float,
                        near_mm: float, far_mm: float) -> np.ndarray:
    """OpenGL clip-from-view for an asymmetric field of view (OpenXR angles, radians)."""
    left, right = np.tan(angle_left) * near_mm, np.tan(angle_right) * near_mm
    u, d = np.tan(angle_up) * near_mm, np.tan(angle_down) * near_mm
    m = np.zeros((4, 4))
    m[0, 0] = 2 * near_mm / (right - left)
    m[0, 2] = (right + left) / (right - left)
    m[1, 1] = 2 * near_mm / (u - d)
    m[1, 2] = (u + d) / (u - d)
    m[2, 2] = -(far_mm + near_mm) / (far_mm - near_mm)
    m[2, 3] = -2 * far_mm * near_mm / (far_mm - near_mm)
    m[3, 2] = -1.0
    return m


def slerp_pose(a: np.ndarray, b: np.ndarray, u: float) -> np.ndarray:
    """Interpolate two rigid poses: linear position, spherical rotation."""
    from scipy.spatial.transform import Rotation, Slerp

    rots = Rotation.from_matrix(np.stack([a[:3, :3], b[:3, :3]]))
    m = np.eye(4)
    m[:3, :3] = Slerp([0.0, 1.0], rots)([u]).as_matrix()[0]
    m[:3, 3] = (1 - u) * a[:3, 3] + u * b[:3, 3]
    return m
