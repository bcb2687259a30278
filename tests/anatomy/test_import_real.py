"""Imports of the shared real data (../shared/data, referenced, never copied)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest

from vr_trainer.anatomy import load_bundle
from vr_trainer.anatomy.importers import import_ct, import_mesh


@pytest.fixture(scope="module")
def example_bundle(ts_example: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ex") / "example"
    return import_ct(ts_example / "example_ct_sm.nii.gz", out, labels=ts_example / "example_seg.nii.gz",
                     label_map="totalsegmentator")


def test_example_ct_with_labels_gives_vertebrae_and_cord(example_bundle: Path, ts_example: Path) -> None:
    b = load_bundle(example_bundle)
    for name in ("L1", "L2", "T12"):
        s = b[name]
        assert s.tissue == "bone" and s.watertight, name
        # an adult lumbar/low thoracic vertebra (partly cut by the 30-slice crop): 25-90 ml
        assert s.volume_ml is not None and 25.0 < s.volume_ml < 90.0, f"{name} {s.volume_ml} ml"
        assert s.volume_ml == pytest.approx(s.extra["voxel_volume_ml"], rel=0.12), name
        assert s.extra["hu_mean"] > 150.0, f"{name} mean HU {s.extra['hu_mean']}: not bone?"
    cord = b["spinal_cord"]
    assert cord.tissue == "nerve" and cord.volume_ml is not None and 3.0 < cord.volume_ml < 25.0
    # RAS orientation: T12 above L1 above L2, the cord behind the vertebral bodies
    z = [b[n].centroid_mm[2] for n in ("T12", "L1", "L2")]
    assert z[0] > z[1] > z[2]
    assert cord.centroid_mm[1] < b["L1"].centroid_mm[1]
    assert b["aorta"].tissue == "vessel" and b["autochthon_left"].tissue == "muscle"
    assert b["autochthon_left"].centroid_mm[0] < b["autochthon_right"].centroid_mm[0], "left is -x in RAS"
    # every surface sits on its own label (checked against the label map itself: no swapped meshes)
    img: Any = nib.load(str(ts_example / "example_seg.nii.gz"))
    seg = np.asarray(img.dataobj)
    for s in b.structures:
        ijk = np.argwhere(seg == s.extra["label_id"])
        if len(ijk) < 50:
            continue
        c = nib.affines.apply_affine(img.affine, ijk.mean(axis=0))
        # a swapped mesh would be centimetres away; thin curved ribs cut by the crop shift a few mm
        assert np.linalg.norm(c - s.centroid_mm) < max(6.0, 0.15 * float(max(s.size_mm))), s.name
    m = b.manifest
    assert (m["units"] == "mm" and m["source_units"] == "mm"
            and m["provenance"]["label_map"].startswith("TotalSegmentator"))
    assert all(len(i["sha256"]) == 64 for i in m["provenance"]["inputs"])


def _originals(folder: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted(folder.iterdir())]


def test_dicom_series_is_decoded_and_deidentified(ts_example: Path) -> None:
    from vr_trainer.anatomy.dicom import read_dicom_series

    folder = ts_example / "example_ct_dicom"
    orig = _originals(folder)
    assert any(o.get("InstitutionAddress") for o in orig) and any(e.tag.is_private for e in orig[0])
    s = read_dicom_series(folder)
    v = s.volume
    assert v.array.shape == (512, 512, 20)
    np.testing.assert_allclose(v.spacing_mm, [0.9765625, 0.9765625, 2.0], rtol=1e-6)
    assert v.array.min() <= -1000 and v.array.max() > 1000, "JPEG 2000 pixels decoded to HU"
    old_uids = {str(o.get(k, "")) for o in orig for k in ("SOPInstanceUID", "SeriesInstanceUID",
                                                          "StudyInstanceUID", "FrameOfReferenceUID")} - {""}
    sops = set()
    for ds in s.datasets:
        assert "InstitutionAddress" not in ds or not ds.InstitutionAddress
        assert not any(e.tag.is_private for e in ds)
        assert str(ds.get("StationName", "")) != "PETCT2" and str(ds.get("StudyDate", "")) != "20221208"
        for k in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
            uid = str(ds.get(k, ""))
            assert uid and uid not in old_uids and pydicom.uid.UID(uid).is_valid, k
        sops.add(str(ds.SOPInstanceUID))
        assert ds.PatientIdentityRemoved == "YES"
    assert len(sops) == 20, "every slice needs its own new SOPInstanceUID"
    assert s.deidentification["status"] == "deidentified"


def test_dicom_import_bundle_holds_no_identifiers(ts_example: Path, tmp_path: Path) -> None:
    folder = ts_example / "example_ct_dicom"
    out = import_ct(folder, tmp_path / "dcm", threshold_hu=300)
    text = (out / "manifest.json").read_text()
    orig = _originals(folder)
    secrets = {"Petersgraben", "PETCT2", "60064", "20221208"}
    secrets |= {str(o.get(k, "")) for o in orig for k in ("SOPInstanceUID", "StudyInstanceUID")} - {""}
    secrets |= {p.name for p in folder.iterdir()}  # file names embed UIDs
    assert not [x for x in secrets if x in text]
    m = json.loads(text)
    assert m["deidentification"]["status"] == "deidentified" and m["deidentification"]["files"] == 20
    bone = load_bundle(out)["bone"]
    assert bone.face_count > 1000 and bone.bbox_mm[1][2] - bone.bbox_mm[0][2] > 30  # spans the 40 mm stack


def test_tka_femur_tibia_in_metres_become_watertight_millimetres(tka: Path, tmp_path: Path) -> None:
    out = import_mesh([tka / "Femur.stl", tka / "Tibia.stl"], tmp_path / "tka")
    b = load_bundle(out)
    assert b.manifest["source_units"] == "m"
    assert b.manifest["provenance"]["units"]["decided"] == "m"
    fem, tib = b["Femur"], b["Tibia"]
    assert fem.watertight and tib.watertight
    assert 440.0 < max(fem.size_mm) < 490.0, fem.size_mm   # ~0.467 m femur
    assert 350.0 < max(tib.size_mm) < 410.0, tib.size_mm
    assert fem.volume_ml is not None and 300.0 < fem.volume_ml < 800.0
    assert fem.face_count == 29590, "binary STL per-face vertices must merge back to the original mesh"


def test_label_map_alone_is_a_valid_input(ts_example: Path, tmp_path: Path) -> None:
    out = import_ct(ts_example / "example_seg.nii.gz", tmp_path / "seg")
    names = load_bundle(out).names()
    assert {"L1", "L2", "T12", "spinal_cord"} <= set(names)
