"""Without an OpenXR runtime: one clear line, and `--backend auto` falls through quietly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_open_without_a_runtime_says_what_to_install(no_runtime_env, xr_scenario):
    r = xr_scenario("no_runtime", env=no_runtime_env, timeout_s=60)
    assert r["available"] is False
    assert r["available_s"] < 5.0
    msg = r["error"]
    assert msg is not None and "\n" not in msg
    for word in ("OpenXR runtime", "SteamVR", "Monado", "--backend desktop"):
        assert word in msg, msg


@pytest.mark.timeout(180)
def test_cli_backend_openxr_without_a_runtime_exits_with_one_line(no_runtime_env, tmp_path):
    p = subprocess.run([sys.executable, "-m", "vr_trainer", "run", "--backend", "openxr", "--frames", "2",
                        "--out", str(tmp_path / "out")], env=no_runtime_env, capture_output=True, text=True,
                       timeout=150, cwd=REPO)
    assert p.returncode != 0
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr  # the loader's own complaint is silenced
    assert "SteamVR" in lines[0] and "--backend desktop" in lines[0]
    assert not (tmp_path / "out" / "summary.json").exists()
