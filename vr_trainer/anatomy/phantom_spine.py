"""Lumbar spine L3-S1 phantom geometry (labels on a RAS millimetre grid).

Built in *straight* coordinates (every endplate horizontal; origin at the
canal centre of the L4-L5 disc) and placed in lordosis by
:mod:`phantom_bend`: each bone moves rigidly, the discs take the wedge.

Dimensions (mm; adult means, rounded, after Panjabi et al. 1992, "Human lumbar
vertebrae: quantitative three-dimensional anatomy", Spine 17:299-306, and
Zhou et al. 2000, "Geometrical dimensions of the lower lumbar vertebrae -
analysis of data from digitised CT images", Eur Spine J 9:242-248; the
journal volumes and pages of all four references here are from memory, and
so are the per-structure values: rounded, not copied from their tables):
vertebral bodies 45/48/50 wide and 34-35 deep for L3/L4/L5, 26-27 tall;
endplates kidney-shaped (posterior wall indented ~3 mm at the midline);
pedicles ~9 mm wide and ~15 mm tall (the L5 pedicle the widest);
interpedicular distance ~22 at L4; transverse processes 27/23/19 mm long at
L3/L4/L5 (L5 short and stout); spinous processes ~30 mm long, ~6 mm thick.
Discs 10-10.5 high at the centre.

Lordosis (segmental, between adjacent endplates, i.e. the disc wedges): L3-L4
12, L4-L5 14, L5-S1 16 degrees, 42 degrees from the L3 superior to the S1
endplate (measured on the meshes: 43), within the ranges of standing
radiographs (e.g. Been et al. 2010, "Vertebral bodies or discs: which
contributes more to human-like lumbar lordosis?", Clin Orthop Relat Res
468:1822-1829; the per-level split is from memory: most of the lordosis at
L4-L5 and L5-S1).  The discs wedge about the bodies' centres (the L5-S1 disc
~14 mm high anteriorly, ~6 mm posteriorly).  The L4-L5 disc's bisector is
horizontal, so the default scenario's level lies as before; L3 tips back 19
degrees and the sacrum forward 23 (its slope relative to that plane).

Facet joints (angle of the joint plane from the sagittal plane, opening
posteriorly): L2-L3 30, L3-L4 35, L4-L5 45, L5-S1 55 degrees: near-sagittal
above, more coronal at the lumbosacral joint (Masharawi et al. 2004, "Facet
orientation in the thoracolumbar spine: three-dimensional anatomic and
biomechanical analysis", Spine 29:1755-1763; the values here are rounded
from memory).  Superior and inferior articular processes of one joint are
built in the joint's own (disc mid-plane) placement so they face each other
across a 2 mm joint space.

Pathology: a left posterolateral L4-L5 fragment and a right posterolateral
L5-S1 fragment in the lateral recess, where the traversing (L5, S1) roots run.
Lumbar segmental arteries run around each body's waist (L5's stands for the
branch of the iliolumbar / median sacral artery there).

:func:`build` paints the bones, discs, fragments and arteries only: the dural
sac, the nerve roots and Kambin's triangles come from the ``--spine``
derivation on these bones (:mod:`phantom_roots`), the fragments' roots then
displaced around them.  :func:`root_paths` and :func:`kambin_triangle` are the
*analytic* reference: the textbook root courses the bones were designed around
and the triangles they bound, computed from the generator's own parameters
(never painted), against which the tests measure the derivation.
"""


from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import phantom_sdf as S
from .phantom_bend import Bend, Zone
from .pipeline import LabelSpec

SIDES = {"right": 1.0, "left": -1.0}
HERNIATION_SIDE = "left"
#: side of the second (L5-S1) herniation
HERNIATION2_SIDE = "right"
#: segmental lordosis between adjacent endplates (deg)
LORDOSIS_DEG = {"L3_L4": 12.0, "L4_L5": 14.0, "L5_S1": 16.0}
#: the bend's neutral axis (y, mm): the bodies' centres, so each disc keeps its DISC_H there and wedges
#: about it (L5-S1: ~14 mm anteriorly, ~6 mm posteriorly)
BEND_AXIS_Y = 8.0 + 0.42 * 35.0


