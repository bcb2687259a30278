"""``vr-trainer bench record``: the session recorder's size and cost, and replay speed.

Ours: :class:`~vr_trainer.session.writer.SessionWriter` (MCAP, zstd chunks, float32 XOR-delta
frames, writer thread) fed one minute of tracked input at 90 Hz: two eyes, two hands with
realistic tracking jitter (0.2 mm, and the head's look point likewise), a metric sample every
0.25 s. Measured: bytes per minute, and the cost per frame on the render thread (rounding the
frame to what is stored + enqueueing it; target <= 0.2 ms). Peer, the same messages in the same
run: JSON lines written on the render thread (what a simple recorder would do), its bytes per
minute and cost per frame. Replay: a recorded headless autopilot run of the scenario (its demo track at the same 90 Hz)
replayed without rendering (recorded seconds per wall second; target >= 20x). Reading: the minute
of input written again in chunks of 0.5 s as a live run writes them (the run above writes faster
than real time, so its chunks are larger), read back three ways in the same run: streamed frame by frame
(:class:`~vr_trainer.session.reader.RecordingStream`, what the headless replay does), a summary pass
that counts the frames without building them (``read_recording(frames=False)``, what reports and
the cohort index do), and the peer, the full read that holds every frame (``read_recording``, what
the desktop replay needs to seek): peak memory (``tracemalloc``) and seconds of each.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from vr_trainer.frame import Fov, Frame, HandInput, InputState, View
from vr_trainer.sim.transforms import look_at_pose, pose_from_axis

TARGET_FRAME_MS = 0.2
TARGET_BYTES_PER_MIN = 1_000_000
TARGET_REPLAY_X = 20.0


def tracked_frames(seconds: float, fps: float = 90.0, jitter_mm: float = 0.2, seed: int = 0) -> list[Frame]:
    """``seconds`` of frames at ``fps``: a head swaying over the table and both hands moving, with
    Gaussian tracking jitter of ``jitter_mm`` on positions and aim points (what a headset reports)."""
    rng = np.random.default_rng(seed)
    out = []
    fov = Fov(-0.87, 0.73, 0.8, -0.8)
    for i in range(int(seconds * fps)):
        t = i / fps
        head_p = np.array([100 * np.sin(0.5 * t), 1600 + 20 * np.sin(t), 400 + 50 * np.cos(0.3 * t)])
        head = look_at_pose(head_p + rng.normal(0, jitter_mm, 3), np.array([0.0, 1000.0, 0.0])
                            + rng.normal(0, jitter_mm, 3))
        views = []
        for k, sign in enumerate((-1.0, 1.0)):
            m = head.copy()
            m[:3, 3] += sign * 31.5 * head[:3, 0]
            views.append(View(k, m, fov, 1832, 1920))
        hands = []
        for k in range(2):
            tip = np.array([(-1) ** k * 150 + 30 * np.sin(t + k), 1100 + 20 * np.cos(0.7 * t), 80 * np.sin(0.2 * t)])
            pose = pose_from_axis(tip + rng.normal(0, jitter_mm, 3), np.array([0.2, 1.0, 0.3]) + rng.normal(0, 1e-3, 3))
            hands.append(HandInput(pose, trigger=float(0.5 + 0.5 * np.sin(t)), grip=0.0))
        out.append(Frame(i, t, views, InputState(hands=hands, active_hand=1)))
    return out


def frame_json(clock_s: float, f: Frame) -> dict[str, Any]:
    """The peer's message for one frame (every value a JSON number)."""
    return {"clock_s": clock_s, "index": f.index, "t": f.predicted_display_time_s,
            "views": [{"eye": v.eye_index, "pose": v.pose_world_from_eye[:3].ravel().tolist(),
                       "fov": [v.fov.angle_left, v.fov.angle_right, v.fov.angle_up, v.fov.angle_down]}
                      for v in f.views],
            "hands": [{"pose": h.pose_world_from_hand[:3].ravel().tolist() if h.pose_world_from_hand is not None
                       else None, "trigger": h.trigger, "grip": h.grip, "primary": h.primary_pressed}
                      for h in f.input.hands], "keys": sorted(f.input.keys), "focused": f.input.focused}


