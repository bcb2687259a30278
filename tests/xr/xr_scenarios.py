"""OpenXR scenarios run in a child process (the tests give each a hard timeout).

    python xr_scenarios.py NAME OUT_JSON [ARGS...]

The environment names the runtime (XR_RUNTIME_JSON, Monado's null compositor and
simulated HMD); each scenario writes its findings as JSON to OUT_JSON.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vr_trainer.xr.base import BackendError
from vr_trainer.xr.openxr import OpenXRBackend

EYE_RGB = [(0.8, 0.1, 0.1), (0.1, 0.2, 0.9)]  # eye 0 red, eye 1 blue
MARK_RGB = (0.1, 0.9, 0.2)  # a green triangle in the top half of each eye

VS = """#version 330 core
in vec2 in_pos;
void main() { gl_Position = vec4(in_pos, 0.0, 1.0); }"""
FS = """#version 330 core
uniform vec3 u_rgb;
out vec4 f_color;
void main() { f_color = vec4(u_rgb, 1.0); }"""


def region_means(img: np.ndarray) -> dict[str, list[float]]:
    h, w = img.shape[:2]
    return {"at_ndc_0_0.4": img[int(h * 0.3), w // 2].tolist(),  # inside the triangle, upper half
            "at_ndc_0_-0.4": img[int(h * 0.7), w // 2].tolist(),  # lower half, where nothing is drawn
            "top": img[: h // 4].reshape(-1, 3).mean(0).round(1).tolist(),
            "bottom": img[-h // 4:].reshape(-1, 3).mean(0).round(1).tolist(),
            "all": img.reshape(-1, 3).mean(0).round(1).tolist()}


def plain_frames(out: dict[str, Any], n: int) -> None:
    """N frames of per-eye clears plus a triangle, read back from the swapchains."""
    backend = OpenXRBackend(max_frames=n)
    ctx = backend.open()
    try:
        prog = ctx.program(vertex_shader=VS, fragment_shader=FS)
        tri = np.array([-0.6, 0.2, 0.6, 0.2, 0.0, 0.95], dtype="f4")  # top half only
        vao = ctx.vertex_array(prog, [(ctx.buffer(tri.tobytes()), "2f", "in_pos")])
        times, rendered, states = [], 0, []
        t0 = time.perf_counter()
        for frame in backend.frames():
            times.append(frame.predicted_display_time_s)
            states.append([frame.extra.get("session_state"), frame.input.focused, frame.should_render])
            if frame.should_render:
                for view in frame.views:
                    backend.render_target(view).use()
                    ctx.clear(*EYE_RGB[view.eye_index], 1.0, depth=1.0)
                    prog["u_rgb"].value = MARK_RGB
                    vao.render()
                rendered += 1
            backend.end_frame(frame)
        out["wall_s"] = time.perf_counter() - t0
        out["gl_error"] = ctx.error
        out["frames"] = len(times)
        out["rendered"] = rendered
        out["display_times_s"] = times
        out["states"] = states
        imgs = backend.eye_images() or []
        out["eyes"] = [region_means(i) for i in imgs]
        out["eye_shapes"] = [list(i.shape) for i in imgs]
        out["info"] = backend.info()
    finally:
        backend.close()
        backend.close()  # twice is safe
    out["info_after_close"] = backend.info()


def actions(out: dict[str, Any], n: int) -> None:
    """Bindings, hand and aim poses, buttons and haptics over N frames."""
    backend = OpenXRBackend(max_frames=n)
    backend.open()
    try:
        hands: list[list[Any]] = []
        for frame in backend.frames():
            if frame.input.focused:
                hands.append([None if h.pose_world_from_hand is None else h.pose_world_from_hand.tolist()
                              for h in frame.input.hands])
                aims = [None if a is None else a.tolist() for a in backend.aim_poses()]
                backend.haptic_pulse(frame.index % 2, 0.6, 0.02, 160.0)
                out["last"] = {"trigger": [h.trigger for h in frame.input.hands],
                               "grip": [h.grip for h in frame.input.hands],
                               "primary": [h.primary_pressed for h in frame.input.hands],
                               "active_hand": frame.input.active_hand, "aims": aims}
            backend.end_frame(frame)
        out["hands"] = hands
        out["haptics_sent"] = backend.haptics_sent
        out["profiles_accepted"] = backend.profiles_accepted
        out["profiles_rejected"] = backend.profiles_rejected
        out["info"] = backend.info()
    finally:
        backend.close()


def exit_request(out: dict[str, Any], at: int) -> None:
    """Ask the runtime to end the session at frame AT; the frames must end by themselves."""
    backend = OpenXRBackend(max_frames=None)
    ctx = backend.open()
    try:
        seen = []
        for frame in backend.frames():
            seen.append([frame.index, frame.extra.get("session_state"), frame.input.focused, frame.should_render])
            for view in frame.views:
                backend.render_target(view).use()
                ctx.clear(0.3, 0.3, 0.3, 1.0)
            if frame.index == at:
                backend.request_exit()
            backend.end_frame(frame)
            if frame.index > at + 200:
                out["runaway"] = True
                break
        out["seen"] = seen
        out["info"] = backend.info()
    finally:
        t0 = time.perf_counter()
        backend.close()
        out["close_s"] = time.perf_counter() - t0


def anatomy_stats(img: np.ndarray) -> dict[str, Any]:
    """Where the bone-coloured (bright, warm) pixels are: the phantom's vertebrae."""
    a = img.astype(int)
    warm = (a[..., 0] > 120) & (a[..., 0] > a[..., 2] + 25)
    ys, xs = np.nonzero(warm)
    return {"warm_px": int(warm.sum()), "centroid_x": float(xs.mean()) if len(xs) else None,
            "centroid_y": float(ys.mean()) if len(ys) else None, "std": float(a.reshape(-1, 3).std(0).mean())}


