"""Navigation readouts of knee arthroplasty cuts against the computed landmarks.

Angles are measured in the bone's anatomical frame (:class:`BoneFrame`: superior along
the mechanical axis, lateral along the TEA / plateau line, anterior) and use the sign
conventions of navigation systems, independent of the side:

- femoral distal cut, ``varus_deg``: + when the cut's distal-pointing normal leans
  medially (the component in varus, more medial bone resected); ``flexion_deg``: + when
  it leans posteriorly (the component flexed);
- tibial cut, ``varus_deg``: + when the medial side is cut lower (the component in varus);
  ``posterior_slope_deg``: + when the plane descends posteriorly;
- femoral rotation of the posterior cut, ``external_rotation_deg``: + when the cut removes
  more of the medial than the lateral posterior condyle, relative to the TEA;
- resection depths (mm): perpendicular distance from the distal condyle / deepest plateau
  point to the plane, + when the point is on the removed side (bone is taken).

A plane's normal may point either way: every readout orients it first.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..sim.cutting import Plane
from .tka_landmarks import BoneFrame, FemurLandmarks, TibiaLandmarks


def _deg(y: float, x: float) -> float:
    return float(np.degrees(np.arctan2(y, x)))


def _oriented(normal: np.ndarray, toward: np.ndarray) -> np.ndarray:
    n = np.asarray(normal, dtype=float)
    n = n / float(np.linalg.norm(n))
    return n if float(n @ toward) >= 0 else -n


def _tilts(n: np.ndarray, frame: BoneFrame) -> tuple[float, float, float]:
    """Components of a unit normal along (lateral, anterior, superior)."""
    return float(n @ frame.lateral), float(n @ frame.anterior), float(n @ frame.superior)


@dataclass(frozen=True)
class DistalFemoralReadout:
    varus_deg: float
    flexion_deg: float
    medial_resection_mm: float
    lateral_resection_mm: float


@dataclass(frozen=True)
class TibialReadout:
    varus_deg: float
    posterior_slope_deg: float
    medial_resection_mm: float
    lateral_resection_mm: float


@dataclass(frozen=True)
class FemoralRotationReadout:
    external_rotation_deg: float
    medial_resection_mm: float
    lateral_resection_mm: float


def distal_femoral(plane: Plane, femur: FemurLandmarks) -> DistalFemoralReadout:
    """Readouts of a distal femoral cut (plane through the distal femur)."""
    fr = femur.frame
    up = _oriented(plane.normal, fr.superior)  # toward the kept femur
    lat, ant, sup = _tilts(up, fr)
    # distal-pointing normal -up leans medially  <=>  up leans laterally
    varus = _deg(lat, sup)
    flexion = _deg(ant, sup)
    off = float(plane.origin_mm @ up)
    return DistalFemoralReadout(
        varus_deg=varus, flexion_deg=flexion,
        medial_resection_mm=off - float(femur.medial_distal_mm @ up),
        lateral_resection_mm=off - float(femur.lateral_distal_mm @ up))


def tibial(plane: Plane, tibia: TibiaLandmarks) -> TibialReadout:
    """Readouts of a proximal tibial cut."""
    fr = tibia.frame
    up = _oriented(plane.normal, fr.superior)  # toward the removed plateau
    lat, ant, sup = _tilts(up, fr)
    off = float(plane.origin_mm @ up)
    return TibialReadout(
        varus_deg=_deg(-lat, sup), posterior_slope_deg=_deg(-ant, sup),
        medial_resection_mm=float(tibia.medial_plateau_mm @ up) - off,
        lateral_resection_mm=float(tibia.lateral_plateau_mm @ up) - off)


def femoral_rotation(plane: Plane, femur: FemurLandmarks) -> FemoralRotationReadout:
    """Rotation of a posterior femoral cut against the TEA, and its posterior condylar resections."""
    fr = femur.frame
    post = _oriented(plane.normal, -fr.anterior)  # toward the removed posterior condyles
    lat, ant, _ = _tilts(post, fr)
    off = float(plane.origin_mm @ post)
    return FemoralRotationReadout(
        external_rotation_deg=_deg(-lat, -ant),
        medial_resection_mm=float(femur.medial_posterior_mm @ post) - off,
        lateral_resection_mm=float(femur.lateral_posterior_mm @ post) - off)


def plane_in_frame(frame: BoneFrame, through_mm: np.ndarray, *, lateral_tilt_deg: float = 0.0,
                   anterior_tilt_deg: float = 0.0, around: str = "superior") -> Plane:
    """A plane through ``through_mm`` whose normal is the frame's ``around`` axis tilted by two angles.

    ``around='superior'``: the normal leans ``lateral_tilt_deg`` toward lateral and
    ``anterior_tilt_deg`` toward anterior (tan-composed, so each readout recovers its
    angle exactly). ``around='anterior'``: the normal is anterior leaning
    ``lateral_tilt_deg`` toward lateral (a posterior or anterior cut's rotation)."""
    if around == "superior":
        n = (frame.superior + np.tan(np.radians(lateral_tilt_deg)) * frame.lateral
             + np.tan(np.radians(anterior_tilt_deg)) * frame.anterior)
    elif around == "anterior":
        n = frame.anterior + np.tan(np.radians(lateral_tilt_deg)) * frame.lateral
    else:
        raise ValueError(f"around={around!r}: use 'superior' or 'anterior'")
    return Plane.make(through_mm, n)


def as_dict(readout: DistalFemoralReadout | TibialReadout | FemoralRotationReadout) -> dict[str, float]:
    return {k: round(float(v), 3) for k, v in asdict(readout).items()}


__all__ = ["DistalFemoralReadout", "TibialReadout", "FemoralRotationReadout", "distal_femoral", "tibial",
           "femoral_rotation", "plane_in_frame", "as_dict"]
