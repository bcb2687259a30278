"""The shipped real knee bundle (assets/knee_tka): licence and source recorded, bones assembled in extension."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from vr_trainer.anatomy.bundle import load_bundle
from vr_trainer.procedures.tka_guide import intersection_volume_mm3
from vr_trainer.procedures.tka_landmarks import femur_landmarks, tibia_landmarks

BUNDLE = Path(__file__).resolve().parents[2] / "assets" / "knee_tka"


def test_shipped_bundle_records_licence_source_and_units() -> None:
    b = load_bundle(BUNDLE)
    prov = b.manifest["provenance"]
    assert prov["license"] == "Apache-2.0"
    assert "opensim-jam" in prov["source_ref"] and "grand_challenge" in prov["source_ref"]
    assert b.manifest["source_units"] == "m" and prov["frame"]["source"] == "ASR"
    assert sorted(b.names()) == ["femur", "fibula", "patella", "tibia"]
    assert all(s.watertight for s in b.structures)
    size = sum(p.stat().st_size for p in BUNDLE.rglob("*") if p.is_file())
    assert size < 3 * 1024 * 1024


def test_bones_are_assembled_in_extension() -> None:
    b = load_bundle(BUNDLE)
    femur, tibia, patella = b["femur"].mesh, b["tibia"].mesh, b["patella"].mesh
    f = femur_landmarks(femur)
    t = tibia_landmarks(tibia, side=f.side)
    # neutral alignment: the two mechanical axes coincide within a degree, the knee centres line up
    assert np.degrees(np.arccos(np.clip(f.mechanical_axis @ t.mechanical_axis, -1, 1))) < 1.0
    offset = f.frame.local(t.knee_centre_mm)[0]
    assert abs(offset[0]) < 1.0 and abs(offset[1]) < 1.0
    gap = b.manifest["provenance"]["assembly"]["gap_mm"]
    _, d, _ = trimesh.proximity.closest_point(femur, tibia.vertices[tibia.vertices[:, 2] > tibia.bounds[1][2] - 15])
    assert 0.5 * gap < d.min() <= gap + 0.5  # joint space between the resection surfaces
    assert intersection_volume_mm3(femur, tibia) < 1e-3 and intersection_volume_mm3(femur, patella) < 1e-3
    assert f.frame.local(patella.centroid)[0][1] > 20.0  # patella in front of the femur
    rec = b.manifest["landmarks"]["tka"]
    assert abs(rec["transepicondylar_width_mm"] - f.transepicondylar_width_mm) < 0.1