def measure_writer(frames: list[Frame], fps: float, tmp: Path) -> dict[str, Any]:
    from vr_trainer.session.format import quantize_frame
    from vr_trainer.session.writer import SessionWriter

    metrics = {f"metric_{k}": 0.0 for k in range(12)}
    # ours: round + enqueue on the "render thread"; the writer thread does the rest
    w = SessionWriter(tmp / "bench.mcap", {"format": "vr_trainer.session", "bench": True})
    cost = []
    for i, f in enumerate(frames):
        t0 = time.perf_counter()
        quantize_frame(f)
        w.frame(i / fps, f)
        if i % int(fps / 4) == 0:
            w.message("/metrics", i / fps, {"frame": i, "time_s": i / fps, "values": dict(metrics, metric_0=i / fps)})
        cost.append(time.perf_counter() - t0)
        if i % 9 == 0:
            time.sleep(0.0)  # let the writer thread run, as the frame loop's waits would
    t_close = time.perf_counter()
    path = w.close({"bench": True})
    close_ms = (time.perf_counter() - t_close) * 1000
    minutes = len(frames) / fps / 60.0
    ours = {"bytes_per_min": round(path.stat().st_size / minutes), "frame_ms_median": _ms(cost, 50),
            "frame_ms_p99": _ms(cost, 99), "dropped": w.dropped, "close_ms": round(close_ms, 1)}
    # peer: JSON lines on the render thread
    cost = []
    with open(tmp / "bench.jsonl", "w", encoding="utf-8") as fh:
        for i, f in enumerate(frames):
            t0 = time.perf_counter()
            fh.write(json.dumps({"topic": "/frame", **frame_json(i / fps, f)}) + "\n")
            if i % int(fps / 4) == 0:
                fh.write(json.dumps({"topic": "/metrics", "time_s": i / fps, "values": metrics}) + "\n")
            cost.append(time.perf_counter() - t0)
    peer = {"bytes_per_min": round((tmp / "bench.jsonl").stat().st_size / minutes), "frame_ms_median": _ms(cost, 50),
            "frame_ms_p99": _ms(cost, 99)}
    return {"ours": ours, "peer_jsonl": peer}


def write_paced(frames: list[Frame], fps: float, path: Path) -> Path:
    """``frames`` recorded to ``path`` in chunks of half a second of input, as a live run at ``fps``
    has them (the writer ends a chunk every 0.5 s of wall time; here it is given a moment to)."""
    from vr_trainer.session.format import quantize_frame
    from vr_trainer.session.writer import SessionWriter

    w = SessionWriter(path, {"format": "vr_trainer.session", "bench": True}, flush_interval_s=0.001)
    per_chunk = max(1, int(fps / 2))
    for i, f in enumerate(frames):
        quantize_frame(f)
        w.frame(i / fps, f)
        if i % per_chunk == per_chunk - 1:
            time.sleep(0.004)
    return w.close({"bench": True})


def measure_read(path: Path) -> dict[str, Any]:
    """Peak traced memory (MB) and seconds of streaming ``path``, of a summary pass over it and of
    reading it in full (the peer); the seconds from untraced runs (tracing slows Python down)."""
    import tracemalloc

    from vr_trainer.session.reader import iter_frames, read_recording

    def stream() -> int:
        n = 0
        for _rf in iter_frames(path, partial=True):
            n += 1
        return n

    ways = {"stream": stream, "summary_pass": lambda: read_recording(path, frames=False).frame_count,
            "full_read": lambda: len(read_recording(path).frames)}
    out: dict[str, Any] = {"file_mb": round(path.stat().st_size / 1e6, 3)}
    for name, fn in ways.items():
        t0 = time.perf_counter()
        out["frames"] = fn()
        seconds = time.perf_counter() - t0
        tracemalloc.start()
        try:
            fn()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        out[name] = {"peak_mb": round(peak / 1e6, 3), "s": round(seconds, 3)}
    out["peak_ratio_full_over_stream"] = round(out["full_read"]["peak_mb"] / max(out["stream"]["peak_mb"], 1e-9), 1)
    return out


def _ms(values: list[float], pct: float) -> float:
    return round(float(np.percentile(np.array(values) * 1000, pct)), 4)


