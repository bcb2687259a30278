"""``vr-trainer bench cut``: one saw pass (the distal femoral cut) on the shipped knee's femur, ours beside trimesh.

Mesh: the femur of ``assets/knee_tka`` (or ``--bundle``), as shipped and a copy subdivided once
(each triangle into four: 4x the faces, about 118k for the shipped femur; issue #12 asks for a
100k-face femur). Plane: the distal femoral cut, perpendicular to the femoral mechanical axis,
``--depth-mm`` (default 2) above the distal condyles' mean level, from the bundle's stored TKA
landmarks (computed when the manifest has none).

Ours: :func:`vr_trainer.sim.cutting.plane_cut` from a trimesh: the direct plane cut of
:mod:`vr_trainer.sim.cut_direct` (numpy: split the crossing faces, one new vertex per crossed edge,
the loops capped by ear-clipping), with the cut face's area and outline; manifold3d takes over only
when a cut's boundary does not close. Peers, in the same run: trimesh's ``slice_plane(...,
cap=True)`` (its own slice and a triangulated cap), and manifold3d's general Boolean trim
(conversion to a solid, ``trim_by_plane``, mesh export: the route ``plane_cut`` falls back to, and
what it takes from a solid kept between saw passes). Median wall time (and process CPU time) over
``--repeat`` runs each, the ratios, whether each result is watertight, and the results' volumes
(they should agree). The target is met when ours takes <= 50 ms on the largest mesh and is watertight.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import trimesh

TARGET_MS = 50.0  # issue #12: one plane cut of a 100k-face femur, watertight
READOUTS_TARGET_MS = 1.0  # issue #12: the navigation readouts


def _distal_plane(bundle: Any, depth_mm: float) -> Any:
    from vr_trainer.procedures.tka_landmarks import femur_landmarks
    from vr_trainer.sim.cutting import Plane

    rec = (bundle.manifest.get("landmarks") or {}).get("tka", {}).get("femur")
    if rec:
        up = np.asarray(rec["frame"]["superior"], dtype=float)
        mid = 0.5 * (np.asarray(rec["medial_distal_mm"]) + np.asarray(rec["lateral_distal_mm"]))
    else:
        f = femur_landmarks(bundle["femur"].mesh)
        up, mid = f.frame.superior, 0.5 * (f.medial_distal_mm + f.lateral_distal_mm)
    return Plane.make(mid + depth_mm * up, up)  # keeps the femur above the cut


def _median_ms(fn: Callable[[], Any], repeat: int, cpu: list[float] | None = None) -> tuple[float, Any]:
    """Median wall time (ms) of ``repeat`` calls and the last result; ``cpu`` gets the median process
    CPU time (all threads: on a shared machine, the wall figure includes waits for a core)."""
    times, cpus, out = [], [], None
    for _ in range(repeat):
        c, t = time.process_time(), time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1e3)
        cpus.append((time.process_time() - c) * 1e3)
    if cpu is not None:
        cpu.append(statistics.median(cpus))
    return statistics.median(times), out


def _row(name: str, mesh: trimesh.Trimesh, plane: Any, repeat: int) -> dict[str, Any]:
    from vr_trainer.sim.cutting import from_manifold, plane_cut, to_manifold

    mesh = trimesh.Trimesh(mesh.vertices.copy(), mesh.faces.copy(), process=False)
    cpu: list[float] = []
    ours_ms, ours = _median_ms(lambda: plane_cut(mesh, plane), repeat, cpu)
    peer_ms, peer = _median_ms(lambda: mesh.slice_plane(plane.origin_mm, plane.normal, cap=True), repeat, cpu)
    normal, offset = tuple(float(c) for c in plane.normal), plane.offset_mm
    man_ms, man = _median_ms(lambda: from_manifold(to_manifold(mesh).trim_by_plane(normal, offset)), repeat, cpu)
    solid = to_manifold(mesh)
    solid_ms, _ = _median_ms(lambda: plane_cut(solid, plane), repeat)
    return {
        "mesh": name, "faces": int(len(mesh.faces)), "repeat": repeat,
        "ours_ms": round(ours_ms, 2), "ours_cpu_ms": round(cpu[0], 2), "ours_direct": ours.solid is None,
        "ours_watertight": ours.watertight, "ours_faces": int(len(ours.mesh.faces)),
        "ours_volume_ml": round(float(ours.mesh.volume) / 1e3, 3),
        "peer_trimesh_ms": round(peer_ms, 2), "peer_cpu_ms": round(cpu[1], 2),
        "ratio_peer_over_ours": round(peer_ms / ours_ms, 2),
        "peer_watertight": bool(peer.is_watertight), "peer_faces": int(len(peer.faces)),
        "peer_volume_ml": round(float(peer.volume) / 1e3, 3),
        "manifold_ms": round(man_ms, 2), "manifold_cpu_ms": round(cpu[2], 2),
        "ratio_manifold_over_ours": round(man_ms / ours_ms, 2),
        "manifold_watertight": bool(man.is_watertight), "manifold_volume_ml": round(float(man.volume) / 1e3, 3),
        "manifold_from_solid_ms": round(solid_ms, 2),
        "cut_area_mm2": round(ours.cut_area_mm2, 1), "removed_ml": round(ours.removed_volume_mm3 / 1e3, 3)}


def bench_cut(bundle_dir: str | Path | None = None, repeat: int = 5, depth_mm: float = 2.0,
              subdivide: bool = True) -> dict[str, Any]:
    """Figures of ours and trimesh's slice-and-cap on the femur (and its 4x subdivided copy)."""
    from vr_trainer.anatomy.bundle import load_bundle
    from vr_trainer.scenario.loader import REPO_ROOT

    path = Path(bundle_dir) if bundle_dir else REPO_ROOT / "assets" / "knee_tka"
    bundle = load_bundle(path)
    plane = _distal_plane(bundle, depth_mm)
    femur = bundle["femur"].mesh
    meshes = [("femur", femur)]
    if subdivide:
        meshes.append(("femur x4", femur.subdivide()))
    rows = [_row(name, mesh, plane, repeat) for name, mesh in meshes]
    big = rows[-1]
    read = _readouts_ms(bundle)
    return {"bundle": str(path), "plane": {"origin_mm": [round(float(c), 3) for c in plane.origin_mm],
                                           "normal": [round(float(c), 5) for c in plane.normal]},
            "depth_mm": depth_mm, "rows": rows, "target_ms": TARGET_MS, "readouts_ms": read,
            "readouts_target_ms": READOUTS_TARGET_MS,
            "met": bool(big["ours_ms"] <= TARGET_MS and big["ours_watertight"] and read <= READOUTS_TARGET_MS)}


