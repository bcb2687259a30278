"""`vr-trainer replay FILE`: the recorded inputs through the same frame loop and scenario engine.

:class:`ReplayBackend` yields the recorded frames (views, hands, keys) and sets
:class:`ReplayClock` to the clock value the loop read in each of them, so the fixed-step
accumulator takes the same steps; :class:`ReplayInbox` re-applies the mentor's annotations and
notes at the frame they arrived. The session is rebuilt from the scenario text stored in the
recording. With ``--no-render`` no GL context is made (the loop simulates and scores only).
The frames are streamed from the file as the loop runs them (a first pass reads the header, the
mentor's changes and the metric samples and checks for damage, keeping no frame), so memory does
not grow with the session's length.

A scenario file on disk that differs from the recorded one is reported (the replay uses the
recorded text). A bundle that differs from the recorded hashes is refused: the replay would
run the recorded hands against other anatomy and could not reproduce the score; pass
``--allow-changed-bundle`` to replay anyway (the summary then lists the differences).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from vr_trainer.app.recording import bundle_fingerprint, metric_sample, next_sample_s
from vr_trainer.frame import Frame, View
from vr_trainer.scenario.loader import REPO_ROOT, load_scenario_checked, resolve_bundle_path
from vr_trainer.scenario.schema import Scenario
from vr_trainer.session.format import apply_annotations
from vr_trainer.session.reader import Recording, RecordingError, read_for
from vr_trainer.xr.base import DisplayBackend

COMPARED = ("score", "passed", "metrics", "steps", "events", "critical_errors")


class ReplayClock:
    """Returns the clock value recorded for the frame being replayed (set by the backend)."""

    def __init__(self) -> None:
        self.value_s = 0.0

    def now_s(self) -> float:
        return self.value_s


class ReplayBackend(DisplayBackend):
    """The recorded frames as a display backend; renders offscreen (EGL) when ``render``."""

    name = "replay"

    def __init__(self, recording: Recording, clock: ReplayClock, render: bool = False,
                 speed: float | None = None) -> None:
        self.recording = recording
        self.clock = clock
        self.render = render
        self.speed = speed
        self.current_index = -1
        self.haptics = 0
        self.ctx: Any = None
        self._fbos: dict[int, Any] = {}

    def open(self) -> Any:
        if not self.render:
            return None
        import os

        from vr_trainer.xr.headless import create_egl_context

        os.environ.setdefault("EGL_PLATFORM", "surfaceless")
        self.ctx = create_egl_context()
        return self.ctx

    def frames(self) -> Iterator[Frame]:
        """The recorded frames in order, streamed from the file when the recording was read without
        keeping them (:func:`~vr_trainer.session.reader.read_recording` ``frames=False``)."""
        start = time.perf_counter()
        t0: float | None = None
        for rf in self.recording.iter_frames():
            if t0 is None:
                t0 = rf.clock_s
            if self.speed:
                delay = start + (rf.clock_s - t0) / self.speed - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            self.clock.value_s = rf.clock_s
            self.current_index = rf.frame.index
            f = rf.frame
            if not self.render:
                f.should_render = False
            yield f

    def render_target(self, view: View) -> Any:
        fbo = self._fbos.get(view.eye_index)
        if fbo is None or fbo.size != (view.width, view.height):
            size = (view.width, view.height)
            fbo = self.ctx.framebuffer(color_attachments=[self.ctx.texture(size, 4)],
                                       depth_attachment=self.ctx.depth_renderbuffer(size))
            self._fbos[view.eye_index] = fbo
        return fbo

    def end_frame(self, frame: Frame) -> None:
        pass

    def haptic_pulse(self, hand: int, amplitude: float, duration_s: float, frequency_hz: float = 0.0) -> None:
        self.haptics += 1

    def eye_images(self) -> list[np.ndarray]:
        from vr_trainer.xr.base import read_rgb

        return [read_rgb(self._fbos[k]) for k in sorted(self._fbos)]

    def close(self) -> None:
        for f in self._fbos.values():
            f.release()
        self._fbos = {}
        if self.ctx is not None:
            self.ctx.release()
            self.ctx = None


class ReplayInbox:
    """Re-applies, in phase 2 of the frame it was recorded in, what the mentor changed."""

    def __init__(self, recording: Recording, backend: ReplayBackend) -> None:
        self.by_frame = recording.inbox
        self.backend = backend

    def drain(self) -> list[Any]:
        change = self.by_frame.get(self.backend.current_index)
        if change is None:
            return []

        def apply(loop: Any) -> None:
            if "annotations" in change:
                apply_annotations(loop.annotations, change["annotations"])
            if "mentor_notes" in change:
                loop.state.mentor_notes[:] = [tuple(n) for n in change["mentor_notes"]]
        return [apply]


def recorded_scenario(rec: Recording) -> tuple[Scenario, list[str]]:
    """The scenario stored in ``rec`` (its bundle found as the original file would find it), and
    warnings about the scenario file on disk."""
    sc = rec.session["scenario"]
    orig = Path(sc["path"])
    warnings = []
    if not orig.is_file():
        warnings.append(f"the scenario file {orig} no longer exists; replaying the scenario stored in the recording")
    elif hashlib.sha256(orig.read_bytes()).hexdigest() != sc["sha256"]:
        warnings.append(f"the scenario file {orig} changed since this recording (sha256 {sc['sha256'][:12]}... "
                        f"recorded, {hashlib.sha256(orig.read_bytes()).hexdigest()[:12]}... now); replaying the "
                        "scenario text stored in the recording")
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / orig.name
        p.write_text(sc["text"], encoding="utf-8")
        scenario, issues = load_scenario_checked(p)
    if scenario is None:
        raise RecordingError(f"{rec.path}: the scenario stored in the recording does not load: "
                             + "; ".join(str(i) for i in issues))
    scenario._source_dir = orig.parent if orig.parent.is_dir() else REPO_ROOT / "scenarios"
    if rec.session.get("locale"):
        scenario = scenario.model_copy(update={"locale": rec.session["locale"]})
    return scenario, warnings


def bundle_differences(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between the recorded bundle fingerprint and the bundle's now (empty: same)."""
    out = []
    if recorded.get("manifest_sha256") != now.get("manifest_sha256"):
        out.append("manifest.json changed")
    rf, nf = recorded.get("files", {}), now.get("files", {})
    out += [f"{f} changed" for f in sorted(rf) if f in nf and rf[f] != nf[f]]
    out += [f"{f} missing" for f in sorted(rf) if f not in nf]
    out += [f"{f} added" for f in sorted(nf) if f not in rf]
    return out


