"""The desktop backend in a real glfw window under a private Xvfb: the window shows the
anatomy, keyboard input moves the head, Esc closes it cleanly with outputs written."""

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

pytestmark = pytest.mark.gl


def _window_id(display: str) -> str | None:
    out = subprocess.run(["xdotool", "search", "--name", "^vr-trainer$"], env={**os.environ, "DISPLAY": display},
                         capture_output=True, text=True)
    ids = out.stdout.split()
    return ids[0] if ids else None


def _grab(display: str) -> np.ndarray:
    from PIL import ImageGrab

    return np.asarray(ImageGrab.grab(xdisplay=display).convert("RGB"))


def _non_background(img: np.ndarray) -> float:
    """Fraction of pixels that are clearly not the dark background (anatomy, panels)."""
    return float((img.astype(int).sum(-1) > 150).mean())


@pytest.mark.timeout(180)
def test_window_shows_anatomy_and_responds_to_keys(xvfb, tmp_path):
    need(shutil.which("xdotool") is not None, "xdotool not installed (apt-get install xdotool)")
    env = {**os.environ, "DISPLAY": xvfb}
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "vr_trainer", "run", "--backend", "desktop", "--size", "320x240",
                             "--out", str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 90
        wid = None
        while time.time() < deadline and wid is None:
            assert proc.poll() is None, proc.stderr.read()
            wid = _window_id(xvfb)
            time.sleep(0.3)
        assert wid, "no vr-trainer window appeared"
        time.sleep(2.0)
        geo = subprocess.run(["xdotool", "getwindowgeometry", wid], env=env, capture_output=True, text=True).stdout
        assert "640x240" in geo, geo  # side by side, two 320x240 eyes
        before = _grab(xvfb)[:240, :640]
        b = before.astype(int)
        bone = (b[..., 0] > 150) & (b[..., 1] > 140) & (b[..., 2] > 100)
        assert _non_background(before) > 0.02 and bone.mean() > 0.01, "the window shows the anatomy"
        left, right = before[:, :320].astype(int), before[:, 320:].astype(int)
        assert np.abs(left - right).mean() > 1.0, "the two eyes differ"
        subprocess.run(["xdotool", "windowactivate", "--sync", wid], env=env, capture_output=True)
        subprocess.run(["xdotool", "keydown", "--window", wid, "s"], env=env, check=True)
        time.sleep(1.0)
        subprocess.run(["xdotool", "keyup", "--window", wid, "s"], env=env, check=True)
        time.sleep(0.5)
        after = _grab(xvfb)[:240, :640]
        assert np.abs(after.astype(int) - before.astype(int)).mean() > 2.0, "S moved the head back"
        subprocess.run(["xdotool", "key", "--window", wid, "Escape"], env=env, check=True)
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read()
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backend"] == "desktop" and summary["frames"] > 10
    assert (out / "eye0.png").is_file() and (out / "mirror.png").is_file()
