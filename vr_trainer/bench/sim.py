"""``vr-trainer bench sim``: simulation + scoring per frame in the default scene.

Ours: the default (PTED) scenario played by its expert autopilot through the session's own
frame loop without drawing (as ``vr-trainer replay --no-render`` runs it), frames at ``--fps``
(90: a headset's display rate; the fixed steps run at 120 Hz, so a frame takes one or two).
Measured per frame: every fixed step of that frame, each ``Simulation.step`` followed by the
scenario engine's ``after_step`` (and any other step rules of the session): median and p95 (the
issue's target: <= 2 ms median); per fixed step likewise; and the frame's CPU time on this
thread (on a shared machine the wall figures include time the thread waited for a core).

Peer: the same frames with trimesh's exact ``signed_distance`` in place of our proximity query
on the risk structures and targets (``Simulation.proximity``: :class:`TrimeshProximity`, same
points, same structures; a procedure model's own fields, such as PTED's bone stop, stay ours),
swapped in for ``--peer-frames``
frames spread over the run (trimesh needs tens of milliseconds per step, so the whole run would
take minutes); the ratio is taken on those frames against ours on the others. That is the fair
peer: the simulation and scoring around the query are the same code, so the ratio says what the
query costs a frame.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

TARGET_FRAME_MS = 2.0  # issue #10: simulation + scoring per frame, median, default scene


class TrimeshProximity:
    """Our proximity field's interface answered by ``trimesh.proximity.signed_distance`` (exact;
    negative inside, as ours): the peer. Anything else is asked of ``ours``."""

    def __init__(self, ours: Any, meshes: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        import trimesh

        self.ours = ours
        self.surfaces = ours.surfaces
        self.meshes = {n: trimesh.Trimesh(v, f, process=False) for n, (v, f) in meshes.items()}

    def signed_distances(self, points_mm: np.ndarray, memo: bool = True) -> dict[str, np.ndarray]:
        import trimesh

        p = np.asarray(points_mm, float).reshape(-1, 3)
        return {n: -trimesh.proximity.signed_distance(m, p) for n, m in self.meshes.items()}

    def clearance(self, points_mm: np.ndarray, memo: bool = True, contact_mm: float = 0.0) -> Any:
        from vr_trainer.sim.proximity import Clearance

        p = np.asarray(points_mm, float).reshape(-1, 3)
        if not len(p):
            return Clearance({}, {}, frozenset())
        d = self.signed_distances(p)
        tip = {n: float(v[0]) for n, v in d.items()}
        return Clearance({n: float(v.min()) for n, v in d.items()}, tip, frozenset(n for n, v in tip.items() if v < 0))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ours, name)


class _Stamp:
    """Step rules appended after the session's own: a time stamp after every fixed step."""

    def __init__(self) -> None:
        self.times: list[float] = []

    @property
    def step_ids(self) -> Sequence[str]:
        return ()

    def after_step(self, state: Any) -> tuple[Any, list[Any]]:
        self.times.append(time.perf_counter())
        return state, []


def _stats(ms: list[float]) -> dict[str, float | None]:
    if not ms:
        return {"median": None, "p95": None, "n": 0}
    a = np.array(ms)
    return {"median": float(np.median(a)), "p95": float(np.percentile(a, 95)), "n": len(a)}


