"""Soft tissue and gaps of a total knee arthroplasty: collateral ligaments as springs, gaps from the cuts.

The model (deliberately simple, one dimension per compartment):

- **Ligaments.** The medial (MCL, superficial) and lateral (LCL) collateral ligaments are
  single springs from a femoral origin to a tibial / fibular insertion, all computed from
  the bundle's bones: origins at the medial and lateral epicondyles (:mod:`tka_landmarks`);
  MCL insertion on the medial tibial cortex ``mcl_insertion_below_mm`` (default 55) below the
  plateau along the tibial mechanical axis (the superficial MCL's distal attachment lies
  about 6 cm below the joint line: LaPrade et al. 2007, J Bone Joint Surg Am, from memory);
  LCL insertion on the lateral aspect of the fibular head (without a fibula in the bundle:
  the lateral tibial cortex 10 mm below the plateau, and ``notes`` says so).
- **Spring law** (Blankevoort & Huiskes 1991, J Biomech Eng 113:263, the ligament model of
  their knee model): strain ``e = (L - L0) / L0``; force ``0`` for ``e < 0``,
  ``k e^2 / (4 e_l)`` for ``0 <= e <= 2 e_l``, ``k (e - e_l)`` above, with ``e_l = 0.03``.
  Stiffness ``k`` (N per unit strain): MCL 2750 N, LCL 2000 N (values of that paper's
  bundles, from memory; scenario parameters).
- **Slack length.** The bundle's assembly is the reference pose (extension, neutral
  alignment, the components' space between the bones). Unless a reference strain is given,
  each ligament's slack length ``L0`` is chosen so it carries the tensioner force at the
  reference pose: the native knee is balanced by definition (a rectangular gap); with the
  defaults this gives reference strains of 6.6 % (MCL) and 8 % (LCL), in the few-percent range
  such models use. A scenario's tight medial side shortens ``L0`` of the MCL by ``X`` mm;
  :meth:`KneeBalance.release_mcl` lengthens it again (a release, e.g. pie-crusting).
- **Gaps.** Each compartment is distracted on its own (a laminar spreader or a tensioner per
  side) along the tibial mechanical axis until its ligament pulls with ``tension_n`` (default
  100 N per side). The gap is the distance, along that axis through the compartment's
  condyle point, from the tibial cut plane to the femoral cut plane (distal in extension,
  posterior in flexion) once distracted: ``gap = geometric gap at the reference pose +
  distraction``. The distraction depends only on the ligament, so a cut taken 2 mm deeper
  opens that gap by exactly 2 mm.
- **Flexion** (default 90 deg): the tibia turns about the transepicondylar axis, which
  approximates the knee's flexion axis (Churchill et al. 1998, Clin Orthop Relat Res, from
  memory), taken through the TEA's midpoint and perpendicular to the femoral mechanical axis
  (the femoral frame's lateral axis; a posterior cut parallel to the TEA and a tibial cut
  perpendicular to its axis then leave a rectangular flexion gap). The collaterals are
  treated as isometric about that axis (their origins lie on the TEA): each ligament's
  distraction is the same as in extension, so the flexion gaps differ from the extension
  gaps by the cuts alone (the lateral side's physiological laxity in flexion is not modelled).

A trial insert (or a spacer block) of thickness ``t`` sees ``laxity = gap - t`` per side;
when ``t`` exceeds the gap, the ligament stretches by the difference and its force is given.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import trimesh

from ..sim.cutting import Plane
from .tka_constants import BALANCED_MM
from .tka_landmarks import FemurLandmarks, TibiaLandmarks

TRANSITION_STRAIN = 0.03  # Blankevoort & Huiskes 1991 (e_l)
MCL_STIFFNESS_N = 2750.0  # from memory (Blankevoort & Huiskes 1991)
LCL_STIFFNESS_N = 2000.0  # from memory (Blankevoort & Huiskes 1991)
TENSION_N = 100.0  # distraction force per compartment
Side = Literal["medial", "lateral"]


def _unit(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, dtype=float) / float(np.linalg.norm(v))


@dataclass(frozen=True)
class Ligament:
    """A one-spring ligament (Blankevoort & Huiskes 1991 law); points in the bundle frame (mm)."""

    name: str
    origin_mm: np.ndarray  # on the femur
    insertion_mm: np.ndarray  # on the tibia / fibula, at the reference pose
    slack_length_mm: float
    stiffness_n: float
    transition_strain: float = TRANSITION_STRAIN

    @property
    def reference_length_mm(self) -> float:
        return float(np.linalg.norm(self.origin_mm - self.insertion_mm))

    @property
    def reference_strain(self) -> float:
        return self.strain(self.reference_length_mm)

    def strain(self, length_mm: float) -> float:
        return (length_mm - self.slack_length_mm) / self.slack_length_mm

    def force_n(self, length_mm: float) -> float:
        e, el = self.strain(length_mm), self.transition_strain
        if e <= 0.0:
            return 0.0
        if e <= 2.0 * el:
            return self.stiffness_n * e * e / (4.0 * el)
        return self.stiffness_n * (e - el)

    def strain_at(self, force_n: float) -> float:
        """Inverse of the spring law: the strain at which the ligament pulls with ``force_n``."""
        el, k = self.transition_strain, self.stiffness_n
        if force_n <= 0.0:
            return 0.0
        if force_n <= k * el:  # the toe region ends at e = 2 e_l, where f = k e_l
            return math.sqrt(4.0 * el * force_n / k)
        return force_n / k + el

    def length_at(self, force_n: float) -> float:
        return self.slack_length_mm * (1.0 + self.strain_at(force_n))

    def lengthened(self, mm: float) -> "Ligament":
        return replace(self, slack_length_mm=self.slack_length_mm + mm)


def _cap(points: np.ndarray, direction: np.ndarray, depth_mm: float = 1.5) -> np.ndarray:
    h = points @ direction
    return points[h > h.max() - depth_mm].mean(axis=0)


def mcl_insertion(tibia_mesh: trimesh.Trimesh, tibia: TibiaLandmarks, below_mm: float = 55.0) -> np.ndarray:
    """Point on the medial tibial cortex ``below_mm`` below the plateau (along the mechanical axis)."""
    fr = tibia.frame
    v = np.asarray(tibia_mesh.vertices, dtype=float)
    z = (v - tibia.medial_plateau_mm) @ fr.superior
    band = v[np.abs(z + below_mm) < 2.0]
    if len(band) < 3:
        raise ValueError(f"tibia: no surface {below_mm:g} mm below the medial plateau (is the tibia cropped?)")
    return _cap(band, -fr.lateral)


def lcl_insertion(tibia: TibiaLandmarks, fibula_mesh: trimesh.Trimesh | None,
                  tibia_mesh: trimesh.Trimesh) -> tuple[np.ndarray, str | None]:
    """Lateral aspect of the fibular head (its proximal 12 mm); without a fibula, the lateral tibia."""
    fr = tibia.frame
    if fibula_mesh is not None:
        v = np.asarray(fibula_mesh.vertices, dtype=float)
        z = v @ fr.superior
        return _cap(v[z > z.max() - 12.0], fr.lateral), None
    v = np.asarray(tibia_mesh.vertices, dtype=float)
    z = (v - tibia.lateral_plateau_mm) @ fr.superior
    band = v[np.abs(z + 10.0) < 2.0]
    note = "LCL insertion: no fibula in the bundle; the lateral tibial cortex 10 mm below the plateau"
    return _cap(band, fr.lateral), note


@dataclass(frozen=True)
class Gaps:
    """Medial and lateral gaps (mm) of one pose, under ``tension_n`` per compartment."""

    pose: str  # "extension" or "flexion"
    medial_mm: float
    lateral_mm: float
    distraction_mm: tuple[float, float]  # (medial, lateral): tibial travel from the reference pose

    @property
    def imbalance_mm(self) -> float:
        """medial - lateral: negative when the medial side is tight (a varus knee)."""
        return self.medial_mm - self.lateral_mm

    @property
    def rectangular(self) -> bool:
        return abs(self.imbalance_mm) <= BALANCED_MM

    def as_dict(self) -> dict[str, Any]:
        return {"pose": self.pose, "medial_mm": round(self.medial_mm, 2), "lateral_mm": round(self.lateral_mm, 2),
                "imbalance_mm": round(self.imbalance_mm, 2), "rectangular": self.rectangular}


@dataclass(frozen=True)
class InsertFit:
    """What a trial insert / spacer block of ``thickness_mm`` meets on each side."""

    thickness_mm: float
    laxity_mm: tuple[float, float]  # (medial, lateral): gap - thickness; < 0 is tight
    force_n: tuple[float, float]  # ligament force with the insert in place (>= the tension when tight)

    @property
    def fits(self) -> bool:
        """Neither side tighter than 0.5 mm nor looser than 2 mm."""
        return all(-0.5 <= lx <= BALANCED_MM for lx in self.laxity_mm)


@dataclass
class KneeBalance:
    """Collateral ligaments of one knee and the gaps that cuts leave (see the module doc)."""

    femur: FemurLandmarks
    tibia: TibiaLandmarks
    mcl: Ligament
    lcl: Ligament
    tension_n: float = TENSION_N
    flexion_deg: float = 90.0
    releases: list[tuple[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def ligament(self, side: Side) -> Ligament:
        return self.mcl if side == "medial" else self.lcl

    # --- poses -------------------------------------------------------------------------------
    def _flexion(self) -> np.ndarray:
        """4x4: the tibia turned ``flexion_deg`` about the TEA (its superior axis toward the femur's anterior)."""
        f = self.femur
        axis = np.cross(f.frame.superior, f.frame.anterior)  # +-lateral: turns superior toward anterior
        return np.asarray(trimesh.transformations.rotation_matrix(
            math.radians(self.flexion_deg), axis, point=f.knee_centre_mm), dtype=float)

    def flexion_pose(self) -> np.ndarray:
        """4x4 (bundle frame): the tibia turned ``flexion_deg`` about the TEA, as the flexion gaps assume."""
        return self._flexion()

    def distraction_mm(self, lig: Ligament) -> float:
        """Tibial travel from the reference pose, away from the femur along the tibial mechanical
        axis, at which ``lig`` pulls with the tension (negative: the ligament is taut before)."""
        axis = self.tibia.frame.superior
        w = lig.origin_mm - lig.insertion_mm
        wa = float(w @ axis)
        perp2 = float(w @ w) - wa * wa
        target = lig.length_at(self.tension_n)
        if target * target < perp2:
            raise ValueError(f"{lig.name}: cannot reach {target:.1f} mm along the tibial axis")
        return math.sqrt(target * target - perp2) - wa

    def _gaps(self, pose: str, femoral_cut: Plane, tibial_cut: Plane, points: tuple[np.ndarray, np.ndarray],
              xf: np.ndarray) -> Gaps:
        rot = xf[:3, :3]
        axis = _unit(rot @ self.tibia.frame.superior)
        n_t = rot @ tibial_cut.normal
        o_t = rot @ tibial_cut.origin_mm + xf[:3, 3]
        out: list[float] = []
        travel: list[float] = []
        for p, lig in zip(points, (self.mcl, self.lcl)):
            t_f = float((femoral_cut.origin_mm - p) @ femoral_cut.normal) / float(axis @ femoral_cut.normal)
            t_t = float((o_t - p) @ n_t) / float(axis @ n_t)
            d = self.distraction_mm(lig)
            out.append(t_f - t_t + d)
            travel.append(d)
        return Gaps(pose, out[0], out[1], (travel[0], travel[1]))

    def extension_gaps(self, distal_cut: Plane, tibial_cut: Plane) -> Gaps:
        """Gaps in extension between the distal femoral and the tibial cut, at the distal condyle points."""
        f = self.femur
        return self._gaps("extension", distal_cut, tibial_cut, (f.medial_distal_mm, f.lateral_distal_mm), np.eye(4))

    def flexion_gaps(self, posterior_cut: Plane, tibial_cut: Plane) -> Gaps:
        """Gaps at ``flexion_deg`` between the posterior femoral and the (turned) tibial cut."""
        f = self.femur
        return self._gaps("flexion", posterior_cut, tibial_cut, (f.medial_posterior_mm, f.lateral_posterior_mm),
                          self._flexion())

    def insert_fit(self, gaps: Gaps, thickness_mm: float) -> InsertFit:
        """Laxity and ligament force on each side with an insert of ``thickness_mm`` in the gap."""
        lax = (gaps.medial_mm - thickness_mm, gaps.lateral_mm - thickness_mm)
        axis = self.tibia.frame.superior
        forces = []
        for lx, d, lig in zip(lax, gaps.distraction_mm, (self.mcl, self.lcl)):
            # the insert holds the tibia ``-lx`` further than the tensioned position (isometric
            # collaterals: the same in flexion)
            ins = lig.insertion_mm - (d - lx) * axis
            forces.append(lig.force_n(float(np.linalg.norm(lig.origin_mm - ins))))
        return InsertFit(thickness_mm, (lax[0], lax[1]), (forces[0], forces[1]))

    # --- releases ------------------------------------------------------------------------------
    def release_mcl(self, mm: float) -> None:
        """Lengthen the MCL's slack length by ``mm`` (a medial release)."""
        if mm < 0:
            raise ValueError("a release lengthens the ligament: mm >= 0")
        self.mcl = self.mcl.lengthened(mm)
        self.releases.append(("mcl", mm))

    def release_lcl(self, mm: float) -> None:
        """Lengthen the LCL's slack length by ``mm`` (a lateral release)."""
        if mm < 0:
            raise ValueError("a release lengthens the ligament: mm >= 0")
        self.lcl = self.lcl.lengthened(mm)
        self.releases.append(("lcl", mm))

    def release_to_balance(self, gaps: Gaps) -> tuple[Side, float]:
        """Which ligament to release and by how much (mm of slack length) to make ``gaps`` rectangular.

        The tight side is the smaller gap; the release is found by bisection on the 1-D model."""
        side: Side = "medial" if gaps.medial_mm < gaps.lateral_mm else "lateral"
        need = abs(gaps.imbalance_mm)
        lig = self.ligament(side)
        base = self.distraction_mm(lig)
        lo, hi = 0.0, 4.0 * need + 1.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if self.distraction_mm(lig.lengthened(mid)) - base < need:
                lo = mid
            else:
                hi = mid
        return side, 0.5 * (lo + hi)

    def as_dict(self) -> dict[str, Any]:
        def lig(x: Ligament) -> dict[str, Any]:
            return {"origin_mm": [round(float(c), 2) for c in x.origin_mm],
                    "insertion_mm": [round(float(c), 2) for c in x.insertion_mm],
                    "reference_length_mm": round(x.reference_length_mm, 2),
                    "slack_length_mm": round(x.slack_length_mm, 2), "reference_strain": round(x.reference_strain, 4),
                    "stiffness_n": x.stiffness_n}
        return {"mcl": lig(self.mcl), "lcl": lig(self.lcl), "tension_n": self.tension_n,
                "flexion_deg": self.flexion_deg, "releases": list(self.releases), "notes": list(self.notes)}


def gap_summary(extension: Gaps, flexion: Gaps) -> dict[str, Any]:
    """What a gap-balancing surgeon checks: both gaps rectangular, and flexion equal to extension
    (within :data:`BALANCED_MM`) on each side; ``flexion_minus_extension_mm`` per side."""
    diff = (flexion.medial_mm - extension.medial_mm, flexion.lateral_mm - extension.lateral_mm)
    return {"extension": extension.as_dict(), "flexion": flexion.as_dict(),
            "flexion_minus_extension_mm": [round(diff[0], 2), round(diff[1], 2)],
            "balanced": bool(extension.rectangular and flexion.rectangular
                             and all(abs(x) <= BALANCED_MM for x in diff))}


def knee_balance(femur: FemurLandmarks, tibia: TibiaLandmarks, tibia_mesh: trimesh.Trimesh,
                 fibula_mesh: trimesh.Trimesh | None = None, *, tension_n: float = TENSION_N,
                 mcl_tightness_mm: float = 0.0, lcl_tightness_mm: float = 0.0,
                 mcl_stiffness_n: float = MCL_STIFFNESS_N, lcl_stiffness_n: float = LCL_STIFFNESS_N,
                 mcl_reference_strain: float | None = None, lcl_reference_strain: float | None = None,
                 mcl_insertion_below_mm: float = 55.0, flexion_deg: float = 90.0) -> KneeBalance:
    """The knee's collateral ligaments from its landmarks, in the bundle's (reference) pose.

    ``mcl_tightness_mm`` / ``lcl_tightness_mm``: the scenario's contracture (a varus knee has
    a tight medial side): the slack length is that much shorter than a balanced knee's.
    ``*_reference_strain``: the strain at the reference pose; ``None`` calibrates it so the
    ligament pulls with ``tension_n`` there (see the module doc)."""
    notes: list[str] = []
    lcl_ins, note = lcl_insertion(tibia, fibula_mesh, tibia_mesh)
    if note:
        notes.append(note)
    made = []
    for name, origin, ins, k, eref, tight in (
            ("MCL", femur.medial_epicondyle_mm, mcl_insertion(tibia_mesh, tibia, mcl_insertion_below_mm),
             mcl_stiffness_n, mcl_reference_strain, mcl_tightness_mm),
            ("LCL", femur.lateral_epicondyle_mm, lcl_ins, lcl_stiffness_n, lcl_reference_strain, lcl_tightness_mm)):
        probe = Ligament(name, np.asarray(origin, dtype=float), np.asarray(ins, dtype=float), 1.0, k)
        e = probe.strain_at(tension_n) if eref is None else float(eref)
        made.append(replace(probe, slack_length_mm=probe.reference_length_mm / (1.0 + e) - tight))
    if mcl_tightness_mm:
        notes.append(f"MCL {mcl_tightness_mm:g} mm tight (scenario)")
    if lcl_tightness_mm:
        notes.append(f"LCL {lcl_tightness_mm:g} mm tight (scenario)")
    return KneeBalance(femur=femur, tibia=tibia, mcl=made[0], lcl=made[1], tension_n=tension_n,
                       flexion_deg=flexion_deg, notes=notes)


__all__ = ["Gaps", "InsertFit", "KneeBalance", "Ligament", "gap_summary", "knee_balance", "lcl_insertion",
           "mcl_insertion", "BALANCED_MM", "TENSION_N"]
