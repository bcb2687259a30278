"""Patient-specific distal femoral cutting guide on the real femur: printable, seated, clear of the bone."""
from __future__ import annotations

import xml.etree.ElementTree as ET
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import trimesh

from test_tka_landmarks import bones, needs_data  # type: ignore[import-not-found]
from vr_trainer.procedures.tka_guide import (CuttingGuide, distal_cutting_guide, intersection_volume_mm3,
                                             tibial_cutting_guide)
from vr_trainer.procedures.tka_landmarks import femur_landmarks, tibia_landmarks
from vr_trainer.procedures.tka_readouts import distal_femoral, plane_in_frame


@lru_cache(maxsize=1)
def guide() -> CuttingGuide:
    femur = bones()[0]
    f = femur_landmarks(femur)
    plane = plane_in_frame(f.frame, f.medial_distal_mm + 10.0 * f.frame.superior, lateral_tilt_deg=1.0,
                           anterior_tilt_deg=3.0)
    return distal_cutting_guide(femur, plane, f)


@needs_data
def test_guide_is_a_single_watertight_solid() -> None:
    g = guide()
    assert g.mesh.is_watertight and g.mesh.volume > 1000.0
    assert g.dropped_pieces == 0
    assert len(g.mesh.split(only_watertight=False)) == 1


@needs_data
def test_guide_seats_on_the_bone_and_does_not_enter_it() -> None:
    g = guide()
    seated = g.footprint_mm[g.seated_mask()]
    assert len(seated) > 0.8 * len(g.footprint_mm)  # all but the slot band and the pin holes
    _, dist, _ = trimesh.proximity.closest_point(g.mesh, seated)
    assert dist.max() < 0.2  # the underside is the negative of the bone over the whole footprint
    assert intersection_volume_mm3(g.mesh, bones()[0]) < 1e-3


@needs_data
def test_slot_lies_on_the_planned_plane() -> None:
    g = guide()
    f = femur_landmarks(bones()[0])
    assert abs(distal_femoral(g.plane, f).flexion_deg - 3.0) < 0.1
    ex, ey, _ = g.axes
    n = g.axes[2]
    # a line across the block's face in the plane: free in the slot, solid just above and below it
    base = g.centre_mm - float(g.plane.signed_distance_mm(g.centre_mm)[0]) * n
    depth = float(np.max((g.footprint_mm - base) @ ey))  # above the highest bone point under the block
    pts = base + np.outer(np.linspace(-10, 10, 11), ex) + (depth + 2.0) * ey
    assert not g.mesh.contains(pts).any()
    off = g.slot_half_width_mm + 0.3
    assert g.mesh.contains(pts + off * n).all() and g.mesh.contains(pts - off * n).all()


@needs_data
def test_guide_exports_stl_and_3mf(tmp_path: Path) -> None:
    g = guide()
    stl, tmf = g.export(tmp_path)
    back = trimesh.load_mesh(stl)
    assert back.is_watertight and abs(back.volume - g.mesh.volume) < 1e-3 * g.mesh.volume
    with zipfile.ZipFile(tmf) as z:
        assert {"[Content_Types].xml", "_rels/.rels", "3D/3dmodel.model"} <= set(z.namelist())
        root = ET.fromstring(z.read("3D/3dmodel.model"))
    ns = {"m": "http://schemas.microsoft.com/3dmanufacturing/core/2015/02"}
    assert root.get("unit") == "millimeter"
    assert len(root.findall(".//m:vertex", ns)) == len(g.mesh.vertices)
    assert len(root.findall(".//m:triangle", ns)) == len(g.mesh.faces)
    assert tmf.read_bytes() == g.export(tmp_path / "again")[1].read_bytes()  # reproducible file


@needs_data
def test_tibial_guide_seats_below_the_planned_cut() -> None:
    tibia = bones()[1]
    t = tibia_landmarks(tibia, side="right")
    plane = plane_in_frame(t.frame, t.lateral_plateau_mm - 8.0 * t.frame.superior, anterior_tilt_deg=-5.0)
    g = tibial_cutting_guide(tibia, plane, t)
    assert g.mesh.is_watertight and g.dropped_pieces == 0
    _, dist, _ = trimesh.proximity.closest_point(g.mesh, g.footprint_mm[g.seated_mask()])
    assert dist.max() < 0.2 and intersection_volume_mm3(g.mesh, tibia) < 1e-3
    # the block sits on the bone that stays (below the cut) and on the medial side of the tuberosity
    loc = t.frame.local(g.centre_mm)[0]
    assert loc[2] < float(t.frame.local(plane.origin_mm)[0][2]) and loc[0] < 0.0
