"""Fixtures for the remote-mentoring tests: a server, a real frame loop (EGL), bridges.

Network tests carry hard timeouts (pytest-timeout) and every wait inside has its own
deadline. All WebRTC traffic stays on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable, Iterator
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


@pytest.fixture(scope="session")
def signer() -> Any:
    from remote.tokens import TokenSigner

    return TokenSigner(secrets.token_bytes(32))


@pytest.fixture(scope="module")
def server(signer: Any) -> Iterator[Any]:
    from remote.server import ServerConfig, ServerThread

    srv = ServerThread(signer, ServerConfig(port=0)).start()
    yield srv
    srv.stop()


def start_loop(**kw: Any) -> Any:
    from remote.harness import LoopThread
    from vr_trainer.xr.base import BackendError

    try:
        return LoopThread(**kw).start()
    except RuntimeError as e:
        if isinstance(e.__cause__, BackendError):
            need(False, f"no EGL context: {e.__cause__}")
        raise


@pytest.fixture(scope="module")
def board_loop() -> Iterator[Any]:
    """A board facing the viewer, 320x240 per eye side by side (640x240 mirror), 30 fps."""
    lt = start_loop(eye_size=(320, 240), fps=30.0)
    yield lt
    lt.stop()


@pytest.fixture
def make_bridge(signer: Any, server: Any) -> Iterator[Callable[..., Any]]:
    """Attach a TraineeBridge to a loop for one test; closed afterwards."""
    from remote.peer import IceOptions
    from remote.trainee import BridgeConfig, TraineeBridge

    made: list[Any] = []

    def make(loop_thread: Any, session: str, **cfg: Any) -> Any:
        loop_thread.call(lambda loop: loop.state.annotations.clear())
        config = BridgeConfig(ice=IceOptions(loopback_only=True), audio="none", **cfg)
        bridge = TraineeBridge(server.url, signer.issue(session, "trainee", "resident"), config)
        loop_thread.call(lambda loop: bridge.attach(loop), timeout_s=15)
        made.append(bridge)
        assert bridge.session_id == session
        return bridge

    yield make
    for b in made:
        b.close()
