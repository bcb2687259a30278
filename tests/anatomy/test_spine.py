"""``--spine``: discs, dural sac, nerve roots and Kambin's triangles derived from vertebrae alone,
checked on a real TotalSegmentator label map and against the phantom's analytic ones (computed from the
generator's own parameters, :func:`phantom_spine.analytic_landmarks`: the shipped phantom's landmarks are
themselves derived, so comparing with them would be circular)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from vr_trainer.anatomy import load_bundle
from vr_trainer.anatomy.bundle import Bundle
from vr_trainer.anatomy.cli import main as import_main
from vr_trainer.anatomy.importers import import_ct

REPO = Path(__file__).resolve().parents[2]
PHANTOM = REPO / "assets" / "spine_l3_s1"
BONES = ("L3", "L4", "L5", "sacrum")
SKIN_SEMI_MM, SKIN_CENTRE_Y_MM = (150.0, 110.0), 50.0  # an elliptic trunk: the back 60 mm behind the canal


@pytest.fixture(scope="module")
def ts_spine(ts_example: Path, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    out = tmp_path_factory.mktemp("ts") / "ts_spine"
    import_ct(ts_example / "example_ct_sm.nii.gz", out, labels=ts_example / "example_seg.nii.gz",
              label_map="totalsegmentator", spine=True)
    return load_bundle(out)


@pytest.fixture(scope="module")
def phantom_spine(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """The phantom's four bone meshes alone (no discs, sac, roots or landmarks) through the CLI."""
    d = tmp_path_factory.mktemp("ph")
    out = d / "derived_spine"
    skin = trimesh.creation.cylinder(radius=1.0, height=300.0, sections=128)
    skin.apply_scale([SKIN_SEMI_MM[0], SKIN_SEMI_MM[1], 1.0])
    skin.apply_translation([0.0, SKIN_CENTRE_Y_MM, 0.0])
    skin.export(str(d / "skin.stl"))
    files = [str(PHANTOM / "meshes" / f"{n}.glb") for n in BONES] + [str(d / "skin.stl")]
    assert import_main(["import", "mesh", *files, "--spine", "--out", str(out)]) == 0
    return load_bundle(out)


def _bone_check(b: Bundle, names: list[str]) -> tuple[float, int]:
    """(smallest distance from any vertex of ``names`` to a bone surface sample, vertices inside bone)."""
    bones = [s.mesh for s in b.by_tissue("bone")]
    samples = np.vstack([trimesh.sample.sample_surface_even(m, 40000, seed=1)[0] for m in bones] +
                        [m.vertices for m in bones])
    tree = cKDTree(samples)
    gap, inside = np.inf, 0
    for n in names:
        v = np.asarray(b[n].mesh.vertices)
        gap = min(gap, float(tree.query(v)[0].min()))
        inside += int(sum(m.contains(v).sum() for m in bones))
    return gap, inside


