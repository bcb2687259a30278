"""Recording a running session: what ``vr-trainer run`` writes into ``sessions/`` (or ``--record FILE``).

:class:`SessionRecorder` hooks into the frame loop in three places, none of which blocks a frame:
an input filter in phase 1 (round the frame to what is stored, :func:`~vr_trainer.session.format.quantize_frame`),
a clock wrapper (the clock value the simulate phase used), and a recorder in phase 6 (the frame,
what the mentor changed this frame, a metric sample every 0.25 s of simulation time); it is also a
notice sink (the scenario engine's notices). The writing itself is on the
:class:`~vr_trainer.session.writer.SessionWriter` thread.

The ``/session`` message holds the scenario text and sha256, the bundle's name and hashes (its
manifest and mesh files) and its de-identification status, never the manifest's provenance or
any other text that could name a patient.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vr_trainer import __version__
from vr_trainer.app.clock import Clock
from vr_trainer.app.loop import FrameLoop
from vr_trainer.app.training import ScenarioRules
from vr_trainer.frame import Frame
from vr_trainer.scenario.schema import Scenario
from vr_trainer.session.format import FORMAT, FORMAT_VERSION, METRIC_PERIOD_S, annotations_to_dict, quantize_frame
from vr_trainer.sim.simulation import SimState

if TYPE_CHECKING:  # the writer needs mcap (the `record` extra); this module does not
    from vr_trainer.session.writer import SessionWriter

SESSIONS_ENV = "VR_TRAINER_SESSIONS"  # where recordings go by default (else ./sessions)


def default_recording_path(scenario_id: str, now_unix_s: float | None = None) -> Path:
    """``sessions/<scenario>-<UTC timestamp>.mcap`` (the folder from ``$VR_TRAINER_SESSIONS`` if set)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now_unix_s))
    folder = Path(os.environ.get(SESSIONS_ENV) or "sessions")
    path = folder / f"{scenario_id}-{stamp}.mcap"
    k = 1
    while path.exists() or path.with_name(path.name + ".partial").exists():
        k += 1
        path = folder / f"{scenario_id}-{stamp}-{k}.mcap"
    return path


def bundle_fingerprint(bundle_dir: Path) -> dict[str, Any]:
    """The bundle's name, the sha256 of its manifest and of each mesh file it lists, and its
    de-identification status (no provenance: it may describe the source study)."""
    import json

    from vr_trainer.anatomy.bundle import sha256_file

    manifest_path = bundle_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    files = {}
    for st in manifest.get("structures", []):
        rel = st.get("file")
        if isinstance(rel, str) and (bundle_dir / rel).is_file():
            files[rel] = sha256_file(bundle_dir / rel)
    deid = manifest.get("deidentification")
    return {"name": bundle_dir.name, "manifest_sha256": sha256_file(manifest_path), "files": files,
            "deidentification_status": deid.get("status") if isinstance(deid, dict) else None}


def scenario_record(scenario: Scenario, scenario_path: Path) -> dict[str, Any]:
    """The scenario as recorded: its id, where it was read from, its text and the text's sha256."""
    import hashlib

    raw = scenario_path.read_bytes()
    return {"id": scenario.id, "path": str(scenario_path.resolve()), "sha256": hashlib.sha256(raw).hexdigest(),
            "text": raw.decode("utf-8")}


