"""Patient-specific cutting guides, distal femoral and proximal tibial (the 3D-printed osteotomy tool).

From a planned distal cut plane and the femoral landmarks: a block seated on the
anterior distal femur over a footprint, its underside the negative of the bone (box
minus bone, a manifold3d boolean), a saw slot centred on the planned plane, and two pin
holes. Exported as STL and 3MF for printing. Everything is derived from the bone in
the bundle, so it works for any patient's femur.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import manifold3d
import numpy as np
import trimesh

from ..sim.cutting import Plane, from_manifold, to_manifold
from .tka_landmarks import BoneFrame, FemurLandmarks, TibiaLandmarks


@dataclass(frozen=True)
class GuideSpec:
    """Block dimensions (mm). ``slot_width_mm`` fits a 1.27 mm saw blade."""

    width_mm: float = 40.0
    above_plane_mm: float = 24.0
    below_plane_mm: float = 6.0
    thickness_mm: float = 8.0
    slot_width_mm: float = 1.3
    slot_wall_mm: float = 4.0
    pin_diameter_mm: float = 3.2
    pin_spacing_mm: float = 24.0
    pin_height_mm: float = 15.0
    grid_mm: float = 1.0


@dataclass
class CuttingGuide:
    """The guide solid (mm, bundle frame) and how it was placed."""

    mesh: trimesh.Trimesh
    plane: Plane
    axes: np.ndarray  # (3, 3) rows: block x (lateral), y (anterior, away from bone), z (plane normal)
    centre_mm: np.ndarray
    footprint_mm: np.ndarray  # (k, 3) bone surface points under the block
    slot_half_width_mm: float
    pin_axes_mm: list[tuple[np.ndarray, np.ndarray]]  # (entry point, unit direction into the bone)
    dropped_pieces: int = 0
    notes: list[str] = field(default_factory=list)

    pin_radius_mm: float = 1.6

    def in_slot(self, points_mm: np.ndarray) -> np.ndarray:
        """(n,) bool: points within the slot's band around the planned plane."""
        return np.abs(self.plane.signed_distance_mm(points_mm)) <= self.slot_half_width_mm

    def seated_mask(self, margin_mm: float = 0.5) -> np.ndarray:
        """(k,) bool: footprint points the block should rest on (not under the slot or a pin hole)."""
        pts = self.footprint_mm
        keep = np.abs(self.plane.signed_distance_mm(pts)) > self.slot_half_width_mm + margin_mm
        for entry, d in self.pin_axes_mm:
            rel = pts - entry
            radial = np.linalg.norm(rel - np.outer(rel @ d, d), axis=1)
            keep &= radial > self.pin_radius_mm + margin_mm
        return keep

    def export(self, folder: str | Path, stem: str = "distal_femoral_guide") -> list[Path]:
        """Write ``stem.stl`` and ``stem.3mf`` (millimetres) into ``folder``; return the paths."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / f"{stem}.stl", out / f"{stem}.3mf"]
        self.mesh.export(paths[0])
        write_3mf(self.mesh, paths[1])
        return paths


def write_3mf(mesh: trimesh.Trimesh, path: str | Path) -> Path:
    """Write ``mesh`` (mm) as a 3MF package (core spec: one object, one build item).

    Written directly (a zip of three XML parts) so no XML library is needed."""
    verts = "".join(f'<vertex x="{x:.5f}" y="{y:.5f}" z="{z:.5f}"/>' for x, y, z in mesh.vertices)
    tris = "".join(f'<triangle v1="{a}" v2="{b}" v3="{c}"/>' for a, b, c in mesh.faces)
    model = ('<?xml version="1.0" encoding="UTF-8"?>\n'
             '<model unit="millimeter" xml:lang="en-US" '
             'xmlns="http://schemas.microsoft.com/3dmanufacturing/core/2015/02">'
             '<metadata name="Application">vr_trainer</metadata><resources>'
             f'<object id="1" type="model"><mesh><vertices>{verts}</vertices>'
             f'<triangles>{tris}</triangles></mesh></object></resources>'
             '<build><item objectid="1"/></build></model>')
    types = ('<?xml version="1.0" encoding="UTF-8"?>\n'
             '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
             '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
             '<Default Extension="model" ContentType="application/vnd.ms-package.3dmanufacturing-3dmodel+xml"/>'
             '</Types>')
    rels = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Target="/3D/3dmodel.model" Id="rel0" '
            'Type="http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"/></Relationships>')
    out = Path(path)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, text in (("[Content_Types].xml", types), ("_rels/.rels", rels), ("3D/3dmodel.model", model)):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # reproducible bytes
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, text)
    return out


def _box(axes: np.ndarray, centre: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> manifold3d.Manifold:
    """Box [lo, hi] in the block frame (``axes`` rows, right-handed) placed at ``centre``."""
    cube = manifold3d.Manifold.cube(tuple(float(v) for v in hi - lo)).translate(tuple(float(v) for v in lo))
    m = np.zeros((3, 4))
    m[:, :3] = axes.T
    m[:, 3] = centre
    return cube.transform(m)


def _cylinder(start: np.ndarray, direction: np.ndarray, length: float, radius: float) -> manifold3d.Manifold:
    z = direction / np.linalg.norm(direction)
    x = np.cross(z, [1.0, 0.0, 0.0] if abs(z[0]) < 0.9 else [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    m = np.zeros((3, 4))
    m[:, 0], m[:, 1], m[:, 2], m[:, 3] = x, y, z, start
    return manifold3d.Manifold.cylinder(float(length), float(radius), float(radius), 32).transform(m)


def block_axes(plane: Plane, frame: BoneFrame, keep_toward: np.ndarray) -> np.ndarray:
    """Right-handed block frame: z = plane normal toward the kept bone, y anterior, x = y cross z."""
    z = plane.normal if float(plane.normal @ keep_toward) >= 0 else -plane.normal
    y = frame.anterior - float(frame.anterior @ z) * z
    y /= np.linalg.norm(y)
    x = np.cross(y, z)
    return np.stack([x, y, z])


def distal_cutting_guide(bone: trimesh.Trimesh, plane: Plane, femur: FemurLandmarks,
                         spec: GuideSpec | None = None) -> CuttingGuide:
    """The guide for a planned distal femoral ``plane`` on the uncut femur (mm), over the anterior cortex."""
    return cutting_guide(bone, plane, femur.frame, femur.frame.superior, femur.knee_centre_mm, spec or GuideSpec())


def tibial_cutting_guide(bone: trimesh.Trimesh, plane: Plane, tibia: TibiaLandmarks,
                         spec: GuideSpec | None = None, medial_offset_mm: float = 12.0) -> CuttingGuide:
    """The guide for a planned proximal tibial ``plane``, anteromedial (clear of the patellar tendon)."""
    spec = spec or GuideSpec(width_mm=30.0, above_plane_mm=22.0, below_plane_mm=4.0, pin_spacing_mm=18.0,
                             pin_height_mm=14.0)
    centre = tibia.knee_centre_mm - medial_offset_mm * tibia.frame.lateral
    return cutting_guide(bone, plane, tibia.frame, -tibia.frame.superior, centre, spec)


def cutting_guide(bone: trimesh.Trimesh, plane: Plane, frame: BoneFrame, keep_toward: np.ndarray,
                  centre_mm: np.ndarray, spec: GuideSpec) -> CuttingGuide:
    """A guide for ``plane`` seated on the anterior surface of ``bone`` (mm) in front of ``centre_mm``.

    ``keep_toward``: a direction into the bone that stays (the block and its pins sit
    there; ``spec.above_plane_mm`` is measured that way). Raises ValueError when the
    footprint leaves the bone (choose a smaller block or another plane)."""
    axes = block_axes(plane, frame, keep_toward)
    ex, ey, ez = axes
    base = centre_mm - float(plane.signed_distance_mm(centre_mm)[0]) * plane.normal
    # footprint: rays from in front of the bone toward posterior, over the block's face
    xs = np.arange(-spec.width_mm / 2, spec.width_mm / 2 + 1e-9, spec.grid_mm)
    zs = np.arange(-spec.below_plane_mm, spec.above_plane_mm + 1e-9, spec.grid_mm)
    gx, gz = np.meshgrid(xs, zs, indexing="ij")
    grid = np.stack([gx.ravel(), gz.ravel()], axis=1)
    far = 200.0
    origins = base + np.outer(grid[:, 0], ex) + np.outer(grid[:, 1], ez) + far * ey
    locs, ray_idx, _ = bone.ray.intersects_location(origins, np.tile(-ey, (len(origins), 1)),
                                                    multiple_hits=False)
    missed = len(origins) - len(np.unique(ray_idx))
    if missed > 0.05 * len(origins):
        raise ValueError(f"cutting guide: {missed} of {len(origins)} footprint points miss the bone; "
                         "narrow the block or move the plane")
    order = np.argsort(ray_idx)
    foot = locs[order]
    depth = (foot - base) @ ey
    lo = np.array([-spec.width_mm / 2, float(depth.min()) - 2.0, -spec.below_plane_mm])
    hi = np.array([spec.width_mm / 2, float(depth.max()) + spec.thickness_mm, spec.above_plane_mm])
    solid_bone = to_manifold(bone)
    block = _box(axes, base, lo, hi) - solid_bone
    s = spec.slot_width_mm / 2
    slot = _box(axes, base, np.array([lo[0] + spec.slot_wall_mm, lo[1] - 10.0, -s]),
                np.array([hi[0] - spec.slot_wall_mm, hi[1] + 1.0, s]))
    block = block - slot
    pins: list[tuple[np.ndarray, np.ndarray]] = []
    for px in (-spec.pin_spacing_mm / 2, spec.pin_spacing_mm / 2):
        entry = base + px * ex + spec.pin_height_mm * ez + (hi[1] + 1.0) * ey
        length = hi[1] - lo[1] + 12.0
        block = block - _cylinder(entry, -ey, length, spec.pin_diameter_mm / 2)
        pins.append((entry, -ey))
    pieces = block.decompose()
    dropped = len(pieces) - 1
    if len(pieces) > 1:
        block = max(pieces, key=lambda p: p.volume())
    mesh = from_manifold(block)
    centre = base + 0.5 * (lo + hi) @ axes
    notes = [f"dropped {dropped} loose piece(s) left by the boolean"] if dropped else []
    if missed:
        notes.append(f"{missed} of {len(origins)} footprint points over no bone (the block overhangs there)")
    return CuttingGuide(mesh=mesh, plane=plane, axes=axes, centre_mm=centre, footprint_mm=foot,
                        slot_half_width_mm=s, pin_axes_mm=pins, dropped_pieces=dropped, notes=notes,
                        pin_radius_mm=spec.pin_diameter_mm / 2)


def intersection_volume_mm3(a: trimesh.Trimesh, b: trimesh.Trimesh) -> float:
    """Volume shared by two closed meshes (mm^3), by a manifold3d intersection."""
    return float((to_manifold(a) ^ to_manifold(b)).volume())


__all__ = ["GuideSpec", "CuttingGuide", "distal_cutting_guide", "tibial_cutting_guide", "cutting_guide", "block_axes",
           "intersection_volume_mm3", "write_3mf"]
