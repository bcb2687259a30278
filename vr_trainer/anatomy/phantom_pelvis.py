"""The hip phantom's hemipelvis (ilium, ischium, pubis) as signed-distance parts, RAS millimetres.

Origin midway between the hip centres (x = +-``HIP_CENTER_X``); drawn for the right side (``s = +1``)
and mirrored in x for the left. What it is made of, and where the numbers come from:

- **Acetabulum**: a closed cup, the socket a sphere of ``SOCKET_R_MM`` (about 55 mm across, an adult
  male's) in a block of bone 14 mm thick all round, its rim plane 4 mm out of the centre along the
  opening axis (the socket a little more than a hemisphere). Its pelvic side is the quadrilateral
  plate: a flat inner (pelvic) wall ``MEDIAL_WALL_MM`` medial of the socket, the acetabular floor a
  few millimetres thick as in adults (a design value: reaming 2 mm deeper than the native socket
  leaves bone, 7 mm breaks through it). The opening faces out, down and forward at
  ``INCLINATION_DEG`` radiographic inclination and ``ANTEVERSION_DEG`` radiographic anteversion in the
  anterior pelvic plane frame (Murray's definitions: Murray DW. The definition and measurement of
  acetabular orientation. J Bone Joint Surg Br 1993;75(2):228-232), inside the 40-50 deg /
  15-20 deg reported for native acetabula in CT series (e.g. Tohtz SW et al. CT evaluation of native
  acetabular orientation and localization: sex-specific data comparison on 336 hip joints. Technol
  Health Care 2010;18(2):129-136) and inside Lewinnek's safe zone (Lewinnek GE et al. J Bone Joint
  Surg Am 1978;60(2):217-220: 40 +- 10 / 15 +- 10 deg).
- **Anterior pelvic plane landmarks**: the anterior superior iliac spine (ASIS) 34 mm lateral, 50 mm
  anterior and 72 mm superior of the hip centre (after Bell AL, Pedersen DR, Brand RA. A comparison
  of the accuracy of several hip center location prediction methods. J Biomech 1990;23(6):617-621:
  the hip centre 14 % / 22 % / 30 % of the inter-ASIS width medial, posterior and inferior of the
  ASIS; here an inter-ASIS width of 244 mm) and the pubic tubercles 22 mm from the midline, 24 mm
  below the hip centre, in the same coronal plane as the ASIS: the plane is vertical when the pelvis
  lies level (no pelvic tilt).
- **Iliac wing**: a 5.5 mm shell of an upward-flaring cone whose axis stands medial and forward of
  the wing, so the iliac fossa (its inner face) is concave and the gluteal face convex; its crest a
  thick rim that runs from the ASIS out to the iliac tubercle, back, and turns in again to the
  posterior superior iliac spine (the crest's S in a view from above); the anterior inferior iliac
  spine below the ASIS, the posterior ilium thick where it meets the sacrum.
- **Pubis and ischium**: the superior pubic ramus from the acetabulum's anterior column to the pubic
  body (the symphysis 2.5 mm from the midline), the inferior pubic and ischial rami round the
  obturator foramen, the ischium from the posterior column down to the ischial tuberosity.
"""

from __future__ import annotations

import math

import numpy as np

from . import phantom_sdf as S
from .phantom_sdf import Point

HIP_CENTER_X = 88.0
SOCKET_R_MM = 27.7
INCLINATION_DEG = 45.0
ANTEVERSION_DEG = 18.0
MEDIAL_WALL_MM = 5.0  # bone between the socket and the pelvic face of the quadrilateral plate
RIM_OUT_MM = 4.0  # the rim plane this far out of the socket's centre along its axis
CUP_WALL_MM = 14.0  # the acetabular block's thickness round the socket (away from the plate)
WING_HALF_MM = 2.75
#: the iliac wing's cone: axis through (x, y) = WING_AXIS_XY, radius WING_R_MM at z = 100, flaring out
#: upward by WING_FLARE per mm
WING_AXIS_XY = (50.0, 20.0)
WING_R_MM = 87.5
WING_FLARE = 0.3
#: the iliac crest (right side), ASIS to PSIS: out to the iliac tubercle, back, in again (an S from above)
CREST_MM = ((122.0, 50.0, 72.0), (131.0, 30.0, 88.0), (136.0, 4.0, 100.0), (129.0, -24.0, 108.0),
            (111.0, -47.0, 111.0), (86.0, -64.0, 104.0), (66.0, -78.0, 90.0), (48.0, -94.0, 70.0))
