"""`vr-trainer bench render`: median ms per stereo frame of the default scene, beside
pyrender offscreen rendering the same meshes from the same eye poses in the same run.

pyrender runs in a child process (it owns its own EGL context and OpenGL bindings)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from vr_trainer.app.session import build_session
from vr_trainer.scenario.loader import default_scenario_path, load_scenario
from vr_trainer.xr.headless import headset_fov
from vr_trainer.xr.posetrack import eye_poses


def _scene_arrays() -> tuple[dict[str, Any], list[tuple[str, np.ndarray]], Any]:
    scenario = load_scenario(default_scenario_path())
    scene, meshes = build_session(scenario)
    state = scene.initial_state
    # place the instruments where the demo puts them halfway through
    t_mid = scene.track.duration_s / 2
    pose = scene.track.tool_pose(t_mid)
    items = [(p.mesh_id, scene.world_from_patient) for p in scene.parts]
    if pose is not None and state.instruments:
        items.append((f"instrument:{state.instruments[0].spec.kind}", pose))
    return meshes, items, scene


def bench_render(size: tuple[int, int], frames: int = 60, peer: bool = True) -> dict[str, Any]:
    from vr_trainer.frame import View
    from vr_trainer.render.renderer import SceneRenderer
    from vr_trainer.sim.scene import DrawItem, SceneSnapshot
    from vr_trainer.xr.headless import create_egl_context

    meshes, items, scene = _scene_arrays()
    w, h = size
    ctx = create_egl_context()
    r = SceneRenderer(ctx, samples=4)  # pyrender renders with 4x MSAA too
    for mid, m in meshes.items():
        r.add_mesh(mid, m.vertices_mm, m.faces, m.tissue, double_sided=m.double_sided, lods=m.lods)
    fbos = [ctx.framebuffer(color_attachments=[ctx.texture((w, h), 4)], depth_attachment=ctx.depth_renderbuffer((w, h)))
            for _ in range(2)]
    snap = SceneSnapshot(0.0, 0, tuple(DrawItem(m, x) for m, x in items), (), scene.initial_state.annotations)
    head = scene.track.head_pose(0.0)
    poses = eye_poses(head)
    views = [View(k, p, headset_fov(k, w, h), w, h) for k, p in enumerate(poses)]
    faces = sum(len(meshes[m].faces) for m, _ in items)

    def measure(lod_faces_per_px: float, n: int) -> list[float]:
        r.lod_faces_per_px = lod_faces_per_px
        times = []
        for i in range(n + 3):
            t0 = time.perf_counter()
            for v in views:
                r.render(v, snap, fbos[v.eye_index])
            for fb in fbos:  # read back both eyes, as pyrender returns its image
                fb.read(components=3, alignment=1)
            if i >= 3:
                times.append((time.perf_counter() - t0) * 1000.0)
        return times

    # ours before and after the peer, so that a change in machine load hits both alike
    half = max(frames // 2, 3)
    lod = r.lod_faces_per_px  # the renderer's default level-of-detail density
    lod_t = measure(lod, half)
    full_t = measure(0.0, half)
    peer_ms: float | None = None
    peer_err: str | None = None
    if peer:
        peer_ms, peer_err = _pyrender_ms(meshes, items, views, w, h, frames)
    lod_t += measure(lod, half)
    full_t += measure(0.0, half)
    ours, full = float(np.median(lod_t)), float(np.median(full_t))
    res: dict[str, Any] = {
        "scene": "default (lumbar spine + instrument)", "faces": int(faces), "eye_size": [w, h],
        "gl_renderer": ctx.info.get("GL_RENDERER"), "msaa_samples": r.samples,
        "vr_trainer_ms_per_stereo_frame_median": round(ours, 2),
        "vr_trainer_stereo_fps": round(1000.0 / ours, 1),
        "vr_trainer_full_detail_ms_per_stereo_frame_median": round(full, 2),
        "lod_faces_per_covered_px": lod,
    }
    ctx.release()
    if peer_err is not None:
        res["pyrender_error"] = peer_err
    elif peer_ms is not None:
        res["pyrender_ms_per_stereo_frame_median"] = round(peer_ms, 2)
        res["pyrender_stereo_fps"] = round(1000.0 / peer_ms, 1)
        res["fps_ratio_vs_pyrender"] = round(peer_ms / ours, 2)
        res["fps_ratio_vs_pyrender_full_detail"] = round(peer_ms / full, 2)
    return res


def _pyrender_ms(meshes: dict[str, Any], items: list[tuple[str, np.ndarray]], views: list[Any], w: int, h: int,
                 frames: int) -> tuple[float | None, str | None]:
    """Median ms per stereo frame of pyrender on the same meshes and eye poses (child process)."""
    with tempfile.TemporaryDirectory() as td:
        npz = Path(td) / "scene.npz"
        arrays = {}
        for k, (mid, xf) in enumerate(items):
            arrays[f"v{k}"], arrays[f"f{k}"], arrays[f"x{k}"] = meshes[mid].vertices_mm, meshes[mid].faces, xf
        cams = {f"cam{k}": v.pose_world_from_eye for k, v in enumerate(views)}
        fovs = {f"fov{k}": np.array([v.fov.angle_left, v.fov.angle_right, v.fov.angle_up, v.fov.angle_down])
                for k, v in enumerate(views)}
        np.savez(npz, n=len(items), w=w, h=h, frames=frames, **arrays, **cams, **fovs)  # type: ignore[arg-type]
        env = dict(os.environ, PYOPENGL_PLATFORM="egl", EGL_PLATFORM="surfaceless")
        proc = subprocess.run([sys.executable, "-m", "vr_trainer.bench.render_pyrender", str(npz)],
                              capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        return None, (proc.stderr.strip().splitlines() or ["pyrender failed"])[-1]
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["ms_median"]), None


def cmd_bench_render(args: argparse.Namespace) -> int:
    from vr_trainer.app.run import parse_size

    res = bench_render(parse_size(args.size), args.frames, peer=not args.no_peer)
    print(json.dumps(res, indent=2))
    return 0


def register(bsub: Any) -> None:
    """Add ``render`` to ``vr-trainer bench``."""
    br = bsub.add_parser("render", help="stereo frame time of the default scene vs pyrender")
    br.add_argument("--size", default="640x480", help="per-eye size WxH")
    br.add_argument("--frames", type=int, default=60)
    br.add_argument("--no-peer", action="store_true", help="skip pyrender")
    br.set_defaults(func=cmd_bench_render)
