"""Virtual C-arm geometry: where the X-ray source and the detector stand for a shot.

Patient frame RAS millimetres (+x right, +y anterior, +z superior). The patient lies
**prone** on the table and, as in real prone PTED, the tube is under the table: the source
is **anterior** of the patient (+A) and the detector above the back (a PA beam). Views
rotate the arm about the patient's superior (S) axis through the isocentre:

- ``ap``: angle 0; beam from anterior to posterior (source at ``iso + sad * A``).
- ``lateral``: angle 90 deg; the detector on the approach side, the source on the side
  opposite the approach (left approach: source on the patient's right).
- ``oblique``: default 30 deg from AP towards the approach side (ipsilateral oblique);
  ``angle_deg`` gives any other (0 = AP, 90 = lateral).

Image orientation: the picture is the one seen from the detector looking towards the
source, head (superior) up, as the arm's image rotates with the arm. So rows run
superior -> inferior (``detector_v`` = -S projected on the detector) and columns left ->
right are ``detector_u = (source - detector) x S`` normalised: in AP the patient's left is
on the image's left (the surgeon's view of the prone back); in a left lateral anterior is
on the image's left. Pixel ``(col, row)``'s centre lies at
``detector_centre + (col + 0.5 - w/2) * sx * u + (row + 0.5 - h/2) * sy * v``.
Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

VIEWS = ("ap", "lateral", "oblique")
OBLIQUE_DEFAULT_DEG = 30.0
_SUPERIOR = np.array([0.0, 0.0, 1.0])


@dataclass(frozen=True)
class CArmGeometry:
    """One shot's geometry, patient RAS mm; ``detector_u``/``detector_v`` unit vectors along the
    image's columns (left -> right) and rows (top -> bottom); ``pixels`` = (width, height);
    ``pixel_spacing_mm`` = (along u, along v) on the detector."""

    view: str
    angle_deg: float
    source_ras_mm: np.ndarray
    detector_centre_ras_mm: np.ndarray
    detector_u: np.ndarray
    detector_v: np.ndarray
    pixels: tuple[int, int]
    pixel_spacing_mm: tuple[float, float]
    sad_mm: float
    sid_mm: float
    isocentre_ras_mm: np.ndarray

    @property
    def beam_direction(self) -> np.ndarray:
        """Unit vector from the source to the detector centre (the central ray)."""
        d = self.detector_centre_ras_mm - self.source_ras_mm
        return d / np.linalg.norm(d)

    @property
    def detector_size_mm(self) -> tuple[float, float]:
        return (self.pixels[0] * self.pixel_spacing_mm[0], self.pixels[1] * self.pixel_spacing_mm[1])

    def pixel_centres_mm(self) -> np.ndarray:
        """(h, w, 3) float: every pixel centre on the detector, RAS mm."""
        w, h = self.pixels
        sx, sy = self.pixel_spacing_mm
        cu = (np.arange(w) + 0.5 - w / 2.0) * sx
        cv = (np.arange(h) + 0.5 - h / 2.0) * sy
        return (self.detector_centre_ras_mm[None, None, :] + cu[None, :, None] * self.detector_u[None, None, :]
                + cv[:, None, None] * self.detector_v[None, None, :])

    def project(self, points_ras_mm: np.ndarray) -> np.ndarray:
        """(n, 3) RAS mm -> (n, 2) continuous pixel coordinates (col, row); pixel centres at +0.5."""
        p = np.atleast_2d(np.asarray(points_ras_mm, float))
        d = self.beam_direction
        rel = p - self.source_ras_mm
        depth = rel @ d
        scale = self.sid_mm / depth
        on_det = self.source_ras_mm + rel * scale[:, None] - self.detector_centre_ras_mm
        w, h = self.pixels
        col = on_det @ self.detector_u / self.pixel_spacing_mm[0] + w / 2.0
        row = on_det @ self.detector_v / self.pixel_spacing_mm[1] + h / 2.0
        return np.stack([col, row], axis=1)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: the geometry a DRR can be recomputed from (mm, RAS, unit vectors)."""
        def v(a: np.ndarray) -> list[float]:
            return [round(float(x), 4) for x in a]

        return {
            "view": self.view,
            "angle_deg": round(float(self.angle_deg), 4),
            "frame": "patient RAS mm (+x right, +y anterior, +z superior); patient prone, PA beam",
            "source_ras_mm": v(self.source_ras_mm),
            "detector_centre_ras_mm": v(self.detector_centre_ras_mm),
            "detector_u": v(self.detector_u),
            "detector_v": v(self.detector_v),
            "detector_axes_note": "u: image columns left -> right, v: rows top -> bottom",
            "isocentre_ras_mm": v(self.isocentre_ras_mm),
            "pixels": [int(self.pixels[0]), int(self.pixels[1])],
            "pixel_spacing_mm": [round(float(self.pixel_spacing_mm[0]), 6), round(float(self.pixel_spacing_mm[1]), 6)],
            "detector_size_mm": [round(float(x), 4) for x in self.detector_size_mm],
            "sad_mm": float(self.sad_mm),
            "sid_mm": float(self.sid_mm),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "CArmGeometry":
        arr = np.asarray
        return cls(view=str(d["view"]), angle_deg=float(d["angle_deg"]),
                   source_ras_mm=arr(d["source_ras_mm"], float),
                   detector_centre_ras_mm=arr(d["detector_centre_ras_mm"], float),
                   detector_u=arr(d["detector_u"], float),
                   detector_v=arr(d["detector_v"], float), pixels=(int(d["pixels"][0]), int(d["pixels"][1])),
                   pixel_spacing_mm=(float(d["pixel_spacing_mm"][0]), float(d["pixel_spacing_mm"][1])),
                   sad_mm=float(d["sad_mm"]), sid_mm=float(d["sid_mm"]),
                   isocentre_ras_mm=arr(d["isocentre_ras_mm"], float))


def view_angle_deg(view: str, angle_deg: float | None = None) -> float:
    """The arm's rotation from AP towards the approach side for ``view`` (degrees)."""
    if view not in VIEWS:
        raise ValueError(f"unknown C-arm view {view!r}; use one of {', '.join(VIEWS)}")
    if angle_deg is not None:
        return float(angle_deg)
    return {"ap": 0.0, "lateral": 90.0, "oblique": OBLIQUE_DEFAULT_DEG}[view]


def carm_geometry(view: str, isocentre_ras_mm: np.ndarray | tuple[float, float, float], side: str | None = "left",
                  sad_mm: float = 600.0, sid_mm: float = 1000.0,
                  detector_mm: float | tuple[float, float] = 300.0,
                  pixels: int | tuple[int, int] = 256, angle_deg: float | None = None) -> CArmGeometry:
    """The geometry of a ``view`` shot centred on ``isocentre_ras_mm``.

    ``side``: the approach side (``left``/``right``; None = left); the arm rotates
    ``angle_deg`` (default by view: AP 0, lateral 90, oblique 30) about S towards it.
    ``sad_mm``: source to isocentre; ``sid_mm``: source to detector; ``detector_mm``: the
    detector's side (or (width, height)); ``pixels``: image size (or (width, height)).
    """
    if sid_mm <= sad_mm or sad_mm <= 0:
        raise ValueError(f"C-arm: need 0 < sad_mm ({sad_mm}) < sid_mm ({sid_mm})")
    side = side or "left"
    if side not in ("left", "right"):
        raise ValueError(f"C-arm: side must be 'left' or 'right', not {side!r}")
    theta = np.radians(view_angle_deg(view, angle_deg))
    lateral = np.array([-1.0 if side == "left" else 1.0, 0.0, 0.0])  # towards the approach side
    posterior = np.array([0.0, -1.0, 0.0])
    beam = np.cos(theta) * posterior + np.sin(theta) * lateral  # source -> detector
    iso = np.asarray(isocentre_ras_mm, float).reshape(3)
    source = iso - sad_mm * beam
    det_c = source + sid_mm * beam
    u = np.cross(-beam, _SUPERIOR)
    u /= np.linalg.norm(u)
    v = np.cross(u, beam)  # -S when the beam is horizontal: rows run superior -> inferior
    v /= np.linalg.norm(v)
    w, h = (pixels, pixels) if isinstance(pixels, (int, np.integer)) else (int(pixels[0]), int(pixels[1]))
    dw, dh = (float(detector_mm), float(detector_mm)) if isinstance(detector_mm, (int, float)) \
        else (float(detector_mm[0]), float(detector_mm[1]))
    return CArmGeometry(view=view, angle_deg=float(np.degrees(theta)), source_ras_mm=source,
                        detector_centre_ras_mm=det_c, detector_u=u, detector_v=v, pixels=(int(w), int(h)),
                        pixel_spacing_mm=(dw / w, dh / h), sad_mm=float(sad_mm), sid_mm=float(sid_mm),
                        isocentre_ras_mm=iso)