ASIS_MM = (122.0, 50.0, 72.0)
PUBIC_TUBERCLE_MM = (22.0, 51.0, -24.0)


def opening_axis(s: float) -> np.ndarray:
    """Unit axis out of the socket (RAS) for radiographic inclination / anteversion in a level pelvis's
    anterior pelvic plane frame (+x right, +y anterior, +z superior); ``s`` = +1 right, -1 left."""
    i, a = math.radians(INCLINATION_DEG), math.radians(ANTEVERSION_DEG)
    return np.array([s * math.sin(i) * math.cos(a), math.sin(a), -math.cos(i) * math.cos(a)])


def _m(p: Point, s: float) -> np.ndarray:
    return np.array([s * p[0], p[1], p[2]], float)


def _acetabular_block(c: np.ndarray, axis: np.ndarray, s: float) -> S.Part:
    """Sphere of bone round the socket, cut flat at the rim plane and at the quadrilateral plate."""
    r_out = SOCKET_R_MM + CUP_WALL_MM
    plate_x = c[0] - s * (SOCKET_R_MM + MEDIAL_WALL_MM)  # the plate's pelvic face (a sagittal plane)

    def f(X: S.Arr, Y: S.Arr, Z: S.Arr) -> S.Arr:
        dx, dy, dz = X - c[0], Y - c[1], Z - c[2]
        ball = np.sqrt(dx * dx + dy * dy + dz * dz) - r_out
        rim = dx * axis[0] + dy * axis[1] + dz * axis[2] - RIM_OUT_MM
        plate = s * (plate_x - X)
        return np.maximum(np.maximum(ball, rim), plate)

    return S.Part(f, c - r_out, c + r_out)


def mouth_cut(c: np.ndarray, axis: np.ndarray) -> S.Part:
    """The funnel over the socket's mouth (out of the rim plane, widening from the rim at 56 deg to the
    axis): nothing covers the mouth or stands round it as a wall the cavity's sphere fit would take for
    socket."""
    rim_r = math.sqrt(SOCKET_R_MM ** 2 - RIM_OUT_MM ** 2)
    widen, depth = 1.5, 30.0
    cos_w = 1.0 / math.sqrt(1.0 + widen ** 2)

    def f(X: S.Arr, Y: S.Arr, Z: S.Arr) -> S.Arr:
        dx, dy, dz = X - c[0], Y - c[1], Z - c[2]
        u = dx * axis[0] + dy * axis[1] + dz * axis[2]
        px, py, pz = dx - u * axis[0], dy - u * axis[1], dz - u * axis[2]
        wall = (np.sqrt(px * px + py * py + pz * pz) - rim_r - widen * (u - RIM_OUT_MM)) * cos_w
        return np.maximum(RIM_OUT_MM - u, wall)

    ends = np.stack([c, c + depth * axis])
    return S.Part(f, ends.min(0) - rim_r - widen * depth, ends.max(0) + rim_r + widen * depth)