def test_real_ct_disc_height_roots_and_kambin(ts_spine: Bundle) -> None:
    b = ts_spine
    disc = b["disc_L1_L2"]
    d = disc.extra["derived"]
    assert d["from"] == ["L1", "L2"] and "endplate" in d["method"]
    assert 6.0 <= d["height_mm"] <= 14.0, f"L1-L2 disc {d['height_mm']} mm"
    assert disc.watertight and disc.tissue == "disc"
    # the disc sits between the two bodies: below L1's centroid, above L2's, along the spine's own axis
    axis = np.subtract(b["L1"].centroid_mm, b["L2"].centroid_mm)
    h = [float(np.dot(b[n].centroid_mm, axis)) for n in ("L2", "disc_L1_L2", "L1")]
    assert h[0] < h[1] < h[2]
    roots = [f"nerve_root_L1_exiting_{s}" for s in ("left", "right")] + \
            [f"nerve_root_L2_traversing_{s}" for s in ("left", "right")]
    for n in roots:
        assert b[n].tissue == "nerve" and b[n].watertight and "derived" in b[n].extra
    gap, inside = _bone_check(b, roots)
    assert inside == 0 and gap > 0.2, f"roots touch bone: gap {gap:.2f} mm, {inside} vertices inside"
    for side, sign in (("left", -1.0), ("right", 1.0)):
        root = np.asarray(b[f"nerve_root_L1_exiting_{side}"].mesh.vertices)
        # through the L1-L2 foramen: from beside the sac out past the pedicles, passing both vertebrae closely
        sac_x = b["dural_sac"].centroid_mm[0]
        lateral = sign * (root[:, 0] - sac_x)
        assert lateral.min() < 10.0 and lateral.max() > 30.0, (side, lateral.min(), lateral.max())
        for v in ("L1", "L2"):
            dist = cKDTree(b[v].mesh.vertices).query(root)[0].min()
            assert dist < 6.0, f"{side} L1 root {dist:.1f} mm from {v}: not in their foramen"
        lm = b.landmarks[f"kambin_triangle_L1_L2_{side}"]
        assert lm["level"] == "L1_L2" and lm["side"] == side and lm["derived"]["method"]
        c = np.asarray(lm["incenter_mm"])
        assert not any(s.mesh.contains(c[None])[0] for s in b.by_tissue("bone")), "Kambin incentre inside bone"
        for v in ("L1", "L2"):
            dist = cKDTree(b[v].mesh.vertices).query(c)[0]
            assert dist < 10.0, f"{side} Kambin incentre {dist:.1f} mm from {v}: not in the L1-L2 foramen"
        assert sign * (c[0] - sac_x) > 8.0, "Kambin's triangle lies lateral to the sac"
        assert lm["inradius_mm"] > 1.5
        approach = np.asarray(lm["approach_direction"])
        assert sign * approach[0] > 0.4 and approach @ np.subtract(b["L1"].centroid_mm, b["dural_sac"].centroid_mm) < 0
    sac = b["dural_sac"].extra["derived"]
    assert "spinal_cord" in sac["from"] and "centred on spinal_cord" in sac["method"]
    m = b.manifest
    assert m["notes"]["spine_derivation"]["discs"]["disc_L1_L2"]["height_mm"] == d["height_mm"]
    assert not b["L1"].extra.get("derived"), "the labelled vertebrae are not marked derived"


@pytest.mark.gl
def test_pted_on_the_real_ct_is_passed_by_the_expert(ts_spine: Bundle, tmp_path: Path) -> None:
    """The patient's own anatomy: a PTED scenario at L1-L2 authored on the derived bundle, passed without
    touching a root or the sac."""
    from vr_trainer.app.authoring import new_scenario
    from vr_trainer.app.autopilot_cohort import run_autopilot_unrendered

    path = new_scenario("pted", ts_spine.path, tmp_path / "pted_l1_l2.yaml", level="L1-L2", side="left")
    s = run_autopilot_unrendered(path, "expert")  # simulated and scored as `run --autopilot expert`, not drawn
    assert s["passed"] is True and s["score"] >= 90, (s["score"], s["metrics"])
    assert s["metrics"]["risk_contacts"]["value"] == 0 and s["metrics"]["min_risk_distance_mm"]["value"] > 0.5


def _analytic() -> dict[str, dict]:
    from vr_trainer.anatomy.phantom_spine import analytic_landmarks

    return analytic_landmarks()


