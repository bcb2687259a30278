"""``vr-trainer bench ...``: one module per benchmark, each measuring ours beside a peer in the same run.

| module | subcommand | peer |
|---|---|---|
| ``render`` (+ ``render_pyrender``, the peer's child process) | ``bench render`` | pyrender (stereo frame time, default scene) |
| ``anatomy_import`` | ``bench import`` | plain scikit-image + trimesh pipeline (CT -> bundle) |
| ``openxr`` | ``bench openxr`` | the runtime's own display period (frames missed) |
| ``stream`` | ``bench stream`` | rendering without streaming; headless Chromium as the receiver |
| ``proximity`` | ``bench proximity`` | trimesh's and libigl's exact signed distance (per-step instrument distance queries) |
| ``record`` | ``bench record`` | JSON lines written on the render thread (session recording size and cost) |
| ``cohort`` | ``bench cohort`` | reading every recording in full (cohort index and learning-curve report) |
| ``fluoro`` | ``bench fluoro`` | plastimatch's ``drr`` (one 512x512 C-arm shot from the example CT: time, Pearson r) |
| ``sim`` | ``bench sim`` | the same frames with trimesh's signed distance in place of ours (simulation + scoring per frame) |
| ``cut`` | ``bench cut`` | trimesh's ``slice_plane(cap=True)`` (the distal femoral cut of the shipped knee's femur) |
| ``fanout`` (+ ``fanout_peer``, its child processes) | ``bench fanout`` | aiortc peer to peer (one encode per subscriber) and the project's direct mode, against Janus (publisher CPU, glass-to-glass, 1-16 subscribers) |

Each module has ``register(bench_subparsers)``; the bench layer may import every other layer.
"""  # noqa: E501 (a table row)

from __future__ import annotations

import importlib
from typing import Any

BENCHES = ("render", "anatomy_import", "openxr", "stream", "proximity", "record", "cohort", "fluoro", "sim", "cut",
           "fanout")


def register_all(bench_subparsers: Any) -> None:
    """Add every benchmark whose optional dependencies are installed."""
    for name in BENCHES:
        try:
            mod = importlib.import_module(f"vr_trainer.bench.{name}")
        except ImportError:
            continue
        mod.register(bench_subparsers)
