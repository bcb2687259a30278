"""``vr-trainer bench import``: our import pipeline beside a plain one.

Cases (each run in a fresh forked process so peak memory is per run):

* example CT: ``example_ct_sm.nii.gz`` + ``example_seg.nii.gz`` -> bundle;
* synthetic CT 512 x 512 x 400 (int16 HU, 0.8 mm voxels, trunk with a
  vertebral column and two femora) -> bone surface bundle.

The peer is the plain recipe: full-volume mask per label (or the HU volume),
``skimage.measure.marching_cubes``, ``trimesh.Trimesh`` (merging vertices),
Taubin smoothing, quadric decimation to the same budget, GLB export.
Printed: median seconds, peer/ours ratio, peak RSS (MB), faces.  Both
pipelines are warmed up once in the parent first, so the figures are the
pipeline's own cost, not Python start-up and lazy imports.
Targets: example CT <= 3 s; 512 x 512 x 400 <= 60 s and <= 4 GB.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vr_trainer.anatomy.cli import set_handler

TARGETS = {"example_s": 3.0, "large_s": 60.0, "large_mb": 4096.0}


def _peak_reset() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM (Linux >= 4.0)
    except OSError:
        pass


def _peak_mb() -> float:
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _child(fn: Callable[[], int], conn: Any) -> None:
    _peak_reset()
    t0 = time.perf_counter()
    try:
        faces = fn()
        conn.send((time.perf_counter() - t0, _peak_mb(), faces, None))
    except BaseException as exc:  # noqa: BLE001 - report to the parent, never hang it
        conn.send((0.0, _peak_mb(), 0, f"{type(exc).__name__}: {exc}"))
    conn.close()


def _measure(fn: Callable[[], int]) -> tuple[float, float, int]:
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(fn, child))
    p.start()
    child.close()
    secs, mb, faces, err = parent.recv()
    p.join()
    if err:
        raise RuntimeError(err)
    return secs, mb, faces


# ------------------------------------------------------------ the two pipelines
def ours_ct(ct: Path, labels: Path | None, out: Path) -> int:
    from vr_trainer.anatomy.importers import import_ct

    out = import_ct(ct, out, labels=labels, threshold_hu=None if labels else 200.0)
    return sum(int(s["face_count"]) for s in json.loads((out / "manifest.json").read_text())["structures"])


def peer_ct(ct: Path, labels: Path | None, out: Path) -> int:
    """Plain scikit-image + trimesh recipe (full volume, no cropping)."""
    import nibabel as nib
    import trimesh
    from skimage import measure

    from vr_trainer.anatomy.labelmaps import TOTALSEGMENTATOR_TOTAL
    from vr_trainer.anatomy.tissues import FACE_BUDGET

    out.mkdir(parents=True, exist_ok=True)
    faces = 0
    if labels is not None:
        img: Any = nib.load(str(labels))
        seg = np.asarray(img.dataobj)
        ct_img: Any = nib.load(str(ct))
        ct_img.get_fdata()  # the CT is read too, as ours does
        jobs = [((seg == i).astype(np.float32), 0.5, TOTALSEGMENTATOR_TOTAL[i])
                for i in np.unique(seg) if i in TOTALSEGMENTATOR_TOTAL]
    else:
        img = nib.load(str(ct))
        jobs = [(img.get_fdata(dtype=np.float32), 200.0, ("bone", "bone"))]
    for vol, level, (name, tissue) in jobs:
        if vol.max() <= level:
            continue
        v, f, _n, _ = measure.marching_cubes(vol, level, gradient_direction="ascent")
        v = v @ img.affine[:3, :3].T + img.affine[:3, 3]
        m = trimesh.Trimesh(v, f)  # process=True merges vertices
        trimesh.smoothing.filter_taubin(m, iterations=8)
        budget = FACE_BUDGET[tissue] if labels is not None else 120_000
        if len(m.faces) > budget:
            m = m.simplify_quadric_decimation(face_count=budget)
        glb = m.export(file_type="glb")
        assert isinstance(glb, bytes)
        (out / f"{name}.glb").write_bytes(glb)
        faces += len(m.faces)
    return faces


# ------------------------------------------------------------ synthetic volume
def synthetic_ct(shape: tuple[int, int, int], spacing_mm: float = 0.8, seed: int = 1) -> np.ndarray:
    """CT-like int16 HU volume: air, a soft-tissue trunk, vertebrae with
    posterior rings along z, two femoral shafts, seeded noise."""
    nx, ny, nz = shape
    rng = np.random.default_rng(seed)
    x = ((np.arange(nx) - nx / 2) * spacing_mm).astype(np.float32)[:, None]
    y = ((np.arange(ny) - ny / 2) * spacing_mm).astype(np.float32)[None, :]
    out = np.empty(shape, np.int16)
    trunk = (x / 170.0) ** 2 + (y / 120.0) ** 2 < 1.0
    period = 36.0
    for k in range(nz):
        z = (k - nz / 2) * spacing_mm
        sl = np.where(trunk, 40.0, -1000.0).astype(np.float32)
        phase = (z % period) - period / 2
        r_body = 22.0 * (1.0 - 0.06 * (1 - (phase / 13.0) ** 2)) if abs(phase) < 13.0 else 0.0
        if r_body:
            body = (x / (r_body * 1.05)) ** 2 + ((y - 25.0) / r_body) ** 2 < 1.0
            sl[body] = 260.0
            ring = np.abs(np.hypot(x / 1.3, y + 12.0) - 14.0) < 4.0
            sl[ring & (y < 8.0)] = 700.0
            sl[(np.abs(x) < 3.5) & (y < -20.0) & (y > -55.0) & (phase < 4.0)] = 700.0
        else:
            sl[(x / 25.0) ** 2 + ((y - 25.0) / 19.0) ** 2 < 1.0] = 80.0  # disc
        for sx in (-110.0, 110.0):
            d = np.hypot(x - sx, y - 10.0)
            sl[d < 14.0] = 1200.0
            sl[d < 9.0] = 200.0
        sl += rng.normal(0.0, 20.0, size=sl.shape).astype(np.float32)
        out[:, :, k] = np.clip(sl, -1024, 3071)
    return out


def _write_nifti(arr: np.ndarray, path: Path, spacing_mm: float) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(arr, np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0]))
    img.header.set_xyzt_units("mm")
    nib.save(img, str(path))


def _case(label: str, ours: Callable[[Path], int], peer: Callable[[Path], int], repeat: int, tmp: Path,
          warmup: bool = False) -> dict[str, Any]:
    rows: dict[str, list[tuple[float, float, int]]] = {"ours": [], "peer": []}
    pair = [("ours", ours), ("peer", peer)]
    if warmup:  # in this process, so forked runs inherit lazily imported modules and warm caches
        for who, fn in pair:
            fn(tmp / f"warm-{who}")
    for r in range(repeat):
        for who, fn in (pair if r % 2 == 0 else pair[::-1]):  # alternate who runs first
            out = tmp / f"{label.split()[0]}-{who}-{r}"
            rows[who].append(_measure(functools.partial(fn, out)))
    res: dict[str, Any] = {"case": label, "repeat": repeat}
    for who, vals in rows.items():
        res[f"{who}_s"] = statistics.median(v[0] for v in vals)
        res[f"{who}_peak_mb"] = max(v[1] for v in vals)
        res[f"{who}_faces"] = vals[-1][2]
    res["ratio_peer_over_ours"] = res["peer_s"] / res["ours_s"] if res["ours_s"] else float("nan")
    return res


def _default_data() -> Path:
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ct" / "totalsegmentator-example"


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print the table; returns 0 (1 when a target is missed)."""
    from vr_trainer.anatomy.errors import AnatomyError

    data = Path(args.data) if args.data else _default_data()
    ct, seg = data / "example_ct_sm.nii.gz", data / "example_seg.nii.gz"
    if not ct.is_file() or not seg.is_file():
        raise AnatomyError(f"{data}: example CT not found; "
                           "pass --data FOLDER with example_ct_sm.nii.gz and example_seg.nii.gz")
    shape = tuple(int(v) for v in str(args.shape).split(","))
    if len(shape) != 3:
        raise AnatomyError(f"--shape {args.shape!r}: give three sizes like 512,512,400")
    import fast_simplification  # noqa: F401  (import once here so forked runs time the work, not imports)
    import nibabel  # noqa: F401
    import scipy.ndimage  # noqa: F401
    import skimage.measure  # noqa: F401
    import trimesh  # noqa: F401

    from vr_trainer.anatomy import importers  # noqa: F401

    results = []
    with tempfile.TemporaryDirectory(prefix="vr-bench-import-") as td:
        tmp = Path(td)
        results.append(_case("example CT 122x101x30 + labels", lambda o: ours_ct(ct, seg, o),
                             lambda o: peer_ct(ct, seg, o), args.repeat, tmp, warmup=True))
        _print(results[-1])
        if not args.skip_large:
            vol = tmp / "synthetic.nii"
            t0 = time.perf_counter()
            _write_nifti(synthetic_ct(shape), vol, 0.8)  # type: ignore[arg-type]
            print(f"(synthetic {'x'.join(map(str, shape))} volume made in {time.perf_counter() - t0:.1f} s, not timed)")
            small = tmp / "warm.nii"
            _write_nifti(synthetic_ct((64, 64, 48)), small, 0.8)
            ours_ct(small, None, tmp / "warm-o"), peer_ct(small, None, tmp / "warm-p")  # warm code paths
            results.append(_case(f"synthetic {'x'.join(map(str, shape))} CT, bone threshold",
                                 lambda o: ours_ct(vol, None, o), lambda o: peer_ct(vol, None, o), args.repeat, tmp))
            _print(results[-1])
    ok = results[0]["ours_s"] <= TARGETS["example_s"]
    line = [f"example CT {results[0]['ours_s']:.2f} s (target <= {TARGETS['example_s']:g} s)"]
    if len(results) > 1:
        big = results[1]
        ok = ok and big["ours_s"] <= TARGETS["large_s"] and big["ours_peak_mb"] <= TARGETS["large_mb"]
        line.append(f"large {big['ours_s']:.1f} s (<= {TARGETS['large_s']:g} s), "
                    f"peak {big['ours_peak_mb']:.0f} MB (<= {TARGETS['large_mb']:g} MB)")
    print("targets: " + "; ".join(line) + (" -> met" if ok else " -> MISSED"))
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "targets": TARGETS, "cpus": os.cpu_count()},
                                              indent=1))
    return 0 if ok else 1


