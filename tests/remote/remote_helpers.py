"""Helpers shared by the remote tests (imported by name; conftest only holds fixtures)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import numpy as np
import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, reason: str) -> None:
    """Skip outside CI; in CI a missing part is a failure (an install step is missing)."""
    if not condition:
        if IN_CI:
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


def run(coro: Any, timeout_s: float = 60.0) -> Any:
    """Run a coroutine with a hard deadline."""
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


def green_mask(img: np.ndarray) -> np.ndarray:
    """Pixels of the (0, 1, 0) test stroke: bright green, well above red and blue."""
    i = img.astype(np.int32)
    r, g, b = i[..., 0], i[..., 1], i[..., 2]
    return (g > 140) & (g - r > 70) & (g - b > 70)


def start_loop(**kw: Any) -> Any:
    from vr_trainer.app.live import LoopThread
    from vr_trainer.xr.base import BackendError

    try:
        return LoopThread(**kw).start()
    except RuntimeError as e:
        if isinstance(e.__cause__, BackendError):
            need(False, f"no EGL context: {e.__cause__}")
        raise
