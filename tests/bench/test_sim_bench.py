"""`vr-trainer bench sim` and `vr-trainer bench proximity` at tiny sizes: they run the default
scenario's expert autopilot, print their figures beside a peer measured in the same run, and
write them as JSON (the figures a note quotes)."""

from __future__ import annotations

import json

from vr_trainer.cli import main


def test_bench_sim_times_frames_beside_the_trimesh_peer(tmp_path, capsys):
    out = tmp_path / "sim.json"
    rc = main(["bench", "sim", "--frames", "90", "--peer-frames", "1", "--json", str(out)])
    r = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert "per frame median" in printed and "trimesh" in printed and "target: median <= 2 ms" in printed
    assert r["frames"] == 90 and r["fixed_steps"] >= 110, "120 Hz steps under 90 Hz frames"
    # every frame after the first (which starts the clock) runs a step: ours or the peer's
    assert r["ours_frame_ms"]["n"] + r["peer_frame_ms"]["n"] == r["frames"] - 1
    assert r["peer_frame_ms"]["n"] == 1 and r["ratio_peer_over_ours"] > 1.0
    assert len(r["structures"]) >= 3, "the scenario's risk structures are measured"
    assert rc == (0 if r["met"] else 1)


def test_bench_proximity_reports_peers_and_accuracy(tmp_path, capsys):
    out = tmp_path / "prox.json"
    rc = main(["bench", "proximity", "--points", "16", "--repeat", "1", "--peer-steps", "2",
               "--accuracy-points", "40", "--json", str(out)])
    r = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert "trimesh" in printed and "largest error within 20 mm" in printed
    assert r["points_per_step"] == 16 and r["steps"] > 100
    assert r["peers"] and all(p["median_ms"] > 0 for p in r["peers"].values())
    acc = r["accuracy"]
    assert acc["points_within_20mm"] > 100 and acc["max_error_mm"] <= 0.25 and acc["sign_errors"] == 0
    assert rc == (0 if all(r["met"].values()) else 1)
