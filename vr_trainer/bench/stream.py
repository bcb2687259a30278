"""`vr-trainer bench stream`: what streaming costs and how late things arrive.

In one run, on this machine, with a real frame loop paced like a headset and Debian's
Chromium as the expert:

* glass-to-glass latency: frame ids are stamped in the video; the browser logs when
  it shows each id; latency = browser time - the time the loop finished rendering
  that frame (both wall clocks on this machine). Median and p95 (target median
  <= 80 ms at 720p30 on loopback). Reported twice: with the real frame loop
  (includes the loop's one-frame readback and whatever rendering leaves of the CPU)
  and for the streaming pipeline alone (synthetic frames, no GL), with parts:
  render -> encoded, encoded -> received by the browser, received -> shown.
* render frame time with vs without streaming: the loop's own step time, baseline
  measured before and after the streaming phase (target <= 10 % more). The browser
  runs at the lowest CPU priority, standing in for the expert's own computer.
* stroke-to-headset latency: the browser sends strokes; latency = the time the
  first frame containing the stroke finished rendering - the browser's send time
  (target median <= 50 ms).
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import statistics
import time
from typing import Any

import numpy as np

from remote.errors import RemoteError
from vr_trainer.app.bridge import LoopView

TARGETS = {"glass_to_glass_median_ms": 80.0, "frame_time_ratio": 1.10, "stroke_to_headset_median_ms": 50.0}


def register(bench_subparsers: Any) -> None:
    b = bench_subparsers.add_parser("stream", help="glass-to-glass, render cost and stroke latency of mentoring")
    b.add_argument("--size", default="1280x720", help="mirror/video size WxH (two eyes side by side)")
    b.add_argument("--fps", type=float, default=30.0)
    b.add_argument("--seconds", type=float, default=10.0, help="length of each measured phase")
    b.add_argument("--strokes", type=int, default=20)
    b.add_argument("--scene", default="auto", choices=["auto", "default", "board"],
                   help="auto: the built-in scenario when it loads, else a plain board")
    b.add_argument("--codec", default="VP8", choices=["VP8", "H264"])
    b.set_defaults(func=cmd_bench_stream)


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


def _summary(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "median": _pct(values, 50), "p95": _pct(values, 95), "max": _pct(values, 100)}


def _surface_spots(view: LoopView) -> list[tuple[float, float]]:
    """Normalised points in the left eye with a surface under them and 5 % of the width
    to their right (where the benchmark's short strokes go)."""
    frame = next((f for f in view.recent_frames() if f.depth is not None), None)
    if frame is None or frame.depth is None:
        return []
    depth = frame.depth
    h, w = depth.shape
    out = []
    for v in np.linspace(0.25, 0.75, 11):
        for u in np.linspace(0.05, 0.4, 15):
            row = depth[int(v * h), int(u * w):int((u + 0.05) * w) + 1]
            if len(row) and float(row.max()) < 1.0 - 1e-6:
                out.append((float(u), float(v)))
    return out


def _pick_scene(scene: str) -> str:
    if scene != "auto":
        return scene
    try:
        from vr_trainer.scenario.loader import default_scenario_path, load_scenario

        load_scenario(default_scenario_path())
        return "default"
    except Exception:  # noqa: BLE001 - the built-in scenario is not there yet
        return "board"


def _wait_for_video(browser: Any, what: str, frames: int = 30, timeout_s: float = 30.0) -> None:
    """Until the console has shown ``frames`` frames carrying a frame id, then one more second."""
    deadline = time.monotonic() + timeout_s
    while (browser.console_state().get("framesWithId") or 0) < frames:
        if time.monotonic() > deadline:
            raise RemoteError(f"the browser did not receive {what} within {timeout_s:.0f} s")
        time.sleep(0.2)
    time.sleep(1.0)


def bench_stream(size: tuple[int, int], fps: float, seconds: float, n_strokes: int, scene: str = "auto",
                 codec: str = "VP8") -> dict[str, Any]:
    from remote.browser import Chromium
    from remote.peer import IceOptions
    from remote.publisher import StreamConfig
    from remote.server import ServerConfig, ServerThread
    from remote.tokens import TokenSigner
    from remote.trainee import BridgeConfig, TraineeBridge
    from vr_trainer.app.live import LoopThread

    w, h = size
    if w % 2:
        raise RemoteError("--size: width must be even (two eyes side by side)")
    scene = _pick_scene(scene)
    out: dict[str, Any] = {"size": [w, h], "fps": fps, "scene": scene, "codec": codec, "targets": TARGETS}
    signer = TokenSigner(secrets.token_bytes(32))
    server = ServerThread(signer, ServerConfig(port=0)).start()
    try:  # first the streaming pipeline alone, on a quiet machine
        out["glass_to_glass_pipeline_ms"] = _pipeline_latency(server, signer, (w, h), fps, codec, seconds)
    except BaseException:
        server.stop()
        raise
    lt = LoopThread(eye_size=(w // 2, h), fps=fps, scene=scene).start()
    browser = bridge = None
    try:
        time.sleep(1.0)
        lt.reset_timing()
        time.sleep(seconds / 2)
        base_a = list(lt.frame_ms)

        cfg = BridgeConfig(StreamConfig(max_size=(w, h), fps=fps, codec=codec), audio="none",
                           ice=IceOptions(loopback_only=True))
        br = bridge = TraineeBridge(server.url, signer.issue("bench", "trainee", "resident"), cfg)
        lt.call(lambda loop: br.attach(loop), timeout_s=15)
        browser = Chromium()
        browser.lower_priority()  # the expert's browser stands in for another computer
        browser.driver.get(f"{server.url}/console#token={signer.issue('bench', 'expert', 'bench')}")
        _wait_for_video(browser, "the video")
        lt.reset_timing()
        t_start = time.time()
        rng = random.Random(1)
        spots = lt.call(_surface_spots)
        if not spots:
            raise RemoteError("no anatomy in view to draw on")
        for k in range(n_strokes):
            time.sleep(seconds / max(n_strokes, 1))
            x, y = spots[rng.randrange(len(spots))]
            browser.js("const s = vrConsole.state; vrConsole.send({type: 'stroke', id: arguments[0], "
                       "frame_id: s.currentFrameId, points: [[arguments[1], arguments[2]], [arguments[1] + 0.05, "
                       "arguments[2]]], t_ms: performance.timeOrigin + performance.now()});", f"b{k}", x, y)
        time.sleep(max(0.5, seconds - seconds / max(n_strokes, 1) * n_strokes))
        streaming = list(lt.frame_ms)
        state = browser.console_state()
        published = dict(lt.publish_wall_s)
        log = [e for e in state.get("frameLog", []) if e[0] in published and e[1] / 1000.0 >= t_start]
        g2g = [e[1] / 1000.0 - published[e[0]] for e in log]
        sent = dict(br.source.encoded_wall_s)
        parts = {"render_to_encoded_ms": [sent[e[0]] - published[e[0]] for e in log if e[0] in sent],
                 "encoded_to_received_ms": [e[2] / 1000.0 - sent[e[0]] for e in log if e[0] in sent and e[2]],
                 "received_to_shown_ms": [(e[1] - e[2]) / 1000.0 for e in log if e[2]]}
        out["glass_to_glass_parts"] = {k: _summary([x * 1000.0 for x in v]) for k, v in parts.items()}
        reasons: dict[str, int] = {}
        for a in state.get("acks", []):
            if not a.get("ok"):
                reasons[a.get("reason", "")] = reasons.get(a.get("reason", ""), 0) + 1
        out["strokes_refused"] = reasons
        strokes = []
        for a in bridge.applier.applied:
            if a.sent_ms is not None and a.render_index in published:
                strokes.append(published[a.render_index] - a.sent_ms / 1000.0)
        readback = [published[i + 1] - published[i] for i in published if i + 1 in published]
        out["browser_stats"] = state.get("stats")
        out["bridge"] = bridge.stats()
        browser.quit()
        browser = None
        bridge.close()
        bridge = None
        lt.call(lambda loop: loop.annotations.clear())
        lt.reset_timing()
        time.sleep(seconds / 2)
        base_b = list(lt.frame_ms)
    finally:
        if browser is not None:
            browser.quit()
        if bridge is not None:
            bridge.close()
        server.stop()
        lt.stop()
    base = base_a + base_b
    out["glass_to_glass_ms"] = _summary([x * 1000.0 for x in g2g])
    out["readback_delay_ms"] = _summary([x * 1000.0 for x in readback])
    out["stroke_to_headset_ms"] = _summary([x * 1000.0 for x in strokes])
    out["frame_ms_without_streaming"] = _summary(base)
    out["frame_ms_with_streaming"] = _summary(streaming)
    ratio = (statistics.median(streaming) / statistics.median(base)) if base and streaming else None
    out["frame_time_ratio"] = round(ratio, 3) if ratio else None
    pipe = out.get("glass_to_glass_pipeline_ms") or {}
    out["meets_targets"] = {
        "glass_to_glass": out["glass_to_glass_ms"]["median"] is not None
        and out["glass_to_glass_ms"]["median"] <= TARGETS["glass_to_glass_median_ms"],
        "glass_to_glass_pipeline": pipe.get("median") is not None
        and pipe["median"] <= TARGETS["glass_to_glass_median_ms"],
        "frame_time": ratio is not None and ratio <= TARGETS["frame_time_ratio"],
        "stroke_to_headset": out["stroke_to_headset_ms"]["median"] is not None
        and out["stroke_to_headset_ms"]["median"] <= TARGETS["stroke_to_headset_median_ms"],
    }
    return out


def _pipeline_latency(server: Any, signer: Any, size: tuple[int, int], fps: float, codec: str,
                      seconds: float) -> dict[str, Any]:
    """Glass-to-glass of the streaming pipeline alone: synthetic frames, no rendering."""
    from remote.browser import Chromium
    from remote.harness import SyntheticFrameThread
    from remote.peer import IceOptions
    from remote.publisher import StreamConfig
    from remote.trainee import BridgeConfig, TraineeBridge

    src = SyntheticFrameThread(size, fps)
    bridge = TraineeBridge(server.url, signer.issue("bench-pipe", "trainee", "synthetic"),
                           BridgeConfig(StreamConfig(max_size=size, fps=fps, codec=codec), audio="none",
                                        ice=IceOptions(loopback_only=True)))
    bridge.attach(src)
    src.start()
    browser = Chromium()
    try:
        browser.lower_priority()
        browser.driver.get(f"{server.url}/console#token={signer.issue('bench-pipe', 'expert', 'bench')}")
        _wait_for_video(browser, "the synthetic video")
        t_start, enc0 = time.time(), bridge.source.converted
        time.sleep(seconds / 2)
        encoded_fps = (bridge.source.converted - enc0) / (seconds / 2)
        log = [e for e in browser.console_state().get("frameLog", []) if e[1] / 1000.0 >= t_start]
        published, enc = dict(src.publish_wall_s), dict(bridge.source.encoded_wall_s)
        lat = [(e[1] / 1000.0 - published[e[0]]) * 1000.0 for e in log if e[0] in published]
        parts = {"published_to_encoded_ms": [(enc[e[0]] - published[e[0]]) * 1000.0 for e in log
                                             if e[0] in enc and e[0] in published],
                 "encoded_to_received_ms": [e[2] - enc[e[0]] * 1000.0 for e in log if e[0] in enc and e[2]],
                 "received_to_shown_ms": [e[1] - e[2] for e in log if e[2]]}
    finally:
        browser.quit()
        bridge.close()
        src.stop()
    return {**_summary(lat), "fps_encoded": round(encoded_fps, 1), "fps_shown": round(len(lat) / (seconds / 2), 1),
            "parts": {k: _summary(v) for k, v in parts.items()}}


def cmd_bench_stream(args: argparse.Namespace) -> int:
    from vr_trainer.app.run import parse_size

    res = bench_stream(parse_size(args.size), args.fps, args.seconds, args.strokes, args.scene, args.codec)
    print(json.dumps(res, indent=2))
    return 0
