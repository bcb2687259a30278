"""The OpenXR backend's runtime-free pieces: units, placement in the world, pacing, timeouts."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest

from vr_trainer.sim.transforms import look_at_pose
from vr_trainer.xr.base import BackendError
from vr_trainer.bench.openxr import pacing
from vr_trainer.xr.openxr_support import BINDINGS, FrameWaiter, align_world_from_tracking, pose_matrix_mm


def xr_pose(q_xyzw: tuple[float, float, float, float], p_m: tuple[float, float, float]) -> SimpleNamespace:
    x, y, z, w = q_xyzw
    return SimpleNamespace(orientation=SimpleNamespace(x=x, y=y, z=z, w=w),
                           position=SimpleNamespace(x=p_m[0], y=p_m[1], z=p_m[2]))


def test_pose_metres_become_millimetres_and_quaternions_rotate_right_handed():
    s = np.sqrt(0.5)
    m = pose_matrix_mm(xr_pose((0.0, s, 0.0, s), (0.1, 1.6, -0.25)))  # 90 deg about +y
    np.testing.assert_allclose(m[:3, 3], [100.0, 1600.0, -250.0])
    np.testing.assert_allclose(m[:3, :3] @ [0, 0, -1], [-1, 0, 0], atol=1e-12)  # forward turns to -x
    np.testing.assert_allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-12)


def test_yaw_alignment_keeps_the_floor_level_and_the_users_height():
    scenario_head = look_at_pose(np.array([-160.0, 1480.0, 560.0]), np.array([0.0, 950.0, 0.0]))
    tracked = pose_matrix_mm(xr_pose((0.0, 0.0, 0.0, 1.0), (0.3, 1.72, 0.4)))  # a tall user, looking along -z
    w = align_world_from_tracking(scenario_head, tracked, "yaw", keep_height=True)
    np.testing.assert_allclose(w[:3, 1], [0, 1, 0], atol=1e-12)  # no pitch or roll
    head = w @ tracked
    np.testing.assert_allclose(head[[0, 2], 3], scenario_head[[0, 2], 3], atol=1e-9)
    assert head[1, 3] == pytest.approx(1720.0)  # their own eye height
    fwd_w, fwd_s = -head[:3, 2], -scenario_head[:3, 2]
    assert np.arctan2(fwd_w[0], fwd_w[2]) == pytest.approx(np.arctan2(fwd_s[0], fwd_s[2]))


def test_full_alignment_puts_the_tracked_head_exactly_on_the_scenario_head():
    scenario_head = look_at_pose(np.array([-160.0, 1480.0, 560.0]), np.array([0.0, 950.0, 0.0]))
    tracked = pose_matrix_mm(xr_pose((0.0, 0.0, 0.0, 1.0), (0.0, 1.6, 0.0)))
    w = align_world_from_tracking(scenario_head, tracked, "full", keep_height=True)
    np.testing.assert_allclose(w @ tracked, scenario_head, atol=1e-9)


def test_pacing_counts_late_frames_against_the_display_period():
    t = np.arange(10) * 0.05
    assert pacing(t, 0.05)["frames_missed"] == 0
    late = np.concatenate([t[:5], t[5:] + 0.05])  # one refresh skipped
    r = pacing(late, 0.05)
    assert r["frames_missed"] == 1 and r["periods_missed"] == 1 and r["gap_ms_max"] == pytest.approx(100.0)


def test_every_profile_binds_poses_trigger_button_and_haptics_on_both_hands():
    for profile, table in BINDINGS.items():
        assert {"grip_pose", "aim_pose", "trigger", "primary", "haptic"} <= set(table), profile
        for comp in table.values():
            if isinstance(comp, dict):
                assert set(comp) == {"left", "right"}


@pytest.mark.timeout(30)
def test_frame_waiter_gives_up_on_a_hung_runtime():
    waiter = FrameWaiter(lambda session: time.sleep(60))
    t0 = time.perf_counter()
    with pytest.raises(BackendError, match="delivered no frame"):
        waiter.wait(object(), timeout_s=0.3)
    assert time.perf_counter() - t0 < 2.0
    with pytest.raises(BackendError):  # and stays given up
        waiter.wait(object(), timeout_s=0.3)
    waiter.stop()


def test_frame_waiter_passes_results_and_errors_through():
    waiter = FrameWaiter(lambda session: session * 2)
    assert waiter.wait(21, timeout_s=5.0) == 42
    waiter.stop()
    failing = FrameWaiter(lambda session: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing.wait(1, timeout_s=5.0)
    failing.stop()
