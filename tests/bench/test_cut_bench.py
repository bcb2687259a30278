"""`vr-trainer bench cut` at a tiny size: the distal femoral cut of the shipped knee, ours beside trimesh."""
from __future__ import annotations

import argparse
import json

from vr_trainer.bench import cut


def test_bench_cut_times_ours_beside_trimesh_and_both_stay_watertight(tmp_path, capsys):
    out = tmp_path / "cut.json"
    rc = cut.main(["--repeat", "1", "--no-subdivide", "--json", str(out)])
    r = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert "trimesh slice_plane+cap" in printed and "target: <= 50 ms" in printed
    (row,) = r["rows"]
    assert row["faces"] > 20000 and row["ours_ms"] > 0 and row["peer_trimesh_ms"] > 0
    assert row["ours_watertight"] and row["peer_watertight"]
    # both cut the same plane: the kept femur's volume agrees, and bone was removed
    assert abs(row["ours_volume_ml"] - row["peer_volume_ml"]) < 0.01 and row["removed_ml"] > 0.1
    assert row["ours_direct"], "the direct cut closed this cut (no manifold3d fallback)"
    assert row["manifold_watertight"] and abs(row["manifold_volume_ml"] - row["ours_volume_ml"]) < 0.01
    assert "manifold3d trim" in printed
    assert row["cut_area_mm2"] > 500.0  # a distal femur's cross-section, a few square centimetres
    assert rc == (0 if r["met"] else 1)


def test_register_adds_the_cut_subcommand():
    ap = argparse.ArgumentParser()
    cut.register(ap.add_subparsers(dest="bench"))
    a = ap.parse_args(["cut", "--repeat", "3"])
    assert a.func is cut.run and a.repeat == 3 and a.bundle is None
