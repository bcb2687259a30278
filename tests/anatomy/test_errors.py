"""Broken and wrong-unit inputs: a clear AnatomyError naming the file, and no bundle left."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import trimesh

from vr_trainer.anatomy import AnatomyError
from vr_trainer.anatomy.importers import import_ct, import_mesh

from .conftest import no_leftovers


def _expect_error(tmp_path: Path, fn, match: str) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out" / "bundle"
    out.parent.mkdir()
    with pytest.raises(AnatomyError, match=match) as info:
        fn(out)
    assert no_leftovers(out)
    assert "Traceback" not in str(info.value)


def test_truncated_binary_stl(tka: Path, tmp_path: Path) -> None:
    bad = tmp_path / "Femur_cut.stl"
    bad.write_bytes((tka / "Femur.stl").read_bytes()[:20_000])
    _expect_error(tmp_path, lambda out: import_mesh([bad], out), r"Femur_cut\.stl.*truncated")


def test_garbage_stl(tmp_path: Path) -> None:
    bad = tmp_path / "noise.stl"
    bad.write_bytes(np.random.default_rng(1).bytes(5000))
    _expect_error(tmp_path, lambda out: import_mesh([bad], out), r"noise\.stl")


def test_truncated_ascii_stl(tmp_path: Path) -> None:
    good = trimesh.creation.icosphere(radius=30.0).export(file_type="stl_ascii")
    bad = tmp_path / "ascii.stl"
    bad.write_text(good[: len(good) // 2])
    _expect_error(tmp_path, lambda out: import_mesh([bad], out), r"ascii\.stl.*(truncated|endsolid)")


def test_truncated_obj(tmp_path: Path) -> None:
    text = trimesh.creation.icosphere(radius=30.0).export(file_type="obj")
    bad = tmp_path / "cut.obj"
    bad.write_text(text[: int(len(text) * 0.7)])
    _expect_error(tmp_path, lambda out: import_mesh([bad], out), r"cut\.obj.*(truncated|corrupt)")


def test_obj_faces_pointing_at_missing_vertices(tmp_path: Path) -> None:
    bad = tmp_path / "holes.obj"
    bad.write_text("v 0 0 0\nv 30 0 0\nv 0 30 0\nf 1 2 3\nf 1 2 9\n")
    _expect_error(tmp_path, lambda out: import_mesh([bad], out), r"holes\.obj.*vertex 9")


def test_truncated_dicom_slice(ts_example: Path, tmp_path: Path) -> None:
    series = tmp_path / "series"
    shutil.copytree(ts_example / "example_ct_dicom", series)
    victim = sorted(series.iterdir())[7]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    _expect_error(tmp_path, lambda out: import_ct(series, out), r"series.*(corrupt|truncated)")


def test_truncated_nifti(ts_example: Path, tmp_path: Path) -> None:
    bad = tmp_path / "seg_cut.nii.gz"
    raw = (ts_example / "example_seg.nii.gz").read_bytes()
    bad.write_bytes(raw[: len(raw) // 2])
    _expect_error(tmp_path, lambda out: import_ct(bad, out), r"seg_cut\.nii\.gz.*(truncated|corrupt)")


def test_not_a_nifti(tmp_path: Path) -> None:
    bad = tmp_path / "scan.nii.gz"
    bad.write_bytes(gzip.compress(b"hello, I am not an image" * 10))
    _expect_error(tmp_path, lambda out: import_ct(bad, out), r"scan\.nii\.gz")


def test_metres_declared_as_millimetres(tka: Path, tmp_path: Path) -> None:
    _expect_error(tmp_path, lambda out: import_mesh([tka / "Femur.stl"], out, units="mm"),
                  r"Femur\.stl.*0\.467 mm.*--units m")


def test_ambiguous_size_asks_for_units(tmp_path: Path) -> None:
    f = tmp_path / "block.stl"
    trimesh.creation.box((50.0, 40.0, 30.0)).export(f)
    _expect_error(tmp_path, lambda out: import_mesh([f], out), r"block\.stl.*pass --units")
    out = import_mesh([f], tmp_path / "ok", units="mm")
    assert out.is_dir()


def test_nifti_with_wrong_header_units(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.full((20, 20, 20), 500, np.int16), np.diag([2.0, 2.0, 2.0, 1.0]))
    img.header.set_xyzt_units("meter")  # 2 m voxels
    bad = tmp_path / "metres.nii.gz"
    nib.save(img, str(bad))
    _expect_error(tmp_path, lambda out: import_ct(bad, out), r"metres\.nii\.gz.*voxel size.*implausible")


def test_ct_without_bone(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.full((20, 20, 20), -1000, np.int16), np.eye(4))
    img.header.set_xyzt_units("mm")
    air = tmp_path / "air.nii.gz"
    nib.save(img, str(air))
    _expect_error(tmp_path, lambda out: import_ct(air, out, threshold_hu=200), r"air\.nii\.gz.*no voxel exceeds")