@dataclass(frozen=True)
class Level:
    """One lumbar vertebra: body width/depth/height, pedicle x, transverse length (mm)."""

    name: str
    width: float
    depth: float
    height: float
    pedicle_x: float
    tp_len: float
    zc: float = 0.0

    @property
    def h(self) -> float:
        return self.height / 2

    @property
    def b_post(self) -> float:
        return 0.42 * self.depth

    @property
    def b_ant(self) -> float:
        return 0.58 * self.depth

    @property
    def yb(self) -> float:
        """Body centre y: posterior wall at y = +8 mm."""
        return 8.0 + self.b_post


DISC_H = {"L3_L4": 10.0, "L4_L5": 10.5, "L5_S1": 10.0}
FACET_ALPHA_DEG = {"L2_L3": 30.0, "L3_L4": 35.0, "L4_L5": 45.0, "L5_S1": 55.0}
CONCAVE_MM = 3.0  # posterior concavity of the kidney-shaped endplate at the midline


def _levels() -> list[Level]:
    l3 = Level("L3", 45.0, 34.0, 27.0, 15.0, 27.0)
    l4 = Level("L4", 48.0, 35.0, 27.0, 16.0, 23.0)
    l5 = Level("L5", 50.0, 35.0, 26.0, 17.5, 19.0)
    zc4 = DISC_H["L4_L5"] / 2 + l4.h
    zc3 = zc4 + l4.h + DISC_H["L3_L4"] + l3.h
    zc5 = -DISC_H["L4_L5"] / 2 - l5.h
    return [Level(**{**l3.__dict__, "zc": zc3}), Level(**{**l4.__dict__, "zc": zc4}),
            Level(**{**l5.__dict__, "zc": zc5})]


LEVELS = _levels()
L3, L4, L5 = LEVELS
Z_DISC = {"L3_L4": L4.zc + L4.h + DISC_H["L3_L4"] / 2, "L4_L5": 0.0,
          "L5_S1": L5.zc - L5.h - DISC_H["L5_S1"] / 2}
S1_B_POST, S1_B_ANT = 0.42 * 33.0, 0.58 * 33.0
S1_PEDICLE_X = 17.5
#: S1 superior endplate centre (straight coordinates); the sacral frame hangs from it.
S1_ORIGIN = np.array([0.0, 8.0 + S1_B_POST, L5.zc - L5.h - DISC_H["L5_S1"]])
CANAL_V = -S1_B_POST - 7.0  # sacral canal centre, local v
Z_REF = {"L3": L3.zc, "L4": L4.zc, "L5": L5.zc, "sacrum": float(S1_ORIGIN[2]) - 20.0}


def _bend() -> Bend:
    half = LORDOSIS_DEG["L4_L5"] / 2
    phi4, phi5 = half, -half
    phi3 = phi4 + LORDOSIS_DEG["L3_L4"]
    phi_s = phi5 - LORDOSIS_DEG["L5_S1"]
    zones = [Zone(float(S1_ORIGIN[2]), L5.zc - L5.h, phi_s, phi5),
             Zone(L5.zc + L5.h, L4.zc - L4.h, phi5, phi4),
             Zone(L4.zc + L4.h, L3.zc - L3.h, phi4, phi3)]
    return Bend(zones, axis_y_mm=BEND_AXIS_Y)


BEND = _bend()

# label ids
ID = {"L3": 1, "L4": 2, "L5": 3, "sacrum": 4, "disc_L3_L4": 10, "disc_L4_L5": 11, "disc_L5_S1": 12,
      "dural_sac": 20, "herniation_L4_L5": 21, "herniation_L5_S1": 22}
ROOT_NAMES = {"L3": "nerve_root_L3_exiting", "L4": "nerve_root_L4_exiting",
              "L5": "nerve_root_L5_traversing", "S1": "nerve_root_S1_traversing",
              "L5x": "nerve_root_L5_exiting"}
for _i, (_lvl, _nm) in enumerate(ROOT_NAMES.items()):
    ID[f"{_nm}_left"] = 30 + 2 * _i
    ID[f"{_nm}_right"] = 31 + 2 * _i
