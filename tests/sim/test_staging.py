"""PTED staging inside the fixed step, on a small synthetic scene (no bundle): bone stops the
needle with a haptic pulse and ``bone_contact``; the exchange over the guidewire keeps the
needle's trajectory; the cannula rolls with the hand; the endoscope stays in the cannula; the
forceps angle a little past the scope tip and a trigger press takes a fragment piece out.

Scene (patient frame = world frame): a 20 mm bone cube at the origin (a "facet"), a skin box whose
back is the plane y = -100 (the needle comes from -y, as into a prone patient), Kambin's triangle
in the plane y = -40 around x = 40, and a 6 x 6 x 12 mm fragment beyond it on the same line.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh

from vr_trainer.frame import HandInput, InputState
from vr_trainer.procedures.pted_fragment import split_fragment
from vr_trainer.procedures.pted_model import KambinTriangle, PtedModel
from vr_trainer.sim.instruments import CATALOGUE, InstrumentState
from vr_trainer.sim.proximity import ProximityField
from vr_trainer.sim.simulation import SimState, Simulation
from vr_trainer.sim.transforms import pose_from_axis

DT_S = 1 / 120
KINDS = ("spinal_needle", "guidewire", "dilator", "working_cannula", "endoscope", "grasping_forceps")
BONE_HALF_MM = 10.0
SKIN_BACK_Y_MM = -100.0
KAMBIN_Y_MM = -40.0
FRAGMENT_CENTRE = np.array([40.0, -15.0, 0.0])


def _box(centre, extents) -> trimesh.Trimesh:
    return trimesh.creation.box(extents=extents, transform=trimesh.transformations.translation_matrix(centre))


@pytest.fixture(scope="module")
def bone() -> ProximityField:
    b = _box([0, 0, 0], [2 * BONE_HALF_MM] * 3)
    return ProximityField.from_meshes({"facet": (b.vertices, b.faces)}, max_edge_mm=2.0)


@pytest.fixture(scope="module")
def model(bone) -> PtedModel:
    skin = _box([0, 0, 0], [400, -2 * SKIN_BACK_Y_MM, 400])
    frag = _box(FRAGMENT_CENTRE, [6, 6, 12])
    pieces = split_fragment(frag.vertices, frag.faces, 4)
    tri = np.array([[30.0, KAMBIN_Y_MM, -10.0], [50.0, KAMBIN_Y_MM, -10.0], [40.0, KAMBIN_Y_MM, 15.0]])
    a, b, c = (np.linalg.norm(tri[1] - tri[2]), np.linalg.norm(tri[0] - tri[2]), np.linalg.norm(tri[0] - tri[1]))
    incentre = (a * tri[0] + b * tri[1] + c * tri[2]) / (a + b + c)
    return PtedModel(
        patient_from_world=np.eye(4), bone=bone,
        skin=ProximityField.from_meshes({"skin": (skin.vertices, skin.faces)}, max_edge_mm=10.0),
        kambin=KambinTriangle(tri, incentre, np.array([0.0, -1.0, 0.0])), midline_x_mm=0.0,
        fragment_structure="fragment", pieces=pieces,
        piece_field=ProximityField.from_meshes({f"fragment#{p.index}": (p.vertices_mm, p.faces) for p in pieces},
                                               max_edge_mm=1.0))


@pytest.fixture(scope="module")
def sim(model) -> Simulation:
    return Simulation(np.eye(4), {}, None, procedure=model)


def start(sim: Simulation) -> SimState:
    insts = tuple(InstrumentState(k, CATALOGUE[k]) for k in KINDS)
    return SimState(instruments=insts, procedure_state=sim.initial_procedure_state())


def rolled(pose: np.ndarray, roll_deg: float) -> np.ndarray:
    """``pose`` turned by ``roll_deg`` about its own +z (the tool's shaft)."""
    r = math.radians(roll_deg)
    rz = np.eye(4)
    rz[:2, :2] = [[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]]
    return pose @ rz


def hand(tip, advance=(0.0, 1.0, 0.0), roll_deg=0.0, primary=False, trigger=0.0) -> InputState:
    """The tool tip at ``tip`` advancing along ``advance`` (the handle the other way)."""
    pose = rolled(pose_from_axis(np.asarray(tip, float), -np.asarray(advance, float)), roll_deg)
    return InputState(hands=[HandInput(), HandInput(pose, trigger=trigger, primary_pressed=primary)])


def drive(sim: Simulation, s: SimState, tips, **kw) -> tuple[SimState, list[SimState]]:
    seen = []
    for tip in tips:
        s = sim.step(s, hand(tip, **kw), DT_S)
        seen.append(s)
    return s, seen


def exchange(sim: Simulation, s: SimState, tip, **kw) -> SimState:
    """Press and release the primary button with the hand at ``tip`` (the next instrument)."""
    s = sim.step(s, hand(tip, primary=True, **kw), DT_S)
    return sim.step(s, hand(tip, **kw), DT_S)


def line(y0: float, y1: float, x: float = 0.0, z: float = 0.0, step_mm: float = 1.0) -> list[np.ndarray]:
    n = int(abs(y1 - y0) / step_mm) + 1
    return [np.array([x, y, z]) for y in np.linspace(y0, y1, n)]


def angle_deg(u: np.ndarray, v: np.ndarray) -> float:
    c = float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))
    return math.degrees(math.acos(min(1.0, max(-1.0, c))))