def _wing(s: float) -> S.Part:
    """The iliac wing: a shell of the flaring cone, between its anterior border (ASIS down to the AIIS)
    and the posterior ilium, below the crest."""
    ax, ay = s * WING_AXIS_XY[0], WING_AXIS_XY[1]
    cos_f = 1.0 / math.sqrt(1.0 + WING_FLARE ** 2)
    crest = np.array(CREST_MM)
    th_c = np.degrees(np.arctan2(crest[:, 1] - ay, crest[:, 0] - WING_AXIS_XY[0]))  # right-side angles
    order = np.argsort(th_c)
    th_sorted, z_sorted = th_c[order], crest[order, 2]
    th_asis = float(th_c[0])

    def f(X: S.Arr, Y: S.Arr, Z: S.Arr) -> S.Arr:
        dx, dy = s * (X - ax), Y - ay  # mirrored into the right side's angles
        rho = np.sqrt(dx * dx + dy * dy)
        radial = np.abs(rho - (WING_R_MM + WING_FLARE * (Z - 100.0))) * cos_f - WING_HALF_MM
        th = np.degrees(np.arctan2(dy, dx))
        top = Z - np.interp(th, th_sorted, z_sorted)
        front = (th - (th_asis - 0.35 * np.clip(72.0 - Z, 0.0, None))) * rho * (math.pi / 180.0)
        back = (-82.0 - th) * rho * (math.pi / 180.0)
        return np.maximum(np.maximum(radial, top), np.maximum(np.maximum(front, back), 12.0 - Z))

    lo = (min(s * 20.0, s * 145.0), -100.0, 8.0)
    hi = (max(s * 20.0, s * 145.0), 60.0, 115.0)
    return S.Part(f, lo, hi)


def hip_bone(s: float) -> tuple[list[S.Part], list[S.Part], np.ndarray]:
    """(parts, cuts, opening axis) of one hemipelvis: ``s`` = +1 right, -1 left."""
    c = np.array([s * HIP_CENTER_X, 0.0, 0.0])
    axis = opening_axis(s)

    def m(p: Point) -> np.ndarray:
        return _m(p, s)

    crest = [m(p) for p in CREST_MM]
    parts = [
        _acetabular_block(c, axis, s),
        _wing(s),
        S.tube(crest, [6.0, 5.5, 6.5, 6.0, 6.0, 6.5, 8.0, 8.5]),                 # iliac crest (S from above)
        S.ellipsoid(m(ASIS_MM), (6.0, 7.0, 6.5)),                                  # ASIS
        S.ellipsoid(m((114.0, 33.0, 38.0)), (6.0, 6.0, 7.0)),                      # AIIS
        S.ellipsoid(m((95.0, -16.0, 36.0)), (14.0, 24.0, 24.0)),                   # ilium body over the roof
        S.capsule(m((70.0, -8.0, 24.0)), m((64.0, -58.0, 48.0)), 9.0),             # arcuate line (brim), back
        S.capsule(m((70.0, -8.0, 24.0)), m((52.0, 26.0, -8.0)), 8.0),              # pectineal line, forward
        S.capsule(m((58.0, -80.0, 52.0)), m((70.0, -86.0, 76.0)), 14.0),           # posterior ilium (SI joint)
        S.capsule(m((64.0, -58.0, 48.0)), m((58.0, -80.0, 52.0)), 11.0),
        S.capsule(m((80.0, 22.0, -10.0)), m((20.0, 44.0, -28.0)), 9.0),            # superior pubic ramus
        S.ellipsoid(m((12.0, 44.0, -38.0)), (9.5, 10.0, 17.0)),                    # pubic body (symphysis)
        S.ellipsoid(m(PUBIC_TUBERCLE_MM), (5.0, 5.0, 5.0)),                        # pubic tubercle
        S.capsule(m((12.0, 40.0, -52.0)), m((46.0, 2.0, -80.0)), 7.0),             # inferior pubic / ischial ramus
        S.capsule(m((80.0, -20.0, -18.0)), m((58.0, -12.0, -70.0)), 12.5),         # ischium (posterior column)
        S.ellipsoid(m((56.0, -12.0, -76.0)), (12.0, 15.0, 17.0)),                  # ischial tuberosity
        S.ellipsoid(m((64.0, -40.0, -30.0)), (6.0, 8.0, 7.0)),                     # ischial spine
    ]
    cuts = [S.ellipsoid(c, (SOCKET_R_MM,) * 3), mouth_cut(c, axis)]
    return parts, cuts, axis
