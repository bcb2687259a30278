"""Tissue materials: colours (linear RGB), translucency and shading that read as anatomy."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TissueMaterial:
    color_rgb: tuple[float, float, float]  # linear
    alpha: float = 1.0
    specular: float = 0.15
    shininess: float = 16.0
    rim: float = 0.0
    wrap: float = 0.2  # soft "wrap" lighting for soft tissue
    matte: bool = False  # the room's props: a cheaper shader (no highlights or rim), opaque only

    @property
    def translucent(self) -> bool:
        return self.alpha < 0.999


def _srgb(r: int, g: int, b: int) -> tuple[float, float, float]:
    return tuple(((c / 255.0) ** 2.2) for c in (r, g, b))  # type: ignore[return-value]


TISSUES: dict[str, TissueMaterial] = {
    "bone": TissueMaterial(_srgb(230, 221, 196), 1.0, 0.12, 18.0, 0.05, 0.1),
    "cortical_bone": TissueMaterial(_srgb(238, 232, 212), 1.0, 0.18, 24.0, 0.05, 0.1),
    "disc": TissueMaterial(_srgb(150, 190, 215), 1.0, 0.25, 30.0, 0.10, 0.3),
    "nerve": TissueMaterial(_srgb(250, 215, 70), 1.0, 0.30, 32.0, 0.15, 0.3),
    "dura": TissueMaterial(_srgb(190, 200, 240), 0.55, 0.30, 40.0, 0.35, 0.4),
    "vessel": TissueMaterial(_srgb(190, 35, 35), 1.0, 0.35, 40.0, 0.10, 0.3),
    "cartilage": TissueMaterial(_srgb(175, 205, 230), 0.85, 0.40, 48.0, 0.15, 0.3),
    "muscle": TissueMaterial(_srgb(165, 55, 50), 0.30, 0.10, 12.0, 0.30, 0.5),
    "skin": TissueMaterial(_srgb(235, 185, 160), 0.18, 0.10, 10.0, 0.40, 0.5),
    "ligament": TissueMaterial(_srgb(225, 225, 200), 0.9, 0.20, 24.0, 0.10, 0.3),
    "fat": TissueMaterial(_srgb(245, 225, 140), 0.25, 0.10, 10.0, 0.30, 0.5),
    "organ": TissueMaterial(_srgb(160, 80, 75), 0.6, 0.20, 20.0, 0.25, 0.4),
    "implant": TissueMaterial(_srgb(200, 205, 212), 1.0, 0.80, 64.0, 0.05, 0.0),
    "pathology": TissueMaterial(_srgb(235, 120, 190), 1.0, 0.30, 30.0, 0.20, 0.3),
    "instrument": TissueMaterial(_srgb(200, 205, 212), 1.0, 0.90, 72.0, 0.05, 0.0),
    "instrument_handle": TissueMaterial(_srgb(40, 110, 190), 1.0, 0.40, 32.0, 0.05, 0.1),
    # highlights (`vr-trainer preview`): risk structures, their margins as shells, target markers
    "risk_structure": TissueMaterial(_srgb(255, 80, 30), 1.0, 0.30, 32.0, 0.10, 0.3),
    "risk_margin": TissueMaterial(_srgb(255, 25, 70), 0.35, 0.10, 16.0, 0.30, 0.4),
    "risk_margin_solid": TissueMaterial(_srgb(255, 25, 70), 1.0, 0.0, 16.0, 0.0, 0.6),
    "target_marker": TissueMaterial(_srgb(40, 255, 120), 1.0, 0.50, 48.0, 0.20, 0.6),
    # the room (sim/room.py): operating table, C-arm, monitors, floor
    "steel": TissueMaterial(_srgb(170, 176, 184), 1.0, 0.60, 48.0, 0.05, 0.1, matte=True),
    "table_pad": TissueMaterial(_srgb(38, 52, 70), 1.0, 0.08, 8.0, 0.05, 0.3, matte=True),
    "monitor_bezel": TissueMaterial(_srgb(28, 30, 34), 1.0, 0.35, 32.0, 0.05, 0.1, matte=True),
    "carm_housing": TissueMaterial(_srgb(222, 222, 214), 1.0, 0.30, 24.0, 0.05, 0.2, matte=True),
    "floor": TissueMaterial(_srgb(78, 96, 96), 1.0, 0.05, 8.0, 0.0, 0.2, matte=True),
}

ANNOTATION_DEFAULT_RGBA = (0.10, 1.00, 0.35, 1.0)


def material_for(tissue: str) -> TissueMaterial:
    """The material for a tissue class; unknown classes look like soft tissue, not an error."""
    return TISSUES.get(tissue, TISSUES["organ"])
