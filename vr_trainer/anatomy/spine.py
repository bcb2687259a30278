"""``--spine``: discs, dural sac, nerve roots and Kambin's triangles from vertebra meshes alone.

Input: bone structures named by level (``L1`` .. ``L5``, ``S1`` or ``sacrum``, ``T12`` ...; the
TotalSegmentator label map names them so), optionally discs (``disc_L4_L5``), a spinal cord or
canal (``spinal_cord``, ``spinal_canal``) and a dural sac, in RAS millimetres. Output: the
structures that were missing, each marked ``derived`` with its method, and landmarks.

* **Frames** (:mod:`.spine_geometry`): body centroid, superior axis between the neighbouring
  bodies, anterior axis from the vertebral foramen along the bone's plane of bilateral symmetry
  (the projection that best matches its own mirror image), pedicles beside the foramen.
* **Disc** ``disc_U_L``: the gap between the lower endplate of U's body and the upper endplate of
  L's body, column by column along the level's axis, where both bodies overlap; its height is the
  median gap over the central half of the endplates.
* **Dural sac**: a tube through the canal centres (or the cord's centreline when given), its
  cross-section 70 % of the measured foramen, at most 9 x 7 mm (semi-axes), clear of bone.
* **Nerve roots** (thoracic and lumbar levels; radius ``ROOT_RADIUS_MM``): the *exiting* root of
  U leaves the sac at the top of U's pedicle, turns under the pedicle in the upper part of the
  foramen (where the root and its ganglion lie: Hasegawa T, An HS, Haughton VM, Nowicki BH, J Bone
  Joint Surg Am 1995;77(1):32-38, a cryomicrotome study of 100 lumbar foramina) and runs
  anterolaterally down beside L's body (lateral of its endplate, so the sacral alae do not count as
  S1's body); where bone lies there (the ala beside S1) it passes in front of it, as the L5 root
  crosses the ala's anterosuperior surface (:func:`.spine_roots.exiting_waypoints`); the *traversing*
  root of L leaves the sac above the U-L disc and descends in the lateral recess, medial to L's
  pedicle. Diameters within the 4-6 mm
  reported for lumbar roots in their dural sleeves (Cohen MS, Wall EJ, Brown RA, Rydevik B, Garfin SR,
  "Cauda equina anatomy II: extrathecal nerve roots and dorsal root ganglia", Spine 1990;15(12):1248-1251;
  the values used, 4.0-5.4 mm, are chosen inside that range, not read from one of its tables), growing
  caudally. Every centreline sample is pushed out of bone until it is its radius +
  ``ROOT_CLEARANCE_MM`` clear.
* **Kambin's triangle** (Kambin P, Sampson S, "Posterolateral percutaneous suction-excision of herniated
  lumbar intervertebral discs", Clin Orthop Relat Res 1986;(207):37-43): apex where the exiting root
  crosses the sagittal plane of L's pedicle (the superior articular process rises above it), base
  on L's superior endplate from below the apex to where the root crosses that plane. The approach
  direction is posterolateral, 30 degrees from the coronal plane, turned (up to 25 degrees) to the
  direction that keeps the needle clearest of bone, roots and sac. With a skin surface (a structure
  of tissue ``skin``) the landmark also gets ``skin_entry_mm``, where that approach meets the skin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy import ndimage

from .bundle import Structure
from .spine_geometry import LEVELS, BoneField, VertebraFrame, solid_points, unit, vertebra_frame, vertebra_level
from .surface import finish, mask_surface
from .spine_tubes import catmull_rom, resample_radii, tube_mesh

ROOT_RADIUS_MM = {"T12": 2.0, "L1": 2.0, "L2": 2.2, "L3": 2.3, "L4": 2.4, "L5": 2.6, "S1": 2.7}
ROOT_CLEARANCE_MM = 0.8
SAC_MAX_SEMI_AXES_MM = (9.0, 7.0)
APPROACH_CORONAL_DEG = 30.0
OTHER_BONE_MARGIN_MM = 10.0
MIN_VERTEBRA_ML = 10.0  # smaller pieces are fragments cut by the scan's edge
SIDES = {"right": 1.0, "left": -1.0}


@dataclass
class SpineDerivation:
    """What :func:`derive_spine` adds: structures, landmarks and a summary for the manifest notes."""

    structures: list[Structure]
    landmarks: dict[str, Any]
    summary: dict[str, Any] = field(default_factory=dict)
    #: name -> the tube each derived sac or root was made from (to paint it into a label volume or move it)
    tubes: dict[str, "Tube"] = field(default_factory=dict)
    #: the vertebrae's signed distance field the roots were kept clear of (None when nothing was derived)
    bone: BoneField | None = None


@dataclass
class Tube:
    """A derived tube: centreline ``path_mm`` (m, 3), radii ``radius_mm`` (m,), and for the elliptic sac the
    (unit axis (3,), factor) its cross-section is scaled by along that axis."""

    path_mm: np.ndarray
    radius_mm: np.ndarray
    squash: tuple[np.ndarray, float] | None = None


def _derived(method: str, sources: Sequence[str], **extra: Any) -> dict[str, Any]:
    return {"derived": {"method": method, "from": list(sources), **extra}}


def _pitch(structs: Sequence[Structure]) -> float:
    """0.5 mm for fine meshes, up to 1 mm for coarse (3 mm CT) ones."""
    edges = [float(np.median(s.mesh.edges_unique_length)) for s in structs]
    return float(np.clip(0.5 * np.median(edges), 0.5, 1.0))


def spine_frames(vertebrae: dict[str, Structure], pitch: float) -> tuple[dict[str, VertebraFrame],
                                                                          dict[str, np.ndarray]]:
    """Frames of the vertebrae (ordered cranial to caudal) and their solid points."""
    order = sorted(vertebrae, key=LEVELS.index)
    pts = {lv: solid_points(vertebrae[lv].mesh, pitch) for lv in order}
    # a fragment (a vertebra mostly outside the scan) has no body or canal to measure
    order = [lv for lv in order if len(pts[lv]) * pitch ** 3 >= MIN_VERTEBRA_ML * 1000.0]
    if lv_s1 := ("S1" if "S1" in order else None):
        # the sacrum: only its top (the S1 segment) acts as the vertebra below L5
        up = (pts[order[-2]].mean(0) if len(order) > 1 else pts["S1"].mean(0) + [0, 0, 50.0]) - pts[lv_s1].mean(0)
        # (thick enough that the S1 arch closes around the canal in projection: tried from thin to thick)
        h = pts[lv_s1] @ unit(up)
        for slab_mm in (28.0, 34.0, 40.0, 46.0):
            top = pts[lv_s1][h > h.max() - slab_mm]
            if vertebra_frame("S1", top, up, pitch).canal_found:
                break
        pts[lv_s1] = top
    cent = {lv: pts[lv].mean(0) for lv in order}
    frames: dict[str, VertebraFrame] = {}
    for _pass in range(2):
        for i, lv in enumerate(order):
            above = cent[order[i - 1]] if i > 0 else None
            below = cent[order[i + 1]] if i + 1 < len(order) else None
            if above is not None and below is not None:
                up = above - below
            elif above is not None:
                up = above - cent[lv]
            elif below is not None:
                up = cent[lv] - below
            else:
                up = np.array([0.0, 0.0, 1.0])
            frames[lv] = vertebra_frame(lv, pts[lv], up, pitch)
        missing = [lv for lv in order if not frames[lv].canal_found]
        if missing and len(order) - len(missing) >= 2:  # measured again without them
            order = [lv for lv in order if lv not in missing]
            frames = {lv: f for lv, f in frames.items() if lv in order}
        cent = {lv: frames[lv].centroid_mm for lv in order}
    return frames, pts


def _level_axes(u: VertebraFrame, lo: VertebraFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(origin, r, a, s) of the level U-L: s from L's body to U's, r the mean of theirs."""
    s = unit(u.centroid_mm - lo.centroid_mm)
    r = unit(u.r + lo.r - ((u.r + lo.r) @ s) * s)
    a = np.cross(s, r)
    return 0.5 * (u.centroid_mm + lo.centroid_mm), r, a, s