def test_phantom_landmarks_match_the_analytic_ones(phantom_spine: Bundle) -> None:
    b = phantom_spine
    ref = load_bundle(PHANTOM)
    analytic = _analytic()
    errors = {}
    for side in ("left", "right"):
        name = f"kambin_triangle_L4_L5_{side}"
        got, want = b.landmarks[name], analytic[name]
        errors[side] = float(np.linalg.norm(np.subtract(got["incenter_mm"], want["incenter_mm"])))
        assert got["vertex_roles"][0].startswith("base_medial") and len(got["vertices_mm"]) == 3
        assert abs(got["inradius_mm"] - want["inradius_mm"]) < 1.5
        cos = np.dot(got["approach_direction"], want["approach_direction"])
        assert cos > np.cos(np.radians(30.0)), f"{side} approach {np.degrees(np.arccos(cos)):.0f} deg off"
    # L5-S1 too (the sacrum's own geometry: its alae, its top slab as S1): 2.2 / 2.2 mm measured (L4-L5 2.1 / 2.1)
    for side in ("left", "right"):
        name = f"kambin_triangle_L5_S1_{side}"
        errors[name] = float(np.linalg.norm(np.subtract(b.landmarks[name]["incenter_mm"],
                                                        analytic[name]["incenter_mm"])))
    assert max(errors.values()) < 3.0, f"Kambin incentres off by {errors} mm"
    for side in ("left", "right"):  # where the approach meets the (elliptic cylinder) skin
        lm = b.landmarks[f"kambin_triangle_L4_L5_{side}"]
        p = np.asarray(lm["skin_entry_mm"])
        along = p - np.asarray(lm["incenter_mm"])
        assert np.linalg.norm(np.cross(along, lm["approach_direction"])) < 0.5 and along @ lm["approach_direction"] > 0
        on_skin = (p[0] / SKIN_SEMI_MM[0]) ** 2 + ((p[1] - SKIN_CENTRE_Y_MM) / SKIN_SEMI_MM[1]) ** 2
        assert abs(on_skin - 1.0) < 0.02, on_skin
        assert lm["skin_depth_mm"] == pytest.approx(np.linalg.norm(along), abs=0.1)
        assert 60.0 < lm["skin_entry_from_midline_mm"] < 150.0
    # discs: the phantom's are 10 / 10.5 / 10 mm high (phantom_spine.DISC_H)
    heights = {n: b[n].extra["derived"]["height_mm"] for n in ("disc_L3_L4", "disc_L4_L5", "disc_L5_S1")}
    for n, want_mm in (("disc_L3_L4", 10.0), ("disc_L4_L5", 10.5), ("disc_L5_S1", 10.0)):
        assert abs(heights[n] - want_mm) < 1.5, heights
    # the derived sac follows the phantom's canal, whose centre at the L4-L5 disc is the origin
    # (phantom_spine's straight coordinates): the sac's section there within 2 mm of it; midline overall
    sac = b["dural_sac"]
    v = np.asarray(sac.mesh.vertices)
    mid = v[np.abs(v[:, 2]) < 2.0]
    assert abs(sac.centroid_mm[0]) < 2.0 and np.linalg.norm(0.5 * (mid.min(0) + mid.max(0))[:2]) < 2.0
    # and the shipped bundle carries the same derivation (one path): its sac and landmarks match these
    assert np.allclose(ref["dural_sac"].centroid_mm, sac.centroid_mm, atol=1.0)
    for side in ("left", "right"):
        name = f"kambin_triangle_L4_L5_{side}"
        assert np.allclose(ref.landmarks[name]["incenter_mm"], b.landmarks[name]["incenter_mm"], atol=1.0), name
    roots = [s.name for s in b.by_tissue("nerve")]
    assert len(roots) == 12  # L3, L4, L5 exiting; L4, L5, S1 traversing; both sides
    gap, inside = _bone_check(b, roots)
    assert inside == 0 and gap > 0.2, (gap, inside)
    from vr_trainer.anatomy.importers import describe

    said = describe(b.path)
    assert "spine derived at levels L3-L4, L4-L5, L5-S1:" in said and "12 nerve roots" in said
    assert f"disc_L4_L5: {heights['disc_L4_L5']:.1f} mm high" in said
    manifest = json.loads((b.path / "manifest.json").read_text())
    derived = [e["name"] for e in manifest["structures"] if "derived" in e]
    assert set(derived) == {s.name for s in b.structures} - set(BONES) - {"skin"}


