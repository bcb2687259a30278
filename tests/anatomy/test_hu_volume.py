"""Bundles keep a down-sampled HU volume for the virtual C-arm; meshes-only bundles get one voxelised."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh

from vr_trainer.anatomy.bundle import Structure, load_bundle, write_bundle
from vr_trainer.anatomy.hu_volume import (HU_FILE, TISSUE_HU, bundle_hu_volume, downsample_hu, load_hu_volume,
                                          volume_from_meshes)
from vr_trainer.anatomy.importers import import_ct
from vr_trainer.anatomy.volume import Volume


def ct_like(spacing_mm: float = 0.5, shape=(120, 100, 80)) -> Volume:
    """Soft tissue with a bright bone block, RAS affine with an offset."""
    hu = np.full(shape, 40, np.int16)
    hu[40:80, 20:60, 30:50] = 900
    aff = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    aff[:3, 3] = [-30.0, 12.0, 100.0]
    return Volume(array=hu, affine=aff, name="test-ct")


def ras(vol: Volume, ijk) -> np.ndarray:
    return (vol.affine @ np.append(np.asarray(ijk, float), 1.0))[:3]


def test_downsample_to_two_mm_keeps_positions_and_values():
    ct = ct_like()
    small = downsample_hu(ct)
    np.testing.assert_allclose(small.spacing_mm, [2.0, 2.0, 2.0])
    assert small.array.dtype == np.int16 and small.array.shape == (30, 25, 20)
    # the bone block's centre is at the same RAS place in both
    np.testing.assert_allclose(ras(small, [14.5, 9.5, 9.5]), ras(ct, [59.5, 39.5, 39.5]))
    assert small.array[15, 10, 10] == 900 and small.array[2, 2, 2] == 40
    coarse = downsample_hu(ct_like(spacing_mm=3.0, shape=(20, 20, 20)))
    np.testing.assert_allclose(coarse.spacing_mm, [3.0, 3.0, 3.0])  # already coarser: kept as it is


def box_structure(name: str, tissue: str, extents, centre=(0, 0, 0)) -> Structure:
    m = trimesh.creation.box(extents=extents)
    m.apply_translation(centre)
    return Structure.from_mesh(name, tissue, m)


def test_bundle_keeps_a_compact_hu_volume(tmp_path: Path):
    ct = ct_like()
    out = write_bundle(tmp_path / "b", [box_structure("bone", "bone", (10, 10, 10))], source_units="mm",
                       provenance={"source": "test"}, deidentification={"status": "test"}, hu_volume=ct)
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["hu_volume"]
    assert entry["file"] == HU_FILE and entry["dtype"] == "int16" and entry["spacing_mm"] == [2.0, 2.0, 2.0]
    assert entry["source"] == "ct" and entry["shape"] == [30, 25, 20]
    assert (out / HU_FILE).stat().st_size < 20_000  # compressed
    vol = load_hu_volume(out)
    assert vol is not None and vol.array.dtype == np.int16
    np.testing.assert_array_equal(vol.array, downsample_hu(ct).array)
    np.testing.assert_allclose(vol.affine, downsample_hu(ct).affine)
    assert load_bundle(out).manifest["hu_volume"]["bytes"] == (out / HU_FILE).stat().st_size
    again = write_bundle(tmp_path / "b2", [box_structure("bone", "bone", (10, 10, 10))], source_units="mm",
                         provenance={"source": "test"}, deidentification={"status": "test"}, hu_volume=ct)
    assert (again / HU_FILE).read_bytes() == (out / HU_FILE).read_bytes()  # reproducible bundles


def test_bundle_without_a_volume_has_none(tmp_path: Path):
    out = write_bundle(tmp_path / "m", [box_structure("bone", "bone", (10, 10, 10))], source_units="mm",
                       provenance={"source": "test"}, deidentification={"status": "test"})
    assert load_hu_volume(out) is None
    assert not (out / "volume").exists()


def test_volume_from_meshes_paints_tissues_nested(tmp_path: Path):
    body = box_structure("skin", "skin", (80, 60, 100))
    muscle = box_structure("muscle", "muscle", (30, 20, 60), centre=(20, -10, 0))
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=12.0)
    bone = Structure.from_mesh("bone", "bone", sphere)
    out = write_bundle(tmp_path / "v", [bone, muscle, body], source_units="mm", provenance={"source": "test"},
                       deidentification={"status": "test"})
    b = load_bundle(out)
    vol = volume_from_meshes(b, spacing_mm=1.0)
    hu = vol.array

    def at(p) -> int:
        ijk = np.round(np.linalg.solve(vol.affine, np.append(p, 1.0))[:3]).astype(int)
        return int(hu[tuple(ijk)])

    assert at([0, 0, 0]) == TISSUE_HU["bone"]
    assert at([25, -10, 20]) == TISSUE_HU["muscle"]
    assert at([-30, 20, 40]) == TISSUE_HU["skin"]
    assert at([-45, 0, 0]) == -1000  # outside the body: air
    bone_ml = float((hu == TISSUE_HU["bone"]).sum()) * 1.0 / 1000.0
    assert bone_ml == pytest.approx(4 / 3 * np.pi * 12.0 ** 3 / 1000.0, rel=0.05)
    assert bundle_hu_volume(b).array.shape == volume_from_meshes(b).array.shape  # no stored volume: voxelised


def test_ct_import_keeps_the_hu_volume(ts_example: Path, tmp_path: Path):
    out = import_ct(ts_example / "example_ct_sm.nii.gz", tmp_path / "ct", threshold_hu=250)
    vol = load_hu_volume(out)
    assert vol is not None
    np.testing.assert_allclose(vol.spacing_mm, [3.0, 3.0, 3.0])  # 3 mm voxels stay (never up-sampled)
    assert vol.array.min() == -1000 and vol.array.max() >= 700  # air and bone in Hounsfield units
    # cropped to the non-air voxels, none lost: the same radiographs (air has no attenuation)
    from vr_trainer.anatomy.volume import read_volume

    src = read_volume(ts_example / "example_ct_sm.nii.gz").array
    assert vol.array.size <= src.size
    assert int((vol.array > -800).sum()) == int((src > -800).sum())
    assert int(vol.array[vol.array > -800].sum()) == int(src[src > -800].sum())
    assert load_bundle(out).manifest["hu_volume"]["source"] == "ct"
    seg = import_ct(ts_example / "example_seg.nii.gz", tmp_path / "seg")
    assert load_hu_volume(seg) is None  # a label map has no Hounsfield units


def test_phantom_ct_box_inside_a_larger_body_keeps_ct_bone_and_no_box_edge():
    from vr_trainer.anatomy.hu_volume import meshes_with_ct_bone

    body = box_structure("skin", "skin", (160, 120, 160))
    bone = Structure.from_mesh("bone", "bone", trimesh.creation.icosphere(subdivisions=4, radius=14.0))
    # a CT box 60 mm wide around the bone: soft tissue 30 HU, the bone with a 1100 HU shell
    aff = np.diag([1.0, 1.0, 1.0, 1.0])
    aff[:3, 3] = -29.5
    ijk = np.stack(np.meshgrid(*[np.arange(60)] * 3, indexing="ij"), -1) - 29.5
    r = np.linalg.norm(ijk, axis=-1)
    hu = np.where(r <= 14, np.where(r >= 12, 1100, 300), 30).astype(np.int16)
    vol = meshes_with_ct_bone([bone, body], Volume(array=hu, affine=aff, name="ct"))

    def at(p) -> int:
        q = np.round(np.linalg.solve(vol.affine, np.append(p, 1.0))[:3]).astype(int)
        return int(vol.array[tuple(q)])

    assert at([0, 0, 0]) == pytest.approx(300, abs=40)  # the CT's cancellous value, not the mesh's 700
    assert at([13, 0, 0]) > 600  # the cortical shell survives the 2 mm block mean
    assert at([20, 0, 0]) == TISSUE_HU["skin"] and at([60, 0, 0]) == TISSUE_HU["skin"]  # no box edge
    assert at([0, 0, 90]) == -1000  # outside the body
