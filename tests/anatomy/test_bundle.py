"""Bundle format: round trip, atomic writes, clear errors on damaged bundles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh

from vr_trainer.anatomy import AnatomyError, Structure, load_bundle, write_bundle

from .conftest import no_leftovers


def _structs() -> list[Structure]:
    box = trimesh.creation.box((40.0, 30.0, 20.0))
    box.apply_translation([10.0, -5.0, 100.0])
    ball = trimesh.creation.icosphere(subdivisions=3, radius=5.0)
    return [Structure.from_mesh("L4", "bone", box), Structure.from_mesh("nerve_a", "nerve", ball)]


def _write(out: Path, structs: list[Structure] | None = None) -> Path:
    return write_bundle(out, structs or _structs(), source_units="mm", provenance={"inputs": []},
                        deidentification={"status": "not_applicable"})


def test_round_trip_keeps_millimetres_and_measurements(tmp_path: Path) -> None:
    out = _write(tmp_path / "b")
    b = load_bundle(out)
    assert b.manifest["format_version"] == 1 and b.manifest["units"] == "mm" and b.manifest["frame"] == "RAS"
    box = b["L4"]
    assert box.tissue == "bone" and box.watertight and box.face_count == 12
    assert box.volume_ml == pytest.approx(24.0, rel=1e-6)  # 40*30*20 mm^3 = 24 ml
    np.testing.assert_allclose(box.mesh.bounds, [[-10, -20, 90], [30, 10, 110]], atol=1e-4)
    entry = b.manifest["structures"][0]
    assert set(entry) >= {"name", "tissue", "file", "volume_ml", "bbox_mm", "watertight", "face_count"}
    assert (out / entry["file"]).suffix == ".glb"


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import vr_trainer.anatomy.bundle as bundle_mod

    calls = {"n": 0}
    real = bundle_mod._mesh_to_glb

    def flaky(mesh: trimesh.Trimesh) -> bytes:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real(mesh)

    monkeypatch.setattr(bundle_mod, "_mesh_to_glb", flaky)
    with pytest.raises(OSError):
        _write(tmp_path / "b")
    assert no_leftovers(tmp_path / "b")


def test_failed_rewrite_keeps_previous_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = _write(tmp_path / "b")
    before = (out / "manifest.json").read_bytes()
    import vr_trainer.anatomy.bundle as bundle_mod

    monkeypatch.setattr(bundle_mod, "_mesh_to_glb", lambda m: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError):
        _write(out)
    assert (out / "manifest.json").read_bytes() == before
    assert len(load_bundle(out).structures) == 2


def test_refuses_to_replace_a_folder_that_is_not_a_bundle(tmp_path: Path) -> None:
    out = tmp_path / "docs"
    out.mkdir()
    (out / "thesis.txt").write_text("precious")
    with pytest.raises(AnatomyError, match="not an asset bundle"):
        _write(out)
    assert (out / "thesis.txt").read_text() == "precious"


def test_unknown_tissue_and_bad_names_are_user_errors() -> None:
    box = trimesh.creation.box()
    with pytest.raises(AnatomyError, match="unknown tissue 'bones'"):
        Structure.from_mesh("x", "bones", box)
    with pytest.raises(AnatomyError, match="not usable as a file name"):
        Structure.from_mesh("../evil", "bone", box)


def test_damaged_bundles_name_the_file(tmp_path: Path) -> None:
    out = _write(tmp_path / "b")
    glb = out / "meshes" / "L4.glb"
    glb.write_bytes(glb.read_bytes()[:100])
    with pytest.raises(AnatomyError, match="L4.glb"):
        load_bundle(out)
    (out / "manifest.json").write_text("{ not json")
    with pytest.raises(AnatomyError, match="manifest.json"):
        load_bundle(out)
    with pytest.raises(AnatomyError, match="not an asset bundle"):
        load_bundle(tmp_path)


def test_manifest_face_count_must_match(tmp_path: Path) -> None:
    out = _write(tmp_path / "b")
    m = json.loads((out / "manifest.json").read_text())
    m["structures"][0]["face_count"] = 13
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(AnatomyError, match="modified or damaged"):
        load_bundle(out)