def test_soft_tissue_lets_the_needle_follow_the_hand(sim):
    s, seen = drive(sim, start(sim), line(-150, -30, x=40))
    np.testing.assert_allclose(s.instruments[0].tip_mm, [40, -30, 0], atol=1e-9)
    assert not any("bone_contact" in st.observation.actions for st in seen)
    assert all(st.haptics == () for st in seen)


def test_bone_stops_the_needle_at_the_facet_with_a_pulse(sim, bone):
    s, seen = drive(sim, start(sim), line(-150, 30, step_mm=1.5))  # the hand goes right through the cube
    for st in seen:
        d = bone.signed_distances(st.instruments[0].tip_mm.reshape(1, 3))["facet"][0]
        assert d >= -0.05, f"tip {st.instruments[0].tip_mm} is {-d:.2f} mm inside bone"
    tip = s.instruments[0].tip_mm
    assert tip[1] == pytest.approx(-BONE_HALF_MM, abs=0.1), "held on the facet's surface"
    contacts = [st for st in seen if "bone_contact" in st.observation.actions]
    assert len(contacts) == 1, "one contact while it stays on the bone"
    first = contacts[0]
    assert len(first.haptics) == 1 and first.haptics[0].hand == 1 and first.haptics[0].amplitude > 0
    assert s.observation.values["bone_contacts"] == 1
    # withdraw and push again: a second contact, a second pulse
    s, seen = drive(sim, s, line(-20, -40) + line(-40, 20, step_mm=2.0))
    assert sum("bone_contact" in st.observation.actions for st in seen) == 1
    assert s.observation.values["bone_contacts"] == 2
    assert bone.signed_distances(s.instruments[0].tip_mm.reshape(1, 3))["facet"][0] >= -0.05


def test_an_oblique_push_into_bone_stops_on_the_way_in(sim, bone):
    s, _ = drive(sim, start(sim), line(-150, -30, x=-5, z=3))
    target = np.array([5.0, 25.0, -2.0])  # far inside and past the cube
    s = sim.step(s, hand(target, advance=target - s.instruments[0].tip_mm), DT_S)
    tip = s.instruments[0].tip_mm
    assert bone.signed_distances(tip.reshape(1, 3))["facet"][0] >= -0.05
    assert tip[1] == pytest.approx(-BONE_HALF_MM, abs=0.1), "stopped where the motion met the surface"
    assert "bone_contact" in s.observation.actions


def needle_at_kambin(sim: Simulation, advance=(0.0, 1.0, 0.0)) -> SimState:
    """The needle in along ``advance`` until its tip is 5 mm past Kambin's plane at (40, -35, 0)."""
    d = np.asarray(advance, float) / np.linalg.norm(advance)
    end = np.array([40.0, -35.0, 0.0])
    tips = [end - d * k for k in np.linspace(120, 0, 121)]
    s, _ = drive(sim, start(sim), tips, advance=d)
    return s


