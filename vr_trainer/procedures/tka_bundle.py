"""Finish a knee bundle made by ``vr-trainer import mesh`` for the TKA scenario.

Meshes exported from a musculoskeletal model (OpenSim, e.g. the TKA grand challenge set)
keep each bone in its own body frame: the tibia comes out 40 cm below the femur and the
patella at the origin. This module places them in extension from the bones' own
landmarks (never from coordinates of a particular file), stores the computed landmarks
and records the licence and source in the manifest:

- tibia (and the fibula, which shares its body frame) rotated so its anatomical frame
  matches the femur's (neutral alignment, 0 deg rotation) and moved so its knee centre
  lies on the femoral mechanical axis, ``gap_mm`` below the level of the distal condyles;
- patella moved (not rotated) so its posterior-most point lies ``patella_gap_mm`` in
  front of the trochlear groove, ``patella_height_mm`` above the femoral knee centre.

Run: ``python -m vr_trainer.procedures.tka_bundle BUNDLE --license SPDX --source TEXT``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import trimesh

from ..anatomy.bundle import Structure, load_bundle, write_bundle
from .tka_landmarks import BoneFrame, FemurLandmarks, femur_landmarks, tibia_landmarks


def _rotation(frame: BoneFrame) -> np.ndarray:
    return np.stack([frame.lateral, frame.anterior, frame.superior], axis=1)


def tibia_pose(femur: FemurLandmarks, tibia_mesh: trimesh.Trimesh, gap_mm: float) -> np.ndarray:
    """4x4 transform putting the tibia under the femur in extension (see the module doc)."""
    t = tibia_landmarks(tibia_mesh, side=femur.side)
    rot = _rotation(femur.frame) @ _rotation(t.frame).T
    # on the femoral mechanical axis (a neutral limb), gap_mm below the distal condyles' midpoint level
    level = float(femur.frame.local(0.5 * (femur.medial_distal_mm + femur.lateral_distal_mm))[0, 2])
    target = femur.knee_centre_mm + (level - gap_mm) * femur.frame.superior
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = target - rot @ t.knee_centre_mm
    return out


def patella_pose(femur: FemurLandmarks, femur_mesh: trimesh.Trimesh, patella_mesh: trimesh.Trimesh,
                 gap_mm: float, height_mm: float) -> np.ndarray:
    """4x4 translation putting the patella in front of the trochlea."""
    fr = femur.frame
    centre = np.asarray(patella_mesh.bounds, dtype=float).mean(axis=0)
    g = fr.local(femur.trochlear_groove_mm)[0]
    spot = fr.origin_mm + g[0] * fr.lateral + height_mm * fr.superior
    loc, _, _ = femur_mesh.ray.intersects_location([spot + 200.0 * fr.anterior], [-fr.anterior],
                                                   multiple_hits=False)
    surface = float((loc[0] - fr.origin_mm) @ fr.anterior) if len(loc) else float(g[1])
    back = float(np.min((np.asarray(patella_mesh.vertices) - centre) @ fr.anterior))
    target = spot + (surface + gap_mm - back - float((spot - fr.origin_mm) @ fr.anterior)) * fr.anterior
    out = np.eye(4)
    out[:3, 3] = target - centre
    return out


def _find(structures: Sequence[Structure], word: str) -> Structure | None:
    hits = [s for s in structures if word in s.name.lower()]
    return hits[0] if hits else None


def finish_knee_bundle(path: str | Path, *, license: str | None = None, source: str | None = None,
                       gap_mm: float = 20.0, patella_gap_mm: float = 12.0, patella_height_mm: float = 15.0,
                       assemble: bool = True, description: str | None = None,
                       soft_tissue: bool = True) -> dict[str, Any]:
    """Assemble (optional), compute landmarks, derive the soft tissue at risk (``soft_tissue``:
    popliteal artery, MCL, LCL, patellar tendon; :mod:`.tka_soft_tissue`) and record licence/source
    in the bundle at ``path``.

    Returns what was written into ``manifest.landmarks['tka']``."""
    bundle = load_bundle(path)
    structures = list(bundle.structures)
    femur_s, tibia_s = _find(structures, "femur"), _find(structures, "tibia")
    if femur_s is None or tibia_s is None:
        raise ValueError(f"{path}: a knee bundle needs structures named femur and tibia; has {bundle.names}")
    femur = femur_landmarks(femur_s.mesh)
    moved: dict[str, list[list[float]]] = {}
    if assemble:
        pose = tibia_pose(femur, tibia_s.mesh, gap_mm)
        poses = {tibia_s.name: pose}
        fib = _find(structures, "fibula")
        if fib is not None:
            poses[fib.name] = pose
        pat = _find(structures, "patella")
        if pat is not None:
            poses[pat.name] = patella_pose(femur, femur_s.mesh, pat.mesh, patella_gap_mm, patella_height_mm)
        for i, s in enumerate(structures):
            if s.name in poses:
                mesh = s.mesh.copy().apply_transform(poses[s.name])
                structures[i] = Structure.from_mesh(s.name, s.tissue, mesh, **s.extra)
                moved[s.name] = [[round(float(v), 6) for v in row] for row in poses[s.name]]
    tibia = tibia_landmarks(_find(structures, "tibia").mesh, side=femur.side)  # type: ignore[union-attr]
    if soft_tissue:
        from vr_trainer.procedures.tka_soft_tissue import SOURCE, knee_soft_tissue

        pat, fib = _find(structures, "patella"), _find(structures, "fibula")
        made = knee_soft_tissue(_find(structures, "femur").mesh, _find(structures, "tibia").mesh,  # type: ignore[union-attr]
                                femur, tibia, pat.mesh if pat is not None else None,
                                fib.mesh if fib is not None else None)
        structures = [s for s in structures if s.name not in made]
        structures += [Structure.from_mesh(name, tissue, mesh, description=SOURCE)
                       for name, (mesh, tissue) in made.items()]
    manifest = bundle.manifest
    provenance = dict(manifest.get("provenance", {}))
    if license:
        provenance["license"] = license
    if source:
        provenance["source_ref"] = source
    if description:
        provenance["description"] = description
    if moved:
        provenance["assembly"] = {
            "by": "vr_trainer.procedures.tka_bundle (bone landmarks, extension, neutral alignment)",
            "gap_mm": gap_mm, "patella_gap_mm": patella_gap_mm, "patella_height_mm": patella_height_mm,
            "transforms_mm": moved}
    record = {"derived_by": "vr_trainer.procedures.tka_landmarks", "femur": femur.as_dict(),
              "tibia": tibia.as_dict(),
              "transepicondylar_width_mm": round(femur.transepicondylar_width_mm, 2),
              "posterior_condylar_angle_deg": round(femur.posterior_condylar_angle_deg, 2),
              "whiteside_to_tea_deg": round(femur.whiteside_to_tea_deg, 2)}
    landmarks = dict(manifest.get("landmarks", {}) or {})
    landmarks["tka"] = record
    write_bundle(bundle.path, structures, source_units=str(manifest.get("source_units", "mm")),
                 provenance=provenance, deidentification=manifest.get("deidentification", {}),
                 landmarks=landmarks, notes=manifest.get("notes"))
    return record


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vr_trainer.procedures.tka_bundle", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle")
    ap.add_argument("--license", help="SPDX id of the source data's licence, e.g. Apache-2.0")
    ap.add_argument("--source", help="where the source meshes come from (repository, path, commit)")
    ap.add_argument("--description", help="one line on what the data is")
    ap.add_argument("--gap-mm", type=float, default=20.0, help="femur-tibia gap in extension (mm)")
    ap.add_argument("--no-assemble", action="store_true", help="bones are already in one frame")
    ap.add_argument("--no-soft-tissue", action="store_true",
                    help="do not derive the popliteal artery, collateral ligaments and patellar tendon")
    a = ap.parse_args(argv)
    rec = finish_knee_bundle(a.bundle, license=a.license, source=a.source, gap_mm=a.gap_mm,
                             assemble=not a.no_assemble, description=a.description,
                             soft_tissue=not a.no_soft_tissue)
    f = rec["femur"]
    print(f"{a.bundle}: side {f['side']}, TEA {rec['transepicondylar_width_mm']} mm, "
          f"valgus {f['valgus_deg']} deg; notes: {'; '.join(f['notes'] + rec['tibia']['notes'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