def load_for_replay(path: str | Path, allow_changed_bundle: bool = False, partial: bool = False,
                    frames: bool = True) -> tuple[Recording, Scenario, list[str]]:
    """Read ``path`` and its scenario, check the bundle; (recording, scenario, warnings). Raises
    :class:`RecordingError` for a damaged file without ``partial`` or a changed bundle without
    ``allow_changed_bundle``. ``frames=False``: the frames are not kept (a replay that runs them
    once streams them from the file; memory does not grow with the session's length)."""
    rec, warnings = read_for(path, partial, "replay", "replaying those", frames=frames)
    if not rec.frame_count:
        raise RecordingError(f"{rec.path}: the recording holds no frames")
    scenario, scen_warn = recorded_scenario(rec)
    warnings += scen_warn
    bundle_dir = resolve_bundle_path(scenario)
    diff = bundle_differences(rec.session["bundle"], bundle_fingerprint(bundle_dir))
    if diff:
        msg = (f"the anatomy bundle {bundle_dir} differs from the one this session was recorded on ("
               + ", ".join(diff) + ")")
        if not allow_changed_bundle:
            raise RecordingError(f"{msg}: a replay would not reproduce the recorded session. Restore the bundle "
                                 "or pass --allow-changed-bundle to replay on it as it is now")
        warnings.append(msg + "; replaying on it as it is now (the score may differ)")
    return rec, scenario, warnings


def configure_loop(loop: Any, rec: Recording, backend: ReplayBackend) -> None:
    """The recorded loop settings and the mentor's changes on ``loop``."""
    loop.fixed_dt_s = float(rec.session["fixed_dt_s"])
    loop.max_sim_steps_per_frame = int(rec.session["max_sim_steps_per_frame"])
    loop.inboxes.append(ReplayInbox(rec, backend))


