"""Reproducible synthetic phantoms, made through the real import pipeline.

Each phantom is painted as a label volume on a RAS millimetre grid, turned
into a CT-like Hounsfield volume (tissue values, cortical shell, seeded
noise, blur), and both go through :func:`pipeline.structures_from_labels`,
exactly as a segmented patient CT would.  Run::

    python -m vr_trainer.anatomy.phantoms --out assets [--only spine] [--volumes DIR]

Same seed and spacing -> byte-identical bundles.

The spine (``assets/spine_l3_s1``, about a minute) is a prone patient's lumbar
region: the spine canvas (0.5 mm, :mod:`phantom_spine`; its dural sac, nerve roots and Kambin
triangles derived from its bones by the ``--spine`` derivation, :mod:`phantom_roots`), the body around it
(muscles and iliac wings at 1 mm, the skin at 2 mm, :mod:`phantom_body`), safe
approaches and skin entries searched on those label volumes
(:mod:`phantom_approach`), and one 2 mm CT of the whole body kept as
``volume/hu.npz`` for the virtual C-arm.  The label volumes' SHA-256 are
recorded in the manifest's provenance (the tests compare them).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path
from typing import Any, Callable


from .bundle import Structure, write_bundle
from .phantom_sdf import Canvas
from .pipeline import LabelSpec, structures_from_labels
from .tissues import FACE_BUDGET
from .volume import Volume

GENERATOR_VERSION = 1
#: phantoms whose geometry changed since version 1 (the others stay byte-identical)
VERSIONS = {"spine": 3, "hip": 2}
#: per-phantom face budgets (tissue -> faces) where the defaults are too rich: thin vessels
BUDGETS = {"spine": {**FACE_BUDGET, "vessel": 900}}
#: the body around the spine: the ilium coarser than a vertebra, the muscles a few thousand faces
BODY_BUDGETS = {**FACE_BUDGET, "bone": 7000, "muscle": 3500, "skin": 16000}
DEFAULT_SEED = 20261125
#: the spine's levels that get a searched approach and skin entries (the PTED scenarios' levels)
PTED_LEVELS = ("L4_L5", "L5_S1")


def _spine(spacing_mm: float) -> tuple[Any, ...]:
    """The spine canvas: bones, discs, fragments and arteries painted (:mod:`phantom_spine`), then the sac,
    roots and Kambin landmarks derived from those bones and painted in (:mod:`phantom_roots`)."""
    from . import phantom_spine as P
    from .phantom_roots import derive_into

    canvas = Canvas(P.BOUNDS_MM[0], P.BOUNDS_MM[1], spacing_mm)
    specs = P.build(canvas)
    painted = {"kind": "synthetic_labels_painted", "sha256": hashlib.sha256(canvas.labels.tobytes()).hexdigest()}
    derived, landmarks, notes = derive_into(canvas, specs, P.ID)
    hu, bones = P.hu_table()
    return canvas, specs, landmarks, hu, bones, derived, notes, [painted]


def _knee(spacing_mm: float) -> tuple[Canvas, dict[int, LabelSpec], dict[str, Any], dict[int, float], list[int]]:
    from . import phantom_joints as J

    return J.build_knee(spacing_mm)


def _hip(spacing_mm: float) -> tuple[Canvas, dict[int, LabelSpec], dict[str, Any], dict[int, float], list[int]]:
    from . import phantom_joints as J

    return J.build_hip(spacing_mm)


#: name -> (builder, voxel size in mm, bundle folder, description)
PHANTOMS: dict[str, tuple[Callable[[float], Any], float, str, str]] = {
    "spine": (_spine, 0.5, "spine_l3_s1", "lumbar spine L3-S1 with left L4-L5 herniation"),
    "knee": (_knee, 0.6, "knee", "right knee: distal femur, proximal tibia, patella, cartilage"),
    "hip": (_hip, 1.0, "hip", "pelvis with acetabula and right proximal femur"),
}


def make_volumes(name: str, seed: int = DEFAULT_SEED, spacing_mm: float | None = None
                 ) -> tuple[Volume, Volume, dict[int, LabelSpec], dict[str, Any]]:
    """Synthetic (CT in HU, label map) volumes for phantom ``name``."""
    ct, labels, specs, landmarks, _derived, _notes = _volumes(name, seed, spacing_mm)
    return ct, labels, specs, landmarks


def _volumes(name: str, seed: int, spacing_mm: float | None) -> tuple[Volume, Volume, dict[int, LabelSpec],
                                                                      dict[str, Any], list[Structure], dict[str, Any]]:
    """:func:`make_volumes` plus the structures the builder derived (meshes, not from the labels) and its
    manifest notes."""
    builder, default_spacing, _folder, desc = PHANTOMS[name]
    sp = float(spacing_mm or default_spacing)
    built = builder(sp)
    canvas, specs, landmarks, hu_by_label, bones = built[:5]
    derived, notes, pre_inputs = (built[5], built[6], built[7]) if len(built) > 5 else ([], {}, [])
    hu = canvas.hu_volume(hu_by_label, bones, seed=seed)
    digest = hashlib.sha256(canvas.labels.tobytes()).hexdigest()
    ct = Volume(array=hu, affine=canvas.affine.copy(), source_units="mm", name=f"phantom:{name}:ct",
                inputs=[{"kind": "synthetic_ct", "sha256": hashlib.sha256(hu.tobytes()).hexdigest()}])
    labels = Volume(array=canvas.labels, affine=canvas.affine.copy(), source_units="mm",
                    name=f"phantom:{name}:labels",
                    inputs=[{"kind": "synthetic_labels", "sha256": digest}, *pre_inputs])
    labels.notes["blocked_voxels"] = {specs[k].name: v for k, v in canvas.blocked.items() if v and k in specs}
    labels.notes["description"] = desc
    return ct, labels, specs, landmarks, derived, notes


def make_phantom(name: str, out_root: Path, *, seed: int = DEFAULT_SEED, spacing_mm: float | None = None,
                 volumes_dir: Path | None = None) -> Path:
    """Generate phantom ``name`` and write its bundle under ``out_root``."""
    _builder, default_spacing, folder, desc = PHANTOMS[name]
    ct, labels, specs, landmarks, derived, notes = _volumes(name, seed, spacing_mm)
    if volumes_dir is not None:
        _save_nifti(ct, volumes_dir / f"{folder}_ct.nii.gz")
        _save_nifti(labels, volumes_dir / f"{folder}_labels.nii.gz")
    # derived structures ship the derivation's own meshes (their labels only feed the CT and the body)
    own = {s.name for s in derived}
    structures, unmapped = structures_from_labels(labels, specs, ct=ct, budgets=BUDGETS.get(name),
                                                  only=[i for i, sp in specs.items() if sp.name not in own])
    if unmapped:
        raise RuntimeError(f"phantom {name}: labels without specs {unmapped}")
    structures += derived
    # only the spine keeps a CT (volume/hu.npz) for the C-arm: the knee and hip stay as shipped (their DRR
    # falls back to the meshes)
    hu_volume: Volume | None = None
    hu_source = "synthetic phantom ct"
    body_inputs: list[dict[str, str]] = []
    if name == "spine":
        extra, hu_volume, body_inputs = _spine_body(ct, labels, specs, landmarks)
        structures += extra
        hu_source = "synthetic phantom ct: 2 mm composite of the spine (0.5 mm), muscles and ilium (1 mm), skin (2 mm)"
    provenance = {
        "source": "synthetic phantom",
        "generator": "vr_trainer.anatomy.phantoms",
        "generator_version": VERSIONS.get(name, GENERATOR_VERSION),
        "phantom": name,
        "description": desc,
        "seed": seed,
        "voxel_mm": float(spacing_mm or default_spacing),
        "grid_shape": list(labels.array.shape),
        "inputs": ct.inputs + labels.inputs + body_inputs,
        "pipeline": "labels -> gaussian 0.5 voxel -> marching cubes (ascent) -> taubin -> "
                    "fast-simplification to tissue budget -> repair",
    }
    return write_bundle(
        out_root / folder, structures, source_units="mm", provenance=provenance,
        deidentification={"status": "not_applicable", "reason": "synthetic phantom, no patient data"},
        landmarks=landmarks, notes=notes or None, hu_volume=hu_volume, hu_source=hu_source,
    )


def _spine_body(ct: Volume, labels: Volume, specs: dict[int, LabelSpec], landmarks: dict[str, Any]
                ) -> tuple[list[Structure], Volume, list[dict[str, str]]]:
    """Skin, muscles and iliac wings around the spine (coarser canvases), the searched safe
    approaches with their skin entries added to ``landmarks``, and the whole body's CT (2 mm)."""
    from . import phantom_body as B
    from .phantom_approach import Obstacles, add_entries, safe_approach

    spine = Canvas.from_labels(labels.array, labels.affine)
    body, body_specs = B.build_body(spine)
    skin, skin_specs = B.build_skin()
    forbidden = [i for i, sp in specs.items() if sp.tissue in ("bone", "nerve", "dura", "vessel")]
    ilia = [i for i, sp in body_specs.items() if sp.tissue == "bone"]
    obst = Obstacles([(spine, forbidden), (body, ilia)], skin)
    approaches = {n: safe_approach(obst, lm["incenter_mm"], 1.0 if lm["side"] == "right" else -1.0,
                                   lm["vertices_mm"])
                  for n, lm in landmarks.items() if n.startswith("kambin_triangle_") and lm["level"] in PTED_LEVELS}
    B.finish_body(body)
    inputs = [{"kind": "synthetic_labels_body_1mm", "sha256": hashlib.sha256(body.labels.tobytes()).hexdigest()},
              {"kind": "synthetic_labels_skin_2mm", "sha256": hashlib.sha256(skin.labels.tobytes()).hexdigest()}]
    out: list[Structure] = []
    for canvas, sp in ((body, body_specs), (skin, skin_specs)):
        vol = Volume(array=canvas.labels, affine=canvas.affine.copy(), source_units="mm", name="phantom:spine:body")
        got, unmapped = structures_from_labels(vol, sp, budgets=BODY_BUDGETS)
        if unmapped:
            raise RuntimeError(f"phantom spine body: labels without specs {unmapped}")
        out += got
    add_entries(landmarks, approaches, next(s for s in out if s.name == "skin").mesh)
    hu, affine = B.composite_hu(ct.array, spine, body, skin, body_specs)
    whole = Volume(array=hu, affine=affine, source_units="mm", name="phantom:spine:ct_whole",
                   inputs=[{"kind": "synthetic_ct", "sha256": hashlib.sha256(hu.tobytes()).hexdigest()}])
    return out, whole, inputs + whole.inputs


def _save_nifti(vol: Volume, path: Path) -> None:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(vol.array, vol.affine)
    img.header.set_xyzt_units("mm")
    nib.save(img, str(path))


def main(argv: list[str] | None = None) -> int:
    """Command line: regenerate the shipped phantom bundles."""
    ap = argparse.ArgumentParser(prog="python -m vr_trainer.anatomy.phantoms", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("assets"), help="folder that receives the bundles")
    ap.add_argument("--only", choices=sorted(PHANTOMS), action="append", help="phantom(s) to make (default all)")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--spacing-mm", type=float, default=None, help="voxel size override (mm)")
    ap.add_argument("--volumes", type=Path, default=None, help="also save the CT and label volumes as NIfTI here")
    args = ap.parse_args(argv)
    for name in args.only or list(PHANTOMS):
        t0 = time.perf_counter()
        path = make_phantom(name, args.out, seed=args.seed, spacing_mm=args.spacing_mm, volumes_dir=args.volumes)
        size_kb = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1024
        print(f"{name}: {path} ({size_kb:.0f} KB, {time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
