"""The ``import`` and ``bench import`` sub-commands as the main CLI wires them."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import trimesh

from vr_trainer.anatomy import AnatomyError, load_bundle
from vr_trainer.anatomy.cli import main, register
from vr_trainer.bench.anatomy_import import register as register_bench


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="vr-trainer")
    sub = ap.add_subparsers(dest="command", required=True)
    register(sub)
    bench = sub.add_parser("bench").add_subparsers(dest="what", required=True)
    register_bench(bench)
    return ap


def test_import_mesh_handler_returns_zero_and_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "patella_right.stl"
    trimesh.creation.icosphere(radius=0.021).export(f)  # metres: a 42 mm patella
    args = _parser().parse_args(["import", "mesh", str(f), "--units", "auto", "--name", "patella",
                                 "--out", str(tmp_path / "b")])
    assert args.handler(args) == 0
    s = load_bundle(tmp_path / "b")["patella"]
    assert 40.0 < max(s.size_mm) < 44.0 and s.tissue == "bone"
    assert "patella" in capsys.readouterr().out


def test_import_ct_parses_the_documented_options(tmp_path: Path) -> None:
    a = _parser().parse_args(["import", "ct", "scan.nii.gz", "--labels", "seg.nii.gz", "--label-map",
                              "totalsegmentator", "--threshold-hu", "250", "--out", "assets/x"])
    assert (a.path, a.labels, a.label_map, a.threshold_hu, a.out) == ("scan.nii.gz", "seg.nii.gz",
                                                                      "totalsegmentator", 250.0, "assets/x")
    b = _parser().parse_args(["bench", "import", "--repeat", "1", "--skip-large"])
    assert callable(b.handler) and b.repeat == 1 and b.skip_large


def test_user_mistake_raises_anatomy_error_for_the_main_cli(tmp_path: Path) -> None:
    args = _parser().parse_args(["import", "mesh", str(tmp_path / "missing.stl"), "--out", str(tmp_path / "b")])
    with pytest.raises(AnatomyError, match="missing.stl"):
        args.handler(args)


def test_standalone_entry_prints_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["import", "ct", str(tmp_path / "nothing.nii.gz"), "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and "nothing.nii.gz" in err[0]
    assert not (tmp_path / "b").exists()
