"""Total hip arthroplasty (anterior approach, supine) inside the fixed step: acetabular reaming and
cup impaction with live navigation readouts (a :class:`~vr_trainer.sim.procedure.ProcedureModel`).

What the resident does, and what the model does with it (patient RAS millimetres inside; the
instruments live in the room frame; angles are Murray's radiographic inclination and anteversion in
the anterior pelvic plane frame, :mod:`.tha_pelvis`):

- **Reamer** (``acetabular_reamer``; its tip is the centre of its hemispherical head, the scenario's
  ``reamer_diameter_mm``): near the acetabulum (its centre within ``CAPTURE_MM`` of the native
  centre) the bone stops it: its centre goes no deeper, along the native acetabular axis, than the
  bone reamed so far. With the trigger held it removes bone to where the hand holds it, advancing at
  most ``reaming_rate_mm_s``: the reamed socket is the hemipelvis (and the acetabular cartilage)
  less the hemispheres the head swept, a real boolean subtraction (manifold3d) drawn from then on.
  The deepest reamed centre gives ``reaming_depth_mm`` (along the native axis, into the pelvis) and
  ``medialisation_mm`` (toward the midline); releasing the trigger after reaming is ``reamed``. The
  bone left behind the head's pole, on the line from the native centre to the pelvis's inner surface
  (of the uncut hemipelvis), is ``medial_wall_mm``; a head through it is ``medial_wall_breach``
  (the wall then reads negative: how far through).
  While held, its axis reads as a cup axis (``reamer_inclination`` / ``reamer_anteversion``).
- **Cup impactor** (``cup_impactor``; its tip is the cup's centre, its +z the cup axis out of the
  opening): within ``CAPTURE_MM`` of the reamed socket the cup sits in it (the tip is held on the
  seat, the orientation is the hand's): ``cup_inclination`` / ``cup_anteversion`` live. The trigger
  impacts the cup (``cup_impacted``, and ``cup_in_zone`` or ``cup_outside_zone`` against the
  scenario's safe zone, default Lewinnek's): the final angles, the zone, and the leg length and
  offset change from the hip centre's move (native centre -> cup centre) are recorded; the cup and
  its impactor stay where they were impacted. A cup larger than the last reamer sits proud by the
  difference of the radii along its axis.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import trimesh

from vr_trainer.procedures.tka_constants import THA_ANGLES
from vr_trainer.procedures.tha_pelvis import (Acetabulum, PelvicFrame, Side, cup_angles_deg, leg_length_and_offset_mm,
                                              reaming)
from vr_trainer.procedures.tha_reaming import ReamedSolid, inner_wall_mm, ream
from vr_trainer.procedures.tka_workflow import CutBone
from vr_trainer.sim.procedure import MoveResult

if TYPE_CHECKING:
    from vr_trainer.frame import HandInput
    from vr_trainer.sim.instruments import InstrumentSpec, InstrumentState
    from vr_trainer.sim.observation import Observation
    from vr_trainer.sim.simulation import SimState

CAPTURE_MM = 15.0  # the reamer meets bone, the cup drops into the socket, this close to it
CUT_EVERY_MM = 1.0  # the reamed solid is updated each time the head has moved this far
ACTIONS = ("reamed", "medial_wall_breach", "cup_impacted", "cup_in_zone", "cup_outside_zone")
ANGLES = THA_ANGLES


@dataclass(frozen=True)
class CupResult:
    """The impacted cup: where, how it faces, and what it did to the hip (degrees, mm)."""

    centre_mm: np.ndarray
    axis: np.ndarray  # unit, out of the opening (patient)
    inclination_deg: float
    anteversion_deg: float
    in_zone: bool
    leg_length_change_mm: float  # + longer
    offset_change_mm: float  # + more lateral


@dataclass(frozen=True)
class ThaState:
    depth_mm: float = 0.0  # the deepest reamed centre's depth along the native axis (0: the native sphere)
    deepest_mm: np.ndarray | None = None  # the deepest reamed centre (patient); None: not reamed
    cut_from_mm: np.ndarray | None = None  # where the head was when the solid was last updated
    head_mm: np.ndarray | None = None  # where the head was in the last step of reaming
    wall_mm: float | None = None  # the thinnest medial wall left behind the head while reaming (mm, < 0: through)
    solids: Mapping[str, ReamedSolid] = field(default_factory=dict)  # structure key -> reamed solid
    bones: Mapping[str, CutBone] = field(default_factory=dict)  # structure key -> reamed mesh
    reaming: bool = False  # the trigger is held with the head on bone
    cup: CupResult | None = None
    cup_pose: np.ndarray | None = None  # world_from_tool of the impactor at impaction
    trigger_was: bool = False
    notes: tuple[str, ...] = ()


@dataclass
class ThaModel:
    """The hip's rules for one session (made by :func:`vr_trainer.procedures.tha.tha_model`)."""

    patient_from_world: np.ndarray
    frame: PelvicFrame
    native: Acetabulum
    side: Side
    meshes: Mapping[str, trimesh.Trimesh]  # "hemipelvis" (and "cartilage") -> the unreamed meshes
    structure_names: Mapping[str, str]  # "hemipelvis" -> the bundle's structure name
    reamer_radius_mm: float = 27.0
    cup_radius_mm: float = 27.0
    reaming_rate_mm_s: float = 4.0
    inclination_target_deg: float = 40.0
    anteversion_target_deg: float = 15.0
    inclination_tolerance_deg: float = 10.0
    anteversion_tolerance_deg: float = 10.0
    seed_source: str = "femoral head"
    fragment_structure: str | None = None  # nothing is taken out piece by piece (the run's key images ask)

    @cached_property
    def world_from_patient(self) -> np.ndarray:
        return np.linalg.inv(self.patient_from_world)

    def _p(self, pt_w: np.ndarray) -> np.ndarray:
        return self.patient_from_world[:3, :3] @ np.asarray(pt_w, float) + self.patient_from_world[:3, 3]

    def _v(self, d_w: np.ndarray) -> np.ndarray:
        return self.patient_from_world[:3, :3] @ np.asarray(d_w, float)

    def _w(self, pt_p: np.ndarray) -> np.ndarray:
        return self.world_from_patient[:3, :3] @ np.asarray(pt_p, float) + self.world_from_patient[:3, 3]

    def initial_state(self) -> ThaState:
        return ThaState()

    # --- geometry --------------------------------------------------------------------------------
    def depth_of(self, centre_mm: np.ndarray) -> float:
        """Depth (mm) of a head centre along the native axis into the pelvis (0: the native centre)."""
        return float(-(np.asarray(centre_mm, float) - self.native.centre_mm) @ self.native.axis)

    def angles(self, axis_p: np.ndarray) -> tuple[float, float]:
        """(inclination, anteversion) deg of a cup axis (patient, out of the opening)."""
        return cup_angles_deg(axis_p, self.frame, self.side)

    def seat_mm(self, st: ThaState) -> np.ndarray | None:
        """Where the cup's centre sits in the reamed socket (None: nothing reamed yet)."""
        return st.deepest_mm

    def in_zone(self, inclination_deg: float, anteversion_deg: float) -> bool:
        """Inside the scenario's safe zone (Lewinnek's 40 +- 10, 15 +- 10 degrees by default)."""
        return (abs(inclination_deg - self.inclination_target_deg) <= self.inclination_tolerance_deg
                and abs(anteversion_deg - self.anteversion_target_deg) <= self.anteversion_tolerance_deg)

    # --- the step ----------------------------------------------------------------------------------
    def move(self, prev: SimState, instruments: tuple[InstrumentState, ...], active: int, hand: HandInput,
             dt_s: float, actions: frozenset[str]) -> MoveResult:
        st: ThaState = prev.procedure_state or ThaState()
        insts = list(instruments)
        for k, inst in enumerate(insts):  # the impacted cup stays; what is put down is off the table
            if st.cup_pose is not None and inst.spec.kind == "cup_impactor":
                insts[k] = dataclasses.replace(inst, world_from_tool=st.cup_pose, visible=True, held=True)
            elif k != active and inst.held:
                insts[k] = dataclasses.replace(inst, held=False)
        cur = insts[active]
        kind = cur.spec.kind
        pulled = float(hand.trigger) > 0.5
        edge = pulled and not st.trigger_was
        done: set[str] = set()
        if kind == "acetabular_reamer":
            st, insts[active], done = self._ream(st, cur, pulled, dt_s)
        elif kind == "cup_impactor" and st.cup is None:
            st, insts[active], done = self._impactor(st, cur, edge)
        if st.trigger_was != pulled:
            st = dataclasses.replace(st, trigger_was=pulled)
        haptics: tuple[Any, ...] = ()
        if "cup_impacted" in done or (st.reaming and kind == "acetabular_reamer"):
            from vr_trainer.sim.simulation import HapticRequest

            haptics = (HapticRequest(-1, 0.9 if "cup_impacted" in done else 0.3, 0.2 if done else dt_s),)
        return MoveResult(tuple(insts), st, frozenset(done), haptics)

    def _ream(self, st: ThaState, inst: InstrumentState, pulled: bool,
              dt_s: float) -> tuple[ThaState, InstrumentState, set[str]]:
        c = self._p(inst.world_from_tool[:3, 3])
        advance = -self._v(inst.world_from_tool[:3, 2])
        advance /= float(np.linalg.norm(advance))
        done: set[str] = set()
        if not self.on_bone(st, c):
            if st.reaming:  # lifted off the bone with the trigger held: that pass is over
                st, done = self._end_pass(st, advance)
            return st, inst, done
        # the bone stops the head at the reamed depth (a running reamer goes a little deeper each step)
        limit = max(st.depth_mm, 0.0) + (self.reaming_rate_mm_s * dt_s if pulled else 0.0)
        depth = self.depth_of(c)
        if depth > limit:
            along = float(-(advance @ self.native.axis))  # depth gained per mm of advance
            if along > 0.2:  # back along the reamer's own axis
                c = c - (depth - limit) / along * advance
            else:
                c = c + (depth - limit) * self.native.axis
            pose = inst.world_from_tool.copy()
            pose[:3, 3] = self._w(c)
            inst = dataclasses.replace(inst, world_from_tool=pose)
        if not pulled:
            if st.reaming:
                st, done = self._end_pass(st, advance)
            return st, inst, done
        depth = self.depth_of(c)
        st = dataclasses.replace(st, head_mm=c.copy())
        if st.deepest_mm is None or depth > st.depth_mm:
            st = dataclasses.replace(st, depth_mm=depth, deepest_mm=c.copy())
        if not st.reaming:
            st = dataclasses.replace(st, reaming=True, cut_from_mm=c.copy())
        if st.cut_from_mm is None or float(np.linalg.norm(c - st.cut_from_mm)) >= CUT_EVERY_MM:
            st = self._cut_to(st, c, advance)
            st, more = self._wall(st, c, advance)
            done |= more
        return st, inst, done

    def _end_pass(self, st: ThaState, advance: np.ndarray) -> tuple[ThaState, set[str]]:
        """The trigger released (or the head lifted off): the last stretch is reamed, the pass is over."""
        st = self._cut_to(dataclasses.replace(st, reaming=False), st.head_mm, advance)
        if st.head_mm is None:
            return st, {"reamed"}
        st, more = self._wall(st, st.head_mm, advance)
        return st, more | {"reamed"}

    def _wall(self, st: ThaState, c: np.ndarray, advance: np.ndarray) -> tuple[ThaState, set[str]]:
        """The medial wall behind the head at ``c``: the bone left between the head's pole and the pelvis's
        inner surface, on the line from the native centre through the pole (the thinnest so far), and a
        breach when the pole goes through it."""
        pole = c + self.reamer_radius_mm * advance
        ray = pole - self.native.centre_mm
        inner = inner_wall_mm(self.meshes["hemipelvis"], self.native.centre_mm, ray)
        if inner is None:
            return st, set()
        wall = inner - float(np.linalg.norm(ray))
        if st.wall_mm is not None and wall >= st.wall_mm:
            return st, set()
        out = {"medial_wall_breach"} if wall < 0.0 and (st.wall_mm is None or st.wall_mm >= 0.0) else set()
        return dataclasses.replace(st, wall_mm=wall), out

    def on_bone(self, st: ThaState, centre_mm: np.ndarray) -> bool:
        """The reamer's head is in the acetabulum (its centre near the native or the reamed centre)."""
        ref = [self.native.centre_mm] + ([st.deepest_mm] if st.deepest_mm is not None else [])
        return min(float(np.linalg.norm(np.asarray(centre_mm) - r)) for r in ref) <= CAPTURE_MM

    def _cut_to(self, st: ThaState, c: np.ndarray | None, advance: np.ndarray) -> ThaState:
        """The solids less the head swept from ``st.cut_from_mm`` to ``c`` (both as hemispheres)."""
        if c is None:
            return st
        start = st.cut_from_mm if st.cut_from_mm is not None else c
        solids, bones = dict(st.solids), dict(st.bones)
        for key, mesh in self.meshes.items():
            prev = solids.get(key)
            got = ream(prev if prev is not None else mesh, start, c, advance, self.reamer_radius_mm)
            if got is None:
                continue
            solids[key] = got
            bones[key] = CutBone(got.mesh, (bones[key].version if key in bones else 0) + 1)
        return dataclasses.replace(st, solids=solids, bones=bones, cut_from_mm=np.asarray(c, float).copy())

    def _impactor(self, st: ThaState, inst: InstrumentState, edge: bool) -> tuple[ThaState, InstrumentState, set[str]]:
        seat = self.seat_mm(st)
        tip = self._p(inst.world_from_tool[:3, 3])
        if seat is None or float(np.linalg.norm(tip - seat)) > CAPTURE_MM:
            if edge:
                why = "ream the acetabulum first" if seat is None else "seat the cup in the reamed socket"
                st = dataclasses.replace(st, notes=st.notes + (f"impactor: {why}",))
            return st, inst, set()
        axis = self._v(inst.world_from_tool[:3, 2])
        axis /= float(np.linalg.norm(axis))
        centre = seat + max(self.cup_radius_mm - self.reamer_radius_mm, 0.0) * axis
        pose = inst.world_from_tool.copy()
        pose[:3, 3] = self._w(centre)
        inst = dataclasses.replace(inst, world_from_tool=pose)
        if not edge:
            return st, inst, set()
        inc, av = self.angles(axis)
        zone = self.in_zone(inc, av)
        ll, off = leg_length_and_offset_mm(self.native.centre_mm, centre, self.frame, self.side)
        cup = CupResult(centre, axis, inc, av, zone, ll, off)
        st = dataclasses.replace(st, cup=cup, cup_pose=pose.copy())
        return st, inst, {"cup_impacted", "cup_in_zone" if zone else "cup_outside_zone"}

    # --- what the rules see ----------------------------------------------------------------------
    def observe(self, procedure_state: Any, obs: Observation, instruments: tuple[InstrumentState, ...],
                active: int) -> tuple[Observation, Any]:
        st: ThaState = procedure_state or ThaState()
        values = dict(obs.values)
        angles = dict(obs.angles_deg)
        inst = instruments[active] if instruments else None
        if inst is not None and inst.spec.kind in ("acetabular_reamer", "cup_impactor"):
            axis = self._v(inst.world_from_tool[:3, 2])
            inc, av = self.angles(axis)
            name = "reamer" if inst.spec.kind == "acetabular_reamer" else "cup"
            if name == "cup" and st.cup is not None:
                inc, av = st.cup.inclination_deg, st.cup.anteversion_deg
            angles[f"{name}_inclination"], angles[f"{name}_anteversion"] = inc, av
            values[f"{name}_inclination_deg"], values[f"{name}_anteversion_deg"] = inc, av
            if name == "reamer":
                c = self._p(inst.world_from_tool[:3, 3])
                if self.on_bone(st, c):
                    r = reaming(self.native, c, self.frame, self.side)
                    values["reamer_depth_mm"], values["reamer_medialisation_mm"] = r.depth_mm, r.medialisation_mm
        if st.deepest_mm is not None:
            r = reaming(self.native, st.deepest_mm, self.frame, self.side)
            values["reaming_depth_mm"], values["medialisation_mm"] = r.depth_mm, r.medialisation_mm
        if st.wall_mm is not None:
            values["medial_wall_mm"] = st.wall_mm
        if st.cup is not None:
            cup = st.cup
            values["impacted_cup_inclination_deg"] = cup.inclination_deg
            values["impacted_cup_anteversion_deg"] = cup.anteversion_deg
            values["cup_in_zone"] = float(cup.in_zone)
            values["leg_length_change_mm"] = cup.leg_length_change_mm
            values["offset_change_mm"] = cup.offset_change_mm
        return dataclasses.replace(obs, values=values, angles_deg=angles), st

    def readout_lines(self, state: SimState, locale: str) -> list[str]:
        """The navigation screen's lines for this step (English or Chinese)."""
        obs = state.observation
        v = obs.values if obs is not None else {}
        zh = locale == "zh"
        out: list[str] = []
        inc, av = ("外展" if zh else "inclination"), ("前倾" if zh else "anteversion")
        if "reamer_inclination_deg" in v:
            out.append(f"{'髋臼锉' if zh else 'Reamer'}: {inc} {v['reamer_inclination_deg']:.1f}°  "
                       f"{av} {v['reamer_anteversion_deg']:.1f}°")
        if "reamer_depth_mm" in v:
            out.append(f"{'锉头深度' if zh else 'Reamer depth'} {v['reamer_depth_mm']:.1f} mm  "
                       f"{'内移' if zh else 'medial'} {v['reamer_medialisation_mm']:.1f} mm")
        if "reaming_depth_mm" in v:
            out.append(f"{'已磨锉' if zh else 'Reamed'}: {'深度' if zh else 'depth'} {v['reaming_depth_mm']:.1f} mm  "
                       f"{'内移' if zh else 'medialisation'} {v['medialisation_mm']:.1f} mm")
        if "medial_wall_mm" in v:
            w = v["medial_wall_mm"]
            out.append((f"内侧壁 {w:.1f} mm" if w >= 0 else f"内侧壁已穿透 {-w:.1f} mm") if zh else
                       (f"Medial wall {w:.1f} mm" if w >= 0 else f"MEDIAL WALL BREACHED by {-w:.1f} mm"))
        if "cup_inclination_deg" in v:
            zone = self.in_zone(v["cup_inclination_deg"], v["cup_anteversion_deg"])
            tag = ("安全区内" if zone else "安全区外") if zh else ("in safe zone" if zone else "OUTSIDE safe zone")
            out.append(f"{'髋臼杯' if zh else 'Cup'}: {inc} {v['cup_inclination_deg']:.1f}°  "
                       f"{av} {v['cup_anteversion_deg']:.1f}°  ({tag})")
        if "leg_length_change_mm" in v:
            out.append(f"{'下肢长度' if zh else 'Leg length'} {v['leg_length_change_mm']:+.1f} mm  "
                       f"{'偏心距' if zh else 'offset'} {v['offset_change_mm']:+.1f} mm")
        return out

    # --- what the scene shows ----------------------------------------------------------------------
    def cut_bones(self, procedure_state: Any) -> dict[str, CutBone]:
        """Bundle structure name -> its reamed mesh (only what was reamed so far)."""
        st: ThaState = procedure_state or ThaState()
        return {self.structure_names[k]: b for k, b in st.bones.items()}

    def instrument_spec(self, spec: InstrumentSpec) -> InstrumentSpec:
        """The reamer and the cup at the plan's sizes (the catalogue's are nominal)."""
        size = {"acetabular_reamer": self.reamer_radius_mm, "cup_impactor": self.cup_radius_mm}.get(spec.kind)
        return spec if size is None else dataclasses.replace(spec, head_diameter_mm=2.0 * size)
