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
    assert sorted(b.names()) == ["femur", "fibula", "lcl", "mcl", "patella", "patellar_tendon",
                                 "popliteal_artery_distal", "popliteal_artery_proximal", "tibia"]
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


def test_soft_tissue_at_risk_lies_where_the_anatomy_puts_it() -> None:
    """Derived from the bones: the popliteal artery about 9 mm behind the posterior tibia at the joint
    line, the MCL from the medial epicondyle down the medial tibia, none of them inside a bone."""
    from vr_trainer.procedures.tka_gaps import mcl_insertion

    b = load_bundle(BUNDLE)
    st = {s.name: s.mesh for s in b.structures}
    femur = femur_landmarks(st["femur"])
    tibia = tibia_landmarks(st["tibia"], side=femur.side)
    for name in ("mcl", "lcl", "patellar_tendon", "popliteal_artery_distal", "popliteal_artery_proximal"):
        assert st[name].is_watertight, name
        for bone in ("femur", "tibia"):
            # only the attachments (the rounded ends of a band over a curved bone) overlap the bone
            assert intersection_volume_mm3(st[name], st[bone]) < 0.1 * st[name].volume, (name, bone)
    art = tibia.frame.local(np.asarray(st["popliteal_artery_distal"].vertices))
    tib = tibia.frame.local(np.asarray(st["tibia"].vertices))
    near = (np.abs(tib[:, 2] + 8.0) < 3.0) & (np.abs(tib[:, 0]) < 15.0)  # the posterior tibia below the plateau
    at = np.abs(art[:, 2] + 8.0) < 3.0
    gap = float(tib[near, 1].min() - art[at, 1].max())
    assert 7.0 < gap < 11.0, gap
    mcl = np.asarray(st["mcl"].vertices)
    assert np.linalg.norm(mcl - femur.medial_epicondyle_mm, axis=1).min() < 6.0
    assert np.linalg.norm(mcl - mcl_insertion(st["tibia"], tibia), axis=1).min() < 6.0
    assert float(tibia.frame.local(mcl)[:, 0].mean()) < float(tib[:, 0].mean())  # on the medial side