def derive_disc(u: VertebraFrame, lo: VertebraFrame, pitch: float, max_faces: int = 3000
                ) -> tuple[Structure | None, dict[str, Any]]:
    """The disc filling the gap between U's lower and L's upper endplate (see the module docstring)."""
    o, r, a, s = _level_axes(u, lo)
    rot = np.stack([r, a, s])
    pu, pl = (u.body_points_mm - o) @ rot.T, (lo.body_points_mm - o) @ rot.T
    both = np.vstack([pu, pl])
    lo2 = both[:, :2].min(0) - 2 * pitch
    shape = (np.ceil((both[:, :2].max(0) - lo2) / pitch) + 3).astype(int)

    def column(p: np.ndarray, fn: Any, init: float) -> np.ndarray:
        ij = np.floor((p[:, :2] - lo2) / pitch).astype(int)
        out = np.full(shape, init)
        fn.at(out, (ij[:, 0], ij[:, 1]), p[:, 2])
        return out

    bottom_u = column(pu, np.minimum, np.inf)
    top_l = column(pl, np.maximum, -np.inf)
    gap = bottom_u - top_l
    foot = np.isfinite(gap) & (gap > pitch)
    foot = ndimage.binary_opening(foot, iterations=2)
    lab, n = ndimage.label(foot)
    if n == 0:
        return None, {"error": f"no overlap between the bodies of {u.name} and {lo.name}"}
    sizes = ndimage.sum(foot, lab, range(1, n + 1))
    foot = lab == int(np.argmax(sizes)) + 1
    depth = ndimage.distance_transform_edt(foot)
    core = foot & (depth >= 0.5 * depth.max())
    height = float(np.median(gap[core]))
    foot &= gap < 2.0 * height + 2.0  # not the flaring rims of rounded endplates
    s_lo, s_hi = float(top_l[foot].min()), float(bottom_u[foot].max())
    ks = np.arange(s_lo, s_hi + pitch, pitch)
    mask = foot[:, :, None] & (ks[None, None, :] > top_l[:, :, None] + 0.25) & \
        (ks[None, None, :] < bottom_u[:, :, None] - 0.25)
    affine = np.eye(4)
    affine[:3, :3] = rot.T * pitch
    affine[:3, 3] = o + rot.T @ np.array([lo2[0] + pitch / 2, lo2[1] + pitch / 2, s_lo])
    mesh = mask_surface(mask, affine)
    if mesh is None:
        return None, {"error": f"empty gap between {u.name} and {lo.name}"}
    mesh = finish(mesh, max_faces)
    name = f"disc_{u.name}_{lo.name}"
    info = {"height_mm": round(height, 2), "endplate_area_mm2": round(float(foot.sum()) * pitch * pitch, 1)}
    st = Structure.from_mesh(name, "disc", mesh, description=f"intervertebral disc {u.name}-{lo.name}",
                             **_derived("gap between the lower endplate of the upper body and the upper endplate "
                                        "of the lower body, filled column by column along the level axis",
                                        [u.name, lo.name], **info))
    return st, info