def _print(r: dict[str, Any]) -> None:
    print(f"{r['case']} (median of {r['repeat']})\n"
          f"  ours : {r['ours_s']:7.2f} s  peak {r['ours_peak_mb']:7.0f} MB  {r['ours_faces']:>9} faces\n"
          f"  peer : {r['peer_s']:7.2f} s  peak {r['peer_peak_mb']:7.0f} MB  {r['peer_faces']:>9} faces"
          f"  (plain scikit-image + trimesh)\n"
          f"  ratio: peer/ours = {r['ratio_peer_over_ours']:.2f}x", flush=True)


def register(bench_subparsers: Any) -> argparse.ArgumentParser:
    """Add ``bench import`` to the main CLI's ``bench`` sub-parsers."""
    b = bench_subparsers.add_parser("import", help="time CT import against a plain scikit-image + trimesh pipeline",
                                    description="Example CT -> bundle and a synthetic 512x512x400 volume, each beside "
                                                "a plain scikit-image + trimesh pipeline in the same run; medians, "
                                                "ratios and peak memory.")
    b.add_argument("--repeat", type=int, default=3, help="runs per case (median reported)")
    b.add_argument("--data", default=None, help="folder with example_ct_sm.nii.gz/example_seg.nii.gz "
                                                "(default ../shared/data/ct/totalsegmentator-example)")
    b.add_argument("--shape", default="512,512,400", help="synthetic volume shape (voxels)")
    b.add_argument("--skip-large", action="store_true", help="only the example CT")
    b.add_argument("--json", default=None, metavar="FILE", help="also write the figures as JSON")
    set_handler(b, run)
    return b
