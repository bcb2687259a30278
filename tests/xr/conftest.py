"""A real OpenXR runtime for the tests: Monado (built by scripts/install_monado.sh)
with its simulated HMD and null compositor, over EGL, no display.

Every scenario runs in a child process under a hard timeout: a misconfigured
runtime can block in xrWaitFrame forever, and Monado is in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).with_name("xr_scenarios.py")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def monado_runtime_json() -> Path | None:
    """The cached Monado's runtime manifest, or None when it is not built."""
    try:
        r = subprocess.run([str(REPO / "scripts" / "install_monado.sh"), "--print"], capture_output=True, text=True,
                           timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines:
        return None
    path = Path(lines[-1])
    return path if path.is_file() else None


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("XR_", "XRT_", "SIMULATED_")) and k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


@pytest.fixture(scope="session")
def monado_env() -> dict[str, str]:
    """Environment for a child process that talks to Monado's simulated HMD."""
    runtime = monado_runtime_json()
    if runtime is None:
        reason = ("the Monado OpenXR runtime is not built: run scripts/install_monado.sh "
                  "(scripts/setup.sh test does it)")
        if IN_CI:
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)
    env = base_env()
    env.update(XR_RUNTIME_JSON=str(runtime), XRT_COMPOSITOR_NULL="1", SIMULATED_ENABLE="1",
               EGL_PLATFORM="surfaceless", PYOPENGL_PLATFORM="egl")
    return env


@pytest.fixture()
def no_runtime_env(tmp_path: Path) -> dict[str, str]:
    """Environment whose XR_RUNTIME_JSON names a file that does not exist."""
    env = base_env()
    env.update(XR_RUNTIME_JSON=str(tmp_path / "missing" / "openxr_runtime.json"), EGL_PLATFORM="surfaceless")
    return env


@pytest.fixture(scope="session")
def xr_scenario(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., dict[str, Any]]:
    """Run one scenario of xr_scenarios.py in a child process with a hard timeout; returns its JSON."""

    def run(name: str, *args: str, env: dict[str, str], timeout_s: float = 120.0) -> dict[str, Any]:
        out = tmp_path_factory.mktemp(name) / "result.json"
        try:
            proc = subprocess.run([sys.executable, str(SCENARIOS), name, str(out), *args], env=env,
                                  capture_output=True, text=True, timeout=timeout_s, cwd=REPO)
        except subprocess.TimeoutExpired as e:
            tail = (e.stderr or b"")[-3000:]
            pytest.fail(f"OpenXR scenario {name!r} hung (killed after {timeout_s:.0f} s); stderr tail:\n{tail!r}")
        if not out.is_file():
            pytest.fail(f"OpenXR scenario {name!r} died (exit {proc.returncode}); stderr tail:\n{proc.stderr[-3000:]}")
        result = json.loads(out.read_text())
        if not result.get("ok"):
            pytest.fail(f"OpenXR scenario {name!r} raised {result.get('exception')}\n{result.get('traceback')}\n"
                        f"stderr tail:\n{proc.stderr[-2000:]}")
        return result

    return run
