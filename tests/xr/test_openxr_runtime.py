"""The OpenXR backend against a real runtime: Monado's simulated HMD, null compositor, EGL.

Each test runs its scenario in a child process with a hard timeout (see conftest.py),
and carries a pytest-timeout above that as a second guard.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.xr


@pytest.fixture(scope="module")
def frames_result(monado_env, xr_scenario):
    return xr_scenario("frames", "120", env=monado_env, timeout_s=150)


@pytest.mark.timeout(200)
def test_runs_over_100_frames_on_the_simulated_hmd(frames_result):
    r = frames_result
    info = r["info"]
    assert r["frames"] == 120
    assert r["rendered"] >= 100, r["states"][:10]
    assert info["frames_submitted"] == r["rendered"]
    assert info["system"] == "Monado: Simulated HMD"
    assert "Monado" in info["runtime"]
    assert info["graphics_binding"] == "egl"
    assert info["reference_space"] == "STAGE"
    assert info["swapchain_format"] in ("GL_SRGB8_ALPHA8", "GL_SRGB8")
    assert info["swapchain_size"] == [320, 240]  # what the null compositor recommends
    assert info["depth_layer"] is not None  # XR_KHR_composition_layer_depth is offered and used
    assert r["gl_error"] == "GL_NO_ERROR"


@pytest.mark.timeout(200)
def test_frames_come_at_the_runtime_pace(frames_result):
    r = frames_result
    period_ms = r["info"]["display_period_ms"]
    assert period_ms == pytest.approx(50.0, abs=1.0)  # the null compositor's fixed 20 Hz
    t = np.array(r["display_times_s"])
    gaps_ms = np.diff(t) * 1000.0
    assert np.all(gaps_ms > 0), "predicted display times must increase"
    assert np.median(gaps_ms) == pytest.approx(period_ms, rel=0.05)
    assert r["wall_s"] > 0.8 * len(t) * period_ms / 1000.0, "frames came faster than the display"


@pytest.mark.timeout(200)
def test_swapchain_readback_shows_what_each_eye_drew(frames_result):
    """Eye 0 cleared red, eye 1 blue, a green triangle in the top half of each; top row first."""
    eyes = frames_result["eyes"]
    assert frames_result["eye_shapes"] == [[240, 320, 3], [240, 320, 3]]
    # bottom quarter: the eye's clear colour, stored as written (no sRGB re-encoding)
    assert eyes[0]["bottom"] == pytest.approx([204, 26, 26], abs=2)
    assert eyes[1]["bottom"] == pytest.approx([26, 51, 230], abs=2)
    for e, clear in zip(eyes, ([204, 26, 26], [26, 51, 230])):  # the triangle is in the upper half
        assert e["at_ndc_0_0.4"] == pytest.approx([26, 230, 51], abs=2)
        assert e["at_ndc_0_-0.4"] == pytest.approx(clear, abs=2)


@pytest.mark.timeout(200)
def test_session_walks_through_the_states_and_ends_cleanly(frames_result):
    info = frames_result["info"]
    states = info["session_states"]
    for s in ("READY", "SYNCHRONIZED", "VISIBLE", "FOCUSED", "STOPPING", "IDLE", "EXITING"):
        assert s in states, states
    assert states.index("READY") < states.index("FOCUSED") < states.index("STOPPING") < states.index("EXITING")
    assert frames_result["info_after_close"]["end_reason"] == "exit requested by the app"
    focused = [s for s in frames_result["states"] if s[0] == "FOCUSED"]
    assert focused and all(f[1] for f in focused), "input is focused while the session is FOCUSED"


@pytest.mark.timeout(200)
def test_actions_bindings_poses_and_haptics_with_simulated_controllers(monado_env, xr_scenario):
    env = dict(monado_env, SIMULATED_LEFT="wmr", SIMULATED_RIGHT="simple")
    r = xr_scenario("actions", "30", env=env, timeout_s=120)
    assert r["profiles_rejected"] == {}
    assert len(r["profiles_accepted"]) == 5
    assert r["hands"], "no focused frame"
    left, right = (np.array(p) for p in r["hands"][-1])
    # Monado places the simulated controllers at (-0.2, 1.3, -0.5) and (0.2, 1.3, -0.5) m in STAGE
    np.testing.assert_allclose(left[:3, 3], [-200.0, 1300.0, -500.0], atol=5.0)
    np.testing.assert_allclose(right[:3, 3], [200.0, 1300.0, -500.0], atol=5.0)
    np.testing.assert_allclose(left[:3, :3] @ left[:3, :3].T, np.eye(3), atol=1e-5)
    assert all(a is not None for a in r["last"]["aims"])
    assert r["haptics_sent"] >= 10, "xrApplyHapticFeedback refused"
    assert r["last"]["trigger"] == [0.0, 0.0]


@pytest.mark.timeout(200)
def test_poses_are_cleanly_invalid_without_controllers(monado_env, xr_scenario):
    r = xr_scenario("actions", "15", env=monado_env, timeout_s=120)
    assert len(r["profiles_accepted"]) == 5
    assert r["hands"], "no focused frame"
    assert all(h == [None, None] for h in r["hands"])
    assert r["last"]["aims"] == [None, None]
    assert r["info"]["frames_submitted"] >= 10  # haptic pulses to absent controllers did not disturb the loop


@pytest.mark.timeout(200)
def test_exit_request_goes_through_the_runtime_and_ends_the_frames(monado_env, xr_scenario):
    r = xr_scenario("exit", "20", env=monado_env, timeout_s=120)
    assert not r.get("runaway"), "frames() did not end after xrRequestExitSession"
    seen = r["seen"]
    states = r["info"]["session_states"]
    assert states[-3:] == ["STOPPING", "IDLE", "EXITING"], states
    assert r["info"]["end_reason"] == "exit requested by the app"
    last = seen[-1][0]
    assert 20 <= last <= 30, "the runtime winds down within a few frames"
    after = [s for s in seen if s[0] > 20]
    # focus is lost on the way out: frames after the request that are not FOCUSED report focused=False
    assert all(not s[2] for s in after if s[1] != "FOCUSED")
    assert r["close_s"] < 5.0


@pytest.mark.timeout(200)
def test_glx_binding_when_there_is_a_display(monado_env, xr_scenario, xvfb):
    """With DISPLAY set the backend binds through GLX (what SteamVR and Monado on a desktop use)."""
    env = dict(monado_env, DISPLAY=xvfb)
    r = xr_scenario("frames", "30", env=env, timeout_s=120)
    assert r["info"]["graphics_binding"] == "glx"
    assert r["rendered"] >= 25
    assert r["eyes"][0]["at_ndc_0_-0.4"] == pytest.approx([204, 26, 26], abs=2)
    assert r["eyes"][1]["at_ndc_0_0.4"] == pytest.approx([26, 230, 51], abs=2)


def _anatomy_in_both_eyes_and_stereo(eyes: list[dict]) -> None:
    for k, e in enumerate(eyes):
        assert e["warm_px"] > 100, f"eye {k} shows no anatomy: {e}"
    # an object in front of the viewer sits further right in the left eye than in the right eye
    disparity_px = eyes[0]["centroid_x"] - eyes[1]["centroid_x"]
    assert disparity_px > 2.0, eyes


@pytest.mark.timeout(300)
def test_default_scene_renders_into_both_swapchains(monado_env, xr_scenario, tmp_path):
    r = xr_scenario("scene", "40", str(tmp_path), env=monado_env, timeout_s=240)
    assert r["frames"] == 40
    assert r["gl_error"] == "GL_NO_ERROR"
    assert r["info"]["frames_submitted"] >= 35
    # the simulated HMD cannot look down at the patient: its first pose is mapped onto the scenario's
    assert r["info"]["alignment"] == "full"
    _anatomy_in_both_eyes_and_stereo(r["eyes"])
    assert r["eye_diff"] > 0.5


@pytest.mark.timeout(400)
def test_cli_run_backend_openxr_writes_eyes_and_summary(monado_env, tmp_path):
    """`vr-trainer run --backend openxr --frames N --out DIR`: the headless backend's files, from the swapchains."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from PIL import Image

    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "vr_trainer", "run", "--backend", "openxr", "--frames", "30",
                        "--out", str(out)], env=monado_env, capture_output=True, text=True, timeout=360,
                       cwd=Path(__file__).resolve().parents[2])
    assert p.returncode == 0, p.stderr[-3000:]
    for name in ("eye0.png", "eye1.png", "mirror.png", "summary.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backend"] == "openxr" and summary["frames"] == 30
    assert "Monado" in summary["runtime"]
    assert summary["display_period_ms"] == pytest.approx(50.0, abs=1.0)
    import importlib.util

    spec = importlib.util.spec_from_file_location("xr_scenarios", Path(__file__).with_name("xr_scenarios.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    eyes = [mod.anatomy_stats(np.asarray(Image.open(out / f"eye{k}.png").convert("RGB"))) for k in (0, 1)]
    assert [Image.open(out / f"eye{k}.png").size for k in (0, 1)] == [tuple(summary["swapchain_size"])] * 2
    _anatomy_in_both_eyes_and_stereo(eyes)
