"""Surgical instruments: catalogue, geometry and pose.

Tool frame: the working tip at the origin, the shaft along +z towards the
handle, millimetres. The instrument follows the active hand: ``world_from_tool``
is the hand pose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import numpy as np
import trimesh


@dataclass(frozen=True)
class InstrumentSpec:
    """What an instrument is; sizes in millimetres."""

    kind: str
    shaft_length_mm: float
    shaft_diameter_mm: float
    tip: str  # "bevel", "cone", "blunt", "saw", "block", "hemisphere"
    handle_length_mm: float
    handle_diameter_mm: float
    label: str
    # a block or a flat blade: its box (x, y, z extents, mm) in the tool frame, the tip at the centre of
    # its working face (a cutting block's slot lies in the tool frame's x-y plane through the tip)
    box_mm: tuple[float, float, float] | None = None
    # a hip instrument's hemispherical head (reamer, cup on its impactor): its diameter (mm), centred on
    # the tip, the dome toward -z (the direction of advance), the flat face toward the handle
    head_diameter_mm: float | None = None


CATALOGUE: dict[str, InstrumentSpec] = {
    "spinal_needle": InstrumentSpec("spinal_needle", 150.0, 1.27, "bevel", 25.0, 8.0, "18G spinal needle"),
    "guidewire": InstrumentSpec("guidewire", 300.0, 0.8, "blunt", 0.0, 0.8, "Guidewire 0.8 mm"),
    "dilator": InstrumentSpec("dilator", 180.0, 6.3, "cone", 30.0, 12.0, "Dilator 6.3 mm"),
    "working_cannula": InstrumentSpec("working_cannula", 160.0, 7.5, "bevel", 20.0, 14.0, "Working cannula 7.5 mm"),
    "endoscope": InstrumentSpec("endoscope", 205.0, 6.9, "blunt", 60.0, 18.0, "Endoscope 6.9 mm, 30° lens"),
    # through the endoscope's 3.7 mm working channel: a 2.5 mm rongeur reaching past the scope tip
    "grasping_forceps": InstrumentSpec("grasping_forceps", 300.0, 2.5, "blunt", 40.0, 12.0,
                                       "Grasping forceps 2.5 mm"),
    "trephine": InstrumentSpec("trephine", 200.0, 7.0, "saw", 40.0, 14.0, "Trephine 7 mm"),
    "drill": InstrumentSpec("drill", 120.0, 3.2, "cone", 80.0, 35.0, "Drill 3.2 mm"),
    # a 25 mm wide, 1.27 mm thick blade: its flat lies in the tool frame's x-z plane
    "saw_blade": InstrumentSpec("saw_blade", 90.0, 1.27, "saw", 60.0, 30.0, "Oscillating saw", (25.0, 1.27, 90.0)),
    # knee arthroplasty blocks: the slot (1.3 mm) is the tool frame's x-y plane through the tip
    "distal_femoral_block": InstrumentSpec("distal_femoral_block", 60.0, 4.0, "block", 0.0, 4.0,
                                           "Distal femoral cutting block", (60.0, 16.0, 24.0)),
    "tibial_block": InstrumentSpec("tibial_block", 60.0, 4.0, "block", 0.0, 4.0, "Proximal tibial cutting block",
                                   (55.0, 16.0, 22.0)),
    "four_in_one_block": InstrumentSpec("four_in_one_block", 60.0, 4.0, "block", 0.0, 4.0,
                                        "4-in-1 femoral cutting block", (64.0, 20.0, 60.0)),
    "spacer_block": InstrumentSpec("spacer_block", 60.0, 4.0, "block", 0.0, 4.0, "Spacer block",
                                   (50.0, 10.0, 40.0)),
    "trial_insert": InstrumentSpec("trial_insert", 60.0, 4.0, "block", 0.0, 4.0, "Trial insert", (64.0, 10.0, 42.0)),
    "scalpel": InstrumentSpec("scalpel", 120.0, 2.0, "bevel", 60.0, 10.0, "Scalpel (ligament release)"),
    # hip arthroplasty: the tip is the centre of the hemispherical head; the model sizes the head from the
    # scenario's tha plan (the drawn head is this nominal 54 mm)
    "acetabular_reamer": InstrumentSpec("acetabular_reamer", 220.0, 8.0, "hemisphere", 90.0, 30.0,
                                        "Acetabular reamer", head_diameter_mm=54.0),
    "cup_impactor": InstrumentSpec("cup_impactor", 240.0, 10.0, "hemisphere", 80.0, 32.0,
                                   "Cup impactor with the acetabular cup", head_diameter_mm=54.0),
}


def _block_mesh(spec: InstrumentSpec) -> trimesh.Trimesh:
    """A cutting block (two boxes either side of its 1.3 mm slot), a spacer or a trial (one box),
    or a saw blade (a thin plate from the tip along +z) with its handle."""
    assert spec.box_mm is not None
    x, y, z = spec.box_mm
    parts: list[trimesh.Trimesh] = []
    if spec.tip == "saw":
        plate = trimesh.creation.box(extents=[x, y, z])
        plate.apply_translation([0, 0, z / 2.0])
        parts.append(plate)
        handle = trimesh.creation.cylinder(radius=spec.handle_diameter_mm / 2.0, height=spec.handle_length_mm)
        handle.apply_translation([0, 0, z + spec.handle_length_mm / 2.0])
        parts.append(handle)
    elif spec.kind.endswith("_block") and spec.kind != "spacer_block":
        slot = 0.65
        below = 0.2 * z  # most of the block sits on the kept side (+z)
        for lo, hi in ((-below, -slot), (slot, z - below)):
            b = trimesh.creation.box(extents=[x, y, hi - lo])
            b.apply_translation([0, y / 2.0, (lo + hi) / 2.0])
            parts.append(b)
    else:
        b = trimesh.creation.box(extents=[x, y, z])
        b.apply_translation([0, 0, z / 2.0])
        parts.append(b)
    mesh = cast(trimesh.Trimesh, trimesh.util.concatenate(parts))
    mesh.metadata["kind"] = spec.kind
    return mesh


def _hemisphere(radius_mm: float) -> trimesh.Trimesh:
    """A closed hemisphere centred on the origin, its dome toward -z."""
    ball = trimesh.creation.icosphere(subdivisions=3, radius=radius_mm)
    half = ball.slice_plane(plane_origin=[0.0, 0.0, 0.0], plane_normal=[0.0, 0.0, -1.0], cap=True)
    return half if half is not None and len(half.faces) else ball


def instrument_mesh_id(spec: InstrumentSpec) -> str:
    """The renderer's mesh id of an instrument: its kind, and its head's size when not the catalogue's (a
    hip reamer or cup sized by the scenario's plan is a different mesh)."""
    base = CATALOGUE.get(spec.kind)
    if spec.head_diameter_mm is not None and (base is None or base.head_diameter_mm != spec.head_diameter_mm):
        return f"instrument:{spec.kind}@{spec.head_diameter_mm:g}mm"
    return f"instrument:{spec.kind}"


