"""A recorded headless session a test can drive frame by frame, with a mentor inbox."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest


@dataclass
class MentoredSession:
    scene: Any  # SessionScene
    backend: Any  # HeadlessBackend
    loop: Any  # FrameLoop
    inbox: Any  # ThreadSafeInbox the test puts mentor changes into
    recorder: Any


@contextmanager
def _mentored_session(path: Path, scenario_file: Path, size: tuple[int, int], frames: int) -> Iterator[MentoredSession]:
    """The scenario's demo track on the headless backend (``frames`` frames, fake clock), recorded to
    ``path``; the backend is closed on leaving."""
    from vr_trainer.app.bridge import ThreadSafeInbox
    from vr_trainer.app.clock import FakeClock
    from vr_trainer.app.run import start_recording
    from vr_trainer.app.session import build_session
    from vr_trainer.render.renderer import SceneRenderer
    from vr_trainer.scenario.validate import load_validated_scenario
    from vr_trainer.xr.headless import HeadlessBackend

    scenario = load_validated_scenario(scenario_file)
    scene, meshes = build_session(scenario)
    backend = HeadlessBackend(scene.track, size=size, frames=frames)
    ctx = backend.open()
    try:
        renderer = SceneRenderer(ctx)
        scene.upload(renderer, meshes)
        loop = scene.frame_loop(backend, renderer, None, FakeClock(0.0, 1.0 / scene.track.fps))
        inbox = ThreadSafeInbox()
        loop.inboxes.append(inbox)
        recorder = start_recording(path, scenario, scenario_file, scene, loop, backend.name, size, renderer.samples,
                                   None, None, None, None, 0)
        yield MentoredSession(scene, backend, loop, inbox, recorder)
    finally:
        backend.close()


@pytest.fixture
def mentored_session():
    """:func:`_mentored_session`, as ``with mentored_session(path, scenario_file, size, frames) as s:``."""
    return _mentored_session
