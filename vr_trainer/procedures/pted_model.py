"""PTED's rules inside the fixed step (a :class:`~vr_trainer.sim.procedure.ProcedureModel`).

The instruments are staged as in the operation (Kambin & Sampson 1986; the TESSYS/YESS workflow):

* **18G needle** (``spinal_needle``): follows the hand through soft tissue; bone stops it. When
  its tip would enter bone (a vertebra, the sacrum, the ilium: any structure of tissue ``bone``)
  the tip stays on the bone's surface where the segment from where it was to where the hand put it
  first enters bone (sampled every 0.5 mm, so a fast step cannot tunnel through a lamina; then
  that interval 32 times finer, one query), the hand feels a pulse and the step has the action
  ``bone_contact`` (once per touch). Every other instrument is stopped by bone the same way,
  except the cutting ones (trephine, drill, saw).
* **Exchange over the guidewire**: when the needle is exchanged for the next instrument (the
  primary button), its line becomes the working channel's trajectory ``L`` (the needle's tip and
  direction at that moment) and the needle is withdrawn. The guidewire, the dilators, the working
  cannula and the endoscope then slide along ``L`` only: the tip is the hand's tip projected on
  ``L`` (so the trajectory is kept), the roll about ``L`` follows the hand (the cannula's bevel).
  The guidewire reaches at most ``GUIDEWIRE_BEYOND_MM`` past the needle's tip; the endoscope at
  most ``SCOPE_BEYOND_MM`` past the cannula's tip. Dilators are withdrawn when the cannula comes
  in, the guidewire when the endoscope does; the cannula stays where it was docked.
* **Grasping forceps** through the endoscope's working channel: its tip is the scope's tip plus
  the hand's offset, at most ``FORCEPS_MAX_ANGLE_DEG`` off ``L`` and ``FORCEPS_MAX_EXTENSION_MM``
  long. A trigger press (rising past 0.5) grasps: the nearest remaining fragment piece whose
  surface is within ``GRASP_REACH_MM`` of the forceps tip comes out (action ``fragment_removed``;
  a grasp that takes nothing is ``grasp_missed``). ``Observation.removed_pct`` of the fragment
  structure is the removed pieces' share of its volume.
* **Measured for the metrics** (``Observation.values``): needle passes (each entry through the
  skin), redirections (a withdrawal of at least ``REDIRECT_BACK_MM`` then a re-advance of at least
  ``REDIRECT_FORWARD_MM`` without leaving the skin; Feng et al. 2024 count punctures), bone
  contacts, the skin entry's distance from the midline (mm), where the needle crossed the plane of
  Kambin's triangle (inside or not, distance from its incentre, the needle's angles there), the
  fragment removed (%); a shot taken while a dilator or the cannula is in hand is also
  ``sheath_shot`` (Feng et al.: shots for positioning the working sheath).

World frame (y up) for instrument poses, patient frame (RAS) for anatomy; millimetres, seconds.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from vr_trainer.procedures.pted_fragment import FragmentPiece, removed_pct
from vr_trainer.sim.procedure import MoveResult
from vr_trainer.sim.proximity import ProximityField
from vr_trainer.sim.simulation import NEXT_INSTRUMENT, HapticRequest

if TYPE_CHECKING:
    from vr_trainer.frame import HandInput
    from vr_trainer.sim.instruments import InstrumentState
    from vr_trainer.sim.observation import Observation
    from vr_trainer.sim.simulation import SimState

SLIDING = ("guidewire", "dilator", "working_cannula", "endoscope")
CUTTING = ("trephine", "drill", "saw_blade")
FORCEPS = "grasping_forceps"
NEEDLE = "spinal_needle"
SHEATH = ("dilator", "working_cannula")
GUIDEWIRE_BEYOND_MM = 30.0
SCOPE_BEYOND_MM = 5.0
FORCEPS_MAX_ANGLE_DEG = 25.0
FORCEPS_MAX_EXTENSION_MM = 30.0
GRASP_REACH_MM = 3.0
REDIRECT_BACK_MM = 5.0
REDIRECT_FORWARD_MM = 2.0
BONE_PULSE = (0.6, 0.06)  # amplitude 0..1, seconds
REFINE_SAMPLES = 33  # the first sample interval that enters bone, sampled in one query (1/32 of it)
STOP_SAMPLE_MM = 0.5  # the step's motion is sampled this finely for bone
NAN = float("nan")


def approach_angles_deg(approach: np.ndarray) -> tuple[float, float]:
    """The axial angle (from the coronal plane) and cranio-caudal tilt (+ towards the head) of a
    needle advancing against ``approach`` (a unit vector out towards the skin), as the simulation
    measures the instrument's (``angles_deg``)."""
    adv = -np.asarray(approach, float)
    return (float(np.degrees(np.arctan2(abs(adv[1]), abs(adv[0]) + 1e-12))),
            float(np.degrees(np.arcsin(np.clip(adv[2], -1.0, 1.0)))))


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, float)
    n = math.sqrt(float(v @ v))  # what np.linalg.norm computes for a vector, without its per-call overhead
    return v / n if n > 1e-12 else v


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a x b of two 3-vectors (np.cross's arithmetic, without its per-call overhead: it runs every frame)."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]], float)


@dataclass(frozen=True)
class KambinTriangle:
    vertices_mm: np.ndarray  # (3, 3) patient
    incenter_mm: np.ndarray
    approach_direction: np.ndarray  # unit, from the incentre out towards the skin

    @cached_property
    def normal(self) -> np.ndarray:
        v = self.vertices_mm
        n = _unit(_cross(v[1] - v[0], v[2] - v[0]))
        return n if float(n @ self.approach_direction) >= 0 else -n  # pointing to the approach side

    def side_mm(self, p: np.ndarray) -> float:
        return float((np.asarray(p) - self.vertices_mm[0]) @ self.normal)

    def contains(self, q: np.ndarray) -> bool:
        a, b, c = self.vertices_mm
        v0, v1, v2 = b - a, c - a, np.asarray(q) - a
        d00, d01, d11, d20, d21 = v0 @ v0, v0 @ v1, v1 @ v1, v2 @ v0, v2 @ v1
        den = d00 * d11 - d01 * d01
        if abs(den) < 1e-12:
            return False
        v = (d11 * d20 - d01 * d21) / den
        w = (d00 * d21 - d01 * d20) / den
        return bool(v >= 0 and w >= 0 and v + w <= 1)


@dataclass(frozen=True)
class PtedState:
    """The procedure's own state (immutable; in ``SimState.procedure_state``)."""

    line_origin_w: np.ndarray | None = None  # the trajectory L (world): the needle's tip at the exchange
    line_dir_w: np.ndarray | None = None  # unit, the direction of advance
    cannula_s_mm: float | None = None  # where the cannula's tip sits along L (mm from the origin, + deeper)
    scope_s_mm: float | None = None
    bone_touch: bool = False
    bone_contacts: int = 0
    inserted: bool = False  # the needle's tip is under the skin
    passes: int = 0
    entry_p: np.ndarray | None = None  # patient: where the current pass went through the skin
    entry_axis_p: np.ndarray | None = None
    max_depth_mm: float = 0.0
    min_depth_mm: float = 0.0
    withdrawn: bool = False
    redirections: int = 0
    last_needle_tip_p: np.ndarray | None = None
    kambin_error_mm: float = NAN
    kambin_inside: float = NAN  # 1 inside, 0 outside, NaN not crossed
    kambin_axial_deg: float = NAN
    kambin_craniocaudal_deg: float = NAN
    entry_lateral_mm: float = NAN
    axial_error_deg: float = NAN  # against the Kambin landmark's approach direction
    craniocaudal_error_deg: float = NAN
    removed: frozenset[int] = frozenset()
    trigger_down: bool = False
    grasps: int = 0
    bone_probe_p: np.ndarray | None = None  # patient: a point whose distance to bone is at least bone_probe_mm
    bone_probe_mm: float = 0.0
    skin_probe_p: np.ndarray | None = None  # patient: a point and its signed distance to the skin
    skin_probe_mm: float = 0.0
    first_entry_p: np.ndarray | None = None
    body_path_mm: float = 0.0  # the needle tip's path under the skin, every pass
    economy_pct: float = NAN


@dataclass
class PtedModel:
    """PTED's rules (see the module docstring). Built by :func:`~vr_trainer.procedures.pted.pted_model`."""

    patient_from_world: np.ndarray
    bone: ProximityField | None
    skin: ProximityField | None = None
    kambin: KambinTriangle | None = None
    midline_x_mm: float = 0.0
    fragment_structure: str | None = None
    pieces: list[FragmentPiece] = field(default_factory=list)
    piece_field: ProximityField | None = None

    # ---- the protocol ----------------------------------------------------------------------
    def initial_state(self) -> PtedState:
        return PtedState()

    def move(self, prev: SimState, instruments: tuple[InstrumentState, ...], active: int, hand: HandInput,
             dt_s: float, actions: frozenset[str]) -> MoveResult:
        ps: PtedState = prev.procedure_state if isinstance(prev.procedure_state, PtedState) else PtedState()
        insts = list(instruments)
        cur = insts[active]
        kind = cur.spec.kind
        if NEXT_INSTRUMENT in actions:
            ps, insts = self._exchange(ps, insts, prev.active_instrument, active)
            cur = insts[active]
        pose = np.array(cur.world_from_tool, float)
        if ps.line_dir_w is not None and ps.line_origin_w is not None:
            if kind in SLIDING:
                pose = self._slide(ps, kind, pose)
            elif kind == FORCEPS:
                pose = self._forceps(ps, pose)
        out_actions: set[str] = set()
        haptics: list[HapticRequest] = []
        was = prev.instruments[active] if active < len(prev.instruments) else None
        touching = False
        if kind not in CUTTING and self.bone is not None and was is not None and was.held \
                and prev.active_instrument == active and NEXT_INSTRUMENT not in actions:
            pose, touching, ps = self._bone_stop(ps, np.array(was.world_from_tool, float), pose)
        if touching and not ps.bone_touch:
            out_actions.add("bone_contact")
            haptics.append(HapticRequest(-1, *BONE_PULSE))
        change: dict[str, Any] = {}
        if touching != ps.bone_touch:
            change.update(bone_touch=touching, bone_contacts=ps.bone_contacts + int(touching))
        s_mm = self._s(ps, pose[:3, 3]) if kind in ("working_cannula", "endoscope") else None
        if s_mm is not None:
            change["cannula_s_mm" if kind == "working_cannula" else "scope_s_mm"] = s_mm
        if change:
            ps = dataclasses.replace(ps, **change)
        insts[active] = dataclasses.replace(cur, world_from_tool=pose, held=True, visible=True)
        return MoveResult(tuple(insts), ps, frozenset(out_actions), tuple(haptics))

    def observe(self, procedure_state: Any, obs: Observation, instruments: tuple[InstrumentState, ...],
                active: int) -> tuple[Observation, PtedState]:
        ps: PtedState = procedure_state if isinstance(procedure_state, PtedState) else PtedState()
        inst = instruments[active]
        kind = inst.spec.kind
        pfw = self.patient_from_world
        tip_p = pfw[:3, :3] @ inst.tip_mm + pfw[:3, 3]
        axis_p = _unit(pfw[:3, :3] @ inst.axis)
        actions = set(obs.actions)
        w = dict(ps.__dict__)  # this step's changes, made into one new state at the end
        if kind == NEEDLE:
            self._track_needle(w, tip_p, axis_p, obs)
        if obs.shot_view is not None and kind in SHEATH:
            actions.add("sheath_shot")
        trig = obs.trigger > 0.5
        if kind == FORCEPS and trig and not ps.trigger_down:
            took = self._grasp(ps, tip_p)
            w["grasps"] = ps.grasps + 1
            if took is None:
                actions.add("grasp_missed")
            else:
                actions.add("fragment_removed")
                w["removed"] = ps.removed | {took}
        w["trigger_down"] = trig
        ps = PtedState(**w)
        removed = dict(obs.removed_pct)
        if self.fragment_structure is not None and self.pieces:
            removed[self.fragment_structure] = removed_pct(self.pieces, ps.removed)
        values = dict(obs.values)
        values.update({
            "needle_passes": float(ps.passes), "needle_redirections": float(ps.redirections),
            "bone_contacts": float(ps.bone_contacts), "skin_entry_lateral_mm": ps.entry_lateral_mm,
            "kambin_entry_error_mm": ps.kambin_error_mm, "kambin_entry_inside": ps.kambin_inside,
            "kambin_axial_deg": ps.kambin_axial_deg, "kambin_craniocaudal_deg": ps.kambin_craniocaudal_deg,
            "axial_error_deg": ps.axial_error_deg, "craniocaudal_error_deg": ps.craniocaudal_error_deg,
            "grasps": float(ps.grasps), "needle_economy_pct": ps.economy_pct,
            "fragment_removed_pct": removed.get(self.fragment_structure or "", NAN) if self.pieces else NAN,
        })
        obs = dataclasses.replace(obs, actions=frozenset(actions), removed_pct=removed, values=values)
        return obs, ps

    # ---- what the scene shows --------------------------------------------------------------
    def endoscope_pose(self, state: SimState) -> np.ndarray | None:
        """The endoscope's ``world_from_tool`` while it is in the working cannula (its view is
        shown), else None."""
        ps = state.procedure_state
        if not isinstance(ps, PtedState) or ps.line_dir_w is None or ps.scope_s_mm is None:
            return None
        if not state.instruments:
            return None
        kind = state.instruments[state.active_instrument].spec.kind
        if kind not in ("endoscope", FORCEPS):
            return None
        for inst in state.instruments:
            if inst.spec.kind == "endoscope" and inst.visible:
                return np.array(inst.world_from_tool, float)
        return None

    def removed_pieces(self, state: SimState) -> frozenset[int]:
        ps = state.procedure_state
        return ps.removed if isinstance(ps, PtedState) else frozenset()

    # ---- pieces ------------------------------------------------------------------------------
    def _exchange(self, ps: PtedState, insts: list[InstrumentState], was: int,
                  now: int) -> tuple[PtedState, list[InstrumentState]]:
        old, new = insts[was].spec.kind, insts[now].spec.kind
        if old == NEEDLE and new != NEEDLE:  # the needle's line becomes the working channel
            needle = insts[was]
            ps = dataclasses.replace(ps, line_origin_w=needle.tip_mm, line_dir_w=_unit(needle.axis),
                                     cannula_s_mm=None, scope_s_mm=None)
            insts[was] = dataclasses.replace(needle, visible=False, held=False)
        elif new == NEEDLE:  # a new puncture: the channel is given up
            ps = dataclasses.replace(ps, line_origin_w=None, line_dir_w=None, cannula_s_mm=None, scope_s_mm=None)
            for k, inst in enumerate(insts):
                if k != now and inst.spec.kind in SLIDING + (FORCEPS,):
                    insts[k] = dataclasses.replace(inst, visible=False, held=False)
        withdraw = {"working_cannula": ("dilator",), "endoscope": ("dilator", "guidewire")}.get(new, ())
        for k, inst in enumerate(insts):
            if k != now and inst.spec.kind in withdraw:
                insts[k] = dataclasses.replace(inst, visible=False, held=False)
        return ps, insts

    def _s(self, ps: PtedState, tip_w: np.ndarray) -> float | None:
        if ps.line_origin_w is None or ps.line_dir_w is None:
            return None
        return float((np.asarray(tip_w) - ps.line_origin_w) @ ps.line_dir_w)

    def _on_line(self, ps: PtedState, s_mm: float, hand_pose: np.ndarray) -> np.ndarray:
        assert ps.line_origin_w is not None and ps.line_dir_w is not None
        d = ps.line_dir_w
        z = -d  # the tool's +z points to the handle
        x = hand_pose[:3, 0] - (hand_pose[:3, 0] @ z) * z  # the hand's roll about L
        if float(np.linalg.norm(x)) < 1e-6:
            x = _cross(np.array([0.0, 1.0, 0.0]), z) if abs(z[1]) < 0.99 else _cross(np.array([1.0, 0.0, 0.0]), z)
        x = _unit(x)
        m = np.eye(4)
        m[:3, 0], m[:3, 1], m[:3, 2] = x, _cross(z, x), z
        m[:3, 3] = ps.line_origin_w + s_mm * d
        return m

    def _slide(self, ps: PtedState, kind: str, hand_pose: np.ndarray) -> np.ndarray:
        s = self._s(ps, hand_pose[:3, 3])
        assert s is not None
        hi = GUIDEWIRE_BEYOND_MM
        if kind == "endoscope" and ps.cannula_s_mm is not None:
            hi = ps.cannula_s_mm + SCOPE_BEYOND_MM
        return self._on_line(ps, min(s, hi), hand_pose)

    def _forceps(self, ps: PtedState, hand_pose: np.ndarray) -> np.ndarray:
        assert ps.line_dir_w is not None and ps.line_origin_w is not None
        base_s = ps.scope_s_mm if ps.scope_s_mm is not None else ps.cannula_s_mm
        if base_s is None:
            return hand_pose
        d = ps.line_dir_w
        base = ps.line_origin_w + base_s * d
        v = hand_pose[:3, 3] - base
        along = float(v @ d)
        if along <= 1e-6:
            return self._on_line(ps, base_s, hand_pose)  # retracted into the scope
        perp = v - along * d
        max_perp = along * math.tan(math.radians(FORCEPS_MAX_ANGLE_DEG))
        pn = float(np.linalg.norm(perp))
        if pn > max_perp:
            perp *= max_perp / pn
        v = along * d + perp
        n = float(np.linalg.norm(v))
        if n > FORCEPS_MAX_EXTENSION_MM:
            v *= FORCEPS_MAX_EXTENSION_MM / n
        m = self._on_line(ps, base_s, hand_pose)
        z = -_unit(v)
        x = _unit(m[:3, 0] - (m[:3, 0] @ z) * z)
        m[:3, 0], m[:3, 1], m[:3, 2] = x, _cross(z, x), z
        m[:3, 3] = base + v
        return m

    def _bone_stop(self, ps: PtedState, was: np.ndarray, pose: np.ndarray) -> tuple[np.ndarray, bool, PtedState]:
        """``pose`` with its tip held on the bone's surface where the motion from ``was`` first
        enters bone: the whole segment is sampled every ``STOP_SAMPLE_MM`` (so a fast step cannot
        tunnel through a thin lamina or facet), then the first interval that enters bone is sampled
        32 times finer (one query, not a bisection's ten). A motion that stays inside the ball around
        the last probe point whose radius is that point's distance to bone (``bone_probe``) cannot
        reach bone and is not queried again."""
        assert self.bone is not None
        a, b = was[:3, 3], pose[:3, 3]
        pfw = self.patient_from_world
        a_p, b_p = pfw[:3, :3] @ a + pfw[:3, 3], pfw[:3, :3] @ b + pfw[:3, 3]
        if ps.bone_probe_p is not None and max(float(np.linalg.norm(a_p - ps.bone_probe_p)),
                                               float(np.linalg.norm(b_p - ps.bone_probe_p))) < ps.bone_probe_mm:
            return pose, False, ps  # both ends (and the segment: a ball is convex) are clear of bone
        n = max(2, int(math.ceil(float(np.linalg.norm(b - a)) / STOP_SAMPLE_MM)) + 1)
        ts = np.linspace(0.0, 1.0, n)
        pp = a_p + ts[:, None] * (b_p - a_p)
        d = np.min(np.stack(list(self.bone.signed_distances(pp, memo=False).values())), axis=0)
        if d[0] < 0.0:  # already inside (it started there): let it out, do not trap it
            return pose, True, dataclasses.replace(ps, bone_probe_p=None)
        hit = np.flatnonzero(d < 0.0)
        if not len(hit):
            return pose, False, dataclasses.replace(ps, bone_probe_p=b_p, bone_probe_mm=float(d[-1]))
        lo, hi = float(ts[hit[0] - 1]), float(ts[hit[0]])  # hit[0] >= 1: the start is outside
        fine = np.linspace(lo, hi, REFINE_SAMPLES)  # that interval in one query (not a bisection's many)
        df = np.min(np.stack(list(self.bone.signed_distances(a_p + fine[:, None] * (b_p - a_p),
                                                             memo=False).values())), axis=0)
        entered = np.flatnonzero(df < 0.0)
        t = float(fine[entered[0] - 1]) if len(entered) and entered[0] > 0 else lo
        out = pose.copy()
        out[:3, 3] = a + t * (b - a)
        return out, True, dataclasses.replace(ps, bone_probe_p=None)

    def _track_needle(self, w: dict[str, Any], tip_p: np.ndarray, axis_p: np.ndarray, obs: Observation) -> None:
        """Passes, redirections, the skin entry and the Kambin crossing; ``w`` is the state's fields
        (updated in place; made into a new :class:`PtedState` once per step)."""
        inside = False
        if self.skin is not None:
            probe = w["skin_probe_p"]
            if probe is not None and float(np.linalg.norm(tip_p - probe)) < abs(w["skin_probe_mm"]):
                inside = w["skin_probe_mm"] < 0.0  # still in the ball around the last probe: the same side
            else:
                d = self.skin.signed_distances(tip_p.reshape(1, 3))
                sd = min((float(v[0]) for v in d.values()), default=math.inf)
                inside = sd < 0.0
                w["skin_probe_p"], w["skin_probe_mm"] = tip_p.copy(), sd if math.isfinite(sd) else 0.0
        if inside and not w["inserted"]:  # a new pass through the skin
            w.update(inserted=True, passes=w["passes"] + 1, entry_p=tip_p.copy(), entry_axis_p=axis_p.copy(),
                     max_depth_mm=0.0, min_depth_mm=0.0, withdrawn=False,
                     entry_lateral_mm=abs(float(tip_p[0]) - self.midline_x_mm))
        elif not inside and w["inserted"]:
            w["inserted"] = False
        last = w["last_needle_tip_p"]
        if w["inserted"]:
            if w["first_entry_p"] is None:
                w["first_entry_p"] = tip_p.copy()
            if last is not None:
                path = w["body_path_mm"] + float(np.linalg.norm(tip_p - last))
                net = float(np.linalg.norm(tip_p - w["first_entry_p"]))
                w["body_path_mm"], w["economy_pct"] = path, (100.0 * net / path if path > 1.0 else NAN)
            if w["entry_p"] is not None and w["entry_axis_p"] is not None:
                depth = float((tip_p - w["entry_p"]) @ w["entry_axis_p"])
                if not w["withdrawn"]:
                    w["max_depth_mm"] = max(w["max_depth_mm"], depth)
                    if depth < w["max_depth_mm"] - REDIRECT_BACK_MM:
                        w["withdrawn"], w["min_depth_mm"] = True, depth
                else:
                    w["min_depth_mm"] = min(w["min_depth_mm"], depth)
                    if depth > w["min_depth_mm"] + REDIRECT_FORWARD_MM:
                        w.update(withdrawn=False, max_depth_mm=depth, redirections=w["redirections"] + 1)
        k = self.kambin
        if k is not None and last is not None:
            s0, s1 = k.side_mm(last), k.side_mm(tip_p)
            if s0 > 0.0 >= s1:  # crossed the triangle's plane from the approach side
                q = last + (tip_p - last) * (s0 / (s0 - s1))
                ax, cc = float(obs.angles_deg.get("axial", NAN)), float(obs.angles_deg.get("craniocaudal", NAN))
                t_ax, t_cc = approach_angles_deg(k.approach_direction)
                w.update(kambin_error_mm=float(np.linalg.norm(q - k.incenter_mm)),
                         kambin_inside=1.0 if k.contains(q) else 0.0, kambin_axial_deg=ax, kambin_craniocaudal_deg=cc,
                         axial_error_deg=abs(ax - t_ax), craniocaudal_error_deg=abs(cc - t_cc))
        w["last_needle_tip_p"] = tip_p.copy()

    def _grasp(self, ps: PtedState, tip_p: np.ndarray) -> int | None:
        if self.piece_field is None:
            return None
        d = self.piece_field.signed_distances(tip_p.reshape(1, 3))
        best: tuple[float, int] | None = None
        for name, v in d.items():
            k = int(name.rsplit("#", 1)[1])
            if k in ps.removed:
                continue
            if float(v[0]) <= GRASP_REACH_MM and (best is None or float(v[0]) < best[0]):
                best = (float(v[0]), k)
        return None if best is None else best[1]
