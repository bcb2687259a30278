"""`vr-trainer run`: a session on a backend, writing eye images, the mirror and a summary."""

from __future__ import annotations

import gc
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, cast

import numpy as np

from vr_trainer.app.bridge import run_finished_notice
from vr_trainer.app.clock import FakeClock, MonotonicClock
from vr_trainer.app.loop import FrameLoop
from vr_trainer.app.session import build_session
from vr_trainer.app.speech import attach_speech
from vr_trainer.render.mirror import MirrorCompositor
from vr_trainer.render.renderer import SceneRenderer
from vr_trainer.scenario.loader import default_scenario_path
from vr_trainer.scenario.validate import load_validated_scenario
from vr_trainer.xr.select import create_backend, resolve_backend_name

log = logging.getLogger("vr_trainer.app.run")


def write_png_atomic(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        Image.fromarray(np.ascontiguousarray(rgb)).save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, ensure_ascii=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_outputs(out: Path, eyes: list[np.ndarray], summary: dict[str, Any],
                  mirror: np.ndarray | None = None) -> None:
    """A run's files in ``out``: ``eyeN.png`` (HxWx3 uint8 each), ``mirror.png`` when given, then
    ``summary.json`` last, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    for k, img in enumerate(eyes):
        write_png_atomic(out / f"eye{k}.png", img)
    if mirror is not None:
        write_png_atomic(out / "mirror.png", mirror)
    write_json_atomic(out / "summary.json", summary)


class MirrorVideoWriter:
    """Writes the mirror frames to an MP4/WebM file (PyAV), atomically on close."""

    def __init__(self, path: Path, size: tuple[int, int], fps: float) -> None:
        try:
            import av
        except ImportError:
            raise RuntimeError("--video needs PyAV: pip install 'vr-trainer[remote]'") from None
        self.path = path
        self.tmp = path.with_name(f".{path.name}.partial{path.suffix}")
        self.container = av.open(str(self.tmp), mode="w")
        codec = "libvpx" if path.suffix == ".webm" else "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self.stream = cast("av.VideoStream", self.container.add_stream(codec, rate=int(round(fps))))
        self.stream.width, self.stream.height = size[0] - size[0] % 2, size[1] - size[1] % 2
        self.stream.pix_fmt = "yuv420p"
        self.wants_depth = False
        self.frames = 0

    def publish(self, frame: Any) -> None:
        import av

        rgb = frame.rgb[: self.stream.height, : self.stream.width]
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for pkt in self.stream.encode(vf):
            self.container.mux(pkt)
        self.frames += 1

    def close(self, keep: bool = True) -> None:
        for pkt in self.stream.encode():
            self.container.mux(pkt)
        self.container.close()
        if keep and self.frames:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def export_knee_guides(scene: Any, folder: Path) -> dict[str, Any]:
    """The patient-specific cutting guides of the scenario's planned TKA cuts (STL and 3MF, the
    hospital's 3D-printed osteotomy tools) into ``folder``; what was written, or why not."""
    from vr_trainer.procedures.tka import export_guides, knee_setup

    try:
        setup = knee_setup(scene.scenario, scene.bundle, scene.world_from_patient)
        files = export_guides(setup, folder)
    except ValueError as e:  # a footprint off the bone: said, not raised
        return {"written": [], "error": str(e)}
    return {"written": [str(p.relative_to(folder.parent)) for p in files]}


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must look like 640x480, not {text!r}") from None
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise ValueError(f"--size {text}: each side must be between 16 and 8192 pixels")
    return w, h


def run_session(scenario_path: str | None, backend_name: str = "auto", frames: int | None = None,
                out_dir: str | None = None, size: tuple[int, int] = (640, 480), video: bool = False,
                mirror_layout: str = "side_by_side", locale: str | None = None, mentor_url: str | None = None,
                token: str | None = None, realtime: bool | None = None, samples: int | None = None,
                autopilot: str | None = None, autopilot_skill: float | None = None, seed: int = 0,
                record: str | os.PathLike[str] | bool | None = None, resident: str | None = None) -> dict[str, Any]:
    """Run a session; ``record``: a recording path, True for ``sessions/<scenario>-<UTC>.mcap``,
    None/False for none (the CLI records by default); ``resident``: the trainee's id in the recording
    (:mod:`vr_trainer.session.resident`; never a patient identifier)."""
    if resident is not None:
        from vr_trainer.session.resident import check_resident_id

        check_resident_id(resident)
    scenario_file = Path(scenario_path or default_scenario_path())
    scenario = load_validated_scenario(scenario_file)  # file and bundle checks
    if locale is not None:
        scenario = scenario.model_copy(update={"locale": locale})
    scene, meshes = build_session(scenario)
    plan = None
    live = bool(mentor_url) or bool(realtime)
    if autopilot is None and scenario.demo.autopilot is not None and not live \
            and resolve_backend_name(backend_name) == "headless":
        autopilot = scenario.demo.autopilot  # the scenario's demo is played by its autopilot
    if autopilot is not None:  # a planner drives the instruments instead of the demo track
        from vr_trainer.app.autopilot import autopilot_track

        if backend_name not in ("auto", "headless"):
            raise ValueError(f"--autopilot drives the headless backend; use --backend headless, not {backend_name}")
        backend_name = "headless"
        scene.track, plan = autopilot_track(scene, autopilot, autopilot_skill, seed)
    backend = create_backend(backend_name, scene.track, size, frames, live=live)
    out = Path(out_dir) if out_dir else None
    ctx = backend.open()
    loop: FrameLoop | None = None
    video_writer = None
    bridge = None
    recorder = None
    fluoro = None
    speech = None
    ok = False
    try:
        renderer = SceneRenderer(ctx, samples=samples)
        backend.set_depth_range(renderer.near_mm, renderer.far_mm)  # for a depth layer submitted to a runtime
        scene.upload(renderer, meshes)
        scripted = backend.name == "headless" and not live
        clock = FakeClock(0.0, 1.0 / scene.track.fps) if scripted else MonotonicClock()
        mw, mh = (size[0] * 2, size[1]) if mirror_layout == "side_by_side" else size
        mirror = MirrorCompositor(ctx, (mw, mh), mirror_layout)
        loop = scene.frame_loop(backend, renderer, mirror, clock)
        if record:
            recorder = start_recording(record, scenario, scenario_file, scene, loop, backend.name, size,
                                       renderer.samples, locale, plan, autopilot, autopilot_skill, seed,
                                       resident)
        fluoro = attach_key_images(scene, loop, renderer, out, recorder, synchronous=scripted)
        speech = attach_speech(scenario, loop, out, recorder)  # speak: true prompts said aloud (vr_trainer.app.speech)
        if video and out is not None:
            out.mkdir(parents=True, exist_ok=True)
            video_writer = MirrorVideoWriter(out / "mirror.mp4", (mw, mh), scene.track.fps)
            loop.sinks.append(video_writer)
        if mentor_url:
            from remote.trainee import BridgeConfig, TraineeBridge
            from vr_trainer.app.mentor_views import mentor_views

            bridge = TraineeBridge(mentor_url, token or "",
                                   BridgeConfig(extra_views=mentor_views(scene, loop, renderer, fluoro)))
            bridge.attach(loop)
        gc.freeze()  # the scene is built: keep full GC passes from pausing the frame loop and network
        interrupted = False
        n = 0
        try:
            n = loop.run(frames)
        except KeyboardInterrupt:  # Ctrl-C ends a live session normally, outputs written
            interrupted = True
            n = len(loop.frame_ms)
        ok = True
        summary: dict[str, Any] = {
            "backend": backend.name,
            "scenario": scenario.id,
            "frames": n,
            **loop.timing_summary(),
            "gl_renderer": ctx.info.get("GL_RENDERER"),
            "gl_version": ctx.info.get("GL_VERSION"),
            "eye_size": list(size),
            "msaa_samples": renderer.samples,
            "mirror_size": [mw, mh],
            "steps_completed": list(loop.state.completed_steps),
            "inbox_errors": loop.inbox_errors,
            "interrupted": interrupted,
            **{k: v for k, v in backend.info().items() if k != "backend"},
        }
        if plan is not None:
            summary["autopilot"] = plan.summary()
        if fluoro is not None:
            fluoro.close()  # every shot taken is imaged (and written) before the summary
            summary["fluoro"] = fluoro.summary() if hasattr(fluoro, "summary") else {
                "shots_imaged": fluoro.shots_done, "errors": list(fluoro.errors)}
        if scene.rules is not None:  # the score and the reasons behind it
            result = scene.rules.engine.result()
            summary.update(result.to_summary())
            summary["sound_cues"] = scene.rules.cues_summary()
            loop.publish_notices([run_finished_notice(loop.state.time_s, result.score, result.passed,
                                                      result.pass_mark, len(scenario.steps))])
        if speech is not None:  # waits for the queued clips: OUT/audio/*.wav, then the list
            summary["spoken_prompts"] = speech.close()
        if recorder is not None:
            w = recorder.writer
            summary.update({"recording": str(w.path), "recording_dropped": w.dropped})
            final = w.close(summary)
            summary.update({"recording": str(final), "recording_bytes": w.bytes_written})
            if w.error:
                summary["recording_error"] = w.error
        if out is not None and n and scenario.procedure == "tka":
            summary["cutting_guides"] = export_knee_guides(scene, out / "guides")
        if out is not None and n:
            write_outputs(out, backend.eye_images() or [], summary, mirror.read_now())
        return summary
    finally:
        if speech is not None:
            speech.close(timeout_s=5.0)
        if fluoro is not None:
            fluoro.close()
        if recorder is not None:
            recorder.writer.close()  # no-op after a clean close; after an error the file keeps what it has
        if bridge is not None:
            bridge.close()
        if video_writer is not None:
            video_writer.close(keep=ok)
        backend.close()


def attach_key_images(scene: Any, loop: FrameLoop, renderer: SceneRenderer | None, out: Path | None, recorder: Any,
                      synchronous: bool) -> Any:
    """C-arm shots become radiographs (:class:`~vr_trainer.app.fluoro.FluoroService`, one of the
    loop's step rules: the monitor shows the latest, ``out/fluoro/`` keeps them, the recording gets
    each as a key image) and, when a fragment piece comes out, the endoscope's picture goes into the
    recording. ``synchronous``: each shot is imaged before the loop goes on (scripted headless runs,
    so their frames are reproducible); otherwise a worker thread images it and the loop never waits.
    Returns the service (None when the scenario has no C-arm to shoot: no room)."""
    if scene.room is None:
        return None
    from vr_trainer.app.fluoro import FluoroService

    fluoro = FluoroService(scene.bundle, scene, scene.scenario, out_dir=out, synchronous=synchronous)
    scene.fluoro = fluoro
    loop.rules.append(fluoro)
    if recorder is not None:
        if hasattr(fluoro, "listeners"):
            fluoro.listeners.append(lambda meta, rgb: recorder.record_image(
                "carm", float(meta.get("time_s", 0.0)), png_bytes(rgb), **{k: v for k, v in meta.items()
                                                                           if k != "time_s"}))
        if renderer is not None:
            loop.recorders.append(EndoscopeKeyImages(scene, renderer, recorder))
    return fluoro


def png_bytes(rgb: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, np.uint8)).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