#: the derived roots beyond the analytic five (the L4 root traversing L3-L4)
ID["nerve_root_L4_traversing_left"], ID["nerve_root_L4_traversing_right"] = 40, 41
for _i, _lvl in enumerate(("L3", "L4", "L5")):
    ID[f"segmental_artery_{_lvl}_left"] = 50 + 2 * _i
    ID[f"segmental_artery_{_lvl}_right"] = 51 + 2 * _i
HU = {"bone": 260.0, "disc": 85.0, "dura": 8.0, "nerve": 38.0, "pathology": 95.0, "vessel": 45.0}


def sacral_to_straight(p: Any) -> np.ndarray:
    """Sacral-frame point (u right, v anterior, w along the endplate normal) -> straight coordinates."""
    return S1_ORIGIN + np.asarray(p, float)


def sacral_to_world(p: Any) -> np.ndarray:
    """Sacral-frame point -> patient RAS mm (lordotic)."""
    return BEND.rigid_point(sacral_to_straight(p), Z_REF["sacrum"])


def _facet(upper: Level, lower_px: float, lower_zc: float, joint: str, s: float, lower_ref: float,
           upper_ref: float) -> tuple[list[S.Part], list[S.Part]]:
    """(superior articular process of the lower bone, inferior articular process of the upper), placed:
    the joint surfaces in the joint's (disc mid-plane) placement, the bars to the pedicle and lamina
    with their own bone."""
    a = math.radians(FACET_ALPHA_DEG[joint])
    n = np.array([-s * math.cos(a), -math.sin(a), 0.0])  # from SAP towards IAP
    d = np.array([s * math.sin(a), -math.cos(a), 0.0])
    zd = Z_DISC[joint] if joint in Z_DISC else upper.zc - upper.h - 5.0
    J = np.array([s * (lower_px + 1.0), -8.0, 0.0])
    z_sap = (lower_zc + 2.0, zd + 9.0)
    c_sap = J - 4.5 * n + np.array([0, 0, sum(z_sap) / 2])
    sap = [BEND.rigid(S.box_frame(c_sap, (n, d, (0, 0, 1)), (3.5, 7.0, (z_sap[1] - z_sap[0]) / 2), 2.5), zd),
           BEND.rigid(S.ellipsoid(c_sap + np.array([0, 0, (z_sap[1] - z_sap[0]) / 2 - 3.0]) - 1.5 * n,
                                  (4.0, 4.0, 4.0)), zd),
           BEND.rigid(S.capsule((c_sap[0], c_sap[1], lower_zc + 5.0), (s * (lower_px + 1.0), -6.0, lower_zc + 5.0),
                                4.0), lower_ref)]
    z_iap = (zd - 9.0, upper.zc - 4.0)
    c_iap = J + 4.0 * n + np.array([0, 0, sum(z_iap) / 2])
    lam_z = upper.zc - upper.h + 2.0
    iap = [BEND.rigid(S.box_frame(c_iap, (n, d, (0, 0, 1)), (3.0, 6.0, (z_iap[1] - z_iap[0]) / 2), 2.5), zd),
           BEND.rigid(S.capsule((c_iap[0], c_iap[1], lam_z), (s * upper.pedicle_x * 0.55, -11.0, lam_z + 2.0), 3.5),
                      upper_ref)]
    return sap, iap


