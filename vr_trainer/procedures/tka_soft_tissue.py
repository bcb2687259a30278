"""The knee's soft tissue at risk in a TKA, derived from the bundle's bones: the popliteal artery
behind the knee, the medial and lateral collateral ligaments and the patellar tendon.

Everything follows from the landmarks (:mod:`.tka_landmarks`, :mod:`.tka_gaps`) and the bone
surfaces, never from a file's coordinates:

- **MCL** (superficial): a band 10 mm wide and 3 mm thick from the medial epicondyle to its tibial
  insertion 55 mm below the plateau (:func:`~.tka_gaps.mcl_insertion`), lying on the bone;
- **LCL**: a 5 mm cord from the lateral epicondyle to the fibular head (:func:`~.tka_gaps.lcl_insertion`);
- **patellar tendon**: a band 24 mm wide and 5 mm thick from the tibial tubercle (the most anterior
  point of the tibia 15-45 mm below the plateau) to the patella's distal pole; by default as the
  medial parapatellar approach leaves it, the patella everted (turned out laterally): the tendon
  runs 45 mm from the tubercle up and out past the lateral tibial plateau, where a tibial saw pass
  that strays laterally meets it (``patella_everted=False``: to the patella where the bundle has it);
- **popliteal artery** (``popliteal_artery_proximal`` above the joint line, ``popliteal_artery_distal``
  below it): a 6 mm vessel from 70 mm above to 70 mm below the joint line, behind the knee's midline,
  9 mm behind the posterior cortex of the femur and tibia (in extension the artery
  lies close behind the posterior tibial cortex at the joint line: about 9 mm on MRI; Smith PN et al.,
  Clin Orthop Relat Res 1999;(367):158-164, from memory).

Meshes: closed tubes (:func:`vr_trainer.anatomy.spine_tubes.tube_mesh`) kept clear of the bones.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import trimesh

from vr_trainer.anatomy.spine_tubes import catmull_rom, tube_mesh
from vr_trainer.procedures.tka_gaps import lcl_insertion, mcl_insertion
from vr_trainer.procedures.tka_landmarks import FemurLandmarks, TibiaLandmarks

POPLITEAL_BEHIND_MM = 9.0
SOURCE = ("derived from the bones by vr_trainer.procedures.tka_soft_tissue (landmark origins and insertions; "
          "popliteal artery 9 mm behind the posterior cortex, Smith PN et al. 1999)")


def _unit(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, float) / float(np.linalg.norm(v))


def _push_clear(path: np.ndarray, out: np.ndarray, bones: trimesh.Trimesh, clearance_mm: float) -> np.ndarray:
    """Move each path point along ``out`` until the bone surface behind it (along -out) is at least
    ``clearance_mm`` away (points already clear stay)."""
    ray = bones.ray
    origins = path + 200.0 * out
    locs, idx, _ = ray.intersects_location(origins, np.tile(-out, (len(path), 1)), multiple_hits=False)
    res = path.copy()
    for p, k in zip(locs, idx):
        need = float((p - path[k]) @ out) + clearance_mm
        if need > 0:
            res[k] = path[k] + need * out
    return res


def _tube(a: np.ndarray, b: np.ndarray, out: np.ndarray, bones: trimesh.Trimesh, radius_mm: float,
          squash: float | None = None, n: int = 16) -> trimesh.Trimesh:
    line = a[None] + np.linspace(0.0, 1.0, n)[:, None] * (b - a)[None]
    thick = radius_mm * (squash if squash is not None else 1.0)
    path = catmull_rom(_push_clear(line, out, bones, thick + (1.5 if squash is not None else 0.5)), 1.0)
    return tube_mesh(path, np.full(len(path), radius_mm), squash=(out, squash) if squash is not None else None)


def knee_soft_tissue(femur_mesh: trimesh.Trimesh, tibia_mesh: trimesh.Trimesh, femur: FemurLandmarks,
                     tibia: TibiaLandmarks, patella_mesh: trimesh.Trimesh | None = None,
                     fibula_mesh: trimesh.Trimesh | None = None, patella_everted: bool = True
                     ) -> dict[str, tuple[trimesh.Trimesh, str]]:
    """name -> (closed mesh, tissue) of the structures above (the patellar tendon needs the patella)."""
    parts: list[trimesh.Trimesh] = [femur_mesh, tibia_mesh] + ([fibula_mesh] if fibula_mesh is not None else [])
    bones = cast(trimesh.Trimesh, trimesh.util.concatenate(parts))
    lat = _unit(tibia.frame.lateral)
    ant = _unit(tibia.frame.anterior)
    sup = _unit(tibia.frame.superior)
    out: dict[str, tuple[trimesh.Trimesh, str]] = {}
    out["mcl"] = (_tube(femur.medial_epicondyle_mm, mcl_insertion(tibia_mesh, tibia), -lat, bones, 5.0, 0.3),
                  "ligament")
    lcl_ins, _ = lcl_insertion(tibia, fibula_mesh, tibia_mesh)
    out["lcl"] = (_tube(femur.lateral_epicondyle_mm, lcl_ins, lat, bones, 2.5), "ligament")
    plateau = 0.5 * (tibia.medial_plateau_mm + tibia.lateral_plateau_mm)
    tv = np.asarray(tibia_mesh.vertices, float)
    h = (tv - plateau) @ sup
    band = tv[(h < -15.0) & (h > -45.0)]
    tubercle = band[np.argmax(band @ ant)]
    if patella_everted:
        up_out = _unit(0.55 * sup + 0.8 * lat + 0.2 * ant)
        out["patellar_tendon"] = (_tube(tubercle, tubercle + 45.0 * up_out, _unit(lat + ant), bones, 12.0, 0.21),
                                  "ligament")
    elif patella_mesh is not None:
        pv = np.asarray(patella_mesh.vertices, float)
        pole = pv[np.argmin(pv @ sup)]
        with_patella = cast(trimesh.Trimesh, trimesh.util.concatenate([bones, patella_mesh]))
        out["patellar_tendon"] = (_tube(pole, tubercle, ant, with_patella, 12.0, 0.21), "ligament")
    # the popliteal artery: behind the midline of the knee, 9 mm behind the posterior cortex
    centre = 0.5 * (femur.knee_centre_mm + tibia.knee_centre_mm)
    allv = np.vstack([np.asarray(femur_mesh.vertices, float), np.asarray(tibia_mesh.vertices, float)])
    rel = allv - centre
    ml, ap, si = rel @ lat, rel @ ant, rel @ sup
    heights = np.arange(-70.0, 70.1, 10.0)
    back = np.full(len(heights), np.nan)  # the posterior-most bone near the midline at each height
    for k, z in enumerate(heights):
        # behind the femur the artery lies behind both condyles (the knee is cut in flexion, where the
        # vessels fall back); behind the tibia, behind its midline
        sel = (np.abs(si - z) < 5.0) & (np.abs(ml) < (35.0 if z > 0 else 15.0))
        if sel.any():
            back[k] = float(ap[sel].min())
    tib = rel @ sup < 0
    joint = float(ap[tib & (np.abs(ml) < 15.0) & (rel @ sup > -10.0)].min())  # the posterior tibia at the joint
    # straight down behind the knee, bowing out only where bone (the posterior condyles) lies further back
    off = np.fmin(np.where(np.isnan(back), joint, back), joint) - POPLITEAL_BEHIND_MM - 3.0
    line = centre[None] + heights[:, None] * sup + off[:, None] * ant
    # two structures that meet at the joint line: the proximal part stays with the femur, the
    # distal part moves with the tibia when the knee flexes (the femoral cuts are made in flexion)
    for name, sel in (("popliteal_artery_proximal", heights >= 0.0), ("popliteal_artery_distal", heights <= 0.0)):
        path = catmull_rom(line[sel], 1.0)
        out[name] = (tube_mesh(path, np.full(len(path), 3.0)), "vessel")
    return out
