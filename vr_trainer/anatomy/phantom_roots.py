"""The spine phantom's dural sac, nerve roots and Kambin's triangles: the ``--spine`` derivation on the
phantom's own bones, then each root a herniated fragment lies on displaced around it.

One path: the vertebrae and discs painted by :mod:`phantom_spine` are meshed through the import
pipeline and handed to :func:`spine.derive_spine`, exactly what ``vr-trainer import mesh --spine``
does with a patient's vertebra meshes (the phantom's discs are given, so they are kept; the sac, the
twelve roots L3-S1 and the four Kambin landmarks are derived).  The derived tubes are painted into
the phantom's label canvas too, so its CT (``volume/hu.npz``), the body built around the spine and the
approach search see the same roots and sac the bundle ships.

The derivation models normal anatomy.  The phantom's fragments (``herniation_L4_L5`` left,
``herniation_L5_S1`` right) lie in the lateral recess, where the normal traversing root runs, so a
separate step, :func:`displace_around_fragment`, moves every derived root the fragment overlaps off
it, as the fragment would; the manifest records the step and its measured clearances.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy import ndimage

from . import phantom_sdf as S
from .bundle import Structure
from .pipeline import LabelSpec, structures_from_labels
from .spine import ROOT_CLEARANCE_MM, Tube, derive_spine
from .spine_geometry import BoneField, solid_points
from .spine_tubes import tube_mesh
from .volume import Volume

#: how far a displaced root is kept from its fragment's surface (mm): the derivation's bone clearance,
#: so the root lies pressed against the fragment, not in it
FRAGMENT_CLEARANCE_MM = ROOT_CLEARANCE_MM
#: sampling of the fragment's and the bones' distance field for the displacement (mm)
FIELD_PITCH_MM = 0.5
#: bone within this distance of the fragment's centre is what the displaced root must stay clear of (mm)
NEIGHBOURHOOD_MM = 45.0
#: samples (1 mm apart) either side of the pushed ones that are smoothed with them
SMOOTH_WINDOW = 8


def tube_parts(tube: Tube) -> list[S.Part]:
    """SDF primitives (one per centreline segment) of a derived tube, to paint with
    :meth:`Canvas.paint_union`; the sac's elliptic cross-section kept (scaled along its axis)."""
    p, r = tube.path_mm, tube.radius_mm
    if tube.squash is None:
        return [S.capsule(tuple(a), tuple(b), (float(ra), float(rb)))
                for a, b, ra, rb in zip(p[:-1], p[1:], r[:-1], r[1:])]
    axis, f = np.asarray(tube.squash[0], float), float(tube.squash[1])
    k = 1.0 / f - 1.0
    q = p + np.outer(p @ axis, axis) * k
    out = []
    for i in range(len(p) - 1):
        cap = S.capsule(tuple(q[i]), tuple(q[i + 1]), (float(r[i]), float(r[i + 1])))

        def f_sq(X: S.Arr, Y: S.Arr, Z: S.Arr, cap: S.Part = cap) -> S.Arr:
            h = (X * axis[0] + Y * axis[1] + Z * axis[2]) * k
            return cap(X + h * axis[0], Y + h * axis[1], Z + h * axis[2])

        pad = max(float(r[i]), float(r[i + 1])) * max(1.0, f) + 0.5
        lo = np.minimum(p[i], p[i + 1]) - pad
        hi = np.maximum(p[i], p[i + 1]) + pad
        out.append(S.Part(f_sq, tuple(lo), tuple(hi)))
    return out


def displace_around_fragment(path_mm: np.ndarray, radius_mm: float, bones: Sequence[np.ndarray],
                             fragment: np.ndarray, clearance_mm: float = FRAGMENT_CLEARANCE_MM
                             ) -> tuple[np.ndarray, dict[str, float]]:
    """Move a normal root's centreline ``path_mm`` (m, 3) off a herniated fragment.

    What: every sample is pushed along the outward gradient of the signed distance to the union of
    the bones (solid points, each (n, 3) mm) and the fragment (solid points (k, 3) mm) until its surface
    is ``clearance_mm`` (at least the derivation's ``ROOT_CLEARANCE_MM``) clear of both, the curve
    smoothed between moves (:func:`spine_tubes.keep_clear`, the derivation's own rule for bone); the root's start in the
    sac stays put.  Why: the derivation models normal anatomy, where the traversing root lies in the
    lateral recess; a posterolateral fragment occupies that recess and displaces the root medially
    and dorsally, which is the anatomy the PTED scenarios rehearse (the fragment must be taken out
    past the displaced root).  Returns the new centreline and measured figures (mm):
    ``overlap_before_mm`` (how deep the normal root's surface lay inside the fragment),
    ``fragment_clearance_mm`` and ``bone_clearance_mm`` (root surface to fragment / bone, after),
    ``max_shift_mm`` (the largest move of a sample).
    """
    frag = BoneField([fragment], FIELD_PITCH_MM, pad_mm=15.0)
    before = float((frag.distance(path_mm) - radius_mm).min())
    centre = fragment.mean(0)
    near_bone = [b[np.linalg.norm(b - centre, axis=1) < NEIGHBOURHOOD_MM] for b in bones]
    near_bone = [b for b in near_bone if len(b)]
    solid = BoneField([*near_bone, fragment], FIELD_PITCH_MM, pad_mm=15.0)
    need = radius_mm + max(clearance_mm, ROOT_CLEARANCE_MM)
    p = np.array(path_mm, float)
    for _ in range(200):
        short = need - solid.distance(p)
        if float(short.max()) <= 0.02:
            break
        pushed = short > 0
        move = np.clip(short + 0.1, 0.0, 0.5)[:, None] * solid.gradient(p)
        move[~pushed] = 0.0
        move[0] = 0.0  # the root leaves the sac where it did
        p = p + move
        # smooth the course next to the pushed samples only: the rest of the derived root stays as derived
        window = ndimage.binary_dilation(pushed, iterations=SMOOTH_WINDOW) & ~pushed
        window[[0, -1]] = False
        sm = p.copy()
        sm[1:-1] = 0.25 * p[:-2] + 0.5 * p[1:-1] + 0.25 * p[2:]
        p[window] = sm[window]
    bone_only = BoneField(near_bone, FIELD_PITCH_MM, pad_mm=15.0)
    info = {"overlap_before_mm": round(max(0.0, -before), 2),
            "fragment_clearance_mm": round(float((frag.distance(p) - radius_mm).min()), 2),
            "bone_clearance_mm": round(float((bone_only.distance(p) - radius_mm).min()), 2),
            "max_shift_mm": round(float(np.linalg.norm(p - path_mm, axis=1).max()), 2)}
    return p, info