def measure_replay(scenario: str | None, fps: float, tmp: Path) -> dict[str, Any]:
    """An expert autopilot run of ``scenario`` with its demo track at ``fps``, recorded, then replayed
    without rendering."""
    from vr_trainer.app.replay import replay_recording
    from vr_trainer.app.run import run_session

    import re

    from vr_trainer.scenario.loader import default_scenario_path

    from vr_trainer.scenario.loader import load_scenario, resolve_bundle_path

    src = Path(scenario) if scenario else default_scenario_path()
    text, n = re.subn(r"(\n  fps:\s*)[0-9.]+", rf"\g<1>{fps:g}", src.read_text(encoding="utf-8"), count=1)
    # a copy in the temporary folder (never beside the shipped scenarios), its bundle named by full path
    bundle = resolve_bundle_path(load_scenario(src))
    text = re.sub(r"(\n  bundle:\s*).*", lambda m: f"{m.group(1)}{json.dumps(str(bundle))}", text if n else
                  src.read_text(encoding="utf-8"), count=1)
    scen = tmp / f"bench-record-{src.name}"
    scen.write_text(text, encoding="utf-8")
    path = tmp / "autopilot.mcap"
    run = run_session(str(scen), "headless", size=(64, 48), autopilot="expert", record=path)
    rep = replay_recording(path)
    dur_s = max(rep["recorded_duration_s"], 1e-9)
    return {"recorded_s": rep["recorded_duration_s"], "fps": round(rep["frames"] / dur_s),
            "replay_wall_s": rep["wall_s"], "speed_x": rep["speed_x"], "build_s": rep["build_s"],
            "bytes": run["recording_bytes"], "same_score": rep["score"] == run["score"]}


def cmd_bench_record(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        frames = tracked_frames(args.seconds, args.fps)
        w = measure_writer(frames, args.fps, tmp)
        rd = measure_read(write_paced(frames, args.fps, tmp / "paced.mcap"))
        r = measure_replay(args.scenario, args.fps, tmp) if not args.no_replay else None
    ours, peer = w["ours"], w["peer_jsonl"]
    out = {"seconds": args.seconds, "fps": args.fps, **w, "read": rd, "replay": r,
           "size_ratio_peer_over_ours": round(peer["bytes_per_min"] / ours["bytes_per_min"], 2),
           "cost_ratio_peer_over_ours": round(peer["frame_ms_median"] / max(ours["frame_ms_median"], 1e-9), 2),
           "targets": {"bytes_per_min": TARGET_BYTES_PER_MIN, "frame_ms": TARGET_FRAME_MS,
                       "replay_speed_x": TARGET_REPLAY_X}}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"recording {args.seconds:.0f} s of tracked input at {args.fps:.0f} Hz (2 eyes, 2 hands, 0.2 mm jitter)")
    print(f"  ours (MCAP, zstd, float32 XOR frames, writer thread): {ours['bytes_per_min'] / 1e6:.3f} MB/min, "
          f"render-thread cost median {ours['frame_ms_median']:.4f} ms, p99 {ours['frame_ms_p99']:.4f} ms "
          f"(target <= {TARGET_FRAME_MS} ms), dropped {ours['dropped']}, close {ours['close_ms']} ms")
    print(f"  peer (JSON lines on the render thread):               {peer['bytes_per_min'] / 1e6:.3f} MB/min, "
          f"cost median {peer['frame_ms_median']:.4f} ms, p99 {peer['frame_ms_p99']:.4f} ms")
    print(f"  size: peer / ours = {out['size_ratio_peer_over_ours']}x; render-thread cost: peer / ours = "
          f"{out['cost_ratio_peer_over_ours']}x")
    s, p, f = rd["stream"], rd["summary_pass"], rd["full_read"]
    print(f"reading it back ({rd['frames']} frames, {rd['file_mb']} MB in 0.5 s chunks): streamed "
          f"{s['peak_mb']:.2f} MB peak, {s['s']:.2f} s; summary pass {p['peak_mb']:.2f} MB, {p['s']:.2f} s; "
          f"peer, full read {f['peak_mb']:.2f} MB, {f['s']:.2f} s -> full / streamed peak = "
          f"{rd['peak_ratio_full_over_stream']}x")
    if r is not None:
        print(f"replay without rendering: {r['recorded_s']:.1f} s recorded at {r['fps']} Hz "
              f"in {r['replay_wall_s']:.2f} s "
              f"= {r['speed_x']}x real time (target >= {TARGET_REPLAY_X:.0f}x; session build {r['build_s']:.2f} s "
              f"before it); same score: {r['same_score']}; that recording: {r['bytes']} bytes")
    return 0


def register(bench_subparsers: Any) -> None:
    b = bench_subparsers.add_parser("record", help="session recording size and cost beside JSON lines; replay speed")
    b.add_argument("--seconds", type=float, default=60.0, help="seconds of input to record (default 60)")
    b.add_argument("--fps", type=float, default=90.0, help="frame rate (default 90)")
    b.add_argument("--scenario", default=None, help="scenario of the replay measurement (default: the PTED one)")
    b.add_argument("--no-replay", action="store_true", help="skip the replay measurement")
    b.add_argument("--json", action="store_true", help="print the figures as JSON")
    b.set_defaults(func=cmd_bench_record)
