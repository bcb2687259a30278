"""Child process of `vr-trainer bench render`: the same meshes and eye poses through pyrender."""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import numpy as np  # noqa: E402


def main(path: str) -> None:
    import pyrender
    import trimesh

    d = np.load(path)
    w, h, frames = int(d["w"]), int(d["h"]), int(d["frames"])
    scene = pyrender.Scene(bg_color=[0.05, 0.07, 0.1, 1.0], ambient_light=[0.2, 0.2, 0.2])
    for k in range(int(d["n"])):
        tm = trimesh.Trimesh(d[f"v{k}"], d[f"f{k}"], process=False)
        mat = pyrender.MetallicRoughnessMaterial(baseColorFactor=[0.9, 0.86, 0.77, 1.0], metallicFactor=0.0,
                                                 roughnessFactor=0.6)
        scene.add(pyrender.Mesh.from_trimesh(tm, material=mat, smooth=True), pose=d[f"x{k}"])
    scene.add(pyrender.DirectionalLight(intensity=3.0), pose=np.eye(4))
    cams = []
    for k in range(2):
        al, ar, au, ad = d[f"fov{k}"]
        near, far = 30.0, 20000.0
        # pyrender's IntrinsicsCamera expresses the same asymmetric frustum in pixels
        fx = w / (np.tan(ar) - np.tan(al))
        fy = h / (np.tan(au) - np.tan(ad))
        cx = -np.tan(al) * fx
        cy = np.tan(au) * fy
        cam = pyrender.IntrinsicsCamera(fx, fy, cx, cy, znear=near, zfar=far)
        cams.append(scene.add(cam, pose=d[f"cam{k}"]))
    r = pyrender.OffscreenRenderer(w, h)
    times = []
    for i in range(frames + 5):
        t0 = time.perf_counter()
        for node in cams:
            scene.main_camera_node = node
            r.render(scene)
        if i >= 5:
            times.append((time.perf_counter() - t0) * 1000.0)
    r.delete()
    print(json.dumps({"ms_median": float(np.median(times))}))


if __name__ == "__main__":
    main(sys.argv[1])
