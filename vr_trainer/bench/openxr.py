"""`vr-trainer bench openxr`: the default scene through the OpenXR backend at the
runtime's pace, counting frames missed.

A frame is missed when consecutive predicted display times are more than 1.5
display periods apart (the runtime had to skip a refresh because we were late).
The peer in the same run is the display period itself: ``headroom`` is the period
divided by the p95 of our own work per frame (render + submit, excluding the wait).

``--simulated`` runs against the Monado built by scripts/install_monado.sh
(simulated HMD, null compositor at 20 Hz), so the bench works without a headset.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from vr_trainer.xr.base import BackendError


def monado_runtime_json() -> Path | None:
    """The runtime manifest of the Monado cached by scripts/install_monado.sh, if built."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vr-trainer"
    found = sorted(glob.glob(str(cache / "monado-*" / "share" / "openxr" / "1" / "openxr_monado.json")))
    return Path(found[-1]) if found else None


def use_simulated_monado() -> Path:
    """Point this process at the cached Monado's simulated HMD with the null compositor."""
    runtime = monado_runtime_json()
    if runtime is None:
        raise BackendError("--simulated needs the Monado runtime: run scripts/install_monado.sh first")
    os.environ["XR_RUNTIME_JSON"] = str(runtime)
    os.environ.setdefault("XRT_COMPOSITOR_NULL", "1")
    os.environ.setdefault("SIMULATED_ENABLE", "1")
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("EGL_PLATFORM", "surfaceless")
    return runtime


def pacing(display_times_s: np.ndarray, period_s: float) -> dict[str, Any]:
    """Missed frames from predicted display times (seconds) and the display period."""
    gaps = np.diff(display_times_s)
    if not len(gaps) or period_s <= 0:
        return {"frames_missed": 0, "periods_missed": 0, "gap_ms_max": None}
    late = gaps > 1.5 * period_s
    return {"frames_missed": int(late.sum()),
            "periods_missed": int(np.maximum(np.round(gaps / period_s) - 1, 0).sum()),
            "gap_ms_max": round(float(gaps.max() * 1000.0), 3)}


def run_bench(frames: int = 600, scenario: str | None = None, warmup: int = 3,
              samples: int | None = None) -> dict[str, Any]:
    """Render the default scene for ``frames`` frames through OpenXR and report pacing.

    ``samples``: MSAA samples for the renderer (None: the renderer's default)."""
    from vr_trainer.app.clock import MonotonicClock
    from vr_trainer.app.session import build_session
    from vr_trainer.render.mirror import MirrorCompositor
    from vr_trainer.render.renderer import SceneRenderer
    from vr_trainer.scenario.loader import default_scenario_path, load_scenario
    from vr_trainer.xr.openxr import OpenXRBackend

    scene, meshes = build_session(load_scenario(scenario or default_scenario_path()))
    backend = OpenXRBackend(max_frames=frames + warmup, track=scene.track)
    ctx = backend.open()
    gl_renderer = ctx.info.get("GL_RENDERER")
    try:
        renderer = SceneRenderer(ctx) if samples is None else SceneRenderer(ctx, samples=samples)
        backend.set_depth_range(renderer.near_mm, renderer.far_mm)
        scene.upload(renderer, meshes)
        w, h = backend.info()["swapchain_size"]
        mirror = MirrorCompositor(ctx, (2 * w, h))
        loop = scene.frame_loop(backend, renderer, mirror, MonotonicClock())
        t0 = time.perf_counter()
        n = loop.run()
        wall_s = time.perf_counter() - t0
        info = backend.info()
        timings = np.array(list(backend.timings)[warmup:], dtype=float).reshape(-1, 3)
        step_ms = np.array(loop.frame_ms[warmup:], dtype=float)
    finally:
        backend.close()
    period_s = (info["display_period_ms"] or 0.0) / 1000.0
    work = timings[:, 2] if len(timings) else np.zeros(1)
    res: dict[str, Any] = {
        "bench": "openxr",
        "runtime": info["runtime"], "runtime_version": info["runtime_version"], "system": info["system"],
        "graphics_binding": info["graphics_binding"], "gl_renderer": gl_renderer,
        "swapchain_size": info["swapchain_size"], "swapchain_format": info["swapchain_format"],
        "depth_layer": info["depth_layer"], "msaa_samples": renderer.samples,
        "frames": n, "frames_measured": len(timings), "wall_s": round(wall_s, 3),
        "display_period_ms": info["display_period_ms"],
        **pacing(timings[:, 0], period_s),
        "frame_ms_median": round(float(np.median(step_ms)), 3) if len(step_ms) else None,
        "frame_ms_p95": round(float(np.percentile(step_ms, 95)), 3) if len(step_ms) else None,
        "work_ms_median": round(float(np.median(work)), 3),
        "work_ms_p95": round(float(np.percentile(work, 95)), 3),
        "wait_ms_median": round(float(np.median(timings[:, 1])), 3) if len(timings) else None,
        "headroom": round(period_s * 1000.0 / float(np.percentile(work, 95)), 2) if period_s else None,
        "target": "0 frames missed",
    }
    return res


def cmd_bench_openxr(args: argparse.Namespace) -> int:
    if args.simulated:
        use_simulated_monado()
    res = run_bench(args.frames, args.scenario, samples=args.samples)
    print(json.dumps(res, indent=2, ensure_ascii=False))
    return 0


def register(bsub: Any) -> None:
    """Add ``openxr`` to ``vr-trainer bench``."""
    b = bsub.add_parser("openxr", help="frames missed at the OpenXR runtime's pace (default scene)")
    b.add_argument("--frames", type=int, default=600)
    b.add_argument("--scenario", default=None, help="scenario YAML (default: the built-in one)")
    b.add_argument("--samples", type=int, default=None, help="MSAA samples (default: the renderer's)")
    b.add_argument("--simulated", action="store_true",
                   help="use the Monado from scripts/install_monado.sh (simulated HMD, null compositor)")
    b.set_defaults(func=cmd_bench_openxr)
