"""Structures cut by the scan's edge come out watertight with a flat, marked cap."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from vr_trainer.anatomy import load_bundle
from vr_trainer.anatomy.bundle import Structure
from vr_trainer.anatomy.importers import import_ct

SPACING_MM = np.array([1.5, 1.5, 2.0])


def _save(arr: np.ndarray, path: Path) -> Path:
    img = nib.Nifti1Image(arr, np.diag([*SPACING_MM, 1.0]))
    img.header.set_xyzt_units("mm")
    nib.save(img, str(path))
    return path


def _cap_checks(s: Structure, plane_z_mm: list[float]) -> None:
    """The last cap_faces faces lie on the border planes and face out of the scan; nothing else does."""
    assert s.watertight and s.mesh.is_winding_consistent and s.volume_ml is not None and s.volume_ml > 0
    cap = s.cap_face_mask()
    assert cap.sum() == s.extra["cap_faces"] > 0
    tri = s.mesh.vertices[s.mesh.faces]
    z = tri[:, :, 2]
    on_plane = np.zeros(len(tri), bool)
    for pz in plane_z_mm:
        on_plane |= np.all(np.abs(z - pz) < 1e-3, axis=1)
    assert np.array_equal(on_plane, cap), "exactly the cap faces lie on the scan's border"
    normals = s.mesh.face_normals[cap]
    centre_z = float(np.mean(plane_z_mm)) if len(plane_z_mm) > 1 else s.centroid_mm[2]
    outward = np.sign(tri[cap][:, 0, 2] - centre_z)
    real = s.mesh.area_faces[cap] > 1e-4  # zero-area slivers of the triangulation have no direction
    assert real.mean() > 0.9 and np.all((normals[:, 2] * outward)[real] > 0.99), "cap normals point out of the scan"


def test_label_touching_the_last_slice_is_capped_flat_there(tmp_path: Path) -> None:
    seg = np.zeros((32, 32, 12), np.uint8)
    seg[8:24, 10:22, 4:] = 1    # a block running out of the top of the scan
    seg[2:8, 2:8, 2:6] = 2      # an island well inside: no cap
    f = _save(seg, tmp_path / "seg.nii.gz")
    lm = tmp_path / "map.yaml"
    lm.write_text("labels:\n  1: {name: femur, tissue: bone}\n  2: {name: patella, tissue: bone}\n")
    b = load_bundle(import_ct(f, tmp_path / "b", label_map=str(lm)))
    fem, pat = b["femur"], b["patella"]
    top_mm = (12 - 0.5) * SPACING_MM[2]  # half a voxel past the last slice's centre
    _cap_checks(fem, [top_mm])
    assert fem.bbox_mm[1][2] == pytest.approx(top_mm, abs=1e-3), "flat at the border, not rounded beyond it"
    assert fem.volume_ml == pytest.approx(fem.extra["voxel_volume_ml"], rel=0.08)
    assert fem.extra["cap_planes"] == [{"axis": "k", "side": "last", "origin_mm": pytest.approx(
        fem.extra["cap_planes"][0]["origin_mm"]), "normal": [0.0, 0.0, -1.0]}]
    assert "cap_faces" not in pat.extra and not pat.cap_face_mask().any() and pat.watertight


def test_threshold_bone_through_both_ends_is_capped_at_both(tmp_path: Path) -> None:
    ct = np.full((32, 32, 12), -1000, np.int16)
    yy, xx = np.mgrid[:32, :32]
    ct[(xx - 16) ** 2 + (yy - 16) ** 2 < 36] = 1200  # a bone shaft along z, cut at both ends
    b = load_bundle(import_ct(_save(ct, tmp_path / "ct.nii.gz"), tmp_path / "b", threshold_hu=300))
    bone = b["bone"]
    planes = [-0.5 * SPACING_MM[2], 11.5 * SPACING_MM[2]]
    _cap_checks(bone, planes)
    assert {p["side"] for p in bone.extra["cap_planes"]} == {"first", "last"}
    assert bone.size_mm[2] == pytest.approx(12 * SPACING_MM[2], abs=1e-3)


def test_shared_example_l2_and_cord_are_closed_at_the_scan_edge(ts_example: Path, tmp_path: Path) -> None:
    b = load_bundle(import_ct(ts_example / "example_ct_sm.nii.gz", tmp_path / "ex",
                              labels=ts_example / "example_seg.nii.gz"))
    img = nib.load(str(ts_example / "example_seg.nii.gz"))
    seg = np.asarray(img.dataobj)
    for name, lid in (("L2", 30), ("spinal_cord", 79)):
        s = b[name]
        ks = np.nonzero((seg == lid).any(axis=(0, 1)))[0]
        assert ks[0] == 0 or ks[-1] == seg.shape[2] - 1, f"{name} should touch the scan's end"
        sides = {p["side"] for p in s.extra["cap_planes"] if p["axis"] == "k"}
        assert sides == {n for n, hit in (("first", ks[0] == 0), ("last", ks[-1] == seg.shape[2] - 1)) if hit}
        assert s.watertight and s.extra["cap_faces"] > 10
        pts = s.mesh.vertices[s.mesh.faces[s.cap_face_mask()]]  # (n, 3, 3)
        d = np.min([np.abs((pts - p["origin_mm"]) @ p["normal"]).max(axis=1) for p in s.extra["cap_planes"]], axis=0)
        assert d.max() < 1e-3, f"{name}: every cap face lies on a border plane"
        assert s.volume_ml == pytest.approx(s.extra["voxel_volume_ml"], rel=0.08), name
    assert "cap_faces" not in b["L1"].extra and b["L1"].watertight  # L1 lies inside the scan
