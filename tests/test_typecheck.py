"""mypy over the packages: type errors are caught in CI, not by a resident mid-session."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(600)
def test_mypy_is_clean():
    p = subprocess.run([sys.executable, "-m", "mypy", "vr_trainer", "remote"], cwd=REPO, capture_output=True,
                       text=True, timeout=580)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
