"""Replay in a desktop window (private Xvfb): Space pauses (the picture holds still), D steps, A
jumps back; watched to the end, the replay still has the recorded score and metrics."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import need
from vr_trainer.app.run import run_session

pytestmark = pytest.mark.gl


def _window_id(env: dict) -> str | None:
    out = subprocess.run(["xdotool", "search", "--name", "^vr-trainer$"], env=env, capture_output=True, text=True)
    ids = out.stdout.split()
    return ids[0] if ids else None


def _grab(display: str) -> np.ndarray:
    from PIL import ImageGrab

    return np.asarray(ImageGrab.grab(xdisplay=display).convert("RGB"))[:120, :320].astype(int)


@pytest.mark.timeout(300)
def test_pause_step_and_jump_back_keep_the_score(xvfb, tmp_path):
    need(shutil.which("xdotool") is not None, "xdotool not installed (apt-get install xdotool)")
    path = tmp_path / "demo.mcap"
    recorded = run_session(None, "headless", frames=240, size=(160, 120), record=path)
    env = {**os.environ, "DISPLAY": xvfb}
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "vr_trainer", "replay", str(path), "--backend", "desktop",
                             "--out", str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def key(name: str) -> None:  # held 0.15 s, as a person presses a key: the replay reads the key state per frame
        subprocess.run(["xdotool", "keydown", "--window", wid, name], env=env, check=True)
        time.sleep(0.15)
        subprocess.run(["xdotool", "keyup", "--window", wid, name], env=env, check=True)
        time.sleep(0.3)

    try:
        deadline = time.time() + 90
        wid = None
        while time.time() < deadline and wid is None:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            wid = _window_id(env)
            time.sleep(0.2)
        assert wid, "no replay window appeared"
        subprocess.run(["xdotool", "windowactivate", "--sync", wid], env=env, capture_output=True)
        time.sleep(1.0)
        key("space")
        still = _grab(xvfb)
        time.sleep(0.8)
        assert np.abs(_grab(xvfb) - still).max() == 0, "paused: the picture holds still"
        assert (still.sum(-1) > 150).mean() > 0.02, "the window shows the scene"
        for _ in range(3):
            key("d")
        key("a")  # 5 s back: rebuilt and run undrawn to there (the session build takes a few seconds)
        before = _grab(xvfb)
        for _ in range(60):  # resume once the window answers again, then watch to the end
            time.sleep(1.0)
            if proc.poll() is not None or np.abs(_grab(xvfb) - before).max() > 0:
                break  # the jump back is drawn: the replay is listening again
        key("space")
        rc = proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0, proc.stderr.read() if proc.stderr else ""
    s = json.loads((out / "summary.json").read_text())
    assert s["reached_end"] and s["jumps_back"] == 1
    assert s["matches_recording"] == {k: True for k in s["matches_recording"]}
    assert s["score"] == recorded["score"] and s["metrics"] == recorded["metrics"]
