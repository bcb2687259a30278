"""Fixtures for the remote-mentoring tests: a server, a real frame loop (EGL), bridges.

Network tests carry hard timeouts (pytest-timeout) and every wait inside has its own
deadline. All WebRTC traffic stays on 127.0.0.1."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from remote_helpers import start_loop


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

    with ExitStack() as stack:
        def make(loop_thread: Any, session: str, **cfg: Any) -> Any:
            loop_thread.call(lambda loop: loop.state.annotations.clear())
            config = BridgeConfig(ice=IceOptions(loopback_only=True), audio="none", **cfg)
            bridge = stack.enter_context(TraineeBridge(server.url, signer.issue(session, "trainee", "resident"),
                                                       config))
            loop_thread.call(lambda loop: bridge.attach(loop), timeout_s=15)
            assert bridge.session_id == session
            return bridge

        yield make
