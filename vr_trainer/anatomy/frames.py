"""Anatomical frames of imported meshes: three-letter orientation codes.

A code names, for file axis x, y, z in turn, the direction its *positive*
end points to, as nibabel (``aff2axcodes``), DICOM, 3D Slicer and ITK's
``AnatomicalOrientation`` (positive-direction spelling) write it: ``RAS`` is
the bundle's frame (+x right, +y anterior, +z superior), ``LPS`` the DICOM
frame 3D Slicer writes mesh files in since 4.11, ``ALS`` (+x anterior, +y
left, +z superior) a frame some biomechanics models use.  The legacy ITK
``SpatialOrientation`` enum (``ITK_COORDINATE_ORIENTATION_RAI``) names where
each axis comes *from*; its ``RAI`` is ``LPS`` here.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from .errors import AnatomyError

#: letter -> (RAS axis index, sign of that RAS axis)
_LETTERS = {"R": (0, 1.0), "L": (0, -1.0), "A": (1, 1.0), "P": (1, -1.0), "S": (2, 1.0), "I": (2, -1.0)}
_PAIRS = ("R/L", "A/P", "S/I")
#: lumbosacral levels from superior to inferior
LEVELS = ("T12", "L1", "L2", "L3", "L4", "L5", "S1")
_LEVEL_RE = re.compile(r"(?<![A-Za-z0-9])(T12|L[1-5]|S1)(?![0-9])", re.IGNORECASE)


def frame_matrix(code: str, where: str = "--frame") -> np.ndarray:
    """3x3 matrix taking file coordinates in frame ``code`` to RAS (``ras = M @ v``)."""
    c = str(code).strip().upper()
    hint = "use three letters, one from each pair R/L, A/P, S/I, e.g. RAS, LPS or ALS"
    if len(c) != 3 or any(ch not in _LETTERS for ch in c):
        raise AnatomyError(f"{where} {code!r} is not an orientation code; {hint}")
    axes = [_LETTERS[ch][0] for ch in c]
    if len(set(axes)) != 3:
        twice = [_PAIRS[a] for a in range(3) if axes.count(a) > 1][0]
        raise AnatomyError(f"{where} {code!r} names the {twice} axis twice; {hint}")
    m = np.zeros((3, 3))
    for i, ch in enumerate(c):
        a, s = _LETTERS[ch]
        m[a, i] = s
    return m


def to_ras(vertices: np.ndarray, faces: np.ndarray, code: str) -> tuple[np.ndarray, np.ndarray]:
    """``vertices`` (n, 3) in frame ``code`` -> RAS; faces re-wound when the change mirrors."""
    m = frame_matrix(code)
    v = np.asarray(vertices, float) @ m.T
    f = np.asarray(faces)
    if np.linalg.det(m) < 0:  # a mirror turns outward normals inward
        f = f[:, ::-1]
    return v, f


def code_of(m: np.ndarray) -> str:
    """The orientation code of a file -> RAS matrix (inverse of :func:`frame_matrix`)."""
    out = ""
    for i in range(3):
        a = int(np.argmax(np.abs(m[:, i])))
        out += "RAS"[a] if m[a, i] > 0 else "LPI"[a]
    return out


def vertebra_level(stem: str) -> str | None:
    """``L3`` for ``L3``, ``vertebra_L3``, ``l3_body`` ...; None for anything else (discs too)."""
    if "disc" in stem.lower() or "disk" in stem.lower():
        return None
    found = {m.upper() for m in _LEVEL_RE.findall(stem)}
    return found.pop() if len(found) == 1 else None


def superior_order_warning(named_centroids_ras: Sequence[tuple[str, np.ndarray]], code: str) -> str | None:
    """A warning when vertebrae (``(level, centroid_mm)`` in RAS) are not stacked with
    the upper level higher (+z), e.g. L3 below L4; None when the order agrees.

    The message names the pair and suggests the code that would put them in order.
    """
    pts = sorted(((LEVELS.index(n), n, np.asarray(c, float)) for n, c in named_centroids_ras if n in LEVELS),
                 key=lambda t: t[0])
    if len(pts) < 2:
        return None
    bad = [(a, b) for a, b in zip(pts, pts[1:]) if a[2][2] <= b[2][2]]
    if not bad:
        return None
    (_, up, cu), (_, low, cl) = bad[0]
    # the direction the data's levels actually go up along, back in file axes
    m = frame_matrix(code)
    rise_file = m.T @ (pts[0][2] - pts[-1][2])
    i = int(np.argmax(np.abs(rise_file)))
    letters = list(code.upper())
    want = "S" if rise_file[i] > 0 else "I"
    j = next(k for k, ch in enumerate(letters) if ch in "SI")
    letters[j], letters[i] = letters[i], want
    suggestion = "".join(letters)
    hint = f"; the levels rise along file axis {'xyz'[i]}: try --frame {suggestion}" if suggestion != code.upper() \
        else ""
    return (f"{up} lies below {low} (z {cu[2]:.1f} mm vs {cl[2]:.1f} mm in RAS) with --frame {code.upper()}: "
            f"the superior direction of the meshes disagrees with the declared frame{hint}")
