"""The prone patient's lumbar region around the spine phantom: skin, muscles, iliac wings.

Painted on coarser canvases than the spine (the skin at 2 mm, muscles and
ilium at 1 mm) and meshed through the same pipeline.  Patient RAS mm, the
spine phantom's frame (origin at the canal centre of the L4-L5 disc).

- ``skin``: a closed trunk segment (cut flat above L2 and below the sacrum),
  a super-elliptic cross-section 280 (waist) to 320 mm (hips) wide and 240 mm
  deep, the back ~92 mm behind the canal (~73 mm behind the L4 laminae):
  adult values, from memory (a lean-to-average adult; obese patients are deeper).
- ``paraspinal_muscle_left/right``: erector spinae and multifidus as one mass
  per side, from the spinous processes to ~80 mm lateral, between the laminae
  and the thoracolumbar fascia (12 mm of subcutaneous fat behind it).
- ``psoas_left/right``: beside the bodies, widening caudally, passing over the
  pelvic brim (the lumbar plexus runs in it; roots tunnel through it here).
- ``ilium_left/right``: iliac wings (thin curved plates flaring outwards as
  they rise, a thick rounded crest) from the posterior superior iliac spine
  (S2 level, ~42 mm from the midline) round to the anterior superior spine,
  the crest rising to the L4-L5 disc level at the iliac tubercle (the
  intercrestal line usually crosses L4 or the L4-L5 interspace), with a
  medial auricular part beside the sacral ala (the sacroiliac joint gap is
  left open).  A posterolateral approach to L5-S1 in the axial plane meets the
  posterior crest: the "high iliac crest" that forces a steeper, more cranial
  entry there.

Spine structures keep their voxels: the 1 mm canvas is blocked wherever the
spine canvas holds anything (dilated one voxel), so muscles wrap the bones and
roots instead of overlapping them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import phantom_sdf as S
from .pipeline import LabelSpec

SIDES = {"right": 1.0, "left": -1.0}
SKIN_BOUNDS_MM = ((-190.0, -110.0, -130.0), (190.0, 160.0, 110.0))
BODY_BOUNDS_MM = ((-160.0, -100.0, -130.0), (160.0, 110.0, 110.0))
BLOCK = 255
#: skin cross-section: posterior / anterior half-depths, centre y, super-ellipse exponent
SKIN_B_POST, SKIN_B_ANT, SKIN_YC, SKIN_N = 100.0, 140.0, 8.0, 2.2
SUBCUT_FAT_MM = 12.0
ID = {"skin": 1, "paraspinal_muscle_left": 2, "paraspinal_muscle_right": 3, "psoas_left": 4, "psoas_right": 5,
      "ilium_left": 6, "ilium_right": 7}
HU = {"skin": -100.0, "muscle": 50.0, "bone": 260.0}


def skin_half_width(z: Any) -> Any:
    """Half width (mm) of the trunk at height ``z``: narrower at the waist (above L3), wider at the hips."""
    return 150.0 + 12.0 * np.tanh((-20.0 - np.asarray(z, float)) / 50.0)


def skin_sdf() -> S.Part:
    """Approximate signed distance to the trunk surface (exact sign; scale good near the surface)."""

    def f(X: S.Arr, Y: S.Arr, Z: S.Arr) -> S.Arr:
        a = skin_half_width(Z)
        y = Y - SKIN_YC
        b = np.where(y < 0, SKIN_B_POST, SKIN_B_ANT)
        q = (np.abs(X / a) ** SKIN_N + np.abs(y / b) ** SKIN_N) ** (1.0 / SKIN_N)
        return (q - 1.0) * np.minimum(a, b)

    lo, hi = SKIN_BOUNDS_MM
    return S.Part(f, (lo[0], lo[1], lo[2] - 5), (hi[0], hi[1], hi[2] + 5))


def _inside_skin(part: S.Part, depth_mm: float) -> S.Part:
    skin = skin_sdf()
    return S.Part(lambda X, Y, Z: np.maximum(part(X, Y, Z), skin(X, Y, Z) + depth_mm), part.lo, part.hi)


def paraspinal(s: float) -> S.Part:
    pts = [(s * 40, -45, 115), (s * 40, -47, 40), (s * 41, -49, -20), (s * 37, -53, -70), (s * 28, -60, -110),
           (s * 22, -64, -135)]
    # tube(): the cross-section's extent along an axis is radius * scale / min(scale): 38 mm wide, 31 deep
    radii = [0.82 * r for r in (36.0, 38.0, 38.0, 30.0, 18.0, 12.0)]
    return _inside_skin(S.tube(pts, radii, (1, 0.82, 1)), SUBCUT_FAT_MM)


def psoas(s: float) -> S.Part:
    pts = [(s * 30, 22, 115), (s * 38, 26, 50), (s * 45, 30, 0), (s * 52, 38, -50), (s * 62, 50, -100),
           (s * 70, 62, -135)]
    return S.tube(pts, [10.0, 15.0, 19.0, 21.0, 20.0, 18.0])


#: iliac crest from the PSIS round to the ASIS (x > 0 side): (x, y, z of the crest top)
CREST = [(42.0, -48.0, -75.0), (55.0, -45.0, -45.0), (75.0, -30.0, -22.0), (100.0, -10.0, -8.0),
         (122.0, 15.0, 4.0), (130.0, 45.0, 0.0), (122.0, 75.0, -25.0), (108.0, 92.0, -55.0)]
#: below each crest point, where the wing meets the body of the ilium / sciatic notch / anterior inferior
#: spine, more medial than the crest: the wing flares outwards as it rises (below the canvas: cut there)
WING_FOOT = [(56.0, -36.0, -135.0), (63.0, -28.0, -135.0), (72.0, -14.0, -135.0), (82.0, 5.0, -135.0),
             (90.0, 25.0, -135.0), (95.0, 45.0, -135.0), (98.0, 66.0, -135.0), (100.0, 84.0, -122.0)]
CREST_R = [6.0, 5.5, 5.0, 4.5, 5.5, 4.5, 4.0, 5.0]
WING_HALF_T = 2.5


def ilium(s: float) -> list[S.Part]:
    """One iliac wing: a thin curved plate (triangle strip) from the crest down to its foot, a thick rounded
    crest, and the auricular part beside the sacrum (the sacroiliac joint left open)."""
    def m(p: tuple[float, float, float]) -> tuple[float, float, float]:
        return (s * p[0], p[1], p[2])

    parts: list[S.Part] = []
    for i in range(len(CREST) - 1):
        c0, c1, f0, f1 = m(CREST[i]), m(CREST[i + 1]), m(WING_FOOT[i]), m(WING_FOOT[i + 1])
        parts += [S.triangle(c0, c1, f1, WING_HALF_T), S.triangle(c0, f1, f0, WING_HALF_T)]
        parts.append(S.capsule((c0[0], c0[1], c0[2] - CREST_R[i]), (c1[0], c1[1], c1[2] - CREST_R[i + 1]),
                               (CREST_R[i], CREST_R[i + 1])))
    # the posterior border from the PSIS down to the posterior inferior spine, thick
    parts.append(S.capsule(m((42.0, -46.0, -80.0)), m((56.0, -36.0, -135.0)), 6.0))
    parts.append(S.slab((s * 62.0, -40.0), (s * 66.0, 12.0), (6.0, 7.0), (-100.0, -55.0), (-105.0, -60.0), 3.0))
    parts.append(S.slab((s * 48.0, -48.0), (s * 62.0, -40.0), 6.0, (-100.0, -72.0), (-100.0, -58.0), 3.0))
    return parts


def block_from(body: S.Canvas, spine: S.Canvas) -> None:
    """Mark the body canvas BLOCK wherever the (finer) spine canvas holds any structure, dilated by one
    voxel; the spine canvas must be an integer subdivision of the body grid (here 0.5 in 1 mm)."""
    from scipy import ndimage

    r = body.spacing / spine.spacing
    k = int(round(r))
    if abs(r - k) > 1e-6:
        raise ValueError("spine spacing must divide the body spacing")
    off = (spine.lo - body.lo) / body.spacing
    if np.any(np.abs(off - np.round(off)) > 1e-6):
        raise ValueError("spine canvas origin must lie on the body grid")
    occ = spine.labels > 0
    pad = [(0, (-n) % k) for n in occ.shape]
    occ = np.pad(occ, pad)
    sh = [n // k for n in occ.shape]
    pooled = occ.reshape(sh[0], k, sh[1], k, sh[2], k).any(axis=(1, 3, 5))
    pooled = ndimage.binary_dilation(pooled, iterations=1)
    o = np.round(off).astype(int)
    sl = tuple(slice(max(0, a), min(n, a + m)) for a, m, n in zip(o, pooled.shape, body.shape))
    src = tuple(slice(s.start - a, s.stop - a) for s, a in zip(sl, o))
    body.labels[sl][pooled[src]] = BLOCK


def build_skin(spacing_mm: float = 2.0) -> tuple[S.Canvas, dict[int, LabelSpec]]:
    canvas = S.Canvas(SKIN_BOUNDS_MM[0], SKIN_BOUNDS_MM[1], spacing_mm)
    skin = skin_sdf()
    canvas.paint(ID["skin"], skin, skin.lo, skin.hi)
    return canvas, {ID["skin"]: LabelSpec(ID["skin"], "skin", "skin", "body surface of the lumbar region (prone)")}


def build_body(spine: S.Canvas, spacing_mm: float = 1.0) -> tuple[S.Canvas, dict[int, LabelSpec]]:
    """Muscles and iliac wings on a ``spacing_mm`` canvas blocked by the spine canvas."""
    canvas = S.Canvas(BODY_BOUNDS_MM[0], BODY_BOUNDS_MM[1], spacing_mm)
    block_from(canvas, spine)
    specs: dict[int, LabelSpec] = {}
    for side, s in SIDES.items():
        name = f"ilium_{side}"
        canvas.paint_union(ID[name], ilium(s), 3.0)
        specs[ID[name]] = LabelSpec(ID[name], name, "bone", f"{side} iliac wing (crest, PSIS, auricular part)")
    for side, s in SIDES.items():
        for name, part, what in ((f"paraspinal_muscle_{side}", paraspinal(s), "erector spinae and multifidus"),
                                 (f"psoas_{side}", psoas(s), "psoas major")):
            canvas.paint(ID[name], part, part.lo, part.hi)
            canvas.open_label(ID[name])  # no threads between the spine's blocks: clean surfaces
            specs[ID[name]] = LabelSpec(ID[name], name, "muscle", f"{side} {what}")
    return canvas, specs


def finish_body(canvas: S.Canvas) -> None:
    """Clear the spine's blocking marks before meshing."""
    canvas.labels[canvas.labels == BLOCK] = 0


