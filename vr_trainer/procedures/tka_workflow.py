"""Total knee arthroplasty inside the fixed step: cutting blocks, the saw in their slots, real bone
cuts, spacer blocks, ligament releases and trial inserts (a :class:`~vr_trainer.sim.procedure.ProcedureModel`).

What the resident does, and what the model does with it (patient RAS millimetres inside; the
instruments live in the room frame):

- **Blocks** (``distal_femoral_block``, ``tibial_block``, ``four_in_one_block``): held, a block's slot
  plane follows the hand and the navigation readouts follow the slot (``angles_deg`` /
  ``values``); pulling the trigger pins it where it is (action ``pinned_<kind>``) once its slot
  crosses the bone; pulling it again on a pinned block, before its cut, takes the pins out. The
  4-in-1 block stands on the distal cut (it cannot be placed before it): its slot plane is kept on
  that surface and its size comes from the bone's depth in front of its posterior slot (the sizing
  stylus), rounded to the nearest size of the scenario's table.
- **Saw** (``saw_blade``): within 15 mm of a pinned block's uncut slot the blade is held in that slot
  (its tip and blade projected onto the plane: the planar constraint). With the trigger pulled the
  blade sweeps the bone's cross-section under it; when the whole section is swept the cut is made
  (action ``cut_<slot>``): a plane cut of the bone mesh (:func:`vr_trainer.sim.cutting.plane_cut`),
  watertight, and the cut bone is what is drawn from then on. All four 4-in-1 cuts: ``cut_four_in_one``.
- **Spacer block**: trigger in the joint (within 25 mm of the knee centre) measures the extension
  gaps once the distal femur and the tibia are cut, the flexion gaps once the posterior cut is made
  too (``measured_extension_gap`` / ``measured_flexion_gap``; ``balanced_extension`` /
  ``balanced_flexion`` when the gap is rectangular).
- **Scalpel**: each trigger pull within 8 mm of a collateral ligament's line releases it by the
  scenario's ``release_step_mm`` of slack length (``released_mcl`` / ``released_lcl``); the gaps
  are measured again.
- **Trial insert**: trigger in the joint with both gaps measured fits the thickest insert of the
  scenario's table that the tightest gap takes with the femoral component and tibial tray
  (``trial_fitted``; the looser side's laxity in ``values``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import trimesh

from vr_trainer.procedures import tka_readouts as readouts
from vr_trainer.procedures.tka_constants import ANGLES  # noqa: F401 - the readouts' angle names, re-exported
from vr_trainer.procedures.tka_gaps import Gaps, KneeBalance
from vr_trainer.procedures.tka_landmarks import FemurLandmarks, TibiaLandmarks
from vr_trainer.procedures.tka_slots import (FOUR_IN_ONE_SLOTS, Section, blade_covers, cross_section, femur_ap_mm,
                                             finishing_limit, four_in_one_planes, slot_plane)
from vr_trainer.sim.cutting import Plane, bounded_cut, plane_cut
from vr_trainer.sim.procedure import MoveResult
from vr_trainer.sim.proximity import ProximityField, shaft_points

if TYPE_CHECKING:
    from vr_trainer.frame import HandInput
    from vr_trainer.sim.instruments import InstrumentState
    from vr_trainer.sim.observation import Observation
    from vr_trainer.sim.simulation import SimState

BLOCKS = ("distal_femoral_block", "tibial_block", "four_in_one_block")
CAPTURE_MM = 15.0  # the saw drops into a slot this close to it
JOINT_MM = 25.0  # a spacer or trial counts as in the joint this close to the knee centre
RELEASE_REACH_MM = 8.0
SLOT_BONE = {"distal": "femur", "tibial": "tibia", **{s: "femur" for s in FOUR_IN_ONE_SLOTS}}
CUT_ACTIONS = {"distal": "cut_distal_femur", "tibial": "cut_proximal_tibia", "posterior": "cut_posterior_femur",
               "anterior": "cut_anterior_femur", "posterior_chamfer": "cut_posterior_chamfer",
               "anterior_chamfer": "cut_anterior_chamfer"}
ACTIONS = tuple(f"pinned_{b}" for b in BLOCKS) + tuple(CUT_ACTIONS.values()) + (
    "cut_four_in_one", "measured_extension_gap", "measured_flexion_gap", "balanced_extension", "balanced_flexion",
    "released_mcl", "released_lcl", "trial_fitted")


@dataclass(frozen=True)
class CutBone:
    """A bone as the cuts so far left it (``version`` counts them)."""

    mesh: trimesh.Trimesh
    version: int


@dataclass(frozen=True)
class TkaState:
    pinned: Mapping[str, np.ndarray] = field(default_factory=dict)  # block kind -> world_from_tool (pinned)
    slots: Mapping[str, Plane] = field(default_factory=dict)  # slot -> plane of a pinned block (patient)
    sections: Mapping[str, Section] = field(default_factory=dict)  # slot -> the bone under it
    covered: Mapping[str, np.ndarray] = field(default_factory=dict)  # slot -> (n,) bool swept so far
    cuts: Mapping[str, Plane] = field(default_factory=dict)  # slot -> the plane it was cut on
    bones: Mapping[str, CutBone] = field(default_factory=dict)  # structure -> cut bone (absent: uncut)
    size: tuple[str, float] | None = None  # the 4-in-1 block's size (name, box AP mm)
    saw_slot: str | None = None
    trigger_was: bool = False
    releases: tuple[tuple[str, float], ...] = ()
    extension: Gaps | None = None
    flexion: Gaps | None = None
    trial: tuple[float, float, float] | None = None  # (thickness, extension laxity, flexion laxity) mm
    cut_values: Mapping[str, float] = field(default_factory=dict)  # readouts of the cuts made (cut_* values)
    flexed: bool = False  # the knee at the balance's flexion angle (the 4-in-1 cuts, the flexion gap)
    notes: tuple[str, ...] = ()


@dataclass
class TkaModel:
    """The knee's rules for one session (made by :func:`vr_trainer.procedures.tka.tka_model`)."""

    patient_from_world: np.ndarray
    femur: FemurLandmarks
    tibia: TibiaLandmarks
    balance: KneeBalance
    meshes: Mapping[str, trimesh.Trimesh]  # "femur", "tibia" -> the uncut bones
    structure_names: Mapping[str, str]  # "femur" -> the bundle's structure name
    sizes: tuple[tuple[str, float], ...]
    inserts_mm: tuple[float, ...]
    release_step_mm: float = 1.0
    components_mm: float = 12.0  # femoral component + tibial tray: what the trial construct adds to the insert
    kinds: Mapping[str, str] = field(default_factory=dict)  # instrument id -> kind
    flexing: frozenset[str] = frozenset()  # bundle structures that move with the tibia when the knee flexes
    flexing_risk: ProximityField | None = None  # those the scenario measures (patient frame, extension)
    ligaments: frozenset[str] = frozenset()  # the collateral ligaments' structures: the scalpel's work, not a risk

    @cached_property
    def flexion_xf(self) -> np.ndarray:
        """4x4 (patient frame): the tibia and what moves with it, extension -> the balance's flexion."""
        return self.balance.flexion_pose()

    # --- frames ----------------------------------------------------------------------------------
    @cached_property
    def world_from_patient(self) -> np.ndarray:
        return np.linalg.inv(self.patient_from_world)

    def _p(self, pts_w: np.ndarray) -> np.ndarray:
        return np.asarray(pts_w) @ self.patient_from_world[:3, :3].T + self.patient_from_world[:3, 3]

    def _v(self, d_w: np.ndarray) -> np.ndarray:
        return self.patient_from_world[:3, :3] @ np.asarray(d_w, float)

    def bone(self, state: TkaState, key: str) -> trimesh.Trimesh:
        cut = state.bones.get(key)
        return cut.mesh if cut is not None else self.meshes[key]

    def initial_state(self) -> TkaState:
        return TkaState()

    # --- planes of a held block ---------------------------------------------------------------------
    def block_planes(self, kind: str, world_from_tool: np.ndarray, state: TkaState) -> dict[str, Plane]:
        """The slot planes (patient) a block of ``kind`` at ``world_from_tool`` defines now."""
        tip = self._p(world_from_tool[:3, 3][None])[0]
        z = self._v(world_from_tool[:3, 2])
        if kind == "distal_femoral_block":
            return {"distal": slot_plane(tip, z, self.femur.frame.superior)}
        if kind == "tibial_block":
            return {"tibial": slot_plane(tip, z, -self.tibia.frame.superior)}
        distal = state.cuts.get("distal")
        if kind != "four_in_one_block" or distal is None:
            return {}
        post = four_in_one_planes(tip, z, distal, 50.0)["posterior"]
        ap = femur_ap_mm(self.bone(state, "femur"), post, distal)
        name, box = min(self.sizes, key=lambda s: abs(s[1] - ap))
        return four_in_one_planes(tip, z, distal, box)

    def _size_for(self, planes: Mapping[str, Plane]) -> tuple[str, float]:
        box = float((planes["anterior"].origin_mm - planes["posterior"].origin_mm) @ planes["posterior"].normal)
        return min(self.sizes, key=lambda s: abs(s[1] - box))

    def _on_bone(self, planes: Mapping[str, Plane]) -> bool:
        for slot, plane in planes.items():
            if slot in ("distal", "tibial", "posterior"):
                r = self.readout(slot, plane)
                depths = [r.get(k, 0.0) for k in r if k.endswith("resection_mm")]
                if not depths or max(depths) < -3.0 or max(depths) > 30.0:
                    return False
        return True

    def readout(self, slot: str, plane: Plane) -> dict[str, float]:
        """The navigation readout of a slot's plane (field name -> degrees or mm); {} for a chamfer or
        the anterior cut, which have none."""
        r: Any
        if slot == "distal":
            r = readouts.distal_femoral(plane, self.femur)
        elif slot == "tibial":
            r = readouts.tibial(plane, self.tibia)
        elif slot == "posterior":
            r = readouts.femoral_rotation(plane, self.femur)
        else:
            return {}
        return {f.name: float(getattr(r, f.name)) for f in dataclasses.fields(r)}

    # --- the step ----------------------------------------------------------------------------------
    def move(self, prev: SimState, instruments: tuple[InstrumentState, ...], active: int, hand: HandInput,
             dt_s: float, actions: frozenset[str]) -> MoveResult:
        st: TkaState = prev.procedure_state or TkaState()
        insts = list(instruments)
        # pinned blocks stay where they were pinned; what is put down is off the table
        for k, inst in enumerate(insts):
            pose = st.pinned.get(inst.spec.kind)
            if pose is not None:
                insts[k] = dataclasses.replace(inst, world_from_tool=pose, visible=True, held=True)
            elif k != active and inst.held:
                insts[k] = dataclasses.replace(inst, held=False)
        cur = insts[active]
        kind = cur.spec.kind
        pulled = float(hand.trigger) > 0.5
        edge = pulled and not st.trigger_was
        done: set[str] = set()
        notes: list[str] = []
        if kind in BLOCKS:
            if kind == "four_in_one_block" and kind not in st.pinned:
                insts[active] = dataclasses.replace(cur, world_from_tool=self._on_distal_cut(cur.world_from_tool, st))
            if edge:
                st, insts[active], more = self._pin_or_unpin(st, kind, insts[active])
                done |= more
        elif kind == "saw_blade":
            st, insts[active], more = self._saw(st, cur, pulled)
            done |= more
        elif kind in ("spacer_block", "trial_insert") and edge:
            st, more = self._in_joint(st, kind, cur)
            done |= more
        elif kind == "scalpel" and edge:
            st, more = self._release(st, cur)
            done |= more
        if st.trigger_was != pulled:
            st = dataclasses.replace(st, trigger_was=pulled)
        flexed = self._flexed(st, kind)
        if flexed != st.flexed:
            st = dataclasses.replace(st, flexed=flexed)
        haptics: tuple[Any, ...] = ()
        if done & set(CUT_ACTIONS.values()):
            from vr_trainer.sim.simulation import HapticRequest

            haptics = (HapticRequest(-1, 0.8, 0.2),)
        return MoveResult(tuple(insts), st, frozenset(done), haptics, tuple(notes))

    def _flexed(self, st: TkaState, kind: str) -> bool:
        """The knee is flexed for the femoral finishing cuts and what follows them: while the 4-in-1
        block is in hand, while the saw works in its slots, and for the flexion gap and the trial."""
        if kind == "four_in_one_block":
            return True
        if kind == "saw_blade":
            return "four_in_one_block" in st.pinned and not all(s in st.cuts for s in FOUR_IN_ONE_SLOTS)
        if kind in ("spacer_block", "trial_insert"):
            return "posterior" in st.cuts
        return False

    def motion_poses(self) -> dict[str, list[np.ndarray]]:
        """Bundle structure name -> the poses (4x4, patient frame) it takes besides the bundle's: where the room
        must leave space (the flexed tibia hangs beyond the table's end)."""
        return {n: [self.flexion_xf] for n in self.flexing}

    def part_poses(self, procedure_state: Any) -> dict[str, np.ndarray]:
        """Bundle structure name -> its pose (4x4, patient frame) when not where the bundle has it."""
        st: TkaState = procedure_state or TkaState()
        return {n: self.flexion_xf for n in self.flexing} if st.flexed else {}

    def _on_distal_cut(self, world_from_tool: np.ndarray, st: TkaState) -> np.ndarray:
        """A 4-in-1 block stands on the distal cut: its tip on the surface, its z axis in it."""
        distal = st.cuts.get("distal")
        if distal is None:
            return world_from_tool
        w = self.world_from_patient
        n_w = w[:3, :3] @ distal.normal
        o_w = (w @ np.append(distal.origin_mm, 1.0))[:3]
        tip = world_from_tool[:3, 3]
        tip = tip - float((tip - o_w) @ n_w) * n_w
        z = world_from_tool[:3, 2] - float(world_from_tool[:3, 2] @ n_w) * n_w
        return _pose(tip, z, n_w)

    def _pin_or_unpin(self, st: TkaState, kind: str, inst: InstrumentState) -> tuple[TkaState, Any, set[str]]:
        slots_of = [s for s in SLOT_BONE if (s == "distal") == (kind == "distal_femoral_block")
                    and (s == "tibial") == (kind == "tibial_block")]
        if kind in st.pinned:
            if any(s in st.cuts for s in slots_of):
                return st, inst, set()  # cut through it: the pins stay until the block comes off
            slots = {s: p for s, p in st.slots.items() if s not in slots_of}
            pinned = {k: v for k, v in st.pinned.items() if k != kind}
            return dataclasses.replace(st, pinned=pinned, slots=slots,
                                       notes=st.notes + (f"{kind} unpinned",)), inst, set()
        planes = self.block_planes(kind, inst.world_from_tool, st)
        if not planes or not self._on_bone(planes):
            return dataclasses.replace(st, notes=st.notes + (f"{kind}: the slot does not cross the bone",)), inst, set()
        sections = dict(st.sections)
        covered = dict(st.covered)
        size = self._size_for(planes) if kind == "four_in_one_block" else st.size
        for s, p in planes.items():
            sec = cross_section(self.bone(st, SLOT_BONE[s]), p, within=self._within(st, s, size))
            sections[s] = sec
            covered[s] = np.zeros(len(sec.points_mm), bool)
        st = dataclasses.replace(st, pinned={**st.pinned, kind: inst.world_from_tool.copy()},
                                 slots={**st.slots, **planes}, sections=sections, covered=covered, size=size)
        return st, dataclasses.replace(inst, held=True), {f"pinned_{kind}"}

    def _saw(self, st: TkaState, inst: InstrumentState, pulled: bool) -> tuple[TkaState, Any, set[str]]:
        tip_p = self._p(inst.world_from_tool[:3, 3][None])[0]
        open_slots = {s: p for s, p in st.slots.items() if s not in st.cuts}
        slot = st.saw_slot if pulled and st.saw_slot in open_slots else None  # held in its slot while cutting
        if slot is None and open_slots:
            near = min(open_slots, key=lambda s: abs(float(open_slots[s].signed_distance_mm(tip_p)[0])))
            if abs(float(open_slots[near].signed_distance_mm(tip_p)[0])) <= CAPTURE_MM:
                slot = near
        if slot is None or abs(float(open_slots[slot].signed_distance_mm(tip_p)[0])) > CAPTURE_MM:
            return (st if st.saw_slot is None else dataclasses.replace(st, saw_slot=None)), inst, set()
        plane = open_slots[slot]
        # the planar constraint: tip and blade in the slot
        w = self.world_from_patient
        n_w = w[:3, :3] @ plane.normal
        o_w = (w @ np.append(plane.origin_mm, 1.0))[:3]
        tip = inst.world_from_tool[:3, 3]
        tip = tip - float((tip - o_w) @ n_w) * n_w
        z = inst.world_from_tool[:3, 2] - float(inst.world_from_tool[:3, 2] @ n_w) * n_w
        if float(np.linalg.norm(z)) < 1e-6:
            z = np.cross(n_w, [1.0, 0.0, 0.0])
        pose = _pose(tip, z, n_w)
        inst = dataclasses.replace(inst, world_from_tool=pose)
        if st.saw_slot != slot:
            st = dataclasses.replace(st, saw_slot=slot)
        if not pulled:
            return st, inst, set()
        sec = st.sections[slot]
        cov = st.covered[slot] | blade_covers(sec.points_mm, self._p(tip[None])[0], self._v(pose[:3, 2]))
        if cov.all():
            return self._cut(st, slot, plane), inst, self._cut_actions(st, slot)
        return dataclasses.replace(st, covered={**st.covered, slot: cov}), inst, set()

    def _cut_actions(self, st: TkaState, slot: str) -> set[str]:
        out = {CUT_ACTIONS[slot]}
        if slot in FOUR_IN_ONE_SLOTS and all(s in st.cuts or s == slot for s in FOUR_IN_ONE_SLOTS):
            out.add("cut_four_in_one")
        return out

    def _within(self, st: TkaState, slot: str, size: tuple[str, float] | None) -> Plane | None:
        """The 4-in-1 cuts stop at the component's height above the distal cut."""
        if slot in FOUR_IN_ONE_SLOTS and "distal" in st.cuts and size is not None:
            return finishing_limit(st.cuts["distal"], size[1])
        return None

    def _cut(self, st: TkaState, slot: str, plane: Plane) -> TkaState:
        key = SLOT_BONE[slot]
        prev = st.bones.get(key)
        within = self._within(st, slot, st.size)
        res = plane_cut(self.bone(st, key), plane) if within is None else bounded_cut(self.bone(st, key), plane, within)
        bones = {**st.bones, key: CutBone(res.mesh, (prev.version if prev else 0) + 1)}
        done: dict[str, float] = dict(st.cut_values)
        self._plane_values(slot, plane, "cut_", done, None)
        st = dataclasses.replace(st, cuts={**st.cuts, slot: plane}, bones=bones, saw_slot=None, cut_values=done)
        # the other open slots on that bone see the new surface
        sections, covered = dict(st.sections), dict(st.covered)
        for s, p in st.slots.items():
            if s not in st.cuts and SLOT_BONE[s] == key:
                sections[s] = cross_section(res.mesh, p, within=self._within(st, s, st.size))
                covered[s] = np.zeros(len(sections[s].points_mm), bool)
        return dataclasses.replace(st, sections=sections, covered=covered)

    # --- gaps, releases, trials -------------------------------------------------------------------
    def current_balance(self, st: TkaState) -> KneeBalance:
        mcl = sum(mm for side, mm in st.releases if side == "mcl")
        lcl = sum(mm for side, mm in st.releases if side == "lcl")
        return dataclasses.replace(self.balance, mcl=self.balance.mcl.lengthened(mcl),
                                   lcl=self.balance.lcl.lengthened(lcl), releases=[], notes=[])

    def _measure(self, st: TkaState) -> tuple[TkaState, set[str]]:
        bal = self.current_balance(st)
        out: set[str] = set()
        ext = flex = None
        if "distal" in st.cuts and "tibial" in st.cuts:
            ext = bal.extension_gaps(st.cuts["distal"], st.cuts["tibial"])
            if ext.rectangular:
                out.add("balanced_extension")
        if ext is not None and "posterior" in st.cuts:
            flex = bal.flexion_gaps(st.cuts["posterior"], st.cuts["tibial"])
            if flex.rectangular:
                out.add("balanced_flexion")
        return dataclasses.replace(st, extension=ext or st.extension, flexion=flex or st.flexion), out

    def _in_joint(self, st: TkaState, kind: str, inst: InstrumentState) -> tuple[TkaState, set[str]]:
        tip = self._p(inst.world_from_tool[:3, 3][None])[0]
        centre = 0.5 * (self.femur.knee_centre_mm + self.tibia.knee_centre_mm)
        if float(np.linalg.norm(tip - centre)) > JOINT_MM:
            return st, set()
        if kind == "spacer_block":
            if "distal" not in st.cuts or "tibial" not in st.cuts:
                return dataclasses.replace(st, notes=st.notes + ("spacer: cut the femur and the tibia first",)), set()
            st, out = self._measure(st)
            out.add("measured_flexion_gap" if "posterior" in st.cuts else "measured_extension_gap")
            return st, out
        if st.extension is None or st.flexion is None:
            return dataclasses.replace(st, notes=st.notes + ("trial: measure both gaps first",)), set()
        tight = min(st.extension.medial_mm, st.extension.lateral_mm, st.flexion.medial_mm, st.flexion.lateral_mm)
        c = self.components_mm
        fitting = [t for t in self.inserts_mm if t + c <= tight + 0.5] or [min(self.inserts_mm)]
        t = max(fitting)
        ext_lax = max(st.extension.medial_mm, st.extension.lateral_mm) - t - c
        flex_lax = max(st.flexion.medial_mm, st.flexion.lateral_mm) - t - c
        return dataclasses.replace(st, trial=(t, ext_lax, flex_lax)), {"trial_fitted"}

    def ligament_lines(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {"mcl": (self.balance.mcl.origin_mm, self.balance.mcl.insertion_mm),
                "lcl": (self.balance.lcl.origin_mm, self.balance.lcl.insertion_mm)}

    def _release(self, st: TkaState, inst: InstrumentState) -> tuple[TkaState, set[str]]:
        tip = self._p(inst.world_from_tool[:3, 3][None])[0]
        for side, (a, b) in self.ligament_lines().items():
            ab = b - a
            s = float(np.clip((tip - a) @ ab / float(ab @ ab), 0.0, 1.0))
            if float(np.linalg.norm(tip - (a + s * ab))) <= RELEASE_REACH_MM:
                st = dataclasses.replace(st, releases=st.releases + ((side, self.release_step_mm),))
                st, out = self._measure(st)
                return st, out | {f"released_{side}"}
        return st, set()

    # --- what the rules see ----------------------------------------------------------------------
    def observe(self, procedure_state: Any, obs: Observation, instruments: tuple[InstrumentState, ...],
                active: int) -> tuple[Observation, Any]:
        st: TkaState = procedure_state or TkaState()
        if st.flexed and self.flexing_risk is not None and instruments:
            obs = self._flexed_distances(obs, instruments[active])
        if instruments and instruments[active].spec.kind == "scalpel" and self.ligaments:
            # a release touches the ligament on purpose: not a contact with a structure at risk
            obs = dataclasses.replace(obs, structure_distance_mm={k: v for k, v in obs.structure_distance_mm.items()
                                                                  if k not in self.ligaments},
                                      tip_inside=obs.tip_inside - self.ligaments)
        values = dict(obs.values)
        angles = dict(obs.angles_deg)
        inst = instruments[active] if instruments else None
        live: dict[str, Plane] = {}
        if inst is not None and inst.spec.kind in BLOCKS:
            pinned = st.pinned.get(inst.spec.kind)
            live = self.block_planes(inst.spec.kind, pinned if pinned is not None else inst.world_from_tool, st)
        elif inst is not None and inst.spec.kind == "saw_blade" and st.saw_slot is not None \
                and st.saw_slot in st.slots:
            live = {st.saw_slot: st.slots[st.saw_slot]}
        for slot, plane in live.items():
            self._plane_values(slot, plane, "", values, angles)
        values.update(st.cut_values)
        if st.size is not None:
            values["femoral_box_ap_mm"] = st.size[1]
        for name, g in (("extension", st.extension), ("flexion", st.flexion)):
            if g is not None:
                values[f"{name}_gap_medial_mm"] = g.medial_mm
                values[f"{name}_gap_lateral_mm"] = g.lateral_mm
                values[f"{name}_gap_imbalance_mm"] = abs(g.imbalance_mm)
        if st.extension is not None and st.flexion is not None:
            values["flexion_extension_mismatch_mm"] = max(abs(st.flexion.medial_mm - st.extension.medial_mm),
                                                          abs(st.flexion.lateral_mm - st.extension.lateral_mm))
        if st.releases:
            values["released_mm"] = sum(mm for _, mm in st.releases)
        if st.trial is not None:
            values["trial_insert_mm"], values["trial_extension_laxity_mm"], values["trial_flexion_laxity_mm"] = st.trial
        if st.saw_slot is not None and st.saw_slot in st.covered and len(st.covered[st.saw_slot]):
            values["saw_swept_pct"] = 100.0 * float(st.covered[st.saw_slot].mean())
        return dataclasses.replace(obs, values=values, angles_deg=angles), st

    def _flexed_distances(self, obs: Observation, inst: InstrumentState) -> Observation:
        """The distances to the structures that moved with the flexed tibia (the simulation measured
        them where the bundle has them): the instrument taken into the extended tibia's frame."""
        assert self.flexing_risk is not None
        pts_w = shaft_points(inst.world_from_tool, min(80.0, inst.spec.shaft_length_mm), 2.0)
        back = np.linalg.inv(self.flexion_xf)
        pts = self._p(pts_w) @ back[:3, :3].T + back[:3, 3]
        r = inst.spec.shaft_diameter_mm / 2.0
        c = self.flexing_risk.clearance(pts, contact_mm=r)
        dist = dict(obs.structure_distance_mm)
        dist.update({n: d - r for n, d in c.distance_mm.items()})
        inside = (obs.tip_inside - set(c.distance_mm)) | c.inside
        return dataclasses.replace(obs, structure_distance_mm=dist, tip_inside=frozenset(inside))

    def _plane_values(self, slot: str, plane: Plane, prefix: str, values: dict[str, float],
                      angles: dict[str, float] | None) -> None:
        r = self.readout(slot, plane)
        if not r:
            return
        if slot == "distal":
            named = {"distal_varus": r["varus_deg"], "distal_flexion": r["flexion_deg"]}
            depths = {"distal_medial_resection_mm": r["medial_resection_mm"],
                      "distal_lateral_resection_mm": r["lateral_resection_mm"]}
        elif slot == "tibial":
            named = {"tibial_varus": r["varus_deg"], "tibial_slope": r["posterior_slope_deg"]}
            depths = {"tibial_medial_resection_mm": r["medial_resection_mm"],
                      "tibial_lateral_resection_mm": r["lateral_resection_mm"]}
        else:
            named = {"femoral_rotation": r["external_rotation_deg"]}
            depths = {"posterior_medial_resection_mm": r["medial_resection_mm"],
                      "posterior_lateral_resection_mm": r["lateral_resection_mm"]}
        for k, v in named.items():
            values[f"{prefix}{k}_deg"] = v
            if angles is not None:
                angles[k] = v
        for k, v in depths.items():
            values[f"{prefix}{k}"] = v

    def readout_lines(self, state: SimState, locale: str) -> list[str]:
        """The navigation screen's lines for this step (English or Chinese)."""
        obs = state.observation
        v = obs.values if obs is not None else {}
        zh = locale == "zh"
        out: list[str] = []

        def vv(deg: float) -> str:
            return (f"内翻 {deg:.1f}°" if deg >= 0 else f"外翻 {-deg:.1f}°") if zh else \
                (f"varus {deg:.1f}°" if deg >= 0 else f"valgus {-deg:.1f}°")
        for pre, head in (("", ""), ("cut_", "已截 " if zh else "cut ")):
            if f"{pre}distal_varus_deg" in v and not (pre and "distal_varus_deg" in v):
                out.append(f"{head}{'股骨远端' if zh else 'Distal femur'}: {vv(v[pre + 'distal_varus_deg'])}  "
                           f"{'屈曲' if zh else 'flexion'} {v[pre + 'distal_flexion_deg']:.1f}°  "
                           f"M {v[pre + 'distal_medial_resection_mm']:.1f} / "
                           f"L {v[pre + 'distal_lateral_resection_mm']:.1f} mm")
            if f"{pre}tibial_varus_deg" in v and not (pre and "tibial_varus_deg" in v):
                out.append(f"{head}{'胫骨' if zh else 'Tibia'}: {vv(v[pre + 'tibial_varus_deg'])}  "
                           f"{'后倾' if zh else 'slope'} {v[pre + 'tibial_slope_deg']:.1f}°  "
                           f"M {v[pre + 'tibial_medial_resection_mm']:.1f} / "
                           f"L {v[pre + 'tibial_lateral_resection_mm']:.1f} mm")
            if f"{pre}femoral_rotation_deg" in v and not (pre and "femoral_rotation_deg" in v):
                rot = v[pre + "femoral_rotation_deg"]
                out.append(f"{head}{'股骨旋转' if zh else 'Femoral rotation'} {abs(rot):.1f}° "
                           f"{('外旋' if rot >= 0 else '内旋') if zh else ('ext' if rot >= 0 else 'int')} (TEA)  "
                           f"M {v[pre + 'posterior_medial_resection_mm']:.1f} / L "
                           f"{v[pre + 'posterior_lateral_resection_mm']:.1f} mm")
        for name, zh_name in (("extension", "伸直间隙"), ("flexion", "屈曲间隙")):
            if f"{name}_gap_medial_mm" in v:
                out.append(f"{zh_name if zh else name.capitalize() + ' gap'}: M {v[name + '_gap_medial_mm']:.1f} / "
                           f"L {v[name + '_gap_lateral_mm']:.1f} mm")
        if "saw_swept_pct" in v:
            out.append(f"{'截骨进度' if zh else 'Saw pass'} {v['saw_swept_pct']:.0f}%")
        return out

    # --- what the scene shows ----------------------------------------------------------------------
    def cut_bones(self, procedure_state: Any) -> dict[str, CutBone]:
        """Bundle structure name -> its cut mesh (only the bones cut so far)."""
        st: TkaState = procedure_state or TkaState()
        return {self.structure_names[k]: b for k, b in st.bones.items()}


def _pose(tip: np.ndarray, z: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """A tool pose at ``tip`` with +z along ``z`` and +y along the slot ``normal`` (x in the slot)."""
    zz = np.asarray(z, float) / float(np.linalg.norm(z))
    y = np.asarray(normal, float) - float(np.asarray(normal) @ zz) * zz
    y /= float(np.linalg.norm(y))
    m = np.eye(4)
    x = (y[1] * zz[2] - y[2] * zz[1], y[2] * zz[0] - y[0] * zz[2], y[0] * zz[1] - y[1] * zz[0])  # y x z
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, y, zz, tip
    return m