def _vertebra(v: Level, below_px: float, below_zc: float, below_ref: float, joint_above: str,
              joint_below: str) -> tuple[list[S.Part], list[S.Part]]:
    """Primitives of one lumbar vertebra (placed) and the cut that keeps its canal open."""
    zc, h, px = v.zc, v.h, v.pedicle_x
    ref = Z_REF[v.name]
    loc: list[S.Part] = [S.body((0, v.yb, zc), v.width / 2, v.b_ant, v.b_post, v.h, waist=0.05,
                                concave_mm=CONCAVE_MM)]
    tp_half = 4.0 if v.name == "L5" else 2.6
    parts: list[S.Part] = []
    for s in SIDES.values():
        loc.append(S.tube([(s * (px - 1), 12.0, zc + 5), (s * (px + 1), -6.0, zc + 5)], [4.5, 4.5],
                          (1, 1, 7.5 / 4.5)))
        loc.append(S.slab((s * (px + 1), -6.0), (0.0, -16.0), 3.2, (zc - h - 1, zc + h - 3),
                          (zc - h - 4, zc + h - 5), 2.0))
        z_tp0 = (zc - 2, zc + 12) if v.name == "L5" else (zc + 1, zc + 12)
        loc.append(S.slab((s * (px + 2), -5.0), (s * (px + 2 + v.tp_len), -10.0), (tp_half, 2.4),
                          z_tp0, (zc + 3, zc + 9), 2.0))
        if joint_above == "L2_L3":
            upper = Level("L2", 44, 33, 26, 14.5, 0, zc + h + 10 + 13)
            upper_ref = ref
        else:
            upper = {"L3_L4": L3, "L4_L5": L4}[joint_above]
            upper_ref = Z_REF[upper.name]
        sap, _ = _facet(upper, px, zc, joint_above, s, ref, upper_ref)
        _, iap = _facet(v, below_px, below_zc, joint_below, s, below_ref, ref)
        parts += sap + iap
    loc.append(S.slab((0.0, -14.0), (0.0, -44.0), (3.2, 2.6), (zc - h - 3, zc + h - 7), (zc - h - 6, zc - 1), 2.5))
    loc.append(S.ellipsoid((0.0, -45.0, zc - h / 2 - 3), (4.0, 3.5, 8.0)))
    canal = S.tube([(0, 0, zc + 32), (0, 0, zc - 32)], [10.5, 10.5], (1, 7.5 / 10.5, 1))
    return [BEND.rigid(p, ref) for p in loc] + parts, [BEND.rigid(canal, ref)]


def _sacrum() -> tuple[list[S.Part], list[S.Part]]:
    """Sacrum (S1 body, S2-S4, alae, lateral masses, dorsal wall, foramina) in the sacral frame."""
    bp = S1_B_POST
    loc: list[S.Part] = [
        S.body((0, 0, -12.0), 24.0, S1_B_ANT, bp, 12.0, concave_mm=CONCAVE_MM),
        S.body((0, -4.0, -33.0), 19.0, 13.0, 10.0, 9.0),
        S.body((0, -9.0, -50.0), 14.0, 10.0, 8.0, 8.0),
        S.body((0, -13.0, -63.0), 12.0, 7.0, 7.0, 6.0),
    ]
    for s in SIDES.values():
        loc += [
            S.slab((s * 18, 0.0), (s * 47, -3.0), (13.0, 10.0), (-32.0, -1.5), (-40.0, -9.0), 3.0),
            S.slab((s * 14, -bp - 9), (s * 26, -4.0), (8.0, 6.0), (-62.0, -6.0), (-48.0, -14.0), 3.0),
            S.tube([(s * 16, -bp + 4, -9.0), (s * 17, -bp - 10, -9.0)], [5.0, 5.0], (1, 1, 1.3)),
            S.slab((s * 19, -bp - 11), (0.0, -bp - 18), 3.4, (-64.0, -2.0), (-66.0, -5.0), 2.0),
        ]
    loc.append(S.slab((0.0, -bp - 18), (0.0, -bp - 23), 2.5, (-58.0, -10.0), (-60.0, -14.0), 2.0))
    ref = Z_REF["sacrum"]

    def place(p: S.Part) -> S.Part:
        return BEND.rigid(S.in_frame(p, S1_ORIGIN, np.eye(3)), ref)

    parts = [place(p) for p in loc]
    cuts = [place(S.tube([(0, CANAL_V, 8.0), (0, CANAL_V, -56.0)], [10.0, 8.5], (1, 6.0 / 11.0, 1)))]
    cuts += [place(S.capsule((s * 13.0, -40.0, w), (s * 13.0, 30.0, w), r))
             for s in SIDES.values() for w, r in ((-24.0, 4.2), (-41.0, 3.8), (-56.0, 3.2))]
    for s in SIDES.values():
        sap, _ = _facet(L5, S1_PEDICLE_X, float(S1_ORIGIN[2]) - 12.0, "L5_S1", s, ref, Z_REF["L5"])
        parts += sap
    return parts, cuts


def _endplate(z_ref: float, z_plane: float, y: float) -> tuple[np.ndarray, np.ndarray]:
    """(point, superior normal) of a bone's endplate plane at straight height ``z_plane``, placed."""
    return BEND.rigid_point((0.0, y, z_plane), z_ref), BEND.rotation(z_ref) @ np.array([0.0, 0.0, 1.0])


