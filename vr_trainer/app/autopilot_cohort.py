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
from vr_trainer.procedures.reach import PlanningContext
from vr_trainer.scenario.schema import Scenario
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
    shared: list[PlanningContext] = []
    return [run_autopilot_unrendered(scenario_file, "novice", a.skill, a.seed, a.path, a.resident, size,
                                     scenario=scenario, shared_ctx=shared) for a in attempts]


def run_autopilot_unrendered(scenario_path: str | Path, mode: str = "expert", skill: float | None = None,
                             seed: int = 0, record: Path | None = None, resident: str | None = None,
                             size: tuple[int, int] = (32, 24), scenario: Scenario | None = None,
                             shared_ctx: list[PlanningContext] | None = None) -> dict[str, Any]:
    """One autopilot attempt as ``vr-trainer run SCENARIO --autopilot MODE [--autopilot-skill S]
    --seed N [--record FILE]`` runs it (same plan, frame loop, engine, score and recording), with
    nothing drawn. ``shared_ctx`` (a list, filled on first use) shares the planner's context
    between attempts on one scenario."""
    scenario_file = Path(scenario_path)
    if scenario is None:
        scenario = load_validated_scenario(scenario_file)
    scene, _meshes = build_session(scenario)
    if shared_ctx is None:
        shared_ctx = []
    if not shared_ctx:
        shared_ctx.append(planning_context(scene))
    plan = autopilot_plan(shared_ctx[0], mode, skill, seed)
    scene.track = plan_to_track(plan, scene.world_from_patient, scene.track)
    backend = HeadlessBackend(scene.track, size)
    backend.open()
    recorder = None
    try:
        loop = scene.frame_loop(backend, None, None, FakeClock(0.0, 1.0 / scene.track.fps))  # type: ignore[arg-type]
        loop.snapshot_fn = lambda state, frame: SceneSnapshot(state.time_s, frame.index, (), (), state.annotations)
        if record is not None:
            recorder = start_recording(record, scenario, scenario_file, scene, loop, backend.name, size, 0, None,
                                       plan, mode, skill, seed, resident)
        n = loop.run()
        summary: dict[str, Any] = {"backend": backend.name, "scenario": scenario.id, "frames": n,
                                   "rendered": False, "steps_completed": list(loop.state.completed_steps),
                                   "autopilot": plan.summary(), "resident": resident}
        if scene.rules is not None:
            summary.update(scene.rules.engine.result().to_summary())
        if recorder is not None:
            summary["recording"] = str(recorder.writer.close(summary))
        return summary
    finally:
        if recorder is not None:
            recorder.writer.close()
        backend.close()
