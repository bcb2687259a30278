"""``vr-trainer bench fluoro``: one C-arm shot (a DRR) from the shared example CT, ours beside
plastimatch's ``drr`` (Debian package ``plastimatch``, ``--algorithm exact``: Siddon's exact
voxel traversal, OpenMP on the CPU) with the same geometry, in the same run.

Geometry: the CT's centre as isocentre, AP (PA beam, patient prone; see
:mod:`vr_trainer.sim.carm`), SAD 1000 mm, SID 1500 mm, a 400 mm square detector of 512 x 512
pixels. Both use the same HU -> attenuation conversion (plastimatch's: 0.022/mm water, 0 at or
below -800 HU), so their images agree up to sampling; the agreement is the Pearson r over all
pixels (target >= 0.99). Times: ours is :meth:`DrrRenderer.render` (ray casting and readback,
volume already on the GPU); plastimatch's is its own ``Total time`` line (ray casting only,
excluding its volume load and HU preprocessing) and the wall time of the whole command.
Medians over ``--repeat`` shots.

plastimatch reads MetaImage in LPS with direction cosines ignored for its isocentre; the CT is
written as an axis-aligned LPS ``.mha`` (axes flipped, identity direction) so both programs see
the same voxels in the same place (see ../shared/RUNTIME-NOTES.md). Its panel axes: columns
along ``vup x nrm``, rows along ``-vup``; ours (``detector_u``, ``detector_v``) are the mirror
image of that for the same ``nrm``/``vup``, so its image is flipped left-right to compare. Its
``-r``, ``-z`` and ``-c`` take the column count (width) first, whatever its help says (checked on
non-square detectors: r >= 0.997 in AP, lateral and oblique, both sides, off-centre isocentre).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from vr_trainer.sim.carm import CArmGeometry, carm_geometry

EXAMPLE_CT = Path("ct/totalsegmentator-example/example_ct.nii.gz")
TARGET_R = 0.99
_LPS = np.array([-1.0, -1.0, 1.0])


def default_ct_path() -> Path:
    """../shared/data's example CT beside the project (it may be absent)."""
    return Path(__file__).resolve().parents[3] / "shared" / "data" / EXAMPLE_CT


def plastimatch_available() -> bool:
    return shutil.which("plastimatch") is not None