class EndoscopeKeyImages:
    """Phase 6: when the removed share of the fragment grows, the endoscope's picture of that frame
    goes into the recording as a key image (the report shows it)."""

    def __init__(self, scene: Any, renderer: SceneRenderer, recorder: Any) -> None:
        self.scene, self.renderer, self.recorder = scene, renderer, recorder
        self.last_pct = 0.0

    def __call__(self, state: Any, frame: Any) -> None:
        obs = state.observation
        proc = self.scene.procedure
        if obs is None or proc is None or getattr(proc, "fragment_structure", None) is None:
            return
        pct = float(obs.removed_pct.get(proc.fragment_structure, 0.0))
        if pct <= self.last_pct + 1e-9:
            return
        self.last_pct = pct
        rgb = self.renderer.endoscope_image() if hasattr(self.renderer, "endoscope_image") else None
        if rgb is not None:
            self.recorder.record_image("endoscope", float(state.time_s), png_bytes(rgb), removed_pct=round(pct, 1))


def start_recording(record: str | os.PathLike[str] | bool, scenario: Any, scenario_file: Path, scene: Any,
                    loop: FrameLoop, backend_name: str, size: tuple[int, int], samples: int, locale: str | None,
                    plan: Any, autopilot: str | None, autopilot_skill: float | None, seed: int,
                    resident: str | None = None) -> Any:
    """Open the session's recording and hook it into ``loop`` (see :mod:`vr_trainer.app.recording`)."""
    from vr_trainer.app.recording import SessionRecorder, default_recording_path, session_header

    try:
        from vr_trainer.session.writer import SessionWriter
    except ImportError:
        if record is True:  # the default: run without a recording rather than not at all
            log.warning("this session is not recorded: recording needs mcap (pip install 'vr-trainer[record]')")
            return None
        raise ValueError("--record needs the mcap package: pip install 'vr-trainer[record]'") from None

    path = default_recording_path(scenario.id) if record is True else Path(record or "")
    header = session_header(scenario, scenario_file, scene.bundle_dir, loop, backend=backend_name,
                            eye_size=list(size), fps=scene.track.fps, msaa_samples=samples, locale=locale,
                            autopilot=None if plan is None else {"mode": autopilot, "skill": autopilot_skill,
                                                                 "seed": seed}, resident=resident)
    try:
        writer = SessionWriter(path, header)
    except OSError as e:
        raise ValueError(f"--record {path}: cannot write there ({e.strerror or e}); choose another file "
                         "or pass --no-record") from None
    recorder = SessionRecorder(writer, scene.rules)
    recorder.attach(loop)
    return recorder
