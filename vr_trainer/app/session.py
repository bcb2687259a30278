"""Build a running session from a scenario: anatomy, instruments, simulation, the scenario
engine (:class:`~vr_trainer.app.training.ScenarioRules`) and the text panels."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from vr_trainer.app.clock import Clock
from vr_trainer.app.lod import make_lods
from vr_trainer.app.loop import FrameLoop
from vr_trainer.app.training import ScenarioRules
from vr_trainer.frame import Frame
from vr_trainer.render.mirror import MirrorCompositor
from vr_trainer.render.renderer import SceneRenderer
from vr_trainer.scenario.conditions import ScenarioNames
from vr_trainer.scenario.engine import ScenarioEngine
from vr_trainer.scenario.loader import resolve_bundle_path
from vr_trainer.scenario.schema import Scenario
from vr_trainer.sim.annotations import AnnotationSet
from vr_trainer.sim.instruments import CATALOGUE, InstrumentState, instrument_mesh, instrument_mesh_id
from vr_trainer.sim.proximity import ProximityField
from vr_trainer.sim.carm import view_angle_deg
from vr_trainer.sim.room import Room, anatomy_bbox_world, build_room
from vr_trainer.sim.scene import DrawItem, EndoscopeCamera, ImagePanelItem, MeshUpload, PanelItem, SceneSnapshot
from vr_trainer.sim.simulation import SimState, Simulation, Target
from vr_trainer.sim.transforms import pose_from_axis, rigid_inverse, translation
from vr_trainer.xr.base import DisplayBackend
from vr_trainer.xr.posetrack import PoseTrack

# world_from_patient rotations (columns: where the patient's R, A, S axes point in the world; y up)
ORIENTATIONS = {
    "prone": np.array([[0, 0, 1], [0, -1, 0], [1, 0, 0]], float),
    "supine": np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]], float),
    "lateral_left": np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], float),
    "lateral_right": np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float),
}


class MeshData(NamedTuple):
    """A mesh to upload: vertices (mm), faces, tissue class; open surfaces are double sided."""

    vertices_mm: np.ndarray
    faces: np.ndarray
    tissue: str
    double_sided: bool = False
    lods: list[tuple[np.ndarray, np.ndarray]] | None = None


@dataclass
class AnatomyPart:
    mesh_id: str
    name: str
    tissue: str
    centroid_ras_mm: np.ndarray
    piece: int | None = None  # a piece of a structure the procedure removes piece by piece (the fragment)


@dataclass
class SessionScene:
    """Everything static about a session plus the function that freezes a snapshot."""

    scenario: Scenario
    world_from_patient: np.ndarray
    parts: list[AnatomyPart]
    simulation: Simulation
    initial_state: SimState
    track: PoseTrack
    bundle_dir: Path
    rules: ScenarioRules | None = None  # the scenario engine; the frame loop runs it after each step
    bundle: Any = None  # the loaded anatomy bundle (anatomy.bundle.Bundle)
    room: Room | None = None  # table, C-arm, monitors (drawn; not simulated)
    procedure: Any = None  # the procedure model (PTED): what it removed, where the endoscope looks
    fluoro: Any = None  # the C-arm shot service (app.fluoro.FluoroService) when shots become pictures

    def upload(self, renderer: SceneRenderer, meshes: dict[str, MeshData]) -> None:
        for mesh_id, m in meshes.items():
            renderer.add_mesh(mesh_id, m.vertices_mm, m.faces, m.tissue, double_sided=m.double_sided, lods=m.lods)

    def frame_loop(self, backend: DisplayBackend, renderer: SceneRenderer, mirror: MirrorCompositor | None,
                   clock: Clock) -> FrameLoop:
        """The frame loop of this session: its simulation, snapshots and (when scored) the scenario engine."""
        loop = FrameLoop(backend, renderer, self.simulation, self.initial_state, self.snapshot, mirror, clock)
        if self.rules is not None:
            loop.rules.append(self.rules)  # the scenario engine, after every fixed step
        return loop

    def snapshot(self, state: SimState, frame: Frame) -> SceneSnapshot:
        items = list(self.anatomy_items)
        tints = self.rules.tints(state.time_s) if self.rules is not None else {}
        if tints:
            items = [dataclasses.replace(it, tint_rgba=tints[name]) if name in tints else it
                     for it, name in zip(items, (p.name for p in self.parts))]
        proc = self.procedure
        # what a procedure model can show is optional: PTED removes pieces and has a scope, a knee is cut
        removed = proc.removed_pieces(state) if hasattr(proc, "removed_pieces") else frozenset()
        if removed:  # pieces the forceps took out are gone
            items = [it for it, p in zip(items, self.parts) if p.piece is None or p.piece not in removed]
        poses = proc.part_poses(state.procedure_state) if hasattr(proc, "part_poses") else {}
        if poses:  # the flexed knee: the tibia and what moves with it
            name_of = {p.mesh_id: p.name for p in self.parts}
            items = [dataclasses.replace(it, world_from_model=self.world_from_patient @ poses[name_of[it.mesh_id]])
                     if name_of.get(it.mesh_id) in poses else it for it in items]
        uploads: list[MeshUpload] = []
        cut = proc.cut_bones(state.procedure_state) if hasattr(proc, "cut_bones") else {}
        if cut:  # bones as the saw left them
            ids = {p.name: p for p in self.parts}
            for name, bone in cut.items():
                part = ids.get(name)
                if part is None:
                    continue
                mesh_id = f"{part.mesh_id}@cut{bone.version}"
                uploads.append(MeshUpload(mesh_id, np.asarray(bone.mesh.vertices), np.asarray(bone.mesh.faces),
                                          part.tissue))
                items = [dataclasses.replace(it, mesh_id=mesh_id) if it.mesh_id == part.mesh_id else it
                         for it in items]
        for k, inst in enumerate(state.instruments):
            if inst.visible and (inst.held or k == state.active_instrument):
                items.append(DrawItem(instrument_mesh_id(inst.spec), inst.world_from_tool))
        images: list[ImagePanelItem] = []
        if self.room is not None:
            items += self.room.draw_items(view_angle_deg(state.carm_view))
            images.append(self.room.endoscope_monitor_panel())
            latest = self.fluoro.latest() if self.fluoro is not None else None
            if latest is not None:
                images.append(self.room.image_panel("carm_monitor", latest[0], latest[1]))
        scope = proc.endoscope_pose(state) if hasattr(proc, "endoscope_pose") else None
        return SceneSnapshot(state.time_s, frame.index, tuple(items), tuple(self.panels(state)), state.annotations,
                             tuple(images), EndoscopeCamera(scope) if scope is not None else None, tuple(uploads))

    @cached_property
    def panel_poses(self) -> tuple[np.ndarray, np.ndarray]:
        """Where the prompt and readout panels stand: across the table from where the
        resident starts, facing them, side by side (prompt on the left) so that the prompt
        panel can grow with messages without covering the readouts (fixed for the session)."""
        pos = self.world_from_patient[:3, 3]
        to_head = self.track.head_pose(0.0)[:3, 3] - pos
        to_head[1] = 0.0
        n = np.linalg.norm(to_head)
        d = to_head / n if n > 1e-6 else np.array([0.0, 0.0, 1.0])
        up = np.array([0.0, 1.0, 0.0])
        centre = pose_from_axis(pos - 190.0 * d + 140.0 * up, d + 0.6 * up)
        right = centre[:3, 0]  # the resident's right, as they face the panels
        prompt, read = centre.copy(), centre.copy()
        prompt[:3, 3] -= 105.0 * right
        read[:3, 3] += 105.0 * right
        return prompt, read

    @cached_property
    def anatomy_items(self) -> tuple[DrawItem, ...]:
        return tuple(DrawItem(p.mesh_id, self.world_from_patient) for p in self.parts)

    def panels(self, state: SimState) -> list[PanelItem]:
        s = self.scenario
        loc = s.locale
        zh = loc == "zh"
        lines = [s.title.text(loc)]
        if self.rules is not None:
            lines += self.rules.prompt_lines(state.time_s, loc)
        if state.instruments:
            inst = state.instruments[state.active_instrument]
            lines.append(self.instrument_labels.get(inst.instrument_id, inst.spec.label))
        if state.mentor_notes:
            author, text = state.mentor_notes[-1]
            lines.append(f"{author or ('导师' if zh else 'Mentor')}: {text[:160]}")
        read = []
        if state.tip_to_target_mm is not None:
            what = self.target_labels.get(state.focus_target or "", "靶点" if zh else "target")
            read.append(("距" + what if zh else "Tip to " + what) + f" {state.tip_to_target_mm:6.1f} mm")
        if state.axial_angle_deg is not None:
            read.append(("轴位角" if zh else "Axial angle") + f" {state.axial_angle_deg:5.1f}°   "
                        + ("头尾倾角" if zh else "Cranio-caudal") + f" {state.craniocaudal_deg:+5.1f}°")
        proc_lines = getattr(self.procedure, "readout_lines", None)
        if proc_lines is not None:
            read += proc_lines(state, loc)
        near = self.nearest_risk(state)
        if near is not None:
            label, d = near
            read.append(("最近风险结构 " if zh else "Nearest risk: ") + f"{label} {d:5.1f} mm"
                        + (("（接触）" if zh else " (contact)") if d <= 0 else ""))
        panel_pose, read_pose = self.panel_poses
        return [PanelItem("prompt", tuple(lines), panel_pose, 200.0),
                PanelItem("readouts", tuple(read), read_pose, 200.0)]

    def nearest_risk(self, state: SimState) -> tuple[str, float] | None:
        """The risk structure closest to the instrument in this step: (label, signed mm)."""
        obs = state.observation
        if obs is None:
            return None
        best: tuple[str, float] | None = None
        for r in self.scenario.risk_structures:
            d = obs.structure_distance_mm.get(r.structure)
            if d is not None and (best is None or d < best[1]):
                best = (r.label.text(self.scenario.locale) if r.label else r.id.replace("_", " "), d)
        return best

    @cached_property
    def instrument_labels(self) -> dict[str, str]:
        return {i.id: i.label.text(self.scenario.locale) for i in self.scenario.instruments if i.label}

    @cached_property
    def target_labels(self) -> dict[str, str]:
        return {t.id: (t.label.text(self.scenario.locale) if t.label else t.id.replace("_", " "))
                for t in self.scenario.targets}


def build_session(scenario: Scenario) -> tuple[SessionScene, dict[str, MeshData]]:
    """Load the scenario's bundle and instruments; returns the scene and the meshes to upload."""
    from vr_trainer.anatomy.bundle import load_bundle

    bundle_dir = resolve_bundle_path(scenario)
    bundle = load_bundle(bundle_dir)
    hidden = set(scenario.anatomy.hide)
    meshes: dict[str, MeshData] = {}
    parts: list[AnatomyPart] = []
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    for st in bundle.structures:
        if st.name in hidden:
            continue
        v = np.asarray(st.mesh.vertices, float)
        lo, hi = np.minimum(lo, v.min(0)), np.maximum(hi, v.max(0))
    centre = (lo + hi) / 2.0 if np.all(np.isfinite(lo)) else np.zeros(3)
    rot = np.eye(4)
    rot[:3, :3] = ORIENTATIONS[scenario.anatomy.patient_orientation]
    world_from_patient = translation(np.asarray(scenario.anatomy.position_mm, float)) @ rot @ translation(-centre)
    procedure: Any = None
    if scenario.procedure == "pted":
        from vr_trainer.procedures.pted import pted_model

        procedure = pted_model(scenario, bundle, world_from_patient)
    elif scenario.procedure == "tka" and any(i.kind.endswith("_block") for i in scenario.instruments):
        from vr_trainer.procedures.tka import tka_model  # the knee workflow (a scenario of reach steps has none)

        procedure = tka_model(scenario, bundle, world_from_patient)
    elif scenario.procedure == "tha" and any(i.kind.startswith(("acetabular_", "cup_")) for i in scenario.instruments):
        from vr_trainer.procedures.tha import tha_model  # the hip workflow (a scenario of reach steps has none)

        procedure = tha_model(scenario, bundle, world_from_patient)
    pieces = {p.index: p for p in getattr(procedure, "pieces", ())}
    for st in bundle.structures:
        if st.name in hidden:
            continue
        v = np.asarray(st.mesh.vertices, float)
        f = np.asarray(st.mesh.faces)
        if pieces and procedure is not None and st.name == procedure.fragment_structure:
            for k, piece in pieces.items():  # drawn piece by piece: a grasp takes one away
                mesh_id = f"anatomy:{st.name}#{k}"
                meshes[mesh_id] = MeshData(piece.vertices_mm, piece.faces, st.tissue, not piece.closed)
                parts.append(AnatomyPart(mesh_id, st.name, st.tissue, v.mean(0), piece=k))
            continue
        mesh_id = f"anatomy:{st.name}"
        meshes[mesh_id] = MeshData(v, f, st.tissue, not st.watertight, make_lods(v, f))
        parts.append(AnatomyPart(mesh_id, st.name, st.tissue, v.mean(0)))

    instruments = []
    for ref in scenario.instruments:
        spec = CATALOGUE[ref.kind]
        if hasattr(procedure, "instrument_spec"):  # sized by the procedure's plan (a hip reamer, the cup)
            spec = procedure.instrument_spec(spec)
        mid = instrument_mesh_id(spec)
        if mid not in meshes:
            m = instrument_mesh(spec)
            meshes[mid] = MeshData(np.asarray(m.vertices), np.asarray(m.faces), "instrument", not m.is_watertight)
        instruments.append(InstrumentState(ref.id, spec, pose_from_axis(
            np.asarray(scenario.anatomy.position_mm) + np.array([0.0, 200.0, 250.0]), np.array([0.0, 1.0, 0.3]))))
    targets: dict[str, Target] = {}
    target_ras: dict[str, np.ndarray] = {}
    by_name = {p.name: p for p in parts}
    for t in scenario.targets:
        lm = bundle.landmarks.get(t.landmark) if t.landmark else None
        if t.point_mm is not None:
            p_ras = np.asarray(t.point_mm, float)
        elif lm is not None:
            p_ras = np.asarray(lm.get("incenter_mm") or lm["centroid_mm"], float)
        elif t.structure is not None and t.structure in by_name:
            p_ras = by_name[t.structure].centroid_ras_mm
        else:
            from vr_trainer.scenario.loader import ScenarioError

            what = f"landmark '{t.landmark}'" if t.landmark else f"structure '{t.structure}'"
            have = sorted(bundle.landmarks) if t.landmark else sorted(by_name)
            raise ScenarioError(f"scenario '{scenario.id}': target '{t.id}' names {what}, "
                                f"which the bundle {bundle_dir} does not have (it has: {', '.join(have)})")
        target_ras[t.id] = p_ras
        targets[t.id] = Target(t.id, (world_from_patient @ np.append(p_ras, 1.0))[:3], t.tolerance_mm)
    engine = ScenarioEngine(scenario, ScenarioNames.from_scenario(scenario, [st.name for st in bundle.structures]))
    overlay_names = {st.name: st.name for st in bundle.structures}
    overlay_names.update({r.id: r.structure for r in scenario.risk_structures})
    overlay_names.update({t.id: t.structure for t in scenario.targets if t.structure is not None})
    # distance queries only for what the scenario refers to: risk structures, structures its
    # conditions name, and targets given as structures
    measured = set(engine.needed_structures) | {t.structure for t in scenario.targets if t.structure}
    proximity = ProximityField.from_meshes({st.name: (np.asarray(st.mesh.vertices), np.asarray(st.mesh.faces))
                                            for st in bundle.structures if st.name in measured})
    # the distance grids now (about 2 s), not on the first simulated step: the frame loop never stalls
    proximity.prepare_clearance()
    sim = Simulation(rigid_inverse(world_from_patient), targets, proximity,
                     exposure_s=scenario.carm.exposure_s, dose_per_shot_mgy=scenario.carm.dose_per_shot_mgy,
                     procedure=procedure)
    state = SimState(instruments=tuple(instruments), annotations=AnnotationSet(), focus_target=engine.focus_target,
                     procedure_state=sim.initial_procedure_state())
    d = scenario.demo
    tool_keys = []
    origin = target_ras[d.tool_relative_to] if d.tool_relative_to else np.zeros(3)
    for key in d.tool:
        tip_w = (world_from_patient @ np.append(origin + key.tip_mm, 1.0))[:3]
        tow_w = (world_from_patient @ np.append(origin + key.toward_mm, 1.0))[:3]
        tool_keys.append({"t_s": key.t_s, "tip_mm": tip_w, "toward_mm": tow_w, "trigger": key.trigger})
    track = PoseTrack.from_keys([h.model_dump() for h in d.head], tool_keys, d.fps)
    rules = ScenarioRules(scenario, engine, overlay_names)
    room = None
    if scenario.procedure in ("pted", "tka", "tha"):  # the operating room around the patient
        bbox = anatomy_bbox_world(world_from_patient, [meshes[p.mesh_id].vertices_mm for p in parts])
        iso_ras = next(iter(target_ras.values()), None)  # the C-arm's isocentre: the first target (as the shots)
        iso_w = None if iso_ras is None else (world_from_patient @ np.append(iso_ras, 1.0))[:3]
        moved = procedure.motion_poses() if hasattr(procedure, "motion_poses") else {}
        clear = [(world_from_patient @ pose @ np.c_[meshes[p.mesh_id].vertices_mm, np.ones(len(meshes[p.mesh_id]
                  .vertices_mm))].T)[:3].T for p in parts for pose in moved.get(p.name, [])]
        room = build_room(world_from_patient, bbox, track.head_pose(0.0)[:3, 3], iso_w,
                          approach_side=scenario.anatomy.side, sad_mm=scenario.carm.source_to_isocentre_mm,
                          sid_mm=scenario.carm.source_to_detector_mm,
                          keep_clear_world_mm=np.vstack(clear) if clear else None)
        for mid, rm in room.meshes.items():
            meshes[mid] = MeshData(rm.vertices_mm, rm.faces, rm.material, rm.double_sided)
    return SessionScene(scenario, world_from_patient, parts, sim, state, track, bundle_dir, rules, bundle, room,
                        procedure), meshes