def _disc(upper: Level, lower: Level | None, joint: str) -> S.Part:
    """A disc in its joint's mid placement, clipped by the two (now wedged) endplate planes."""
    a = (upper.width + (lower.width if lower else 48.0)) / 4 + 0.8
    bp, ba = upper.b_post + 0.8, upper.b_ant + 0.8
    zd, hd = Z_DISC[joint], DISC_H[joint] / 2
    cyl = BEND.rigid(S.body((0, upper.yb, zd), a, ba, bp, hd + 6.0, waist=-0.05, round_mm=1.0,
                            concave_mm=CONCAVE_MM), zd)
    pu, nu = _endplate(Z_REF[upper.name], upper.zc - upper.h, upper.yb)
    if lower is not None:
        pl, nl = _endplate(Z_REF[lower.name], lower.zc + lower.h, upper.yb)
    else:
        pl, nl = _endplate(Z_REF["sacrum"], float(S1_ORIGIN[2]), upper.yb)

    def f(X: S.Arr, Y: S.Arr, Z: S.Arr) -> S.Arr:
        above_lower = (X - pl[0]) * nl[0] + (Y - pl[1]) * nl[1] + (Z - pl[2]) * nl[2]
        below_upper = (X - pu[0]) * nu[0] + (Y - pu[1]) * nu[1] + (Z - pu[2]) * nu[2]
        return np.maximum(np.maximum(cyl(X, Y, Z), below_upper - 0.6), -above_lower - 0.6)

    return S.Part(f, cyl.lo, cyl.hi)


def exit_path(v: Level, s: float) -> tuple[list[tuple[float, float, float]], list[float]]:
    """Course of the root that exits below pedicle ``v`` (straight coordinates, radii)."""
    zc = v.zc
    pts = [(s * 8.8, 6.0, zc - 3), (s * 14.0, 6.5, zc - 7.0), (s * 21.5, 11.0, zc - 11.0),
           (s * 30.0, 20.0, zc - 21.75), (s * 37.0, 28.0, zc - 40.75), (s * 42.0, 36.0, zc - 63.0)]
    return pts, [2.3, 2.4, 2.8, 2.6, 2.6, 2.6]


def root_paths(s: float) -> dict[str, tuple[list[tuple[float, float, float]], list[float]]]:
    """The analytic (reference, not painted) courses of five roots on one side (straight coordinates):
    key -> (points, radii).  "L5" is the L5 root
    in the canal (traversing at L4-L5) down to the L5 pedicle, "L5x" the same nerve below it, exiting
    through the L5-S1 foramen."""
    out = {}
    for v in (L3, L4):
        p, r = exit_path(v, s)
        out[v.name] = ([(s * 5.0, 3.0, v.zc + 12.0)] + p, [2.1] + r)
    zd = Z_DISC["L4_L5"]
    recess = (s * 9.0, -1.5, zd - 2.0) if s == SIDES[HERNIATION_SIDE] else (s * 9.8, 3.5, zd - 2.0)
    p5, r5 = exit_path(L5, s)
    out["L5"] = ([(s * 5.0, 2.5, zd + 8.0), recess, p5[0]], [2.1, 2.3, r5[0]])
    # below the L5 pedicle (clear of the L5 body), then over the front of the sacral ala
    p5x = p5[:2] + [(s * 22.0, 10.0, L5.zc - 11.5), (s * 32.0, 24.0, -35.0), (s * 33.0, 40.0, -50.0),
                    (s * 35.0, 48.0, -80.0)]
    out["L5x"] = (p5x, r5)
    z5 = Z_DISC["L5_S1"]
    recess1 = (s * 8.0, -1.0, z5 - 2.0) if s == SIDES[HERNIATION2_SIDE] else (s * 8.3, 3.5, z5 - 2.0)
    sac = [tuple(sacral_to_straight((s * 8.0, CANAL_V + 1.0, w))) for w in (-6.0, -30.0, -58.0)]
    out["S1"] = ([(s * 5.0, 2.5, z5 + 8.0), recess1] + sac, [2.1, 2.3, 2.3, 2.2, 2.0])  # type: ignore[misc]
    return out


