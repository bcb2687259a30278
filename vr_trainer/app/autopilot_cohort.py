"""Seeded autopilot attempts, recorded, for a cohort: many runs of one scenario, fast.

Each attempt is what ``vr-trainer run SCENARIO --autopilot novice --autopilot-skill S --seed N
--resident ID --record FILE`` records (same header, inputs, engine, score), with two savings
for many attempts: the planner's context (the bundle's proximity field and expert routes, which
do not depend on skill or seed) is built once and shared, and nothing is drawn (the frame
loop simulates and scores; the recorded frames replay and render like any other). Used by the
cohort tests and to make demonstration cohorts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from vr_trainer.app.autopilot import planning_context, plan_to_track
from vr_trainer.app.clock import FakeClock
from vr_trainer.app.run import start_recording
from vr_trainer.app.session import build_session
from vr_trainer.procedures.autopilot import autopilot_plan
from vr_trainer.scenario.validate import load_validated_scenario
from vr_trainer.sim.scene import SceneSnapshot
from vr_trainer.xr.headless import HeadlessBackend


@dataclass(frozen=True)
class AutopilotAttempt:
    """One attempt: who, how skilled (0 novice-sized errors .. 1 expert), which seed, where to record."""

    resident: str | None
    skill: float
    seed: int
    path: Path


def record_autopilot_attempts(scenario_path: str | Path, attempts: Sequence[AutopilotAttempt],
                              size: tuple[int, int] = (32, 24)) -> list[dict[str, Any]]:
    """Run and record ``attempts`` in order; returns each run's summary (score, passed, metrics ...)."""
    scenario_file = Path(scenario_path)
    scenario = load_validated_scenario(scenario_file)
    shared_ctx = None
    out: list[dict[str, Any]] = []
    for a in attempts:
        scene, _meshes = build_session(scenario)
        if shared_ctx is None:
            shared_ctx = planning_context(scene)
        plan = autopilot_plan(shared_ctx, "novice", a.skill, a.seed)
        scene.track = plan_to_track(plan, scene.world_from_patient, scene.track)
        backend = HeadlessBackend(scene.track, size)
        backend.open()
        recorder = None
        try:
            loop = scene.frame_loop(backend, None, None, FakeClock(0.0, 1.0 / scene.track.fps))  # type: ignore[arg-type]
            loop.snapshot_fn = lambda state, frame: SceneSnapshot(state.time_s, frame.index, (), (), state.annotations)
            recorder = start_recording(a.path, scenario, scenario_file, scene, loop, backend.name, size, 0, None,
                                       plan, "novice", a.skill, a.seed, a.resident)
            n = loop.run()
            summary: dict[str, Any] = {"backend": backend.name, "scenario": scenario.id, "frames": n,
                                       "rendered": False, "steps_completed": list(loop.state.completed_steps),
                                       "autopilot": plan.summary(), "resident": a.resident}
            if scene.rules is not None:
                summary.update(scene.rules.engine.result().to_summary())
            w = recorder.writer
            summary["recording"] = str(w.close(summary))
            out.append(summary)
        finally:
            if recorder is not None:
                recorder.writer.close()
            backend.close()
    return out