@pytest.mark.parametrize("advance", [(0.0, 1.0, 0.0), (0.35, 1.0, -0.2)])
def test_exchange_over_the_guidewire_keeps_the_trajectory(sim, advance):
    s = needle_at_kambin(sim, advance)
    needle = s.instruments[0]
    n_axis, n_tip = needle.axis, needle.tip_mm
    off = np.array([4.0, -30.0, 6.0])  # the hand is off the line and tilted by about 15 degrees
    tilted = np.asarray(advance, float) + np.array([0.0, 0.0, 0.3])
    s = exchange(sim, s, n_tip + off, advance=tilted)
    assert s.active_instrument == 1 and not s.instruments[0].visible, "the needle is withdrawn"
    for k in range(1, 5):  # guidewire, dilator, cannula, endoscope
        if k > 1:
            s = exchange(sim, s, n_tip + off, advance=tilted)
        for depth in (-40.0, -10.0, 0.0):
            s = sim.step(s, hand(n_tip + depth * n_axis + off, advance=tilted), DT_S)
            inst = s.instruments[k]
            assert angle_deg(inst.axis, n_axis) < 0.5, f"{inst.spec.kind} axis off the needle's line"
            rel = inst.tip_mm - n_tip
            off_line = np.linalg.norm(rel - (rel @ n_axis) * n_axis)
            assert off_line < 0.01, f"{inst.spec.kind} tip {off_line:.3f} mm off the line"


def test_the_cannula_rolls_with_the_hand_about_the_line(sim):
    s = needle_at_kambin(sim)
    for _ in range(3):  # guidewire, dilator, cannula
        s = exchange(sim, s, [40, -60, 0])
    assert s.instruments[s.active_instrument].spec.kind == "working_cannula"
    s = sim.step(s, hand([40, -40, 0], roll_deg=0.0), DT_S)
    x0 = s.instruments[3].world_from_tool[:3, 0].copy()
    s = sim.step(s, hand([40, -40, 0], roll_deg=40.0), DT_S)
    x1 = s.instruments[3].world_from_tool[:3, 0]
    assert angle_deg(x0, x1) == pytest.approx(40.0, abs=0.5), "the bevel turns with the hand's roll"
    assert angle_deg(s.instruments[3].axis, [0, 1, 0]) < 0.5, "rolling does not tilt it"


def scope_in(sim: Simulation) -> SimState:
    s = needle_at_kambin(sim)
    for _ in range(3):
        s = exchange(sim, s, [40, -60, 0])
    s, _ = drive(sim, s, line(-60, -35, x=40))  # cannula docked at the needle's tip (s = 0)
    s = exchange(sim, s, [40, -60, 0])
    s, _ = drive(sim, s, line(-60, 0, x=40))  # the hand pushes the scope 35 mm past the cannula
    return s


def test_the_endoscope_stays_in_the_cannula_and_shows_its_view(sim, model):
    s = scope_in(sim)
    scope = s.instruments[4]
    assert scope.spec.kind == "endoscope" and s.active_instrument == 4
    assert scope.tip_mm[1] <= -35.0 + 5.0 + 1e-6, "at most 5 mm beyond the cannula's tip"
    assert not s.instruments[1].visible and not s.instruments[2].visible, "guidewire and dilator are out"
    assert s.instruments[3].visible, "the cannula stays docked"
    pose = model.endoscope_pose(s)
    assert pose is not None and np.allclose(pose, scope.world_from_tool)


def test_forceps_angle_a_little_beyond_the_scope_tip(sim):
    s = scope_in(sim)
    scope_tip = s.instruments[4].tip_mm
    s = exchange(sim, s, scope_tip + [0, 5, 0])
    assert s.instruments[s.active_instrument].spec.kind == "grasping_forceps"
    s = sim.step(s, hand(scope_tip + np.array([20.0, 20.0, 0.0])), DT_S)  # 45 degrees off the line
    v = s.instruments[5].tip_mm - scope_tip
    assert angle_deg(v, [0, 1, 0]) == pytest.approx(25.0, abs=0.5), "clamped to the forceps' angulation"
    s = sim.step(s, hand(scope_tip + np.array([0.0, 80.0, 0.0])), DT_S)
    assert np.linalg.norm(s.instruments[5].tip_mm - scope_tip) == pytest.approx(30.0, abs=1e-6)