def write_mha_lps(hu: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """Write a RAS volume with an axis-aligned affine as a MetaImage plastimatch reads: LPS,
    identity direction (array axes flipped where RAS and LPS differ), int16."""
    a = np.asarray(affine, float)
    if not np.allclose(a[:3, :3], np.diag(np.diag(a[:3, :3])), atol=1e-6):
        raise ValueError("write_mha_lps: the volume must be axis-aligned (resample it first)")
    diag = np.diag(a[:3, :3])
    arr = np.asarray(hu)
    corner = a[:3, 3].copy()
    spacing = np.abs(diag)
    for ax in range(3):
        # along LPS axis ax the index must increase: RAS step * LPS sign must be > 0
        if diag[ax] * _LPS[ax] < 0:
            arr = np.flip(arr, axis=ax)
            corner[ax] = corner[ax] + diag[ax] * (arr.shape[ax] - 1)
    origin_lps = corner * _LPS
    header = ("ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
              "CompressedData = False\nTransformMatrix = 1 0 0 0 1 0 0 0 1\n"
              f"Offset = {origin_lps[0]:.6f} {origin_lps[1]:.6f} {origin_lps[2]:.6f}\n"
              "CenterOfRotation = 0 0 0\nAnatomicalOrientation = RAI\n"
              f"ElementSpacing = {spacing[0]:.6f} {spacing[1]:.6f} {spacing[2]:.6f}\n"
              f"DimSize = {arr.shape[0]} {arr.shape[1]} {arr.shape[2]}\n"
              "ElementType = MET_SHORT\nElementDataFile = LOCAL\n")
    data = np.ascontiguousarray(np.clip(arr, -32768, 32767).astype("<i2").transpose(2, 1, 0)).tobytes()
    path.write_bytes(header.encode("ascii") + data)


def read_pfm(path: Path) -> np.ndarray:
    """A greyscale PFM (``Pf``) as written by plastimatch: (rows, cols) float32 in file order."""
    raw = path.read_bytes()
    parts = raw.split(b"\n", 3)
    if parts[0].strip() != b"Pf":
        raise ValueError(f"{path}: not a greyscale PFM")
    w, h = (int(x) for x in parts[1].split())
    scale = float(parts[2])
    dt = "<f4" if scale < 0 else ">f4"
    return np.frombuffer(parts[3][: w * h * 4], dtype=dt).reshape(h, w).astype(np.float32)


def plastimatch_drr(mha: Path, geometry: CArmGeometry, workdir: Path) -> tuple[np.ndarray, float, float]:
    """Run ``plastimatch drr --algorithm exact`` for ``geometry`` on ``mha`` (LPS, identity direction).
    Returns (image (h, w) in our pixel order, its reported ray-casting time s, the command's wall time s)."""
    w, h = geometry.pixels
    nrm = -geometry.beam_direction * _LPS  # from the detector towards the source, LPS
    vup = -geometry.detector_v * _LPS  # towards the top row
    iso = geometry.isocentre_ras_mm * _LPS
    sx, sy = geometry.detector_size_mm
    prefix = workdir / "drr"
    cmd = ["plastimatch", "drr", "-t", "pfm", "-i", "exact", "-a", "1", "-r", f"{w} {h}", "-z", f"{sx} {sy}",
           "-c", f"{(w - 1) / 2.0} {(h - 1) / 2.0}", "--sad", f"{geometry.sad_mm}", "--sid", f"{geometry.sid_mm}",
           "-o", " ".join(f"{x:.4f}" for x in iso), "-n", " ".join(f"{x:.6f}" for x in nrm),
           "--vup", " ".join(f"{x:.6f}" for x in vup), "-O", str(prefix), "-I", str(mha)]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"plastimatch drr failed ({res.returncode}): {res.stderr[-800:]}")
    m = re.search(r"Total time:\s*([0-9.eE+-]+)", res.stdout + res.stderr)
    reported = float(m.group(1)) if m else wall
    img = read_pfm(Path(f"{prefix}0000.pfm"))
    return np.fliplr(img), reported, wall


def pearson_r(a: np.ndarray, b: np.ndarray) -> float:
    x, y = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    return float(np.corrcoef(x, y)[0, 1])


def compare(ct_path: Path, pixels: int = 512, repeat: int = 5, view: str = "ap",
            keep: Path | None = None, ctx: Any = None) -> dict[str, Any]:
    """Ours vs plastimatch on one CT: timings (medians; the two alternate shot by shot, so both
    meet the same machine load), Pearson r, the geometry. ``ctx``: a moderngl context to use
    (default: a standalone EGL one made and released here)."""
    import os

    import moderngl

    from vr_trainer.anatomy.volume import read_volume
    from vr_trainer.render.drr import DrrRenderer, to_rgb

    vol = read_volume(ct_path)
    centre = (vol.affine @ np.append((np.asarray(vol.array.shape) - 1) / 2.0, 1.0))[:3]
    geom = carm_geometry(view, centre, "left", sad_mm=1000.0, sid_mm=1500.0, detector_mm=400.0, pixels=pixels)
    own = ctx is None
    if own:
        os.environ.setdefault("EGL_PLATFORM", "surfaceless")
        ctx = moderngl.create_standalone_context(backend="egl", require=330)  # type: ignore[arg-type]
    ours_s: list[float] = []
    peer_s: list[float] = []
    peer_wall: list[float] = []
    try:
        renderer = ctx.info.get("GL_RENDERER", "?")
        drr = DrrRenderer(ctx, vol)
        with tempfile.TemporaryDirectory(prefix="vrt-fluoro-") as tmp:
            mha = Path(tmp) / "ct.mha"
            write_mha_lps(vol.array, vol.affine, mha)
            ours = drr.render(geom)  # warm-up: shader compile, first upload
            for _ in range(repeat):
                t0 = time.perf_counter()
                ours = drr.render(geom)
                ours_s.append(time.perf_counter() - t0)
                peer, rep, wall = plastimatch_drr(mha, geom, Path(tmp))
                peer_s.append(rep)
                peer_wall.append(wall)
        drr.release()
    finally:
        if own:
            ctx.release()
    r = pearson_r(ours, peer)
    if keep is not None:
        from PIL import Image

        keep.mkdir(parents=True, exist_ok=True)
        Image.fromarray(to_rgb(ours)).save(keep / "ours.png")
        Image.fromarray(to_rgb(peer * 10.0)).save(keep / "plastimatch.png")  # its output is in cm: x10 for ours
    ours_ms = float(np.median(ours_s) * 1000)
    peer_ms = float(np.median(peer_s) * 1000)
    return {
        "ct": str(ct_path), "ct_shape": list(vol.array.shape), "ct_spacing_mm": vol.spacing_mm.round(3).tolist(),
        "pixels": pixels, "view": view, "geometry": geom.to_json(), "gl_renderer": renderer, "repeat": repeat,
        "ours_ms": {"median": ours_ms, "all": [round(t * 1000, 2) for t in ours_s]},
        "plastimatch_ms": {"median": peer_ms, "all": [round(t * 1000, 2) for t in peer_s],
                           "wall_median": float(np.median(peer_wall) * 1000)},
        "ratio_plastimatch_over_ours": peer_ms / ours_ms if ours_ms > 0 else float("inf"),
        "shots_per_s": 1000.0 / ours_ms if ours_ms > 0 else float("inf"),
        "pearson_r": r,
        "scale_ours_over_plastimatch": float(np.sum(ours * peer) / max(np.sum(peer * peer), 1e-12)),
        "met": {"pearson_r": r >= TARGET_R, "no_slower": ours_ms <= peer_ms},
    }


