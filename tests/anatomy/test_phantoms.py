"""Shipped phantoms: adult sizes, the pathology, a free Kambin corridor, reproducibility."""

from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np
import pytest
import trimesh

from vr_trainer.anatomy import load_bundle
from vr_trainer.anatomy.bundle import Bundle

from .conftest import ASSETS


@pytest.fixture(scope="module")
def spine() -> Bundle:
    return load_bundle(ASSETS / "spine_l3_s1")


def _thickness_along_axis(mesh: trimesh.Trimesh) -> float:
    """Length (mm) inside the mesh of the line through its centroid along its thinnest principal axis
    (a disc's own axis: the discs are tilted and wedged by the lordosis)."""
    c = mesh.centroid
    w, v = np.linalg.eigh(np.cov((mesh.vertices - c).T))
    n = v[:, 0]
    loc, _, _ = mesh.ray.intersects_location([c - 500.0 * n], [n])
    t = np.sort((loc - c) @ n)
    assert len(t) >= 2, "the axis ray missed the structure"
    return float(t[-1] - t[0])


def test_spine_has_every_structure_watertight(spine: Bundle) -> None:
    names = set(spine.names())
    expected = {"L3", "L4", "L5", "sacrum", "disc_L3_L4", "disc_L4_L5", "disc_L5_S1", "dural_sac", "herniation_L4_L5"}
    expected |= {f"nerve_root_{r}_{s}" for r in ("L3_exiting", "L4_exiting", "L5_traversing", "S1_traversing")
                 for s in ("left", "right")}
    assert expected <= names
    for s in spine.structures:
        assert s.watertight and s.volume_ml and s.volume_ml > 0, s.name
    tissues = {s.name: s.tissue for s in spine.structures}
    assert tissues["L4"] == "bone" and tissues["disc_L4_L5"] == "disc" and tissues["dural_sac"] == "dura"
    assert tissues["herniation_L4_L5"] == "pathology" and tissues["nerve_root_L4_exiting_left"] == "nerve"


def test_spine_is_adult_sized_and_ordered(spine: Bundle) -> None:
    l4 = spine["L4"].mesh
    body = l4.vertices[l4.vertices[:, 1] > 12.0]  # anterior of the pedicles: the vertebral body
    width = float(np.ptp(body[:, 0]))
    zc = float(np.median(body[:, 2]))
    loc, _, _ = l4.ray.intersects_location([[0.0, 300.0, zc]], [[0.0, -1.0, 0.0]])
    y = np.sort(loc[:, 1])[::-1]  # anterior wall first, then the posterior wall facing the canal
    depth = float(y[0] - y[1])
    assert 45.0 <= width <= 50.0, f"L4 body width {width:.1f} mm"
    assert 30.0 <= depth <= 40.0, f"L4 body depth {depth:.1f} mm"
    for disc in ("disc_L3_L4", "disc_L4_L5", "disc_L5_S1"):
        h = _thickness_along_axis(spine[disc].mesh)  # the centroid lies anterior of the centre: wedge
        assert 8.5 <= h <= 13.0, f"{disc} height {h:.1f} mm"
    z = [spine[n].centroid_mm[2] for n in ("L3", "L4", "L5", "sacrum")]
    assert z == sorted(z, reverse=True), "levels must run L3 (top) to sacrum (bottom): +z is superior"
    # posterior elements behind the body: spinous tip has the most negative y (RAS: +y anterior)
    assert l4.vertices[:, 1].min() < -40.0 and l4.vertices[:, 1].max() > 35.0


def test_herniation_protrudes_left_posterolaterally_into_the_canal(spine: Bundle) -> None:
    h = spine["herniation_L4_L5"]
    disc = spine["disc_L4_L5"].mesh
    c = np.asarray(h.centroid_mm)
    assert c[0] < -5.0, "herniation should be on the patient's left (RAS -x)"
    assert -6.0 < c[2] < 6.0, "herniation should sit at the L4-L5 disc level"
    # the disc's posterior wall at the herniation's x, vs the fragment's most posterior point
    loc, _, _ = disc.ray.intersects_location([[c[0], -100.0, c[2]]], [[0.0, 1.0, 0.0]])
    wall_y = float(loc[:, 1].min())
    assert h.mesh.vertices[:, 1].min() < wall_y - 3.0, "fragment must protrude >= 3 mm behind the disc"
    assert h.volume_ml is not None and 0.1 < h.volume_ml < 2.0


