"""``vr-trainer import mesh|ct --license SPDX --source TEXT``: the licence and source land in the manifest."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import trimesh

from vr_trainer.anatomy import AnatomyError, load_bundle
from vr_trainer.anatomy.cli import register

SOURCE = "github.com/opensim-jam-org/jam-resources models/knee_tka (test copy)"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="vr-trainer")
    register(ap.add_subparsers(dest="command", required=True))
    return ap


def test_import_mesh_records_licence_and_source(tmp_path: Path) -> None:
    f = tmp_path / "patella.stl"
    trimesh.creation.icosphere(radius=21.0).export(f)
    args = _parser().parse_args(["import", "mesh", str(f), "--units", "mm", "--license", "Apache-2.0",
                                 "--source", SOURCE, "--out", str(tmp_path / "b")])
    assert args.handler(args) == 0
    prov = load_bundle(tmp_path / "b").manifest["provenance"]
    assert prov["license"] == "Apache-2.0" and prov["source_ref"] == SOURCE
    assert prov["source"] == "mesh" and prov["inputs"], "the rest of the provenance is kept"


def test_without_the_options_nothing_is_claimed(tmp_path: Path) -> None:
    f = tmp_path / "ball.stl"
    trimesh.creation.icosphere(radius=10.0).export(f)
    args = _parser().parse_args(["import", "mesh", str(f), "--units", "mm", "--out", str(tmp_path / "b")])
    assert args.handler(args) == 0
    prov = load_bundle(tmp_path / "b").manifest["provenance"]
    assert "license" not in prov and "source_ref" not in prov


def test_import_ct_records_licence_and_source(tmp_path: Path) -> None:
    import nrrd

    seg = np.zeros((30, 30, 20), np.uint8)
    seg[5:25, 5:25, 4:16] = 1
    f = tmp_path / "seg.nrrd"
    nrrd.write(str(f), seg, {"space": "left-posterior-superior", "space directions": np.diag([1.5, 1.5, 2.0]),
                             "space origin": np.zeros(3)})
    ymap = tmp_path / "map.yaml"
    ymap.write_text("labels:\n  1: {name: block, tissue: organ}\n")
    args = _parser().parse_args(["import", "ct", str(f), "--label-map", str(ymap), "--license", "CC-BY-4.0",
                                 "--source", "doi:10.0000/example", "--out", str(tmp_path / "b")])
    assert args.handler(args) == 0
    prov = load_bundle(tmp_path / "b").manifest["provenance"]
    assert prov["license"] == "CC-BY-4.0" and prov["source_ref"] == "doi:10.0000/example"


@pytest.mark.parametrize("lic", ["", "Apache 2.0; rm", "  "])
def test_a_licence_that_is_not_spdx_is_a_user_error(tmp_path: Path, lic: str) -> None:
    f = tmp_path / "ball.stl"
    trimesh.creation.icosphere(radius=10.0).export(f)
    args = _parser().parse_args(["import", "mesh", str(f), "--units", "mm", "--license", lic,
                                 "--out", str(tmp_path / "b")])
    with pytest.raises(AnatomyError, match="SPDX"):
        args.handler(args)
    assert not (tmp_path / "b").exists(), "nothing is written"
