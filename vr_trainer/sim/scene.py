"""The frozen picture of the world handed to the renderer each frame."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vr_trainer.sim.annotations import AnnotationSet


@dataclass(frozen=True)
class DrawItem:
    """One uploaded mesh placed in the world (``world_from_model``, mm). ``tint_rgba`` (0..1)
    highlights it: its colour is blended towards the tint's rgb by the tint's alpha."""

    mesh_id: str
    world_from_model: np.ndarray
    visible: bool = True
    tint_rgba: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class PanelItem:
    """A text panel in the scene: a quad ``width_mm`` wide, facing its +z axis."""

    panel_id: str
    lines: tuple[str, ...]
    world_from_panel: np.ndarray
    width_mm: float = 400.0


@dataclass(frozen=True)
class SceneSnapshot:
    time_s: float
    frame_index: int
    items: tuple[DrawItem, ...]
    panels: tuple[PanelItem, ...] = ()
    annotations: AnnotationSet = field(default_factory=AnnotationSet)