def _readouts_ms(bundle: Any, n: int = 2000) -> float:
    """Median time (ms) of one frame's navigation readouts: the distal femoral, tibial and rotation
    readouts of three planes against the bundle's landmarks (what the knee model shows each step)."""
    from vr_trainer.procedures import tka_readouts as r
    from vr_trainer.procedures.tka_landmarks import femur_landmarks, tibia_landmarks
    from vr_trainer.procedures.tka_slots import planned_cuts
    from vr_trainer.scenario.schema import TkaPlan

    f = femur_landmarks(bundle["femur"].mesh)
    t = tibia_landmarks(bundle["tibia"].mesh, side=f.side)
    cuts = planned_cuts(f, t, TkaPlan())
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        r.distal_femoral(cuts.distal, f)
        r.tibial(cuts.tibial, t)
        r.femoral_rotation(cuts.posterior, f)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def run(args: argparse.Namespace) -> int:
    r = bench_cut(args.bundle, args.repeat, args.depth_mm, not args.no_subdivide)
    print(f"distal femoral cut, {r['depth_mm']:g} mm above the distal condyles ({r['bundle']}); "
          f"median of {args.repeat}")
    for row in r["rows"]:
        print(f"  {row['mesh']:9s} {row['faces']:7d} faces: ours {row['ours_ms']:7.2f} ms "
              f"({'direct cut' if row['ours_direct'] else 'manifold3d fallback'}), "
              f"watertight {row['ours_watertight']}, "
              f"{row['ours_volume_ml']} ml | trimesh slice_plane+cap {row['peer_trimesh_ms']:7.2f} ms, "
              f"watertight {row['peer_watertight']}, {row['peer_volume_ml']} ml | trimesh/ours "
              f"{row['ratio_peer_over_ours']}x")
        print(f"            manifold3d trim (solid, trim, mesh) {row['manifold_ms']:.2f} ms (from a kept solid "
              f"{row['manifold_from_solid_ms']:.2f} ms), watertight {row['manifold_watertight']}, "
              f"{row['manifold_volume_ml']} ml | manifold3d/ours {row['ratio_manifold_over_ours']}x; CPU time: "
              f"ours {row['ours_cpu_ms']:.2f}, trimesh {row['peer_cpu_ms']:.2f}, "
              f"manifold3d {row['manifold_cpu_ms']:.2f} ms")
    print(f"  navigation readouts (distal, tibial, rotation) per frame: {r['readouts_ms'] * 1e3:.1f} us "
          f"(target <= {r['readouts_target_ms']:g} ms)")
    print(f"  target: <= {TARGET_MS:g} ms and watertight on the largest mesh, readouts <= "
          f"{r['readouts_target_ms']:g} ms: {'met' if r['met'] else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
    return 0 if r["met"] else 1


def register(bench_subparsers: Any) -> argparse.ArgumentParser:
    """Add ``bench cut`` to the main CLI's ``bench`` sub-parsers."""
    b = bench_subparsers.add_parser(
        "cut", help="time one plane cut of the knee femur (ours) beside trimesh's slice-and-cap and manifold3d's trim",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--bundle", default=None, help="knee bundle with a femur (default: assets/knee_tka)")
    b.add_argument("--repeat", type=int, default=5, help="runs per method (the median is kept)")
    b.add_argument("--depth-mm", type=float, default=2.0, help="cut level above the distal condyles (mm)")
    b.add_argument("--no-subdivide", action="store_true", help="only the femur as shipped")
    b.add_argument("--json", default=None, help="also write the result as JSON here")
    b.set_defaults(func=run)
    return b


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m vr_trainer.bench.cut`` (the same as ``vr-trainer bench cut``)."""
    ap = argparse.ArgumentParser(prog="python -m vr_trainer.bench.cut")
    sub = ap.add_subparsers(dest="bench", required=True)
    register(sub)
    args = ap.parse_args(["cut", *(argv or [])])
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main(__import__("sys").argv[1:]))