def session_header(scenario: Scenario, scenario_path: Path, bundle_dir: Path, loop: FrameLoop,
                   **facts: Any) -> dict[str, Any]:
    """The ``/session`` message. ``facts``: backend, eye_size, fps, msaa_samples, locale, autopilot ..."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "app_version": __version__,
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "scenario": scenario_record(scenario, scenario_path), "bundle": bundle_fingerprint(bundle_dir),
            "fixed_dt_s": loop.fixed_dt_s, "max_sim_steps_per_frame": loop.max_sim_steps_per_frame,
            "metric_period_s": METRIC_PERIOD_S,
            "patient_from_world": np.asarray(loop.simulation.patient_from_world, float).tolist(), **facts}


class RecordingClock:
    """Wraps the loop's clock and remembers the value it last handed out (the one the simulate
    phase used this frame)."""

    def __init__(self, inner: Clock) -> None:
        self.inner = inner
        self.last_s = 0.0

    def now_s(self) -> float:
        self.last_s = self.inner.now_s()
        return self.last_s


class SessionRecorder:
    """Feeds a :class:`SessionWriter` from a frame loop (see the module docstring)."""

    def __init__(self, writer: SessionWriter, rules: ScenarioRules | None) -> None:
        self.writer = writer
        self.rules = rules
        self.clock: RecordingClock | None = None
        self._ann_version = 0
        self._notes: list[tuple[str, str]] = []
        self._next_metrics_s = 0.0

    def attach(self, loop: FrameLoop) -> None:
        self.clock = RecordingClock(loop.clock)
        loop.clock = self.clock
        loop.input_filters.append(quantize_frame)
        loop.recorders.append(self.on_frame)
        loop.notice_sinks.append(self)

    def _now(self) -> float:
        return self.clock.last_s if self.clock is not None else 0.0

    def on_frame(self, state: SimState, frame: Frame) -> None:
        """Phase 6: the frame, what the mentor changed in it, and a metric sample when one is due."""
        w = self.writer
        w.frame(self._now(), frame)
        ann = state.annotations
        notes = state.mentor_notes
        if ann.version != self._ann_version or notes != self._notes:
            msg: dict[str, Any] = {"frame": frame.index, "time_s": state.time_s}
            if ann.version != self._ann_version:
                msg["annotations"] = annotations_to_dict(ann)
                self._ann_version = ann.version
            if notes != self._notes:
                msg["mentor_notes"] = [list(n) for n in notes]
                self._notes = list(notes)
            w.message("/inbox", self._now(), msg)
        if self.rules is not None and state.time_s >= self._next_metrics_s:
            self._next_metrics_s = next_sample_s(state.time_s, METRIC_PERIOD_S)
            w.message("/metrics", self._now(), metric_sample(self.rules, state, frame.index))

    def record_image(self, kind: str, time_s: float, png: bytes, **meta: Any) -> None:
        """A key image (a C-arm shot, the endoscope at fragment removal) into ``/images``; called from
        any thread (the writer's queue is thread safe), never blocks."""
        from vr_trainer.session.format import image_message

        self.writer.message("/images", self._now(), image_message(kind, time_s, png, **meta))

    def record_audio(self, message: dict[str, Any]) -> None:
        """A spoken prompt's clip (:func:`vr_trainer.app.speech.audio_message`) into ``/audio``; called
        from any thread, never blocks."""
        self.writer.message("/audio", self._now(), message)

    def publish_notice(self, notice: dict[str, Any]) -> None:
        """A :class:`~vr_trainer.app.bridge.NoticeSink`: every engine notice goes to ``/notices``."""
        self.writer.message("/notices", self._now(), notice)


def next_sample_s(time_s: float, period_s: float) -> float:
    """When the next metric sample is due: the next multiple of ``period_s`` after ``time_s`` (a
    fixed grid, so frames that do not divide the period do not stretch it)."""
    return (math.floor(time_s / period_s + 1e-9) + 1.0) * period_s


def metric_sample(rules: ScenarioRules, state: SimState, frame_index: int) -> dict[str, Any]:
    """One ``/metrics`` message: the live value of every metric, exact floats; a value not defined
    yet is the string ``"NaN"``, one never measured ``"Infinity"`` (plain JSON, which viewers read)."""
    values: dict[str, Any] = {}
    for name, v in rules.engine.live_metrics().items():
        values[name] = v if math.isfinite(v) else ("NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity"))
    sample: dict[str, Any] = {"frame": frame_index, "time_s": state.time_s, "step_index": state.step_index,
                              "values": values}
    obs = state.observation
    if obs is not None:  # for reports: where the tip was (world mm, 0.01) and how far each risk structure
        sample["instrument"] = obs.instrument_id
        if obs.tip_world_mm is not None:
            sample["tip_world_mm"] = [round(float(x), 2) for x in obs.tip_world_mm]
        risk = {}
        for r in rules.scenario.risk_structures:
            d = obs.structure_distance_mm.get(rules.structures.get(r.id, r.structure))
            if d is not None and math.isfinite(d):
                risk[r.id] = round(float(d), 2)
        sample["risk_distance_mm"] = risk
        sample["angles_deg"] = {k: round(float(v), 2) for k, v in obs.angles_deg.items() if math.isfinite(v)}
    return sample
