"""``vr-trainer bench cohort``: how fast a programme's folder of recordings becomes learning curves.

Ours: the cohort index (:mod:`vr_trainer.session.index`): a cold index of N recordings (the fast
path reads only the ``/session`` and ``/summary`` chunks of each), a re-index with nothing
changed (reads none), and the whole ``report --cohort`` (index + CSV + HTML charts). Peer, in
the same run: reading every recording in full with
:func:`~vr_trainer.session.reader.read_recording` (every frame built and held), and the summary
pass a report now makes of each recording (``read_recording(frames=False)``: every chunk read and
checked, the frames counted, none built).
The recordings are K seeded autopilot attempts of the scenario by K residents (real runs, nothing
drawn), copied under N names (the index reads each file on its own, so copies cost what distinct
files of that size cost): K residents with N/K attempts each.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any


def bench_cohort(recordings: int = 200, distinct: int = 8, scenario: str | None = None) -> dict[str, Any]:
    """Figures of the index, the full-read peer and the cohort report over ``recordings`` files."""
    from vr_trainer.app.autopilot_cohort import AutopilotAttempt, record_autopilot_attempts
    from vr_trainer.scenario.loader import REPO_ROOT
    from vr_trainer.session.cohort import build_cohort
    from vr_trainer.session.index import update_index
    from vr_trainer.session.reader import read_recording

    scen = Path(scenario) if scenario else REPO_ROOT / "scenarios" / "tka_knee.yaml"
    with tempfile.TemporaryDirectory(prefix="vr-bench-cohort-") as tmp:
        base = Path(tmp) / "attempts"
        attempts = [AutopilotAttempt(f"r{k:02d}", round(0.2 + 0.8 * k / max(1, distinct - 1), 3), k,
                                     base / f"a{k}.mcap") for k in range(distinct)]
        t = time.perf_counter()
        record_autopilot_attempts(scen, attempts)
        record_s = time.perf_counter() - t
        folder = Path(tmp) / "cohort"
        for i in range(recordings):
            dst = folder / f"r{i % distinct:02d}" / f"attempt-{i:04d}.mcap"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(attempts[i % distinct].path, dst)
        total_bytes = sum(p.stat().st_size for p in folder.rglob("*.mcap"))
        cold = update_index(folder)
        warm = update_index(folder)
        t = time.perf_counter()
        for p in sorted(folder.rglob("*.mcap")):
            read_recording(p)
        full_s = time.perf_counter() - t
        t = time.perf_counter()
        for p in sorted(folder.rglob("*.mcap")):
            read_recording(p, frames=False)
        pass_s = time.perf_counter() - t
        t = time.perf_counter()
        done = build_cohort(folder, Path(tmp) / "out", "en")
        report_s = time.perf_counter() - t
    return {"scenario": scen.name, "recordings": recordings, "distinct_runs": distinct,
            "mb": round(total_bytes / 1e6, 1), "record_runs_s": round(record_s, 1),
            "index_cold_s": round(cold.seconds, 3), "index_cold_read": cold.read,
            "index_unchanged_s": round(warm.seconds, 4), "index_unchanged_read": warm.read,
            "peer_full_read_s": round(full_s, 3), "cold_index_vs_full_read_x": round(full_s / cold.seconds, 1),
            "summary_pass_s": round(pass_s, 3), "full_read_vs_summary_pass_x": round(full_s / pass_s, 1),
            "report_cohort_s": round(report_s, 2), "html_s": done["html_s"], "residents": len(done["residents"])}


def cmd_bench_cohort(args: argparse.Namespace) -> int:
    r = bench_cohort(args.recordings, args.distinct, args.scenario)
    if args.json:
        print(json.dumps(r))
        return 0
    print(f"{r['recordings']} recordings ({r['mb']} MB, {r['distinct_runs']} distinct {r['scenario']} runs), "
          f"{r['residents']} residents")
    print(f"  index, cold:       {r['index_cold_s']:.3f} s ({r['index_cold_read']} read)")
    print(f"  index, unchanged:  {r['index_unchanged_s']:.4f} s ({r['index_unchanged_read']} read)")
    print(f"  peer, full reads:  {r['peer_full_read_s']:.3f} s  -> cold index {r['cold_index_vs_full_read_x']}x faster")
    print(f"  summary passes:    {r['summary_pass_s']:.3f} s  (frames counted, not built: "
          f"{r['full_read_vs_summary_pass_x']}x faster than full reads)")
    print(f"  report --cohort:   {r['report_cohort_s']:.2f} s (charts {r['html_s']:.2f} s)")
    return 0


def register(bench_subparsers: Any) -> None:
    b = bench_subparsers.add_parser("cohort", help="cohort index and learning-curve report beside full reads")
    b.add_argument("--recordings", type=int, default=200, help="recordings in the folder (default 200)")
    b.add_argument("--distinct", type=int, default=8, help="distinct autopilot runs they are copies of (default 8)")
    b.add_argument("--scenario", default=None, help="scenario of the runs (default: the TKA one)")
    b.add_argument("--json", action="store_true", help="print the figures as JSON")
    b.set_defaults(func=cmd_bench_cohort)
