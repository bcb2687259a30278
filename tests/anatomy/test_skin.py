"""Body surface and paraspinal muscle from a CT (``import ct --spine``), on the shared example CT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from vr_trainer.anatomy import load_bundle
from vr_trainer.anatomy.bundle import Structure
from vr_trainer.anatomy.importers import import_ct
from vr_trainer.anatomy.skin import rename_muscles, skin_from_ct
from vr_trainer.anatomy.volume import Volume, read_volume


def test_skin_of_the_example_ct_is_the_closed_body_surface(ts_example: Path) -> None:
    ct = read_volume(ts_example / "example_ct_sm.nii.gz")
    skin = skin_from_ct(ct)
    assert skin is not None and skin.tissue == "skin" and skin.watertight and skin.face_count <= 20_000
    width, depth = np.ptp(skin.mesh.vertices[:, 0]), np.ptp(skin.mesh.vertices[:, 1])
    assert 280.0 < width < 420.0 and 180.0 < depth < 320.0, (width, depth)  # an adult abdomen
    # the vertebrae (label 30 = L2 in the TotalSegmentator map) are inside the body, air outside it is not
    seg = read_volume(ts_example / "example_seg.nii.gz", labels=True)
    ijk = np.argwhere(np.asarray(seg.array) == 30)
    l2 = (seg.affine[:3, :3] @ ijk.mean(0) + seg.affine[:3, 3])
    air = np.argwhere(np.asarray(ct.array) < -900)[0]
    air_ras = ct.affine[:3, :3] @ air + ct.affine[:3, 3]
    inside = skin.mesh.contains([l2, air_ras])
    assert inside[0] and not inside[1]
    assert skin.extra["cap_faces"] > 0, "the scan cuts the body: closed flat there and said so"


def test_no_skin_when_the_ct_shows_no_body_surface() -> None:
    arr = np.full((40, 40, 40), 30, np.int16)  # soft tissue everywhere: a crop inside the patient
    arr[15:25, 15:25, 15:25] = 700
    vol = Volume(array=arr, affine=np.eye(4), source_units="mm", name="crop")
    assert skin_from_ct(vol) is None


def test_autochthon_labels_become_paraspinal_muscle() -> None:
    box = trimesh.creation.box((10.0, 10.0, 10.0))
    s = [Structure.from_mesh("autochthon_left", "muscle", box), Structure.from_mesh("L4", "bone", box)]
    out = rename_muscles(s)
    assert [x.name for x in out] == ["paraspinal_muscle_left", "L4"]
    assert out[0].extra["label_name"] == "autochthon_left" and out[0].tissue == "muscle"


def test_import_ct_spine_adds_skin_muscle_and_skin_entries(ts_example: Path, tmp_path: Path) -> None:
    out = import_ct(ts_example / "example_ct_sm.nii.gz", tmp_path / "b", labels=ts_example / "example_seg.nii.gz",
                    label_map="totalsegmentator", spine=True)
    b = load_bundle(out)
    assert {"skin", "paraspinal_muscle_left", "paraspinal_muscle_right"} <= set(b.names())
    assert "autochthon_left" not in b.names()
    assert b.manifest["notes"]["body"]["skin"].startswith("from the CT")
    lm = b.landmarks["kambin_triangle_L1_L2_left"]
    p = np.asarray(lm["skin_entry_mm"])
    assert float(trimesh.proximity.closest_point(b["skin"].mesh, [p])[1][0]) < 1.0
    assert 60.0 < lm["skin_entry_from_midline_mm"] < 160.0
