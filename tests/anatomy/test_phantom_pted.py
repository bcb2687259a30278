"""The shipped spine phantom as a prone PTED patient: body, landmarks for both scenarios, lordosis."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from vr_trainer.anatomy import load_bundle
from vr_trainer.anatomy.bundle import Bundle

from .conftest import ASSETS

SIDED = ("left", "right")


@pytest.fixture(scope="module")
def spine() -> Bundle:
    return load_bundle(ASSETS / "spine_l3_s1")


@pytest.fixture(scope="module")
def solid(spine: Bundle) -> trimesh.Trimesh:
    """Everything a needle must not pass through: bone (vertebrae, sacrum, ilium), roots, sac, vessels."""
    return trimesh.util.concatenate([s.mesh for s in spine.by_tissue("bone", "nerve", "dura", "vessel")])  # type: ignore[return-value]


def test_the_body_around_the_spine(spine: Bundle) -> None:
    tissue = {s.name: s.tissue for s in spine.structures}
    want = {"skin": "skin", "ilium_left": "bone", "ilium_right": "bone", "herniation_L5_S1": "pathology"}
    want |= {f"paraspinal_muscle_{s}": "muscle" for s in SIDED} | {f"psoas_{s}": "muscle" for s in SIDED}
    want |= {f"segmental_artery_{lv}_{s}": "vessel" for lv in ("L3", "L4", "L5") for s in SIDED}
    want |= {f"nerve_root_L5_exiting_{s}": "nerve" for s in SIDED}
    assert {n: tissue.get(n) for n in want} == want
    for s in spine.structures:
        assert s.watertight, s.name
    faces = {s.name: len(s.mesh.faces) for s in spine.structures}
    assert faces["skin"] <= 20_000 and max(faces[f"paraspinal_muscle_{s}"] for s in SIDED) <= 6000
    skin = spine["skin"].mesh
    width, depth = np.ptp(skin.vertices[:, 0]), np.ptp(skin.vertices[:, 1])
    assert 300.0 <= width <= 380.0 and 220.0 <= depth <= 260.0, (width, depth)
    # the back: 60-80 mm of muscle and fat behind the L4 laminae (prone patient: posterior is -y)
    l4 = spine["L4"].mesh.vertices
    z4 = float(np.median(l4[:, 2]))
    lam = l4[(np.abs(l4[:, 0]) > 6.0) & (np.abs(l4[:, 0]) < 12.0) & (np.abs(l4[:, 2] - z4) < 8.0)]
    loc, _, _ = skin.ray.intersects_location([[9.0, 0.0, z4]], [[0.0, -1.0, 0.0]])
    behind = float(lam[:, 1].min() - loc[:, 1].min())
    assert 55.0 <= behind <= 85.0, f"skin {behind:.0f} mm behind the L4 lamina"
    # the muscles lie behind the transverse processes, each on its own side, inside the skin
    for s, sign in (("left", -1.0), ("right", 1.0)):
        m = spine[f"paraspinal_muscle_{s}"]
        assert sign * m.centroid_mm[0] > 20.0 and m.centroid_mm[1] < -30.0
        assert skin.contains(m.mesh.vertices[::50]).all()


def test_iliac_crest_is_high(spine: Bundle) -> None:
    """The crest reaches the L4-L5 disc level, so L5-S1 lies behind it (the harder level)."""
    disc45 = spine["disc_L4_L5"].centroid_mm[2]
    disc51 = spine["disc_L5_S1"].centroid_mm[2]
    for s in SIDED:
        top = spine[f"ilium_{s}"].mesh.bounds[1, 2]
        assert top > disc45 - 5.0 and top > disc51 + 25.0, (s, top)


@pytest.mark.parametrize("level", ["L4_L5", "L5_S1"])
@pytest.mark.parametrize("side", SIDED)
def test_skin_entry_is_on_the_skin_and_the_line_to_kambin_is_free(spine: Bundle, solid: trimesh.Trimesh,
                                                                   level: str, side: str) -> None:
    e = spine.landmarks[f"skin_entry_{level}_{side}"]
    k = spine.landmarks[e["kambin"]]
    p, target = np.asarray(e["point_mm"]), np.asarray(k["incenter_mm"])
    d = np.asarray(e["direction"])
    assert np.allclose(target, e["target_mm"]) and np.linalg.norm(d) == pytest.approx(1.0, abs=1e-3)
    assert np.linalg.norm(np.cross(target - p, d)) < 0.5 and (target - p) @ d > 0
    assert e["depth_mm"] == pytest.approx(np.linalg.norm(target - p), abs=0.2)
    skin = spine["skin"].mesh
    assert float(trimesh.proximity.closest_point(skin, [p])[1][0]) < 1.0, "entry not on the skin"
    sign = -1.0 if side == "left" else 1.0
    assert sign * p[0] > 0 and p[1] < target[1] - 30.0, "entry on the patient's posterolateral side"
    assert e["from_midline_mm"] == pytest.approx(abs(p[0]), abs=0.1)
    if level == "L4_L5":
        assert 100.0 <= e["from_midline_mm"] <= 140.0, e["from_midline_mm"]
    else:
        assert 70.0 <= e["from_midline_mm"] <= 140.0, e["from_midline_mm"]
    # the straight needle from the skin to the incentre meets nothing solid
    loc, _, _ = solid.ray.intersects_location([p], [d])
    t = (loc - p) @ d if len(loc) else np.array([])
    assert not np.any((t > 0) & (t < e["depth_mm"] - 0.5)), f"needle line meets a structure at {t}"
    # the Kambin landmark carries the same entry
    assert np.allclose(k["skin_entry_mm"], p) and np.allclose(k["approach_direction"], -d, atol=1e-3)


def test_l5_s1_textbook_line_is_blocked_by_the_crest(spine: Bundle) -> None:
    """In the axial plane at 30 degrees the line from the L5-S1 triangle meets the ilium: the searched
    approach turns away from it (steeper and / or cranial)."""
    k = spine.landmarks["kambin_triangle_L5_S1_right"]
    o = np.asarray(k["incenter_mm"])
    d = np.array([np.cos(np.radians(30.0)), -np.sin(np.radians(30.0)), 0.0])
    assert spine["ilium_right"].mesh.ray.intersects_any([o], [d])[0]
    k45 = spine.landmarks["kambin_triangle_L4_L5_left"]
    assert not spine["ilium_left"].mesh.ray.intersects_any([k45["incenter_mm"]], [k45["approach_direction"]])[0]
    e = spine.landmarks["skin_entry_L5_S1_right"]
    assert e["axial_angle_from_coronal_deg"] > 30.0 or e["craniocaudal_deg"] > 0.0


@pytest.mark.parametrize("side", SIDED)
def test_l5_s1_kambin_triangle(spine: Bundle, solid: trimesh.Trimesh, side: str) -> None:
    k = spine.landmarks[f"kambin_triangle_L5_S1_{side}"]
    a, b, c = (np.asarray(v, float) for v in k["vertices_mm"])
    assert k["exiting_root"] == f"nerve_root_L5_exiting_{side}"
    assert k["traversing_root"] == f"nerve_root_S1_traversing_{side}"
    w = np.array([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.25, 0.25, 0.5], [1 / 3, 1 / 3, 1 / 3]])
    core = w @ np.stack([a, b, c])
    assert not solid.contains(core).any(), "something solid inside the triangle's core"
    d = np.asarray(k["approach_direction"])
    assert not solid.ray.intersects_any(core, np.repeat(d[None], len(core), axis=0)).any()
    # the corridor leads into the disc: within 10 mm past the incentre the needle is in it (the derived
    # triangle lies ~4.5 mm more lateral than the analytic one, so the disc starts 5-8 mm in)
    ahead = np.asarray(k["incenter_mm"]) - np.arange(3.0, 10.5, 1.0)[:, None] * d
    assert spine["disc_L5_S1"].mesh.contains(ahead).any()
    root = spine[k["exiting_root"]].mesh.vertices
    assert np.min(np.linalg.norm(root - 0.5 * (b + c), axis=1)) < 5.0
    assert np.min(np.linalg.norm(spine["sacrum"].mesh.vertices - 0.5 * (a + b), axis=1)) < 6.0
    assert 2.5 < k["inradius_mm"] < 8.0


def test_roots_and_arteries_clear_of_bone(spine: Bundle) -> None:
    bones = spine.by_tissue("bone")
    samples = np.vstack([trimesh.sample.sample_surface_even(s.mesh, 30000, seed=3)[0] for s in bones])
    tree = cKDTree(samples)
    for s in spine.by_tissue("nerve", "vessel"):
        v = np.asarray(s.mesh.vertices)
        inside = sum(int(b.mesh.contains(v).sum()) for b in bones)
        assert inside == 0, f"{s.name}: {inside} vertices inside bone"
        assert float(tree.query(v)[0].min()) > 0.2, s.name


@pytest.mark.parametrize("name,side_sign,disc", [("herniation_L4_L5", -1.0, "disc_L4_L5"),
                                                  ("herniation_L5_S1", 1.0, "disc_L5_S1")])
def test_herniations_touch_their_disc(spine: Bundle, name: str, side_sign: float, disc: str) -> None:
    h, d = spine[name], spine[disc]
    assert side_sign * h.centroid_mm[0] > 5.0
    gap = float(trimesh.proximity.closest_point(d.mesh, h.mesh.vertices)[1].min())
    assert gap < 1.0, f"{name} {gap:.1f} mm from {disc}"
    assert h.centroid_mm[1] < d.centroid_mm[1] - 10.0, "posterior, towards the canal"
    assert abs(h.centroid_mm[2] - d.centroid_mm[2]) < 6.0


def _plane_angle_deg(mesh: trimesh.Trimesh, up: np.ndarray, top: bool) -> float:
    """Sagittal angle (deg, + = the superior normal tipped towards posterior, i.e. the face rising
    anteriorly) of a disc's top or bottom face: a line fitted to the face centres near the midline
    (voxel stair-steps bias averaged normals towards the grid, a fit does not)."""
    n, c = mesh.face_normals, mesh.triangles_center
    sel = ((n @ up > 0.7) if top else (n @ up < -0.7)) & (np.abs(c[:, 0]) < 15.0)
    slope = np.polyfit(c[sel, 1], c[sel, 2], 1)[0]
    return float(np.degrees(np.arctan(slope)))


def test_lordosis(spine: Bundle) -> None:
    """L3-S1 lordosis 40-50 degrees, most of it at the lowest levels; the discs are wedged (taller in front)."""
    angles = {}
    for disc in ("disc_L3_L4", "disc_L4_L5", "disc_L5_S1"):
        mesh = spine[disc].mesh
        w, v = np.linalg.eigh(np.cov((mesh.vertices - mesh.centroid).T))
        up = v[:, 0] * np.sign(v[2, 0])
        top, bottom = _plane_angle_deg(mesh, up, True), _plane_angle_deg(mesh, up, False)
        angles[disc] = (top, bottom)
        assert top - bottom > 8.0, f"{disc} is not wedged: {top - bottom:.1f} deg"
    total = angles["disc_L3_L4"][0] - angles["disc_L5_S1"][1]  # L3 endplates are parallel (no body wedge)
    assert 40.0 <= total <= 50.0, f"L3-S1 lordosis {total:.1f} deg, {angles}"
    wedge = {k: t - b for k, (t, b) in angles.items()}
    assert wedge["disc_L5_S1"] > wedge["disc_L3_L4"], wedge


def test_shipped_spine_is_what_the_generator_paints(spine: Bundle) -> None:
    """A cheap regeneration check (the full run, the derivation and meshing included, takes about two
    minutes and is byte-identical: ``python -m vr_trainer.anatomy.phantoms --only spine``): the spine's
    painted label volume (before its sac and roots are derived) and the skin's hash to the shipped
    bundle's recorded inputs."""
    import hashlib

    from vr_trainer.anatomy import phantom_body as B
    from vr_trainer.anatomy import phantom_spine as P
    from vr_trainer.anatomy.phantom_sdf import Canvas

    canvas = Canvas(P.BOUNDS_MM[0], P.BOUNDS_MM[1], spine.manifest["provenance"]["voxel_mm"])
    P.build(canvas)
    skin, _ = B.build_skin()
    got = {k: hashlib.sha256(c.labels.tobytes()).hexdigest()
           for k, c in (("synthetic_labels_painted", canvas), ("synthetic_labels_skin_2mm", skin))}
    want = {i["kind"]: i["sha256"] for i in spine.manifest["provenance"]["inputs"]}
    assert {k: want.get(k) for k in got} == got, "assets/spine_l3_s1 is stale: regenerate it"
