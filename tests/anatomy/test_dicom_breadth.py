"""DICOM breadth: enhanced multi-frame CT/MR, DICOM SEG label maps, modality checks, series choice.

Every file is generated here (pydicom/highdicom, 32 x 32 x 12) and carries made-up identifiers that must
not reach the bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vr_trainer.anatomy import AnatomyError, load_bundle
from vr_trainer.anatomy.cli import main
from vr_trainer.anatomy.dicom import read_dicom_series
from vr_trainer.anatomy.importers import import_ct

from . import dicomgen as gen
from .conftest import no_leftovers

VOXEL_ML = gen.PIXEL_MM[0] * gen.PIXEL_MM[1] * gen.SLICE_MM / 1000.0
BONE_ML = 12 * 12 * 7 * VOXEL_ML


def _no_secrets(out: Path) -> None:
    blob = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    assert not [s for s in gen.SECRETS if s.encode() in blob]


def test_enhanced_ct_reads_like_the_classic_series(tmp_path: Path) -> None:
    slices = gen.classic("CT")
    classic = read_dicom_series(gen.write(slices, tmp_path / "classic"))
    enh = read_dicom_series(gen.write(gen.enhanced(slices), tmp_path / "enhanced"))
    per_ds = gen.per_frame_geometry(gen.enhanced(slices))
    item = per_ds.PerFrameFunctionalGroupsSequence[3]
    item.InstitutionName, item.StationName = "Nested General", "NESTED-STATION"  # only nested: still removed
    item.add_new(0x00111010, "LO", "ACME private")
    item.add_new(0x00111001, "LO", "nested private secret")
    per = read_dicom_series(gen.write(per_ds, tmp_path / "per_frame"))
    nested = [str(e.value) for e in per.datasets[0].iterall() if e.VR not in ("SQ", "OB", "OW")]
    assert not [x for x in nested if "Nested General" in x or "NESTED-STATION" in x or "nested private" in x]
    for s in (enh, per):
        np.testing.assert_array_equal(s.volume.array, classic.volume.array)
        np.testing.assert_allclose(s.volume.affine, classic.volume.affine, atol=1e-6)
    v = classic.volume
    assert v.array.shape == gen.SHAPE
    np.testing.assert_allclose(v.spacing_mm, [gen.PIXEL_MM[1], gen.PIXEL_MM[0], gen.SLICE_MM])
    assert v.array.min() == -1000 and v.array.max() == 1200, "rescaled to Hounsfield units"
    # LPS origin (-20, -16, 100) -> RAS (20, 16, 100)
    np.testing.assert_allclose(v.affine[:3, 3], [20.0, 16.0, 100.0])
    ds = enh.datasets[0]
    values = [str(e.value) for e in ds.iterall() if e.VR not in ("SQ", "OB", "OW")]
    assert not [s for s in gen.SECRETS if any(s in x for x in values)], "nested copies de-identified too"
    assert not any(e.tag.is_private for e in ds.iterall())
    out = import_ct(tmp_path / "enhanced", tmp_path / "b", threshold_hu=500)
    bone = load_bundle(out)["bone"]
    assert bone.watertight and bone.volume_ml == pytest.approx(BONE_ML, rel=0.15)
    _no_secrets(out)


def test_enhanced_frame_without_geometry_is_refused(tmp_path: Path) -> None:
    ds = gen.enhanced(gen.classic("CT"))
    del ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence
    folder = gen.write(ds, tmp_path / "enh")
    with pytest.raises(AnatomyError, match=r"enh: frame 1 has no PlaneOrientationSequence.*re-export"):
        import_ct(folder, tmp_path / "b")
    assert no_leftovers(tmp_path / "b")


def test_dicom_seg_on_the_ct_grid_names_segments_and_keeps_hu(tmp_path: Path) -> None:
    slices = gen.classic("CT")
    ct = gen.write(slices, tmp_path / "ct")
    segf = gen.write(gen.seg(slices), tmp_path / "seg") / "000.dcm"
    out = import_ct(ct, tmp_path / "b", labels=segf)
    b = load_bundle(out)
    assert set(b.names()) == {"L4", "spinal_cord"}
    l4, cord = b["L4"], b["spinal_cord"]
    assert l4.tissue == "bone" and cord.tissue == "nerve"
    assert l4.extra["voxel_volume_ml"] == pytest.approx(BONE_ML, rel=1e-6)
    assert l4.extra["hu_mean"] == pytest.approx(1200.0), "SEG resampled onto the CT grid: HU measured"
    assert cord.extra["hu_mean"] == pytest.approx(40.0)
    assert "Bone" in l4.extra["description"]
    m = b.manifest
    assert m["provenance"]["label_map"].startswith("DICOM SEG") and "CT grid" in m["notes"]["dicom_seg_grid"]
    assert m["deidentification"]["status"] == "deidentified" and m["deidentification"]["files"] == 13
    _no_secrets(out)


def test_enhanced_mr_without_labels_is_refused_with_labels_imported(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    slices = gen.classic("MR", description="T2 SAG")
    mr = gen.write(gen.enhanced(slices), tmp_path / "mr")
    rc = main(["import", "ct", str(mr), "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "is MR" in err[0] and "Hounsfield" in err[0] and "--labels" in err[0]
    assert no_leftovers(tmp_path / "b")
    segf = gen.write(gen.seg(slices), tmp_path / "seg") / "000.dcm"
    b = load_bundle(import_ct(mr, tmp_path / "b", labels=segf))
    assert set(b.names()) == {"L4", "spinal_cord"} and "hu_mean" not in b["L4"].extra
    assert b["L4"].volume_ml == pytest.approx(BONE_ML, rel=0.15)
    assert b.manifest["provenance"]["modality"] == "MR"


@pytest.mark.parametrize("modality,word", [("OT", "Secondary Capture"), ("US", "Ultrasound")])
def test_non_ct_modalities_are_refused_for_thresholds(modality: str, word: str, tmp_path: Path) -> None:
    folder = gen.write(gen.classic(modality), tmp_path / "s")
    with pytest.raises(AnatomyError, match=rf"is {modality} \(.*{word}.*\), not CT.*--labels") as info:
        import_ct(folder, tmp_path / "b", threshold_hu=300)
    assert "Traceback" not in str(info.value) and no_leftovers(tmp_path / "b")


def test_several_series_are_listed_and_one_chosen(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ct, mr = gen.classic("CT", description="AX bone"), gen.classic("MR", description="T2 SAG")
    folder = gen.write(ct, tmp_path / "study")
    mr_enhanced = gen.enhanced(mr)
    gen.write(mr_enhanced, folder)
    rc = main(["import", "ct", str(folder), "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert rc == 2 and "holds 2 image series" in err and "--series UID" in err
    ct_uid, mr_uid = str(ct[0].SeriesInstanceUID), str(mr_enhanced.SeriesInstanceUID)
    lines = err.splitlines()
    assert any(ct_uid in ln and "CT" in ln and "AX bone" in ln and "12 images" in ln for ln in lines)
    assert any(mr_uid in ln and "MR" in ln and "T2 SAG" in ln and "12 images" in ln for ln in lines)
    assert not (tmp_path / "b").exists()
    rc = main(["import", "ct", str(folder), "--series", ct_uid, "--threshold-hu", "500", "--out", str(tmp_path / "b")])
    assert rc == 0
    b = load_bundle(tmp_path / "b")
    assert b["bone"].volume_ml == pytest.approx(BONE_ML, rel=0.15)
    _no_secrets(tmp_path / "b")
    with pytest.raises(AnatomyError, match=r"--series 9\.9\.9 matches none"):
        import_ct(folder, tmp_path / "c", series="9.9.9")


def test_overlapping_segments_keep_the_higher_segment_number(tmp_path: Path) -> None:
    slices = gen.classic("CT")
    ct = gen.write(slices, tmp_path / "ct")
    cord = (slice(14, 24), slice(10, 22), slice(4, 10))  # overlaps the bone block in 6 x 8 x 5 voxels
    segf = gen.write(gen.seg(slices, cord=cord), tmp_path / "seg") / "000.dcm"
    b = load_bundle(import_ct(ct, tmp_path / "b", labels=segf))
    assert "higher segment number" in b.manifest["notes"]["dicom_seg"]
    assert b["spinal_cord"].extra["voxel_volume_ml"] == pytest.approx(10 * 12 * 6 * VOXEL_ML, rel=1e-6)
    assert b["L4"].extra["voxel_volume_ml"] == pytest.approx(BONE_ML - 6 * 8 * 5 * VOXEL_ML, rel=1e-6)


def test_a_seg_alone_as_path_says_what_to_pass(tmp_path: Path) -> None:
    segs = gen.write(gen.seg(gen.classic("CT")), tmp_path / "seg")
    with pytest.raises(AnatomyError, match=r"seg: holds only a DICOM SEG.*as PATH and the SEG as --labels"):
        import_ct(segs, tmp_path / "b")
    assert no_leftovers(tmp_path / "b")