def replay_recording(path: str | Path, out_dir: str | Path | None = None, render: bool = False,
                     speed: float | None = None, allow_changed_bundle: bool = False,
                     partial: bool = False) -> dict[str, Any]:
    """Replay ``path``; returns the replayed summary (and writes it, with eye images when rendering,
    to ``out_dir``). ``matches_recording`` says, per compared key, whether it equals the recording's."""
    from vr_trainer.app.session import build_session

    rec, scenario, warnings = load_for_replay(path, allow_changed_bundle, partial, frames=False)
    t_build = time.perf_counter()
    scene, meshes = build_session(scenario)
    build_s = time.perf_counter() - t_build
    clock = ReplayClock()
    backend = ReplayBackend(rec, clock, render=render, speed=speed)
    ctx = backend.open()
    try:
        renderer = None
        if render:
            from vr_trainer.render.renderer import SceneRenderer

            renderer = SceneRenderer(ctx, samples=rec.session.get("msaa_samples"))
            scene.upload(renderer, meshes)
        loop = scene.frame_loop(backend, renderer, None, clock)  # type: ignore[arg-type]
        configure_loop(loop, rec, backend)
        if not render:  # nothing draws: skip building the scene's draw items and text panels each frame
            from vr_trainer.sim.scene import SceneSnapshot

            loop.snapshot_fn = lambda state, frame: SceneSnapshot(state.time_s, frame.index, (), (), state.annotations)
        samples: list[dict[str, Any]] = []
        period = float(rec.session.get("metric_period_s", 0.25))
        next_s = [0.0]

        def sample(state: Any, frame: Frame) -> None:
            if scene.rules is not None and state.time_s >= next_s[0]:
                next_s[0] = next_sample_s(state.time_s, period)
                samples.append(metric_sample(scene.rules, state, frame.index))
        loop.recorders.append(sample)
        fluoro = None
        if render:  # the C-arm monitor shows the same radiographs as in the run (and --out gets them)
            from vr_trainer.app.run import attach_key_images

            fluoro = attach_key_images(scene, loop, renderer, Path(out_dir) if out_dir is not None else None,
                                       None, synchronous=True)
        t0 = time.perf_counter()
        try:
            n = loop.run()
        finally:
            if fluoro is not None:
                fluoro.close()
        wall_s = time.perf_counter() - t0
        summary: dict[str, Any] = {"replay_of": str(rec.path), "backend": "replay", "rendered": render,
                                   "frames": n, "recorded_duration_s": round(rec.duration_s, 3),
                                   "build_s": round(build_s, 3), "wall_s": round(wall_s, 3),
                                   "speed_x": round(rec.duration_s / wall_s, 1) if wall_s > 0 else None,
                                   "scenario": scenario.id, "steps_completed": list(loop.state.completed_steps),
                                   "complete": rec.complete, "warnings": warnings,
                                   "mentor_notes": [list(n) for n in loop.state.mentor_notes],
                                   "annotations": {"pins": len(loop.annotations.pins),
                                                   "strokes": len(loop.annotations.strokes),
                                                   "version": loop.annotations.version}}
        if scene.rules is not None:
            summary.update(scene.rules.engine.result().to_summary())
            summary["sound_cues"] = scene.rules.cues_summary()
        if rec.summary is not None:
            summary["matches_recording"] = {k: summary.get(k) == rec.summary.get(k) for k in COMPARED}
        summary["metric_samples_match"] = _same_samples(samples, rec.metrics)
        if out_dir is not None:
            from vr_trainer.app.run import write_outputs

            write_outputs(Path(out_dir), backend.eye_images() if render else [], summary)
        return summary
    finally:
        backend.close()


def _same_samples(replayed: list[dict[str, Any]], recorded: list[dict[str, Any]]) -> bool:
    """The recorded metric samples (exact floats) are a prefix of the replayed ones, value for value."""
    if len(recorded) > len(replayed):
        return False
    return json.dumps(replayed[:len(recorded)]) == json.dumps(recorded)


def cmd_replay(args: argparse.Namespace) -> int:
    if args.backend == "desktop":
        if args.no_render:
            raise ValueError("--no-render shows nothing: use it without --backend desktop")
        from vr_trainer.app.replay_desktop import replay_in_window

        summary = replay_in_window(args.file, args.speed or 1.0, args.out, args.allow_changed_bundle, args.partial)
    else:
        summary = replay_recording(args.file, args.out, render=not args.no_render, speed=args.speed,
                                   allow_changed_bundle=args.allow_changed_bundle, partial=args.partial)
    for w in summary["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    print(json.dumps(summary, ensure_ascii=False))
    same = summary.get("matches_recording", {})
    if same and not all(same.values()):
        print("warning: the replay differs from the recording in: "
              + ", ".join(k for k, v in same.items() if not v), file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("replay", help="replay a recorded session through the same frame loop")
    r.add_argument("file", help="a recording (sessions/*.mcap, or a .mcap.partial left by a killed run)")
    r.add_argument("--backend", default="headless", choices=["headless", "desktop"],
                   help="headless: offscreen rendering (EGL) of the recorded views; desktop: a window "
                        "(Space pause, D step, E/A 5 s ahead/back, Esc close)")
    r.add_argument("--out", default=None, help="write summary.json (and eye0.png, eye1.png when rendering) here")
    r.add_argument("--speed", type=float, default=None, metavar="X",
                   help="pace the replay at X times the recorded speed (default: as fast as possible; "
                        "in a desktop window 1)")
    r.add_argument("--no-render", action="store_true", help="simulate and score only (no GL needed)")
    r.add_argument("--partial", action="store_true",
                   help="replay the readable part of a recording that was cut short or is damaged")
    r.add_argument("--allow-changed-bundle", action="store_true",
                   help="replay even though the anatomy bundle differs from the recorded one")
    r.set_defaults(func=cmd_replay)