def composite_hu(spine_hu: np.ndarray, spine: S.Canvas, body: S.Canvas, skin: S.Canvas,
                 body_specs: dict[int, LabelSpec]) -> tuple[np.ndarray, np.ndarray]:
    """The whole phantom as one CT on the skin canvas's grid (2 mm): air (-1000 HU) outside the skin,
    fat (-100) inside, muscle 50, ilium as bone (cancellous 260, 1.5 mm cortex 1100), and the spine's own
    CT (0.5 mm, its soft-tissue background replaced by what the body holds there).  Each finer canvas
    is box-filtered to the target voxel and sampled at its centres.  Returns (int16 HU, affine)."""
    from scipy import ndimage

    def resample(fine: np.ndarray, canvas: S.Canvas) -> tuple[np.ndarray, np.ndarray]:
        """(values at the skin grid's voxel centres inside ``canvas``, mask of those voxels)."""
        k = max(1, int(round(skin.spacing / canvas.spacing)))
        sm = ndimage.uniform_filter(fine.astype(np.float32), size=k, mode="nearest") if k > 1 else fine
        axes = [skin.lo[d] + skin.spacing * np.arange(skin.shape[d]) for d in range(3)]
        inside = [(a >= canvas.lo[d]) & (a <= canvas.lo[d] + canvas.spacing * (canvas.shape[d] - 1))
                  for d, a in enumerate(axes)]
        idx = [(axes[d][inside[d]] - canvas.lo[d]) / canvas.spacing for d in range(3)]
        grid = np.meshgrid(*idx, indexing="ij")
        vals = ndimage.map_coordinates(sm, grid, order=1, mode="nearest")
        mask = np.zeros(skin.shape, bool)
        mask[np.ix_(*inside)] = True
        return vals, mask

    lut = np.full(256, -100.0, np.float32)
    for i, sp in body_specs.items():
        lut[i] = HU["bone"] if sp.tissue == "bone" else HU["muscle"]
    bones = [i for i, sp in body_specs.items() if sp.tissue == "bone"]
    body_hu = lut[body.labels]
    bone = np.isin(body.labels, bones)
    cortex = bone & ~ndimage.binary_erosion(bone, iterations=max(1, int(round(1.5 / body.spacing))))
    body_hu[cortex] = 1100.0
    out = np.where(skin.labels > 0, -100.0, -1000.0).astype(np.float32)
    vals, mask = resample(body_hu, body)
    out[mask] = np.where(out[mask] > -1000.0, vals.ravel(), -1000.0)
    # the spine canvas: where it holds no structure, the body's value at that point (nearest 1 mm voxel)
    fine = spine_hu.astype(np.float32)
    empty = spine.labels == 0
    pos = [spine.lo[d] + spine.spacing * np.arange(spine.shape[d]) for d in range(3)]
    bi = [np.clip(np.round((pos[d] - body.lo[d]) / body.spacing).astype(int), 0, body.shape[d] - 1) for d in range(3)]
    under = body_hu[np.ix_(*bi)]
    fine[empty] = under[empty]
    vals, mask = resample(fine, spine)
    out[mask] = vals.ravel()
    return np.clip(np.round(out), -1024, 3071).astype(np.int16), skin.affine.copy()