def scene(out: dict[str, Any], n: int, out_dir: str) -> None:
    """The default scenario through the app's frame loop and the real renderer into the swapchains."""
    from PIL import Image

    from vr_trainer.app.clock import MonotonicClock
    from vr_trainer.app.session import build_session
    from vr_trainer.render.mirror import MirrorCompositor
    from vr_trainer.render.renderer import SceneRenderer
    from vr_trainer.scenario.loader import default_scenario_path, load_scenario

    scene_, meshes = build_session(load_scenario(default_scenario_path()))
    backend = OpenXRBackend(max_frames=n, track=scene_.track)
    ctx = backend.open()
    try:
        renderer = SceneRenderer(ctx)
        scene_.upload(renderer, meshes)
        mirror = MirrorCompositor(ctx, (640, 240))
        loop = scene_.frame_loop(backend, renderer, mirror, MonotonicClock())
        out["frames"] = loop.run()
        eyes = backend.eye_images() or []
        out["gl_error"] = ctx.error
        out["info"] = backend.info()
    finally:
        backend.close()
    for k, img in enumerate(eyes):
        Image.fromarray(img).save(Path(out_dir) / f"eye{k}.png")
    out["eyes"] = [anatomy_stats(e) for e in eyes]
    out["eye_diff"] = float(np.abs(eyes[0].astype(int) - eyes[1].astype(int)).mean())


def no_runtime(out: dict[str, Any]) -> None:
    """What a user sees without a runtime."""
    from vr_trainer.xr.openxr import runtime_available

    t0 = time.perf_counter()
    out["available"] = runtime_available()
    out["available_s"] = time.perf_counter() - t0
    try:
        OpenXRBackend().open()
        out["error"] = None
    except BackendError as e:
        out["error"] = str(e)


def bench(out: dict[str, Any], n: int) -> None:
    from vr_trainer.bench.openxr import run_bench

    out.update(run_bench(n))


SCENARIOS: dict[str, Callable[..., None]] = {
    "frames": lambda o, n="120": plain_frames(o, int(n)),
    "actions": lambda o, n="40": actions(o, int(n)),
    "exit": lambda o, at="20": exit_request(o, int(at)),
    "scene": lambda o, n, d: scene(o, int(n), d),
    "no_runtime": no_runtime,
    "bench": lambda o, n="60": bench(o, int(n)),
}


def main(argv: list[str]) -> int:
    name, out_path, *args = argv
    out: dict[str, Any] = {"scenario": name}
    try:
        SCENARIOS[name](out, *args)
        out["ok"] = True
    except BaseException as e:  # noqa: BLE001 - reported to the test, which shows it
        import traceback

        out["ok"] = False
        out["exception"] = f"{type(e).__name__}: {e}"
        out["traceback"] = traceback.format_exc()
    Path(out_path).write_text(json.dumps(out, default=str))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