def measure(scenario_path: str | None = None, fps: float = 90.0, peer_frames: int = 12,
            max_frames: int | None = None) -> dict[str, Any]:
    """Run the expert autopilot through the frame loop without drawing, timing the fixed steps."""
    from vr_trainer.anatomy.bundle import load_bundle
    from vr_trainer.app.clock import FakeClock
    from vr_trainer.app.session import build_session
    from vr_trainer.bench.proximity import expert_track
    from vr_trainer.scenario.loader import default_scenario_path, load_scenario
    from vr_trainer.sim.scene import SceneSnapshot
    from vr_trainer.xr.headless import HeadlessBackend

    scenario = load_scenario(scenario_path or default_scenario_path())
    scene, _ = build_session(scenario)
    track = expert_track(scene)
    track.fps = fps
    scene.track = track

    class SimOnly(HeadlessBackend):  # the headless backend's frames, without a GL context
        def open(self) -> Any:
            self.ctx = True  # type: ignore[assignment]  # frames() only checks that open() ran
            return None

    backend = SimOnly(track, (16, 16), max_frames)
    backend.open()
    loop = scene.frame_loop(backend, None, None, FakeClock(0.0, 1.0 / fps))  # type: ignore[arg-type]
    loop.snapshot_fn = lambda state, frame: SceneSnapshot(state.time_s, frame.index, (), (), state.annotations)
    stamp = _Stamp()
    loop.rules.append(stamp)
    sim = scene.simulation
    ours = getattr(sim, "proximity", None)
    peer = None
    if ours is not None and getattr(ours, "surfaces", None):
        bundle = load_bundle(scene.bundle_dir)
        peer = TrimeshProximity(ours, {s.name: (np.asarray(s.mesh.vertices), np.asarray(s.mesh.faces))
                                       for s in bundle.structures if s.name in ours.surfaces})
        peer.signed_distances(np.asarray(track.tool_tip[:1], float))  # trimesh builds its R-trees on first use
    n_frames = backend.max_frames or 0
    peer_at = set() if peer is None or peer_frames <= 0 else \
        set(np.linspace(n_frames * 0.1, n_frames * 0.9, peer_frames).round().astype(int).tolist())
    per_frame: dict[str, list[float]] = {"ours": [], "peer": []}
    per_step: dict[str, list[float]] = {"ours": [], "peer": []}
    cpu_frame: list[float] = []  # ours, this thread's CPU time (what a busy machine's waits leave out)
    steps_per_frame: list[int] = []
    mark: dict[str, Any] = {}

    def trace(phase: str, index: int) -> None:
        if phase == "drain_inbox":
            who = "peer" if index in peer_at else "ours"
            sim.proximity = peer if who == "peer" else ours  # type: ignore[assignment]
            mark.update(who=who)
        elif phase == "simulate":
            stamp.times.clear()
            mark["c0"] = time.thread_time()
            mark["t0"] = time.perf_counter()
        elif phase == "snapshot":
            t = [mark["t0"]] + stamp.times
            c = time.thread_time()
            if len(t) > 1:
                if mark["who"] == "ours":
                    cpu_frame.append((c - mark["c0"]) * 1000.0)
                per_frame[mark["who"]].append((t[-1] - t[0]) * 1000.0)
                per_step[mark["who"]] += (np.diff(t) * 1000.0).tolist()
                steps_per_frame.append(len(t) - 1)
    loop.trace = trace
    t_run = time.perf_counter()
    frames = loop.run()
    wall_s = time.perf_counter() - t_run
    sim.proximity = ours  # type: ignore[assignment]
    result: dict[str, Any] = {}
    if scene.rules is not None:
        r = scene.rules.engine.result()
        result = {"score": r.to_summary().get("score"), "passed": r.to_summary().get("passed")}
    o_med = _stats(per_frame["ours"])["median"]
    p_med = _stats(per_frame["peer"])["median"]
    return {"scenario": scenario.id, "fps": fps, "frames": frames, "fixed_steps": int(sum(steps_per_frame)),
            "steps_per_frame_mean": float(np.mean(steps_per_frame)) if steps_per_frame else None,
            "ours_frame_ms": _stats(per_frame["ours"]), "ours_step_ms": _stats(per_step["ours"]),
            "ours_frame_cpu_ms": _stats(cpu_frame),
            "peer": None if peer is None else "trimesh.proximity.signed_distance in place of ours",
            "peer_frame_ms": _stats(per_frame["peer"]), "peer_step_ms": _stats(per_step["peer"]),
            "ratio_peer_over_ours": (p_med / o_med) if (o_med and p_med) else None,
            "structures": list(ours.surfaces) if ours is not None else [],
            "run_wall_s": round(wall_s, 3), "run": result, "target_frame_ms_median": TARGET_FRAME_MS,
            "met": o_med is not None and o_med <= TARGET_FRAME_MS}


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print the result; returns 0 (1 when the per-frame target is missed)."""
    r = measure(args.scenario, args.fps, args.peer_frames, args.frames)
    o, os_, p, oc = r["ours_frame_ms"], r["ours_step_ms"], r["peer_frame_ms"], r["ours_frame_cpu_ms"]
    print(f"{r['scenario']} (expert autopilot): {r['frames']} frames at {r['fps']:g} Hz, {r['fixed_steps']} fixed "
          f"steps (120 Hz), structures {r['structures']}; run {r['run']}")
    if o["median"] is not None:
        print(f"  ours : per frame median {o['median']:.3f} ms  p95 {o['p95']:.3f} ms over {o['n']} frames; "
              f"per step median {os_['median']:.3f} ms  p95 {os_['p95']:.3f} ms; CPU time per frame median "
              f"{oc['median']:.3f} ms  p95 {oc['p95']:.3f} ms")
    if p["median"] is not None:
        print(f"  peer : per frame median {p['median']:.1f} ms  p95 {p['p95']:.1f} ms over {p['n']} frames "
              f"({r['peer']}) = {r['ratio_peer_over_ours']:.0f}x ours")
    print(f"target: median <= {TARGET_FRAME_MS:g} ms per frame -> {'met' if r['met'] else 'MISSED'}")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
    return 0 if r["met"] else 1


def register(bench_subparsers: Any) -> argparse.ArgumentParser:
    """Add ``bench sim`` to the main CLI's ``bench`` sub-parsers."""
    b = bench_subparsers.add_parser(
        "sim", help="time simulation + scoring per frame (expert autopilot, default scene) against a trimesh peer",
        description="Simulation.step and the scenario engine per frame over the scenario's expert autopilot run "
                    "(the frame loop without drawing), beside the same frames with trimesh's signed distance in "
                    "place of our proximity query.")
    b.add_argument("scenario", nargs="?", default=None, help="scenario file (default: the built-in PTED scenario)")
    b.add_argument("--fps", type=float, default=90.0, help="display frames per second (the steps run at 120 Hz)")
    b.add_argument("--peer-frames", type=int, default=12, help="frames run with the (slow) peer")
    b.add_argument("--frames", type=int, default=None, help="stop after N frames (default: the whole run)")
    b.add_argument("--json", default=None, help="also write the result as JSON here")
    b.set_defaults(func=run)
    return b
