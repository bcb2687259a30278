"""The chain query's fast path (trilinear values from the fine distance grid, exact search only
where a decision or an unreliable cell needs it) against exact distances on the shipped spine's
nerve roots: trimesh's closest point over every triangle, the sign from the winding number."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from vr_trainer.sim.proximity import ProximityField
from vr_trainer.bench.proximity import winding_number

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "assets" / "spine_l3_s1"
TOLERANCE_MM = 0.25  # issue #10: within 20 mm of the surfaces
NEAR_MM = 20.0
CONTACT_MM = 0.64  # an 18G needle's radius: the contact decision the simulation asks for



@pytest.fixture(scope="module")
def roots() -> dict[str, trimesh.Trimesh]:
    if not (BUNDLE / "manifest.json").is_file():
        pytest.skip(f"no bundle at {BUNDLE}")
    from vr_trainer.anatomy.bundle import load_bundle

    found = [s for s in load_bundle(BUNDLE).structures if s.name.startswith("nerve_root_")]
    if len(found) < 3:
        pytest.skip(f"expected nerve roots in the bundle, got {[s.name for s in found]}")
    return {s.name: trimesh.Trimesh(s.mesh.vertices, s.mesh.faces, process=False) for s in found[:3]}


def test_fast_path_matches_exact_distances_near_the_roots_without_a_sign_error(roots, monkeypatch):
    field = ProximityField.from_meshes({n: (np.asarray(m.vertices), np.asarray(m.faces)) for n, m in roots.items()})
    field.prepare_clearance()
    assert field.grid_nbytes > 0
    searched = []
    real = field._exact_pairs
    monkeypatch.setattr(field, "_exact_pairs", lambda p, js, ip, r: searched.append(len(js)) or real(p, js, ip, r))
    rng = np.random.default_rng(7)
    queried = 0
    for i, (name, mesh) in enumerate(roots.items()):
        # random points from 4 mm inside to 20 mm outside the root, scattered 1 mm sideways
        pts, fid = trimesh.sample.sample_surface(mesh, 200, seed=20 + i)
        pts = pts + rng.uniform(-4.0, NEAR_MM, len(pts))[:, None] * mesh.face_normals[fid] + rng.normal(0, 1, pts.shape)
        _, d, _ = trimesh.proximity.closest_point(mesh, pts)
        ref = np.where(winding_number(np.asarray(mesh.triangles), pts) > 0.5, -d, d)
        for p, r in zip(pts, ref):
            if abs(r) >= NEAR_MM:
                continue
            c = field.clearance(p[None], memo=False, contact_mm=CONTACT_MM)  # a one-point chain: its value
            got = c.distance_mm[name]
            queried += 1
            assert got == pytest.approx(r, abs=TOLERANCE_MM), f"{name}: {got:.3f} mm, exact {r:.3f} mm"
            if abs(r) > 0.05:  # off the surface itself: the side as the winding number says
                assert (got < 0.0) == (r < 0.0) and (name in c.inside) == (r < 0.0), f"{name}: {got} vs {r}"
            if abs(r - CONTACT_MM) > 0.05:
                assert (got < CONTACT_MM) == (r < CONTACT_MM), f"{name}: contact at {got} vs {r}"
    assert queried > 400
    # the grid answered most pairs (else this tested the exact search, not the fast path)
    assert sum(searched) < 0.5 * queried * len(roots), f"{sum(searched)} of {queried * len(roots)} pairs searched"


def test_fast_path_agrees_with_the_bounded_exact_path_on_decisions(roots):
    """Chains near the roots: the same minimum within the tolerance, and the same side of 0 and of
    the contact distance as the path that searches every minimum exactly."""
    meshes = {n: (np.asarray(m.vertices), np.asarray(m.faces)) for n, m in roots.items()}
    fast = ProximityField.from_meshes(meshes)
    exact = ProximityField(fast.surfaces, fine_spacing_mm=None)  # bounds + exact search only
    rng = np.random.default_rng(11)
    for mesh in roots.values():
        for q in trimesh.sample.sample_surface(mesh, 30, seed=5)[0]:
            axis = rng.normal(size=3)
            axis /= np.linalg.norm(axis)
            chain = q + rng.normal(0.0, 2.0, 3) + (np.arange(48) - rng.integers(0, 48))[:, None] * 2.0 * axis
            b = exact.clearance(chain, memo=False)
            for contact in (CONTACT_MM, 8.0):  # a needle's radius; a contact distance past the fine band
                a = fast.clearance(chain, memo=False, contact_mm=contact)
                assert a.inside == b.inside
                for n in meshes:
                    if b.distance_mm[n] < NEAR_MM:
                        assert a.distance_mm[n] == pytest.approx(b.distance_mm[n], abs=TOLERANCE_MM), n
                        assert (a.distance_mm[n] < 0.0) == (b.distance_mm[n] < 0.0), n
                        assert (a.distance_mm[n] < contact) == (b.distance_mm[n] < contact), n