def sac_centreline(frames: list[VertebraFrame], cord: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Canal centres (k, 3) from cranial to caudal, extended half a vertebra beyond both ends, and the
    sac's semi-axes (k, 2) mm (lateral, anteroposterior)."""
    pts = [f.canal_mm for f in frames]
    axes = [(min(0.7 * f.canal_half_width_mm, SAC_MAX_SEMI_AXES_MM[0]),
             min(0.7 * f.canal_half_depth_mm, SAC_MAX_SEMI_AXES_MM[1])) for f in frames]
    if cord is not None and len(cord) > 50:
        for i, f in enumerate(frames):  # the cord's centre within each vertebra's slab
            h = (cord - f.canal_mm) @ f.s
            near = cord[np.abs(h) < f.body_half_height_mm]
            if len(near) > 10:
                c = near.mean(0)
                pts[i] = c + ((f.canal_mm - c) @ f.s) * f.s
    p = np.array(pts)
    top, bottom = frames[0], frames[-1]
    ext_top = p[0] + top.s * (top.body_half_height_mm + 6.0)
    ext_bottom = p[-1] - bottom.s * (bottom.body_half_height_mm + 4.0)
    return np.vstack([ext_top, p, ext_bottom]), np.array([axes[0], *axes, axes[-1]])


def _endplate_top(f: VertebraFrame) -> np.ndarray:
    """Centre (3,) mm of a body's superior endplate: the top of the body's central columns."""
    bl = (f.body_points_mm - f.centroid_mm) @ f.rotation.T
    central = (np.abs(bl[:, 0]) < 6.0) & (np.abs(bl[:, 1]) < 6.0)
    top = float(bl[central, 2].max()) if central.sum() > 10 else f.body_half_height_mm
    return f.centroid_mm + top * f.s


def derive_spine(structures: Sequence[Structure], *, pitch_mm: float | None = None) -> SpineDerivation:
    """Derive what is missing of discs, dural sac, nerve roots and Kambin landmarks (module docstring).

    ``structures``: the bundle's structures (RAS mm); vertebrae are recognised by name. Structures
    already present (a labelled disc, a segmented dural sac) are kept and not derived again.
    """
    from .spine_roots import exiting_waypoints, kambin_triangle, root_course, skin_entry, traversing_waypoints

    have = {s.name: s for s in structures}
    vertebrae: dict[str, Structure] = {}
    for s in structures:
        lv = vertebra_level(s.name)
        if lv is not None and s.tissue in ("bone", "cortical_bone") and lv not in vertebrae:
            vertebrae[lv] = s
    pitch = pitch_mm or _pitch(list(vertebrae.values()) or list(structures))
    frames_by, pts = spine_frames(vertebrae, pitch)
    order = [lv for lv in sorted(frames_by, key=LEVELS.index)]
    pairs = [(u, lo) for u, lo in zip(order[:-1], order[1:])
             if LEVELS.index(lo) == LEVELS.index(u) + 1 or (u == "L5" and lo == "S1")]
    if not pairs:
        from .errors import AnatomyError

        raise AnatomyError(f"--spine needs at least two adjacent vertebrae named by level (L1 .. L5, S1 or "
                           f"sacrum); found: {', '.join(order) or 'none'} among {', '.join(have)}")
    full = [solid_points(vertebrae[lv].mesh, pitch) if lv == "S1" else pts[lv] for lv in order]
    # other bones near the spine (the iliac wings beside the sacrum): the roots and approaches keep clear of
    # them too; only their part within OTHER_BONE_MARGIN_MM of the vertebrae
    others = [s for s in structures if s.tissue in ("bone", "cortical_bone") and vertebra_level(s.name) is None]
    if others:
        box_lo = np.vstack(full).min(0) - OTHER_BONE_MARGIN_MM
        box_hi = np.vstack(full).max(0) + OTHER_BONE_MARGIN_MM
        for s in others:
            p = solid_points(s.mesh, max(pitch, 0.8))
            p = p[np.all((p > box_lo) & (p < box_hi), axis=1)]
            if len(p):
                full.append(p)
    bone = BoneField(full, max(pitch, 0.8), pad_mm=25.0)
    frames = [frames_by[lv] for lv in order]
    out: list[Structure] = []
    tubes: dict[str, Tube] = {}
    summary: dict[str, Any] = {"pitch_mm": pitch, "levels": [f"{u}-{lo}" for u, lo in pairs], "discs": {},
                               "roots": {}, "notes": [n for f in frames for n in f.notes]}
    for u, lo in pairs:
        name = f"disc_{u}_{lo}"
        if name in have:
            continue
        disc, info = derive_disc(frames_by[u], frames_by[lo], pitch)
        summary["discs"][name] = info
        if disc is not None:
            out.append(disc)
    cord = next((have[n] for n in ("spinal_canal", "spinal_cord") if n in have), None)
    cl, semi = sac_centreline(frames, solid_points(cord.mesh, pitch) if cord is not None else None)
    sac_path = catmull_rom(cl, 1.0)
    n = len(sac_path)
    semi_w = resample_radii(semi[:, 0], n)
    semi_d = resample_radii(semi[:, 1], n)
    squash = float(np.median(semi_d / semi_w))
    if "dural_sac" not in have:
        d = bone.distance(sac_path)
        semi_w = np.minimum(semi_w, np.maximum(d - 0.3, 2.0) / squash)
        a_axis = unit(np.mean([f.a for f in frames], axis=0))
        sac = tube_mesh(sac_path, semi_w, pitch_mm=0.6, max_faces=5000, squash=(a_axis, squash))
        tubes["dural_sac"] = Tube(sac_path, semi_w, (a_axis, squash))
        src = [f.name for f in frames] + ([cord.name] if cord is not None else [])
        out.append(Structure.from_mesh("dural_sac", "dura", sac, description="thecal sac (dura + CSF)",
                                       **_derived("tube through the vertebral foramina (centre of the hole of each "
                                                  "vertebra's projection along its axis)" +
                                                  (f", centred on {cord.name}" if cord is not None else "") +
                                                  "; semi-axes 70 % of the foramen, at most 9 x 7 mm", src)))
    sac_half_w = float(np.median(semi_w))
    obstacles: list[tuple[np.ndarray, float]] = [(sac_path, float(np.median(semi_w)))]
    exiting: dict[tuple[str, str], np.ndarray] = {}
    # cervical roots leave above their own pedicle (C7 root at C6-C7): the course below is thoracolumbar
    root_pairs = [(u, lo) for u, lo in pairs if u[0] in "TL"]
    if len(root_pairs) < len(pairs):
        summary["notes"].append("cervical levels: discs and sac only (their roots exit above the pedicle)")
    for u, lo in root_pairs:
        fu, fl = frames_by[u], frames_by[lo]
        for side, sign in SIDES.items():
            for kind, lvl in (("exiting", u), ("traversing", lo)):
                name = f"nerve_root_{lvl}_{kind}_{side}"
                radius = ROOT_RADIUS_MM.get(lvl, 2.4)
                way = (exiting_waypoints(fu, fl, side, sign, radius, sac_half_w, bone, ROOT_CLEARANCE_MM)
                       if kind == "exiting"
                       else traversing_waypoints(fu, fl, side, sign, radius, sac_half_w))
                if way is None:
                    summary["notes"].append(f"{name}: no {side} pedicle found on {u}; root not derived")
                    continue
                path = root_course(way, radius, bone, ROOT_CLEARANCE_MM)
                clear = float((bone.distance(path) - radius).min())
                summary["roots"][name] = {"radius_mm": radius, "bone_clearance_mm": round(clear, 2),
                                          "length_mm": round(float(np.linalg.norm(np.diff(path, axis=0),
                                                                                  axis=1).sum()), 1)}
                obstacles.append((path, radius))
                if kind == "exiting":
                    exiting[(u, side)] = path
                if name in have:
                    continue
                tubes[name] = Tube(path, np.full(len(path), radius))
                mesh = tube_mesh(path, np.full(len(path), radius), pitch_mm=0.5)
                how = ("from the sac at the top of the pedicle, under the pedicle in the upper foramen, then "
                       "anterolaterally beside the lower body (in front of bone beside it: the sacral ala)"
                       if kind == "exiting" else
                       "from the sac above the disc, down the lateral recess medial to the pedicle")
                out.append(Structure.from_mesh(name, "nerve", mesh, description=f"{side} {lvl} nerve root ({kind})",
                                               **_derived(f"tube of radius {radius} mm {how}; kept "
                                                          f"{ROOT_CLEARANCE_MM} mm clear of bone", [u, lo],
                                                          bone_clearance_mm=round(clear, 2))))
    landmarks: dict[str, Any] = {}
    skins = [s.mesh for s in structures if s.tissue == "skin"]
    for u, lo in root_pairs:
        for side, sign in SIDES.items():
            ex = exiting.get((u, side))
            if ex is None:
                continue
            lm = kambin_triangle(frames_by[u], frames_by[lo], side, sign, ex, _endplate_top(frames_by[lo]),
                                 obstacles, bone)
            if lm is not None:
                if skins:
                    skin_entry(lm, skins, frames_by[lo].canal_mm, frames_by[lo].r)
                landmarks[f"kambin_triangle_{u}_{lo}_{side}"] = lm
    summary["frames"] = {f.name: {"body_centroid_mm": np.round(f.centroid_mm, 2).tolist(),
                                  "superior": np.round(f.s, 4).tolist(), "anterior": np.round(f.a, 4).tolist(),
                                  "canal_mm": np.round(f.canal_mm, 2).tolist(),
                                  "canal_found": f.canal_found} for f in frames}
    return SpineDerivation(out, landmarks, summary, tubes, bone)


def with_spine(structures: list[Structure], notes: dict[str, Any] | None) -> tuple[list[Structure], dict[str, Any],
                                                                                     dict[str, Any]]:
    """``--spine`` for an importer: (structures + derived ones, landmarks, notes with the derivation summary)."""
    d = derive_spine(structures)
    notes = dict(notes or {})
    notes["spine_derivation"] = d.summary
    return list(structures) + d.structures, d.landmarks, notes


def describe_spine(manifest: dict[str, Any]) -> list[str]:
    """CLI summary lines of a bundle's spine derivation (empty when there was none)."""
    sd = (manifest.get("notes") or {}).get("spine_derivation")
    if not isinstance(sd, dict):
        return []
    lines = [f"spine derived at levels {', '.join(sd.get('levels', []))}:"]
    for name, info in sd.get("discs", {}).items():
        said = f"{info['height_mm']:.1f} mm high" if "height_mm" in info else str(info.get("error", ""))
        lines.append(f"  {name}: {said}")
    roots = sd.get("roots", {})
    if roots:
        worst = min(float(r["bone_clearance_mm"]) for r in roots.values())
        lines.append(f"  {len(roots)} nerve roots, at least {worst:.1f} mm clear of bone")
    for name, lm in (manifest.get("landmarks") or {}).items():
        if isinstance(lm, dict) and "derived" in lm:
            lines.append(f"  {name}: incentre {lm['incenter_mm']} mm, inradius {lm['inradius_mm']:.1f} mm")
    lines += [f"  note: {n}" for n in sd.get("notes", [])]
    return lines