def _ticker(until: Any, limit_s: float = 60.0) -> list[float]:
    """Gaps (ms) of a 1 ms sleeper on this thread until ``until()`` is true (or ``limit_s``)."""
    gaps: list[float] = []
    t0 = last = time.perf_counter()
    while not until() and last - t0 < limit_s:
        time.sleep(0.001)
        now = time.perf_counter()
        gaps.append((now - last) * 1000.0)
        last = now
    return gaps


def stall(ct_path: Path, pixels: int = 512, shots: int = 3) -> dict[str, Any]:
    """What an asynchronous shot costs the frame loop's thread: a 1 ms ticker's gaps while a worker
    thread renders ``shots`` shots as :class:`vr_trainer.app.fluoro.FluoroService` does (own EGL
    context, nice 10, glFinish outside the GIL), against the same ticker with no shot."""
    import os
    import threading

    import moderngl

    from vr_trainer.anatomy.volume import read_volume
    from vr_trainer.app.fluoro import WORKER_NICE
    from vr_trainer.render.drr import DrrRenderer

    vol = read_volume(ct_path)
    centre = (vol.affine @ np.append((np.asarray(vol.array.shape) - 1) / 2.0, 1.0))[:3]
    geom = carm_geometry("ap", centre, "left", sad_mm=1000.0, sid_mm=1500.0, detector_mm=400.0, pixels=pixels)
    ready, go, done = threading.Event(), threading.Event(), threading.Event()
    render_ms: list[float] = []

    def worker() -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKER_NICE)
        except (AttributeError, OSError):
            pass
        os.environ.setdefault("EGL_PLATFORM", "surfaceless")
        ctx = moderngl.create_standalone_context(backend="egl", require=330)  # type: ignore[arg-type]
        drr = DrrRenderer(ctx, vol)
        drr.prepare()
        drr.render(geom)
        ready.set()
        go.wait()
        for _ in range(shots):
            t0 = time.perf_counter()
            drr.render(geom)
            render_ms.append((time.perf_counter() - t0) * 1000.0)
        drr.release()
        ctx.release()
        done.set()

    th = threading.Thread(target=worker, daemon=True)
    th.start()
    ready.wait(120)
    t_base = time.perf_counter()
    base = _ticker(lambda: time.perf_counter() - t_base > 1.0)
    go.set()
    during = _ticker(done.is_set)
    th.join(60)
    return {"pixels": pixels, "shots": shots, "render_ms_median": float(np.median(render_ms)) if render_ms else None,
            "baseline_gap_ms": {"max": max(base), "p99": float(np.percentile(base, 99))},
            "during_gap_ms": {"max": max(during) if during else None,
                              "p99": float(np.percentile(during, 99)) if during else None}}


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print the figures; 0 when the agreement target is met."""
    ct = Path(args.ct) if args.ct else default_ct_path()
    if not ct.is_file():
        print(f"bench fluoro: no CT at {ct} (the shared example CT, ../shared/data/{EXAMPLE_CT}); pass --ct FILE")
        return 2
    if not plastimatch_available():
        print("bench fluoro: plastimatch is not installed (apt-get install plastimatch; scripts/setup.sh test)")
        return 2
    r = compare(ct, args.pixels, args.repeat, args.view, Path(args.keep) if args.keep else None)
    print(f"CT {r['ct']} {r['ct_shape']} at {r['ct_spacing_mm']} mm; {r['view']} shot {r['pixels']}x{r['pixels']}, "
          f"SAD 1000 mm, SID 1500 mm, 400 mm detector; GL: {r['gl_renderer']}")
    o, p = r["ours_ms"], r["plastimatch_ms"]
    print(f"  ours        : median {o['median']:.1f} ms per shot ({r['shots_per_s']:.1f} shots/s; "
          f"Joseph slice sampling on the GL device, {r['repeat']} shots)")
    print(f"  plastimatch : median {p['median']:.1f} ms per shot (its 'Total time', exact algorithm; "
          f"whole command {p['wall_median']:.0f} ms)")
    print(f"  ratio plastimatch/ours: {r['ratio_plastimatch_over_ours']:.2f}x  "
          f"(target >= 1: ours no slower on llvmpipe)")
    print(f"  agreement: Pearson r = {r['pearson_r']:.5f} (target >= {TARGET_R}); "
          f"scale ours/plastimatch {r['scale_ours_over_plastimatch']:.3f} (plastimatch reports cm)")
    if not args.no_stall:
        st = stall(ct, args.pixels)
        r["stall"] = st
        print(f"  frame-loop thread during asynchronous shots ({st['shots']} x {st['pixels']}px, median "
              f"{st['render_ms_median']:.0f} ms each, on a worker thread): a 1 ms ticker's longest gap "
              f"{st['during_gap_ms']['max']:.1f} ms (p99 {st['during_gap_ms']['p99']:.1f}); with no shot "
              f"{st['baseline_gap_ms']['max']:.1f} ms (p99 {st['baseline_gap_ms']['p99']:.1f})")
    m = r["met"]
    print(f"targets: r >= {TARGET_R} {'met' if m['pearson_r'] else 'MISSED'}; "
          f"no slower than plastimatch {'met' if m['no_slower'] else 'MISSED'}")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
    return 0 if m["pearson_r"] else 1


def register(bench_subparsers: Any) -> argparse.ArgumentParser:
    """Add ``bench fluoro`` to the main CLI's ``bench`` sub-parsers."""
    b = bench_subparsers.add_parser(
        "fluoro", help="time one C-arm DRR shot against plastimatch's drr (same geometry) and compare the images",
        description="One 512x512 DRR from the shared example CT, ours (GPU ray march) beside plastimatch drr "
                    "(exact algorithm) with SAD 1000 mm, SID 1500 mm and a 400 mm detector: median times, ratio "
                    "and the Pearson r between the two images.")
    b.add_argument("--ct", default=None, help="CT volume (default: ../shared/data's TotalSegmentator example CT)")
    b.add_argument("--pixels", type=int, default=512, help="detector pixels per side")
    b.add_argument("--repeat", type=int, default=5, help="shots timed for each (medians reported)")
    b.add_argument("--view", default="ap", choices=("ap", "lateral", "oblique"))
    b.add_argument("--no-stall", action="store_true", help="skip the frame-loop stall measurement")
    b.add_argument("--keep", default=None, help="write both images (PNG) into this folder")
    b.add_argument("--json", default=None, help="also write the result as JSON here")
    b.set_defaults(func=run)
    return b