def instrument_mesh(spec: InstrumentSpec, sections: int = 24) -> trimesh.Trimesh:
    """A closed mesh of the instrument in its tool frame (tip at origin, +z to the handle)."""
    if spec.box_mm is not None:
        return _block_mesh(spec)
    r = spec.shaft_diameter_mm / 2.0
    parts: list[trimesh.Trimesh] = []
    if spec.head_diameter_mm is not None:
        parts.append(_hemisphere(spec.head_diameter_mm / 2.0))
    tip_len = {"hemisphere": 0.0, "bevel": 4.0 * r + 1.0, "cone": 3.0 * r, "blunt": 0.0, "saw": 0.0}[spec.tip]
    shaft = trimesh.creation.cylinder(radius=r, height=spec.shaft_length_mm - tip_len, sections=sections)
    shaft.apply_translation([0, 0, tip_len + (spec.shaft_length_mm - tip_len) / 2.0])
    parts.append(shaft)
    if spec.tip == "cone":
        cone = trimesh.creation.cone(radius=r, height=tip_len, sections=sections)
        cone.apply_transform(trimesh.transformations.rotation_matrix(np.pi, [1, 0, 0]))
        cone.apply_translation([0, 0, tip_len])
        parts.append(cone)
    elif spec.tip == "bevel":
        # A cylinder cut by an oblique plane: the classic needle bevel.
        bevel = trimesh.creation.cylinder(radius=r, height=tip_len * 2, sections=sections)
        bevel.apply_translation([0, 0, tip_len])
        normal = np.array([0.0, np.sin(np.arctan2(tip_len, 2 * r)), -np.cos(np.arctan2(tip_len, 2 * r))])
        normal = np.array([0.0, 2 * r, -tip_len])
        normal /= np.linalg.norm(normal)
        try:
            cut = bevel.slice_plane(plane_origin=[0, r, 0], plane_normal=-normal, cap=True)
            if cut is not None and len(cut.faces):
                bevel = cut
        except Exception:  # noqa: BLE001 - shapely/earcut missing or a degenerate cut: keep the uncut tip
            pass
        parts.append(bevel)
    if spec.handle_length_mm > 0:
        handle = trimesh.creation.cylinder(radius=spec.handle_diameter_mm / 2.0,
                                           height=spec.handle_length_mm, sections=sections)
        handle.apply_translation([0, 0, spec.shaft_length_mm + spec.handle_length_mm / 2.0])
        parts.append(handle)
    mesh = cast(trimesh.Trimesh, trimesh.util.concatenate(parts))
    mesh.metadata["kind"] = spec.kind
    return mesh


@dataclass
class InstrumentState:
    """One instrument in the scene."""

    instrument_id: str
    spec: InstrumentSpec
    world_from_tool: np.ndarray = field(default_factory=lambda: np.eye(4))
    visible: bool = True
    held: bool = False

    @property
    def tip_mm(self) -> np.ndarray:
        return self.world_from_tool[:3, 3].copy()

    @property
    def axis(self) -> np.ndarray:
        """Unit vector from the handle to the tip (the direction of advance)."""
        return -self.world_from_tool[:3, 2] / np.linalg.norm(self.world_from_tool[:3, 2])