def derive_into(canvas: S.Canvas, specs: dict[int, LabelSpec], ids: dict[str, int]
                ) -> tuple[list[Structure], dict[str, Any], dict[str, Any]]:
    """Derive the sac, roots and Kambin landmarks from the bones painted in ``canvas`` (module docstring),
    displace the roots the fragments lie on, paint sac and roots into ``canvas`` (label ids ``ids``, specs
    added to ``specs``). Returns (derived structures, landmarks, notes for the manifest)."""
    vol = Volume(array=canvas.labels, affine=canvas.affine.copy(), source_units="mm", name="phantom:spine:bones")
    wanted = [i for i, sp in specs.items() if sp.tissue in ("bone", "disc", "pathology")]
    given, _unmapped = structures_from_labels(vol, specs, only=wanted)
    skeleton = [s for s in given if s.tissue in ("bone", "disc")]
    d = derive_spine(skeleton + _iliac_wings())
    structures = {s.name: s for s in d.structures}
    fragments = [s for s in given if s.tissue == "pathology" and s.name.startswith("herniation_")]
    displaced: dict[str, Any] = {}
    if fragments:
        pitch = FIELD_PITCH_MM
        bones = [solid_points(s.mesh, pitch) for s in given if s.tissue == "bone"]
        for frag in fragments:
            fp = solid_points(frag.mesh, pitch)
            field = BoneField([fp], pitch, pad_mm=15.0)
            for name, tube in d.tubes.items():
                if tube.squash is not None:
                    continue
                r = float(tube.radius_mm.max())
                if float((field.distance(tube.path_mm) - r).min()) >= FRAGMENT_CLEARANCE_MM:
                    continue
                path, info = displace_around_fragment(tube.path_mm, r, bones, fp)
                d.tubes[name] = Tube(path, tube.radius_mm)
                old = structures[name]
                extra = dict(old.extra)
                extra["derived"] = {**extra["derived"], "bone_clearance_mm": info["bone_clearance_mm"],
                                    "displaced": {"by": frag.name, **info, "method": DISPLACEMENT_METHOD}}
                structures[name] = Structure.from_mesh(name, "nerve", tube_mesh(path, tube.radius_mm, pitch_mm=0.5),
                                                       **extra)
                displaced[name] = {"by": frag.name, **info}
                d.summary["roots"][name]["bone_clearance_mm"] = info["bone_clearance_mm"]
    root_ids: list[int] = []
    for name, tube in sorted(d.tubes.items(), key=lambda kv: kv[0] == "dural_sac"):
        st = structures[name]
        i = ids[name]
        canvas.paint_union(i, tube_parts(tube), over=[0] + (root_ids if name == "dural_sac" else []))
        if st.tissue == "nerve":
            root_ids.append(i)
        specs[i] = LabelSpec(i, name, st.tissue, str(st.extra.get("description", "")))
    notes = {"spine_derivation": d.summary,
             "herniation_displacement": {"method": DISPLACEMENT_METHOD, "roots": displaced}}
    return [structures[n] for n in d.tubes], d.landmarks, notes


DISPLACEMENT_METHOD = (f"derived (normal) root pushed off the herniated fragment until its surface is "
                       f"{FRAGMENT_CLEARANCE_MM} mm clear of the fragment and {ROOT_CLEARANCE_MM} mm of bone "
                       "(phantom_roots.displace_around_fragment)")


def _iliac_wings() -> list[Structure]:
    """The iliac wings as the body will paint them (:func:`phantom_body.ilium`, 1 mm, not yet blocked by the
    spine's roots), meshed: bones beside the sacrum that the derived roots must stay clear of too."""
    from . import phantom_body as B

    canvas = S.Canvas(B.BODY_BOUNDS_MM[0], B.BODY_BOUNDS_MM[1], 1.0)
    specs = {}
    for side, s in B.SIDES.items():
        i = B.ID[f"ilium_{side}"]
        canvas.paint_union(i, B.ilium(s), 3.0)
        specs[i] = LabelSpec(i, f"ilium_{side}", "bone")
    vol = Volume(array=canvas.labels, affine=canvas.affine.copy(), source_units="mm", name="phantom:spine:ilia")
    return structures_from_labels(vol, specs)[0]
