"""Knee and hip phantom geometry (labels on a RAS millimetre grid).

Knee (right): distal femur with condyles, intercondylar notch, trochlear
groove and epicondyles (~78 mm wide); proximal tibia with plateaus (~76 x 46
mm), tibial spines and tuberosity; fibular head; patella (~42 x 22 x 46 mm);
femoral, tibial (medial, lateral) and patellar cartilage 2-3 mm thick with a
1 mm joint space.  Origin at the joint line, knee centre.

Hip: both hip bones (:mod:`.phantom_pelvis`: curved iliac wing and crest,
ASIS and pubic tubercles in one coronal plane, a closed acetabular cup with
its quadrilateral plate, pubic and ischial rami round the obturator foramen),
sacrum, both proximal femora (head ~46 mm, neck-shaft angle 128
deg, 12 deg anteversion, trochanters), acetabular and femoral head
cartilage.  Origin midway between the hip centres, which sit at x = +-88 mm.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from . import phantom_sdf as S
from .phantom_sdf import Point
from .phantom_pelvis import HIP_CENTER_X, SOCKET_R_MM, hip_bone
from .pipeline import LabelSpec

Built = tuple[S.Canvas, dict[int, LabelSpec], dict[str, Any], dict[int, float], list[int]]


def ellipsoid_frame(c: Point, axes: Sequence[Point], r: Point) -> S.Part:
    """Ellipsoid with semi-axes ``r`` along the (orthonormal) ``axes``."""
    ax = [np.asarray(a, float) / np.linalg.norm(a) for a in axes]

    def f(X: S.Arr, Y: S.Arr, Z: S.Arr) -> S.Arr:
        q0, q1 = 0.0, 0.0
        for a, ri in zip(ax, r):
            u = (X - c[0]) * a[0] + (Y - c[1]) * a[1] + (Z - c[2]) * a[2]
            q0 = q0 + (u / ri) ** 2
            q1 = q1 + (u / ri ** 2) ** 2
        k0 = np.sqrt(q0)
        return k0 * (k0 - 1.0) / np.maximum(np.sqrt(q1), 1e-9)

    ext = sum(np.abs(a) * ri for a, ri in zip(ax, r))
    return S.Part(f, np.asarray(c) - ext, np.asarray(c) + ext)


def sphere(c: Point, r: float) -> S.Part:
    """Sphere of radius ``r`` mm."""
    return S.ellipsoid(c, (r, r, r))


def clip(part: S.Part, g: S.SDF, lo: Point | None = None, hi: Point | None = None) -> S.Part:
    """Intersection of ``part`` with the region ``g < 0`` (optionally a tighter box)."""
    return S.Part(lambda X, Y, Z: np.maximum(part(X, Y, Z), g(X, Y, Z)),
                  part.lo if lo is None else lo, part.hi if hi is None else hi)


def shell(part: S.Part, t_out: float, region: S.SDF) -> S.Part:
    """Layer of thickness ``t_out`` mm on the outside of ``part``, inside ``region``."""
    return S.Part(lambda X, Y, Z: np.maximum(np.maximum(part(X, Y, Z) - t_out, -part(X, Y, Z)), region(X, Y, Z)),
                  part.lo - t_out, part.hi + t_out)


def _hu(bones: list[int], ids: dict[str, int]) -> dict[int, float]:
    return {i: (260.0 if i in bones else 110.0) for i in ids.values()}


# ---------------------------------------------------------------- knee
def build_knee(spacing_mm: float) -> Built:
    """Right knee phantom; see module docstring."""
    cv = S.Canvas((-48.0, -44.0, -110.0), (52.0, 58.0, 112.0), spacing_mm)
    ids = {"femur": 1, "tibia": 2, "patella": 3, "fibula": 4, "cartilage_femoral": 10,
           "cartilage_tibial_medial": 11, "cartilage_tibial_lateral": 12, "cartilage_patellar": 13}
    femur = [
        S.tube([(0, -3, 125), (0, -2, 75), (0, -2, 58), (0, -3, 40)], [13.0, 14.0, 17.0, 27.0], (1.0, 0.92, 1.0)),
        S.ellipsoid((-20.0, -7.0, 25.0), (13.0, 29.0, 22.0)),   # medial condyle
        S.ellipsoid((21.0, -6.0, 26.0), (13.0, 28.0, 23.0)),    # lateral condyle
        S.ellipsoid((-36.0, -6.0, 30.0), (5.0, 9.0, 9.0)),      # medial epicondyle
        S.ellipsoid((37.0, -6.0, 31.0), (4.0, 8.0, 8.0)),       # lateral epicondyle
        S.ellipsoid((0.0, 6.0, 36.0), (28.0, 17.0, 20.0)),      # metaphysis / trochlear block
    ]
    notch = S.box_frame((0, -22.0, 8.0), ((1, 0, 0), (0, 1, 0), (0, 0, 1)), (7.5, 20.0, 14.0), 4.0)
    groove = S.tube([(0, 30.0, 8.0), (0, 27.0, 52.0)], [8.0, 8.0])
    fem = S.join(femur, 5.0)
    fem_cut = S.Part(lambda X, Y, Z: np.maximum(fem(X, Y, Z), -np.minimum(notch(X, Y, Z), groove(X, Y, Z))),
                     fem.lo, fem.hi)
    cv.paint(ids["femur"], fem_cut, fem_cut.lo, fem_cut.hi)
    art = S.Part(lambda X, Y, Z: np.maximum(np.maximum(Z - 44.0, -Y - 38.0),
                                            np.maximum(np.abs(X) - 29.0, np.where(Y > 8.0, np.abs(X) - 24.0, -1.0))),
                 fem.lo, fem.hi)
    cv.paint(ids["cartilage_femoral"], shell(fem_cut, 2.5, art), (-40, -40, -1), (40, 35, 46))

    plateau = S.body((0, -3.0, -15.0), 38.0, 24.0, 22.0, 12.0, waist=-0.02, round_mm=3.0)
    tibia = [plateau,
             S.tube([(0, -4, -34), (0, -3, -44), (0, -2, -64), (1, -1, -130)], [28.0, 19.0, 14.0, 12.0],
                    (1.0, 0.85, 1.0)),
             S.ellipsoid((0.0, 17.0, -33.0), (9.0, 7.0, 14.0)),   # tuberosity
             S.ellipsoid((-4.5, -3.0, -3.0), (2.5, 7.0, 5.0)),    # medial tibial spine
             S.ellipsoid((4.5, -2.0, -3.5), (2.5, 6.0, 4.5))]     # lateral tibial spine
    tib = S.join(tibia, 4.0)
    concave = sphere((-19.0, -4.0, 41.5), 44.5)
    tib_cut = S.Part(lambda X, Y, Z: np.maximum(tib(X, Y, Z), -concave(X, Y, Z)), tib.lo, tib.hi)
    cv.paint(ids["tibia"], tib_cut, tib_cut.lo, tib_cut.hi, over=(0,))
    for name, sx in (("cartilage_tibial_medial", -19.0), ("cartilage_tibial_lateral", 19.0)):
        pad = S.body((sx, -4.0, -2.0), 14.0, 19.0, 18.0, 1.5, waist=0.0, round_mm=1.0)
        cv.paint(ids[name], pad, pad.lo - 1, pad.hi + 1, over=(0,))
    fib = S.join([S.ellipsoid((31.0, -17.0, -24.0), (9.0, 9.0, 11.0)),
                  S.capsule((31.0, -17.0, -26.0), (28.0, -14.0, -130.0), (6.5, 5.5))], 3.0)
    cv.paint(ids["fibula"], fib, fib.lo, fib.hi, over=(0,))
    pat = ellipsoid_frame((0.0, 41.0, 28.0), ((1, 0, 0), (0, 1, 0), (0, 0, 1)), (21.0, 11.0, 23.0))
    ridge = S.Part(lambda X, Y, Z: np.maximum(pat(X, Y, Z), -(Y - 28.0 - 0.12 * np.abs(X))), pat.lo, pat.hi)
    cv.paint(ids["patella"], ridge, ridge.lo, ridge.hi)
    back = S.Part(lambda X, Y, Z: np.maximum(Y - 36.0, np.abs(Z - 26.0) - 17.0), pat.lo, pat.hi)
    cv.paint(ids["cartilage_patellar"], shell(ridge, 2.5, back), (-22, 24, 6), (22, 40, 50))
    specs = {
        ids["femur"]: LabelSpec(ids["femur"], "femur", "bone", "right distal femur"),
        ids["tibia"]: LabelSpec(ids["tibia"], "tibia", "bone", "right proximal tibia"),
        ids["patella"]: LabelSpec(ids["patella"], "patella", "bone", "right patella"),
        ids["fibula"]: LabelSpec(ids["fibula"], "fibula", "bone", "right proximal fibula"),
        ids["cartilage_femoral"]: LabelSpec(ids["cartilage_femoral"], "cartilage_femoral", "cartilage",
                                            "condyles and trochlea"),
        ids["cartilage_tibial_medial"]: LabelSpec(ids["cartilage_tibial_medial"], "cartilage_tibial_medial",
                                                  "cartilage", "medial plateau"),
        ids["cartilage_tibial_lateral"]: LabelSpec(ids["cartilage_tibial_lateral"], "cartilage_tibial_lateral",
                                                   "cartilage", "lateral plateau"),
        ids["cartilage_patellar"]: LabelSpec(ids["cartilage_patellar"], "cartilage_patellar", "cartilage",
                                             "retropatellar"),
    }
    bones = [ids[n] for n in ("femur", "tibia", "patella", "fibula")]
    landmarks = {"joint_line_z_mm": 0.0, "side": "right",
                 "note": "+x lateral (right knee), joint space 1 mm between cartilage layers at z = 0"}
    return cv, specs, landmarks, _hu(bones, ids), bones


# ---------------------------------------------------------------- hip
def _femur(s: float) -> tuple[list[S.Part], np.ndarray]:
    head = np.array([s * HIP_CENTER_X, 0.0, 0.0])
    d = np.array([s * math.cos(math.radians(38)), -0.16, -math.sin(math.radians(38))])
    d /= np.linalg.norm(d)
    neck_end = head + 45.0 * d
    parts = [
        sphere(head, 23.0),
        S.capsule(head + 8.0 * d, neck_end, (14.0, 17.0)),
        S.capsule(neck_end, neck_end + np.array([s * 1.0, 1.0, -30.0]), 19.0),
        S.ellipsoid(neck_end + np.array([s * 10.0, -5.0, 6.0]), (12.0, 16.0, 20.0)),   # greater trochanter
        S.ellipsoid(neck_end + np.array([-s * 11.0, -10.0, -34.0]), (8.0, 8.0, 9.0)),  # lesser trochanter
        S.tube([neck_end + np.array([0, 2.0, -35.0]), (s * 112.0, 3.0, -182.0)], [16.0, 13.5]),
    ]
    return parts, d


def _cup_sdf(socket: S.Part, c: np.ndarray, axis: np.ndarray) -> S.SDF:
    """Acetabular cartilage: a 1.9 mm shell inside the socket, on the pelvic side of its opening plane."""

    def f(X: S.Arr, Y: S.Arr, Z: S.Arr) -> S.Arr:
        r = np.sqrt((X - c[0]) ** 2 + (Y - c[1]) ** 2 + (Z - c[2]) ** 2)
        side = (X - c[0]) * axis[0] + (Y - c[1]) * axis[1] + (Z - c[2]) * axis[2] - 2.0
        return np.maximum(np.maximum(socket(X, Y, Z), 25.8 - r), side)

    return f


def _cap_sdf(head: S.Part, c: np.ndarray, d: np.ndarray) -> S.SDF:
    """Femoral head cartilage: a 2 mm cap on the head, away from the neck."""

    def f(X: S.Arr, Y: S.Arr, Z: S.Arr) -> S.Arr:
        r = np.sqrt((X - c[0]) ** 2 + (Y - c[1]) ** 2 + (Z - c[2]) ** 2)
        toward_neck = (X - c[0]) * d[0] + (Y - c[1]) * d[1] + (Z - c[2]) * d[2] - 8.0
        return np.maximum(np.maximum(head(X, Y, Z), 23.0 - r), toward_neck)

    return f


def build_hip(spacing_mm: float) -> Built:
    """Pelvis and both proximal femora; see module docstring."""
    cv = S.Canvas((-150.0, -112.0, -182.0), (150.0, 66.0, 122.0), spacing_mm)
    ids = {"hip_right": 1, "hip_left": 2, "sacrum": 3, "femur_right": 4, "femur_left": 5,
           "cartilage_acetabular_right": 10, "cartilage_acetabular_left": 11,
           "cartilage_femoral_head_right": 12, "cartilage_femoral_head_left": 13}
    specs: dict[int, LabelSpec] = {}
    landmarks: dict[str, Any] = {}
    for side, s in (("right", 1.0), ("left", -1.0)):
        parts, cuts, axis = hip_bone(s)
        cv.paint_union(ids[f"hip_{side}"], parts, 6.0, cuts)
        specs[ids[f"hip_{side}"]] = LabelSpec(ids[f"hip_{side}"], f"hip_{side}", "bone",
                                              f"{side} hip bone (ilium, ischium, pubis)")
        fparts, d = _femur(s)
        cv.paint_union(ids[f"femur_{side}"], fparts, 5.0, over=(0,))
        specs[ids[f"femur_{side}"]] = LabelSpec(ids[f"femur_{side}"], f"femur_{side}", "bone", f"{side} proximal femur")
        c = np.array([s * HIP_CENTER_X, 0.0, 0.0])
        socket = sphere(c, SOCKET_R_MM)
        cup = S.Part(_cup_sdf(socket, c, axis), socket.lo, socket.hi)
        name = f"cartilage_acetabular_{side}"
        cv.paint(ids[name], cup, cup.lo, cup.hi)
        specs[ids[name]] = LabelSpec(ids[name], name, "cartilage", f"{side} acetabular cartilage")
        head = sphere(c, 25.0)
        cap = S.Part(_cap_sdf(head, c, d), head.lo, head.hi)
        name = f"cartilage_femoral_head_{side}"
        cv.paint(ids[name], cap, cap.lo, cap.hi, over=(0, ids[f"femur_{side}"]))
        specs[ids[name]] = LabelSpec(ids[name], name, "cartilage", f"{side} femoral head cartilage")
        landmarks[f"hip_center_{side}_mm"] = c.tolist()
        landmarks[f"acetabular_axis_{side}"] = np.round(axis, 4).tolist()
    sac = [S.slab((0.0, -74.0), (s * 50.0, -72.0), (15.0, 11.0), (-30.0, 64.0), (22.0, 62.0), 5.0) for s in (1.0, -1.0)]
    sac += [S.body((0, -66.0, 52.0), 24.0, 12.0, 10.0, 12.0, waist=0.0, round_mm=3.0),
            S.capsule((0, -80.0, -25.0), (0, -92.0, -45.0), (9.0, 5.0))]
    canal = S.tube([(0, -88.0, 75.0), (0, -94.0, -10.0)], [9.0, 6.0], (1, 0.6, 1))
    cv.paint_union(ids["sacrum"], sac, 8.0, [canal])
    specs[ids["sacrum"]] = LabelSpec(ids["sacrum"], "sacrum", "bone", "sacrum")
    bones = [ids[n] for n in ("hip_right", "hip_left", "sacrum", "femur_right", "femur_left")]
    return cv, specs, landmarks, _hu(bones, ids), bones