def _on_polyline(pts: list[tuple[float, float, float]], axis: int, value: float) -> np.ndarray:
    for a, b in zip(pts[:-1], pts[1:]):
        if (a[axis] - value) * (b[axis] - value) <= 0 and a[axis] != b[axis]:
            t = (value - a[axis]) / (b[axis] - a[axis])
            return np.asarray(a) + t * (np.asarray(b) - np.asarray(a))
    raise ValueError("polyline does not cross the value")


#: level -> (exiting root key, lateral x of the lower superior articular process, lower endplate z)
KAMBIN = {"L4_L5": ("L4", L5.pedicle_x, Z_DISC["L4_L5"] - DISC_H["L4_L5"] / 2),
          "L5_S1": ("L5x", S1_PEDICLE_X, float(S1_ORIGIN[2]))}


def kambin_triangle(side: str = HERNIATION_SIDE, level: str = "L4_L5") -> dict[str, Any]:
    """The analytic Kambin's triangle: apex where the analytic exiting root (:func:`root_paths`) crosses
    above the lower superior articular process, base on the lower vertebra's superior endplate (computed
    straight, then placed); the approach is the textbook one, 30 degrees from the coronal plane."""
    s = SIDES[side]
    key, px, z_base = KAMBIN[level]
    pts, _ = root_paths(s)[key]
    c = _on_polyline(pts, 0, s * (px - 0.5))
    a = np.array([c[0], c[1], z_base])
    b = _on_polyline(pts, 2, z_base)
    a, b, c = (BEND.point(p) for p in (a, b, c))
    la, lb, lc = np.linalg.norm(b - c), np.linalg.norm(c - a), np.linalg.norm(a - b)
    incenter = (la * a + lb * b + lc * c) / (la + lb + lc)
    inradius = float(np.linalg.norm(np.cross(b - a, c - a))) / (la + lb + lc)
    approach = np.array([s * math.cos(math.radians(30)), -math.sin(math.radians(30)), 0.0])
    lower = "L5" if level == "L4_L5" else "S1"
    return {
        "level": level, "side": side,
        "vertices_mm": [np.round(p, 2).tolist() for p in (a, b, c)],
        "vertex_roles": [f"base_medial ({lower} SAP on {lower} endplate)", "base_lateral (root on endplate)",
                         f"apex (root over {lower} SAP)"],
        "centroid_mm": np.round((a + b + c) / 3, 2).tolist(),
        "incenter_mm": np.round(incenter, 2).tolist(),
        "inradius_mm": round(inradius, 2),
        "approach_direction": np.round(approach, 4).tolist(),
        "exiting_root": f"{ROOT_NAMES[key]}_{side}",
        "traversing_root": f"{ROOT_NAMES['L5' if level == 'L4_L5' else 'S1']}_{side}",
        "disc": f"disc_{level}",
        "note": "posterolateral approach, 30 deg from the coronal plane, pointing away from the disc",
    }


def _arteries(v: Level, s: float) -> list[S.Part]:
    """Lumbar segmental artery of ``v`` on side ``s``: from beside the aorta round the body's waist
    (3.2 mm off the bone) to the foramen's lateral edge, 1.2 mm radius (placed with the vertebra)."""
    a, ba, bp = 0.95 * v.width / 2 + 3.2, 0.95 * v.b_ant + 3.2, 0.95 * v.b_post + 3.2
    pts = []
    for t in np.radians(np.arange(15.0, 125.0, 10.0)):
        b = ba if math.cos(t) > 0 else bp
        pts.append((s * a * math.sin(t), v.yb + b * math.cos(t), v.zc - 1.0))
    pts.append((s * (v.pedicle_x + 9.0), 3.0, v.zc - 5.0))
    w = [BEND.rigid_point(p, Z_REF[v.name]) for p in pts]
    return [S.capsule(tuple(p), tuple(q), 1.2) for p, q in zip(w[:-1], w[1:])]