@pytest.fixture(scope="module")
def phantom_ct_spine(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """The phantom's own CT (1 mm voxels) with a label map of its four bones only, through ``import ct --spine``."""
    import nibabel as nib

    from vr_trainer.anatomy.phantoms import make_volumes

    d = tmp_path_factory.mktemp("phct")
    ct, lab, specs, _lm = make_volumes("spine", spacing_mm=1.0)
    keep = {i: s.name for i, s in specs.items() if s.name in BONES}
    seg = np.where(np.isin(lab.array, list(keep)), lab.array, 0).astype(np.uint8)
    nib.save(nib.Nifti1Image(ct.array, ct.affine), str(d / "ct.nii.gz"))
    nib.save(nib.Nifti1Image(seg, lab.affine), str(d / "seg.nii.gz"))
    (d / "map.yaml").write_text("labels:\n" + "".join(f"  {i}: {n}\n" for i, n in keep.items()), encoding="utf-8")
    assert import_main(["import", "ct", str(d / "ct.nii.gz"), "--labels", str(d / "seg.nii.gz"), "--label-map",
                        str(d / "map.yaml"), "--spine", "--out", str(d / "spine")]) == 0
    return load_bundle(d / "spine")


@pytest.mark.gl
def test_pted_on_a_bundle_imported_from_the_phantom_ct_is_passed_by_the_expert(phantom_ct_spine: Bundle,
                                                                                 tmp_path: Path) -> None:
    from vr_trainer.app.authoring import new_scenario
    from vr_trainer.app.autopilot_cohort import run_autopilot_unrendered

    b = phantom_ct_spine
    ref = _analytic()
    for side in ("left", "right"):
        name = f"kambin_triangle_L4_L5_{side}"
        err = float(np.linalg.norm(np.subtract(b.landmarks[name]["incenter_mm"], ref[name]["incenter_mm"])))
        assert err < 3.0, f"{side} Kambin incentre {err:.2f} mm from the analytic one (from the 1 mm CT)"
    path = new_scenario("pted", b.path, tmp_path / "pted_derived.yaml", level="L4-L5", side="left")
    text = path.read_text(encoding="utf-8")
    assert "kambin_triangle_L4_L5_left" in text and "nerve_root_L5_traversing_left" in text
    s = run_autopilot_unrendered(path, "expert")  # simulated and scored as `run --autopilot expert`, not drawn
    assert s["passed"] is True and s["score"] >= 90, (s["score"], s["metrics"])
    assert s["metrics"]["risk_contacts"]["value"] == 0


def test_derivation_follows_the_bones_when_they_are_rotated_and_shifted() -> None:
    """No coordinate of the shipped files is assumed: the phantom's bones turned 25 degrees and moved give
    the analytic Kambin incentres (:func:`phantom_spine.analytic_landmarks`), turned and moved the same way,
    within 3 mm."""
    from vr_trainer.anatomy.bundle import Structure
    from vr_trainer.anatomy.spine import derive_spine

    ref = load_bundle(PHANTOM)
    m = trimesh.transformations.rotation_matrix(np.radians(25.0), [0.3, 1.0, 0.2])
    m[:3, 3] = [45.0, -30.0, 70.0]
    bones = []
    for n in (*BONES, "disc_L4_L5"):  # one disc given: kept, not derived again
        mesh = ref[n].mesh.copy()
        mesh.apply_transform(m)
        bones.append(Structure.from_mesh(n, ref[n].tissue, mesh))
    d = derive_spine(bones)
    assert {"disc_L3_L4", "disc_L5_S1"} <= {s.name for s in d.structures}
    assert "disc_L4_L5" not in {s.name for s in d.structures}
    for side in ("left", "right"):
        name = f"kambin_triangle_L4_L5_{side}"
        want = trimesh.transform_points(np.array([_analytic()[name]["incenter_mm"]]), m)[0]
        err = float(np.linalg.norm(np.subtract(d.landmarks[name]["incenter_mm"], want)))
        assert err < 3.0, f"{side}: {err:.2f} mm"
    assert all(r["bone_clearance_mm"] > 0.5 for r in d.summary["roots"].values()), d.summary["roots"]


def test_spine_needs_two_adjacent_vertebrae(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = import_main(["import", "mesh", str(PHANTOM / "meshes" / "L3.glb"), "--spine", "--out", str(tmp_path / "x")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--spine needs at least two adjacent vertebrae" in err and "L3" in err


def test_the_shipped_phantom_is_derived_and_its_herniated_roots_displaced() -> None:
    """One path: the shipped phantom's sac, roots and Kambin landmarks are the derivation's (marked so in
    the manifest), within 3 mm of the analytic triangles; each root a fragment lay on was moved off it,
    and the manifest records how far (checked here on the meshes)."""
    b = load_bundle(PHANTOM)
    analytic = _analytic()
    for level in ("L4_L5", "L5_S1"):
        for side in ("left", "right"):
            name = f"kambin_triangle_{level}_{side}"
            got, want = b.landmarks[name], analytic[name]
            assert "derived" in got and "searched" in got["derived"]["approach"]
            err = float(np.linalg.norm(np.subtract(got["incenter_mm"], want["incenter_mm"])))
            # the 3 mm at both levels; measured (left / right): L4-L5 2.1 / 2.1 mm, L5-S1 2.2 / 2.2 mm
            # (5.2 / 4.7 before the L5 root was led in front of the sacral ala instead of over its top)
            assert err < 3.0, f"{name}: derived incentre {err:.2f} mm from the analytic one"
            assert abs(got["inradius_mm"] - want["inradius_mm"]) < 1.5, (name, got["inradius_mm"], want["inradius_mm"])
            assert got["exiting_root"] in b.names() and got["traversing_root"] in b.names()
    nerves = b.by_tissue("nerve")
    assert len(nerves) == 12 and all("derived" in s.extra for s in nerves + [b["dural_sac"]])
    moved = b.manifest["notes"]["herniation_displacement"]["roots"]
    assert set(moved) == {"nerve_root_L5_traversing_left", "nerve_root_S1_traversing_right"}, moved
    for name, info in moved.items():
        root, frag = b[name].mesh, b[info["by"]].mesh
        assert b[name].extra["derived"]["displaced"]["by"] == info["by"]
        assert info["overlap_before_mm"] > 0.5 and info["fragment_clearance_mm"] > 0.5
        gap = float(cKDTree(trimesh.sample.sample_surface_even(frag, 20000, seed=2)[0]).query(root.vertices)[0].min())
        assert not frag.contains(root.vertices).any() and gap > 0.3, f"{name} {gap:.2f} mm from {info['by']}"
    gap, inside = _bone_check(b, [s.name for s in nerves])
    assert inside == 0 and gap > 0.2, (gap, inside)


@pytest.mark.parametrize("pitch_mm", [0.6, 0.8, 1.2])
def test_vertebra_frames_face_forward_at_any_sampling(pitch_mm: float) -> None:
    """The frames' anterior axes follow each vertebra's plane of symmetry whatever the sampling: on the
    phantom (symmetric bones, the midline at x = 0) every frame's anterior axis stays within 2 degrees of
    the sagittal plane (aimed at the body's centroid instead, the sacrum's frame turned 8 degrees at the
    default sampling and 45 at 0.8 mm, moving the L5-S1 landmarks by up to 14 mm)."""
    from vr_trainer.anatomy.spine import spine_frames

    b = load_bundle(PHANTOM)
    frames, _ = spine_frames({("S1" if n == "sacrum" else n): b[n] for n in BONES}, pitch_mm)
    assert set(frames) == {"L3", "L4", "L5", "S1"}
    for name, f in frames.items():
        yaw = float(np.degrees(np.arctan2(abs(f.a[0]), f.a[1])))
        assert yaw < 2.0, f"{name}: anterior axis {yaw:.1f} deg off the sagittal plane at {pitch_mm} mm"
