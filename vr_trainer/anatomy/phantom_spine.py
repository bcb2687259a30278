"""Lumbar spine L3-S1 phantom geometry (labels on a RAS millimetre grid).

Adult dimensions (mm): vertebral bodies 45/48/50 wide and 34-35 deep for
L3/L4/L5, 26-27 tall; discs 10-10.5 high (L5-S1 wedge-shaped, ~12 degrees);
interpedicular distance ~22 at L4.  Origin: centre of the spinal canal at the
mid-height of the L4-L5 disc.  Posterior elements (pedicles, laminae,
spinous and transverse processes) are built per vertebra; facet joints are
built per joint in world coordinates so superior and inferior articular
processes face each other across a 2 mm joint space.  A left posterolateral
L4-L5 herniated fragment displaces the traversing left L5 root; Kambin's
triangle (exiting L4 root, L5 superior endplate, L5 superior articular
process) is left free and recorded as a landmark.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import phantom_sdf as S
from .pipeline import LabelSpec

SIDES = {"right": 1.0, "left": -1.0}
HERNIATION_SIDE = "left"
SACRAL_TILT_DEG = 12.0


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
#: S1 superior endplate centre (world); the sacral frame hangs from it.
S1_ORIGIN = np.array([0.0, 8.0 + S1_B_POST, L5.zc - L5.h - DISC_H["L5_S1"]])
S1_ROT = S.rotation_x(SACRAL_TILT_DEG)  # columns: u (right), v (anterior-down), w (endplate normal)
SACRAL = S.local_frame(S1_ORIGIN, S1_ROT)
CANAL_V = -S1_B_POST - 7.0  # sacral canal centre, local v

# label ids
ID = {"L3": 1, "L4": 2, "L5": 3, "sacrum": 4, "disc_L3_L4": 10, "disc_L4_L5": 11, "disc_L5_S1": 12,
      "dural_sac": 20, "herniation_L4_L5": 21}
ROOT_NAMES = {"L3": "nerve_root_L3_exiting", "L4": "nerve_root_L4_exiting",
              "L5": "nerve_root_L5_traversing", "S1": "nerve_root_S1_traversing"}
for _i, (_lvl, _nm) in enumerate(ROOT_NAMES.items()):
    ID[f"{_nm}_left"] = 30 + 2 * _i
    ID[f"{_nm}_right"] = 31 + 2 * _i
HU = {"bone": 260.0, "disc": 85.0, "dura": 8.0, "nerve": 38.0, "pathology": 95.0}


def sacral_to_world(p: Any) -> np.ndarray:
    """Sacral-frame point (u, v, w) -> world RAS mm."""
    return S1_ORIGIN + S1_ROT @ np.asarray(p, float)


def _facet(upper: Level, lower_px: float, lower_zc: float, joint: str, s: float) -> tuple[list[S.Part], list[S.Part]]:
    """(superior articular process of the lower bone, inferior articular process of the upper)."""
    a = math.radians(FACET_ALPHA_DEG[joint])
    n = np.array([-s * math.cos(a), -math.sin(a), 0.0])  # from SAP towards IAP
    d = np.array([s * math.sin(a), -math.cos(a), 0.0])
    zd = Z_DISC[joint] if joint in Z_DISC else upper.zc - upper.h - 5.0
    J = np.array([s * (lower_px + 1.0), -8.0, 0.0])
    z_sap = (lower_zc + 2.0, zd + 9.0)
    c_sap = J - 4.5 * n + np.array([0, 0, sum(z_sap) / 2])
    sap = [S.box_frame(c_sap, (n, d, (0, 0, 1)), (3.5, 7.0, (z_sap[1] - z_sap[0]) / 2), 2.5),
           S.ellipsoid(c_sap + np.array([0, 0, (z_sap[1] - z_sap[0]) / 2 - 3.0]) - 1.5 * n, (4.0, 4.0, 4.0)),
           S.capsule((c_sap[0], c_sap[1], lower_zc + 5.0), (s * (lower_px + 1.0), -6.0, lower_zc + 5.0), 4.0)]
    z_iap = (zd - 9.0, upper.zc - 4.0)
    c_iap = J + 4.0 * n + np.array([0, 0, sum(z_iap) / 2])
    lam_z = upper.zc - upper.h + 2.0
    iap = [S.box_frame(c_iap, (n, d, (0, 0, 1)), (3.0, 6.0, (z_iap[1] - z_iap[0]) / 2), 2.5),
           S.capsule((c_iap[0], c_iap[1], lam_z), (s * upper.pedicle_x * 0.55, -11.0, lam_z + 2.0), 3.5)]
    return sap, iap


def _vertebra(v: Level, below_px: float, below_zc: float, joint_above: str,
              joint_below: str) -> tuple[list[S.Part], list[S.Part]]:
    """Primitives of one lumbar vertebra and the cut that keeps its canal open."""
    parts: list[S.Part] = [S.body((0, v.yb, v.zc), v.width / 2, v.b_ant, v.b_post, v.h, waist=0.05)]
    zc, h, px = v.zc, v.h, v.pedicle_x
    tp_half = 4.0 if v.name == "L5" else 2.6
    for s in SIDES.values():
        parts.append(S.tube([(s * (px - 1), 12.0, zc + 5), (s * (px + 1), -6.0, zc + 5)], [4.5, 4.5],
                            (1, 1, 7.5 / 4.5)))
        parts.append(S.slab((s * (px + 1), -6.0), (0.0, -16.0), 3.2, (zc - h - 1, zc + h - 3),
                            (zc - h - 4, zc + h - 5), 2.0))
        z_tp0 = (zc - 2, zc + 12) if v.name == "L5" else (zc + 1, zc + 12)
        parts.append(S.slab((s * (px + 2), -5.0), (s * (px + 2 + v.tp_len), -10.0), (tp_half, 2.4),
                            z_tp0, (zc + 3, zc + 9), 2.0))
        if joint_above == "L2_L3":
            upper = Level("L2", 44, 33, 26, 14.5, 0, zc + h + 10 + 13)
        else:
            upper = {"L3_L4": L3, "L4_L5": L4}[joint_above]
        sap, _ = _facet(upper, px, zc, joint_above, s)
        _, iap = _facet(v, below_px, below_zc, joint_below, s)
        parts += sap + iap
    parts.append(S.slab((0.0, -14.0), (0.0, -44.0), (3.2, 2.6), (zc - h - 3, zc + h - 7), (zc - h - 6, zc - 1), 2.5))
    parts.append(S.ellipsoid((0.0, -45.0, zc - h / 2 - 3), (4.0, 3.5, 8.0)))
    canal = S.tube([(0, 0, zc + 32), (0, 0, zc - 32)], [10.5, 10.5], (1, 7.5 / 10.5, 1))
    return parts, [canal]


def _sacrum() -> tuple[list[S.Part], list[S.Part]]:
    """Sacrum (S1 body, S2-S4, alae, lateral masses, dorsal wall, foramina) in the tilted sacral frame."""
    bp = S1_B_POST
    loc: list[S.Part] = [
        S.body((0, 0, -12.0), 24.0, S1_B_ANT, bp, 12.0),
        S.body((0, -4.0, -33.0), 19.0, 13.0, 10.0, 9.0),
        S.body((0, -9.0, -50.0), 14.0, 10.0, 8.0, 8.0),
        S.body((0, -13.0, -63.0), 12.0, 7.0, 7.0, 6.0),
    ]
    for s in SIDES.values():
        loc += [
            S.slab((s * 18, 0.0), (s * 47, -3.0), (13.0, 10.0), (-32.0, -1.5), (-40.0, -9.0), 3.0),
            S.slab((s * 14, -bp - 9), (s * 26, -4.0), (8.0, 6.0), (-62.0, -6.0), (-48.0, -14.0), 3.0),
            S.tube([(s * 16, -bp + 4, -9.0), (s * 17, -bp - 10, -9.0)], [5.0, 5.0], (1, 1, 1.3)),
            S.slab((s * 19, -bp - 10), (0.0, -bp - 16), 3.4, (-64.0, -2.0), (-66.0, -5.0), 2.0),
        ]
    loc.append(S.slab((0.0, -bp - 16), (0.0, -bp - 21), 2.5, (-58.0, -10.0), (-60.0, -14.0), 2.0))
    parts = [S.in_frame(p, S1_ORIGIN, S1_ROT) for p in loc]
    cuts = [S.in_frame(S.tube([(0, CANAL_V, 8.0), (0, CANAL_V, -56.0)], [11.0, 9.0], (1, 6.0 / 11.0, 1)),
                       S1_ORIGIN, S1_ROT)]
    cuts += [S.in_frame(S.capsule((s * 13.0, -40.0, w), (s * 13.0, 30.0, w), r), S1_ORIGIN, S1_ROT)
             for s in SIDES.values() for w, r in ((-24.0, 4.2), (-41.0, 3.8), (-56.0, 3.2))]
    for s in SIDES.values():
        sap, _ = _facet(L5, 17.5, S1_ORIGIN[2] - 12.0, "L5_S1", s)
        parts += sap
    return parts, cuts


def _disc(upper: Level, lower: Level | None, joint: str) -> S.Part:
    a = (upper.width + (lower.width if lower else 48.0)) / 4 + 0.8
    bp, ba = upper.b_post + 0.8, upper.b_ant + 0.8
    zd, hd = Z_DISC[joint], DISC_H[joint] / 2
    if lower is not None:
        return S.body((0, upper.yb, zd), a, ba, bp, hd + 0.6, waist=-0.05, round_mm=1.0)
    cyl = S.body((0, upper.yb, zd), a, ba, bp, 14.0, waist=0.0, round_mm=1.0)
    top = upper.zc - upper.h + 0.6

    def f(X: S.Arr, Y: S.Arr, Z: S.Arr) -> S.Arr:
        _, _, w = SACRAL(X, Y, Z)
        return np.maximum(np.maximum(cyl(X, Y, Z), Z - top), -w - 0.6)

    return S.Part(f, cyl.lo, cyl.hi)


def exit_path(v: Level, s: float) -> tuple[list[tuple[float, float, float]], list[float]]:
    """Course of the root that exits below pedicle ``v`` (points in mm, radii)."""
    zc = v.zc
    pts = [(s * 8.8, 6.0, zc - 3), (s * 14.0, 8.0, zc - 8.5), (s * 21.0, 12.0, zc - 12.5),
           (s * 30.0, 20.0, zc - 21.75), (s * 37.0, 28.0, zc - 40.75), (s * 42.0, 36.0, zc - 63.0)]
    return pts, [2.3, 2.4, 3.0, 2.6, 2.6, 2.6]


def root_paths(s: float) -> dict[str, tuple[list[tuple[float, float, float]], list[float]]]:
    """All four roots on one side: name stem -> (points, radii)."""
    herniated = s == SIDES[HERNIATION_SIDE]
    out = {}
    for v in (L3, L4):
        p, r = exit_path(v, s)
        out[v.name] = ([(s * 5.0, 3.0, v.zc + 12.0)] + p, [2.1] + r)
    zd = Z_DISC["L4_L5"]
    recess = (s * 9.0, -1.5, zd - 2.0) if herniated else (s * 9.8, 3.5, zd - 2.0)
    p5, r5 = exit_path(L5, s)
    p5 = p5[:3] + [(s * 30.5, 24.0, -36.0), (s * 31.0, 38.0, -52.0), (s * 33.0, 46.0, -80.0)]
    out["L5"] = ([(s * 5.0, 2.5, zd + 8.0), recess] + p5, [2.1, 2.3] + r5)
    z5 = Z_DISC["L5_S1"]
    sac = [tuple(sacral_to_world((s * 8.0, CANAL_V + 1.0, w))) for w in (-6.0, -30.0, -58.0)]
    out["S1"] = ([(s * 5.0, 2.5, z5 + 8.0), (s * 8.3, 3.5, z5 - 2.0)] + sac, [2.1, 2.3, 2.3, 2.2, 2.0])  # type: ignore[misc]
    return out


def _on_polyline(pts: list[tuple[float, float, float]], axis: int, value: float) -> np.ndarray:
    for a, b in zip(pts[:-1], pts[1:]):
        if (a[axis] - value) * (b[axis] - value) <= 0 and a[axis] != b[axis]:
            t = (value - a[axis]) / (b[axis] - a[axis])
            return np.asarray(a) + t * (np.asarray(b) - np.asarray(a))
    raise ValueError("polyline does not cross the value")


def kambin_triangle(side: str = HERNIATION_SIDE) -> dict[str, Any]:
    """Kambin's triangle at L4-L5: apex where the exiting L4 root crosses above
    the L5 superior articular process, base on the L5 superior endplate."""
    s = SIDES[side]
    pts, _ = root_paths(s)["L4"]
    z_base = Z_DISC["L4_L5"] - DISC_H["L4_L5"] / 2
    c = _on_polyline(pts, 0, s * (L5.pedicle_x - 0.5))
    a = np.array([c[0], c[1], z_base])
    b = _on_polyline(pts, 2, z_base)
    approach = np.array([s * math.cos(math.radians(30)), -math.sin(math.radians(30)), 0.0])
    la, lb, lc = np.linalg.norm(b - c), np.linalg.norm(c - a), np.linalg.norm(a - b)
    incenter = (la * a + lb * b + lc * c) / (la + lb + lc)
    inradius = float(np.linalg.norm(np.cross(b - a, c - a))) / (la + lb + lc)
    return {
        "level": "L4_L5", "side": side,
        "vertices_mm": [np.round(p, 2).tolist() for p in (a, b, c)],
        "vertex_roles": ["base_medial (L5 SAP on L5 endplate)", "base_lateral (root on endplate)",
                         "apex (root over L5 SAP)"],
        "centroid_mm": np.round((a + b + c) / 3, 2).tolist(),
        "incenter_mm": np.round(incenter, 2).tolist(),
        "inradius_mm": round(inradius, 2),
        "approach_direction": np.round(approach, 4).tolist(),
        "note": "posterolateral approach, 30 deg from the coronal plane, pointing away from the disc",
    }


def build(canvas: S.Canvas) -> tuple[dict[int, LabelSpec], dict[str, Any]]:
    """Paint the spine into ``canvas``; return label specs and landmarks."""
    specs: dict[int, LabelSpec] = {}
    disc_ids = [ID["disc_L3_L4"], ID["disc_L4_L5"], ID["disc_L5_S1"]]
    for (u, lo, joint) in ((L3, L4, "L3_L4"), (L4, L5, "L4_L5"), (L5, None, "L5_S1")):
        name = f"disc_{joint}"
        disc = _disc(u, lo, joint)
        canvas.paint(ID[name], disc, disc.lo, disc.hi)
        specs[ID[name]] = LabelSpec(ID[name], name, "disc", f"intervertebral disc {joint.replace('_', '-')}")
    below = {"L3": (L4.pedicle_x, L4.zc, "L3_L4"), "L4": (L5.pedicle_x, L5.zc, "L4_L5"),
             "L5": (17.5, S1_ORIGIN[2] - 12.0, "L5_S1")}
    above = {"L3": "L2_L3", "L4": "L3_L4", "L5": "L4_L5"}
    for v in LEVELS:
        bpx, bzc, jb = below[v.name]
        parts, cuts = _vertebra(v, bpx, bzc, above[v.name], jb)
        canvas.paint_union(ID[v.name], parts, 2.0, cuts, over=[0] + disc_ids)
        specs[ID[v.name]] = LabelSpec(ID[v.name], v.name, "bone", f"{v.name} vertebra")
    parts, cuts = _sacrum()
    canvas.paint_union(ID["sacrum"], parts, 3.0, cuts, over=[0] + disc_ids)
    specs[ID["sacrum"]] = LabelSpec(ID["sacrum"], "sacrum", "bone", "sacrum with S1 facets")
    root_ids = []
    for side, s in SIDES.items():
        for lvl, (pts, radii) in root_paths(s).items():
            name = f"{ROOT_NAMES[lvl]}_{side}"
            root = S.tube(pts, radii)
            canvas.paint(ID[name], root, root.lo, root.hi)
            root_ids.append(ID[name])
            specs[ID[name]] = LabelSpec(ID[name], name, "nerve", f"{side} {lvl} nerve root")
    sac_pts = [(0.0, 0.0, 100.0), (0.0, 0.0, -28.0)] + [tuple(sacral_to_world((0, CANAL_V, w))) for w in (0.0, -26.0)]
    sac = S.tube(sac_pts, [7.5, 7.5, 6.5, 3.0], (1, 5.5 / 7.5, 1))
    canvas.paint(ID["dural_sac"], sac, sac.lo, sac.hi, over=[0] + root_ids)
    specs[ID["dural_sac"]] = LabelSpec(ID["dural_sac"], "dural_sac", "dura", "thecal sac (dura + CSF)")
    s = SIDES[HERNIATION_SIDE]
    hern = S.join([S.ellipsoid((s * 12.5, 5.0, -0.3), (5.0, 3.2, 4.5)),
                    S.capsule((s * 12.0, 11.0, -0.3), (s * 12.5, 5.0, -0.3), 3.0)], 1.5)
    canvas.paint(ID["herniation_L4_L5"], hern, hern.lo, hern.hi)
    specs[ID["herniation_L4_L5"]] = LabelSpec(ID["herniation_L4_L5"], "herniation_L4_L5", "pathology",
                                              f"{HERNIATION_SIDE} posterolateral L4-L5 herniated fragment")
    landmarks = {"kambin_triangle_L4_L5_left": kambin_triangle("left"),
                 "kambin_triangle_L4_L5_right": kambin_triangle("right")}
    return specs, landmarks


BOUNDS_MM = ((-60.0, -62.0, -112.0), (60.0, 52.0, 95.0))


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
        else:
            table[i] = HU["pathology"]
    return table, bones