def test_grasping_takes_the_fragment_out_piece_by_piece(sim, model):
    s = scope_in(sim)
    scope_tip = s.instruments[4].tip_mm
    s = exchange(sim, s, scope_tip + [0, 2, 0])
    assert s.observation.removed_pct["fragment"] == 0.0
    s = sim.step(s, hand(scope_tip + [0, 2, 0], trigger=1.0), DT_S)  # far from every piece
    assert "grasp_missed" in s.observation.actions and s.observation.removed_pct["fragment"] == 0.0
    s = sim.step(s, hand(scope_tip + [0, 2, 0]), DT_S)
    history = [0.0]
    for piece in model.pieces:
        at = piece.centroid_mm
        s = sim.step(s, hand(at), DT_S)
        s = sim.step(s, hand(at, trigger=1.0), DT_S)
        assert "fragment_removed" in s.observation.actions
        s = sim.step(s, hand(at, trigger=1.0), DT_S)  # still held: no second bite
        assert "fragment_removed" not in s.observation.actions
        history.append(s.observation.removed_pct["fragment"])
        s = sim.step(s, hand(at, trigger=0.0), DT_S)
    assert all(b > a for a, b in zip(history, history[1:])), history
    assert history[-1] == pytest.approx(100.0)
    assert model.removed_pieces(s) == frozenset(p.index for p in model.pieces)
    assert s.observation.values["fragment_removed_pct"] == pytest.approx(100.0)


def test_passes_redirections_skin_entry_and_kambin_entry(sim, model):
    s, _ = drive(sim, start(sim), line(-150, -70, x=40))  # in through the skin 40 mm from the midline
    v = s.observation.values
    assert v["needle_passes"] == 1 and v["skin_entry_lateral_mm"] == pytest.approx(40.0, abs=0.01)
    assert math.isnan(v["kambin_entry_error_mm"]), "not at the triangle yet"
    s, _ = drive(sim, s, line(-70, -78, x=40) + line(-78, -60, x=40))  # back 8 mm, then on: a redirection
    assert s.observation.values["needle_redirections"] == 1
    s, _ = drive(sim, s, [np.array([40.0, y, 0.5 * (y + 60)]) for y in np.linspace(-60, -35, 26)])
    v = s.observation.values
    crossing = np.array([40.0, KAMBIN_Y_MM, 0.5 * (KAMBIN_Y_MM + 60)])
    assert v["kambin_entry_inside"] == 1.0
    assert v["kambin_entry_error_mm"] == pytest.approx(float(np.linalg.norm(crossing - model.kambin.incenter_mm)),
                                                       abs=0.2)
    s, _ = drive(sim, s, line(-35, -150, x=40) + line(-150, -35, x=75))  # out of the skin, in again, off the triangle
    v = s.observation.values
    assert v["needle_passes"] == 2 and v["skin_entry_lateral_mm"] == pytest.approx(75.0, abs=0.01)
    assert v["kambin_entry_inside"] == 0.0
    assert v["kambin_entry_error_mm"] > 30.0


def test_a_shot_with_the_cannula_in_hand_is_a_sheath_shot(sim):
    s = needle_at_kambin(sim)
    inp = hand([40, -40, 0])
    inp.keys = frozenset({"carm_lateral"})
    s = sim.step(s, inp, DT_S)
    assert s.observation.shot_view == "lateral" and "sheath_shot" not in s.observation.actions
    for _ in range(3):
        s = exchange(sim, s, [40, -60, 0])
    inp = hand([40, -40, 0])
    inp.keys = frozenset({"carm_ap"})
    s = sim.step(s, inp, DT_S)
    assert s.observation.shot_view == "ap" and "sheath_shot" in s.observation.actions
    assert s.carm_view == "ap" and s.shots == 2