def build(canvas: S.Canvas) -> dict[int, LabelSpec]:
    """Paint the spine's bones, discs, fragments and arteries into ``canvas``; return their label specs
    (the sac and roots are derived from these bones: :func:`phantom_roots.derive_into`)."""
    specs: dict[int, LabelSpec] = {}
    disc_ids = [ID["disc_L3_L4"], ID["disc_L4_L5"], ID["disc_L5_S1"]]
    for (u, lo, joint) in ((L3, L4, "L3_L4"), (L4, L5, "L4_L5"), (L5, None, "L5_S1")):
        name = f"disc_{joint}"
        disc = _disc(u, lo, joint)
        canvas.paint(ID[name], disc, disc.lo, disc.hi)
        specs[ID[name]] = LabelSpec(ID[name], name, "disc", f"intervertebral disc {joint.replace('_', '-')}")
    below = {"L3": (L4.pedicle_x, L4.zc, Z_REF["L4"], "L3_L4"), "L4": (L5.pedicle_x, L5.zc, Z_REF["L5"], "L4_L5"),
             "L5": (S1_PEDICLE_X, float(S1_ORIGIN[2]) - 12.0, Z_REF["sacrum"], "L5_S1")}
    above = {"L3": "L2_L3", "L4": "L3_L4", "L5": "L4_L5"}
    for v in LEVELS:
        bpx, bzc, bref, jb = below[v.name]
        parts, cuts = _vertebra(v, bpx, bzc, bref, above[v.name], jb)
        canvas.paint_union(ID[v.name], parts, 2.0, cuts, over=[0] + disc_ids)
        specs[ID[v.name]] = LabelSpec(ID[v.name], v.name, "bone", f"{v.name} vertebra")
    parts, cuts = _sacrum()
    canvas.paint_union(ID["sacrum"], parts, 3.0, cuts, over=[0] + disc_ids)
    specs[ID["sacrum"]] = LabelSpec(ID["sacrum"], "sacrum", "bone", "sacrum with S1 facets")
    for b in ("L3", "L4", "L5", "sacrum"):
        canvas.open_label(ID[b])
    for side, s in SIDES.items():
        for v in LEVELS:
            name = f"segmental_artery_{v.name}_{side}"
            canvas.paint_union(ID[name], _arteries(v, s))
            specs[ID[name]] = LabelSpec(ID[name], name, "vessel", f"{side} {v.name} lumbar segmental artery")
    for name, side, joint in (("herniation_L4_L5", HERNIATION_SIDE, "L4_L5"),
                              ("herniation_L5_S1", HERNIATION2_SIDE, "L5_S1")):
        s, zd = SIDES[side], Z_DISC[joint]
        hern = BEND.rigid(S.join([S.ellipsoid((s * 12.5, 5.0, zd - 0.3), (5.0, 3.2, 4.5)),
                                  S.capsule((s * 12.0, 11.0, zd - 0.3), (s * 12.5, 5.0, zd - 0.3), 3.0)], 1.5), zd)
        canvas.paint(ID[name], hern, hern.lo, hern.hi)
        specs[ID[name]] = LabelSpec(ID[name], name, "pathology",
                                    f"{side} posterolateral {joint.replace('_', '-')} herniated fragment")
    return specs


def analytic_landmarks() -> dict[str, dict[str, Any]]:
    """The four analytic Kambin triangles (L4-L5, L5-S1, both sides) from the generator's parameters:
    the reference the derived landmarks are measured against (not shipped)."""
    return {f"kambin_triangle_{lvl}_{side}": kambin_triangle(side, lvl)
            for lvl in ("L4_L5", "L5_S1") for side in ("left", "right")}

BOUNDS_MM = ((-62.0, -70.0, -125.0), (62.0, 62.0, 100.0))


def hu_table() -> tuple[dict[int, float], list[int]]:
    """Hounsfield value per label id and the bone label ids."""
    table: dict[int, float] = {}
    bones = [ID[n] for n in ("L3", "L4", "L5", "sacrum")]
    for name, i in ID.items():
        if i in bones:
            table[i] = HU["bone"]
        elif name.startswith("disc"):
            table[i] = HU["disc"]
        elif name.startswith("nerve"):
            table[i] = HU["nerve"]
        elif name == "dural_sac":
            table[i] = HU["dura"]
        elif name.startswith("segmental"):
            table[i] = HU["vessel"]
        else:
            table[i] = HU["pathology"]
    return table, bones