def test_kambin_triangle_corridor_is_free(spine: Bundle) -> None:
    k = spine.landmarks["kambin_triangle_L4_L5_left"]
    a, b, c = (np.asarray(v, float) for v in k["vertices_mm"])
    d = np.asarray(k["approach_direction"], float)
    blockers: trimesh.Trimesh = trimesh.util.concatenate([s.mesh for s in spine.by_tissue("bone", "nerve", "dura")])  # type: ignore[assignment]
    rng = np.random.default_rng(7)
    w = rng.dirichlet([1.0, 1.0, 1.0], size=400)
    pts = w[w.min(axis=1) > 0.2] @ np.stack([a, b, c])
    assert len(pts) > 30
    # nothing solid inside the triangle's core, nothing along the posterolateral approach for 80 mm
    assert not blockers.contains(pts).any()
    hits = blockers.ray.intersects_any(pts, np.repeat(d[None], len(pts), axis=0))
    assert not hits.any(), f"{hits.sum()} of {len(pts)} approach rays hit bone/nerve/dura"
    # ... and the corridor ends in the disc: a few mm beyond the triangle we are inside it
    target = np.asarray(k["incenter_mm"]) - 5.0 * d
    assert spine["disc_L4_L5"].mesh.contains([target])[0]
    # the triangle is bounded by what defines it: exiting root along the hypotenuse, L5 at the base
    root = spine["nerve_root_L4_exiting_left"].mesh
    on_hyp = 0.5 * (b + c)
    assert np.min(np.linalg.norm(root.vertices - on_hyp, axis=1)) < 5.0
    l5 = spine["L5"].mesh
    assert np.min(np.linalg.norm(l5.vertices - 0.5 * (a + b), axis=1)) < 6.0
    assert 3.0 < k["inradius_mm"] < 8.0


def test_knee_and_hip_are_plausible() -> None:
    knee = load_bundle(ASSETS / "knee")
    assert {"femur", "tibia", "patella", "cartilage_femoral", "cartilage_tibial_medial",
            "cartilage_tibial_lateral", "cartilage_patellar"} <= set(knee.names())
    tib = knee["tibia"].mesh
    plateau = tib.vertices[tib.vertices[:, 2] > -15.0]
    assert 65.0 < np.ptp(plateau[:, 0]) < 85.0 and 40.0 < np.ptp(plateau[:, 1]) < 60.0
    femur_low = knee["femur"].mesh.bounds[0, 2]
    tibia_top = knee["tibia"].mesh.bounds[1, 2]
    assert femur_low > tibia_top - 3.0, "femur and tibia must not interpenetrate"
    for s in knee.by_tissue("cartilage"):
        assert s.watertight and s.volume_ml is not None and s.volume_ml > 0.5, s.name
    hip = load_bundle(ASSETS / "hip")
    assert {"hip_right", "hip_left", "sacrum", "femur_right", "cartilage_acetabular_right",
            "cartilage_femoral_head_right"} <= set(hip.names())
    head_c = np.asarray(hip.landmarks["hip_center_right_mm"])
    cup = hip["cartilage_acetabular_right"].mesh
    r = np.linalg.norm(cup.vertices - head_c, axis=1)
    assert 24.0 < r.min() and r.max() < 31.0, "acetabular cartilage should line a ~55 mm socket"
    assert hip["femur_right"].mesh.contains([head_c])[0], "femoral head sits in the acetabulum"
    assert not hip["hip_right"].mesh.contains([head_c])[0]


@pytest.mark.parametrize("name", ["spine_l3_s1", "hip"])
def test_left_is_left_and_right_is_right(name: str) -> None:
    """RAS: the patient's left is -x.  (Also catches surfaces swapped between labels.)"""
    b = load_bundle(ASSETS / name)
    sided = [s for s in b.structures if s.name.endswith(("_left", "_right"))]
    assert len(sided) >= 4
    for s in sided:
        x = s.centroid_mm[0]
        assert (x < 0) if s.name.endswith("_left") else (x > 0), f"{s.name} centroid x = {x:.1f} mm"


def test_bundles_are_small(tmp_path: Path) -> None:
    # the spine carries the prone patient's body (skin, muscles, ilium) and a down-sampled CT: 4 MB at most
    for name, limit in (("spine_l3_s1", 4_000_000), ("knee", 2_500_000), ("hip", 2_500_000)):
        size = sum(f.stat().st_size for f in (ASSETS / name).rglob("*") if f.is_file())
        assert 200_000 < size < limit, f"{name}: {size} bytes"


def test_generator_reproduces_the_shipped_hip_byte_for_byte(tmp_path: Path) -> None:
    from vr_trainer.anatomy.phantoms import main

    assert main(["--out", str(tmp_path), "--only", "hip"]) == 0
    cmp = filecmp.dircmp(tmp_path / "hip", ASSETS / "hip")
    assert not cmp.diff_files and not cmp.left_only and not cmp.right_only
    sub = filecmp.dircmp(tmp_path / "hip" / "meshes", ASSETS / "hip" / "meshes")
    assert not sub.diff_files and not sub.left_only and not sub.right_only


def test_phantom_ct_is_ct_like_and_thresholds_to_bone() -> None:
    from vr_trainer.anatomy.phantoms import make_volumes
    from vr_trainer.anatomy.pipeline import structures_from_threshold

    coarse = [make_volumes("spine", spacing_mm=4.0) for _ in range(2)]  # seeded: the same volumes twice
    assert np.array_equal(coarse[0][0].array, coarse[1][0].array)
    assert np.array_equal(coarse[0][1].array, coarse[1][1].array)
    ct, labels, specs, _ = make_volumes("spine", spacing_mm=1.5)
    bone = np.isin(labels.array, [i for i, s in specs.items() if s.tissue == "bone"])
    assert np.median(ct.array[bone]) > 200 and abs(np.median(ct.array[labels.array == 0]) - 30) < 20
    [surf] = structures_from_threshold(ct, 200.0, max_faces=20_000)
    assert surf.volume_ml is not None and 150.0 < surf.volume_ml < 400.0  # four bones ~260 ml of labelled bone
