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
class ImagePanelItem:
    """A picture in the scene (the C-arm monitor, the endoscope monitor): a quad ``width_mm``
    wide facing its +z axis, showing ``image_rgb`` ((h, w, 3) uint8, row 0 at the top). The
    renderer uploads the picture again only when ``version`` changes."""

    panel_id: str
    image_rgb: np.ndarray
    version: int
    world_from_panel: np.ndarray
    width_mm: float = 400.0


@dataclass(frozen=True)
class EndoscopeCamera:
    """The endoscope's view for this frame: the scope's ``world_from_tool`` (tip at the origin,
    shaft along +z to the handle), its lens angle (degrees off the shaft axis, towards the
    tool frame's +y) and its field of view (degrees, full angle)."""

    world_from_tool: np.ndarray
    lens_angle_deg: float = 30.0
    fov_deg: float = 85.0


@dataclass(frozen=True)
class MeshUpload:
    """A mesh made during the session (a bone as the saw left it): the renderer uploads it the
    first time a snapshot carries its ``mesh_id`` and keeps it; a new shape comes with a new id."""

    mesh_id: str
    vertices_mm: np.ndarray
    faces: np.ndarray
    tissue: str


@dataclass(frozen=True)
class SceneSnapshot:
    time_s: float
    frame_index: int
    items: tuple[DrawItem, ...]
    panels: tuple[PanelItem, ...] = ()
    annotations: AnnotationSet = field(default_factory=AnnotationSet)
    images: tuple[ImagePanelItem, ...] = ()
    endoscope: EndoscopeCamera | None = None  # set while the endoscope is in the working cannula
    uploads: tuple[MeshUpload, ...] = ()  # meshes made this session that the items may name
