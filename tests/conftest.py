"""Shared fixtures: a real GL context (EGL), a virtual X server, golden images."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session", autouse=True)
def _recordings_in_tmp(tmp_path_factory) -> Iterator[None]:
    """`vr-trainer run` records by default into ./sessions: tests (and the runs they start) record
    into a temporary folder instead, so the tree stays clean."""
    old = os.environ.get("VR_TRAINER_SESSIONS")
    os.environ["VR_TRAINER_SESSIONS"] = str(tmp_path_factory.mktemp("sessions"))
    yield
    if old is None:
        os.environ.pop("VR_TRAINER_SESSIONS", None)
    else:
        os.environ["VR_TRAINER_SESSIONS"] = old


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--regenerate-goldens", action="store_true", help="rewrite tests/goldens/*.png from this run")


def need(condition: bool, reason: str) -> None:
    """Skip outside CI; in CI a missing part is a failure (an install step is missing)."""
    if not condition:
        if IN_CI:
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def gl_ctx():
    """A real OpenGL context over EGL (llvmpipe here). Fails in CI if none can be made."""
    os.environ.setdefault("EGL_PLATFORM", "surfaceless")
    import moderngl

    try:
        ctx = moderngl.create_standalone_context(backend="egl", require=330)
    except Exception as e:  # noqa: BLE001
        need(False, f"no EGL OpenGL context: {e}")
        raise
    yield ctx
    ctx.release()


@pytest.fixture(scope="session")
def is_llvmpipe(gl_ctx) -> bool:
    return "llvmpipe" in gl_ctx.info.get("GL_RENDERER", "")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not present at {SHARED_DATA} (../shared/data beside the clone)")
    return SHARED_DATA


def _free_display() -> int:
    for n in range(90, 200):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    raise RuntimeError("no free X display number")


@pytest.fixture(scope="session")
def xvfb() -> Iterator[str]:
    """Start a private Xvfb for the session; yields its DISPLAY string."""
    exe = shutil.which("Xvfb")
    need(exe is not None, "Xvfb not installed (apt-get install xvfb)")
    n = _free_display()
    proc = subprocess.Popen([exe, f":{n}", "-screen", "0", "1600x900x24", "-nolisten", "tcp", "+extension", "GLX"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 15
    while time.time() < deadline and not Path(f"/tmp/.X11-unix/X{n}").exists():
        if proc.poll() is not None:
            pytest.fail(f"Xvfb exited with {proc.returncode}")
        time.sleep(0.05)
    time.sleep(0.2)
    yield f":{n}"
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Goldens:
    """Compare an image to tests/goldens/NAME.png; write diffs on failure."""

    def __init__(self, request: pytest.FixtureRequest, exact: bool) -> None:
        self.regen = request.config.getoption("--regenerate-goldens")
        self.exact = exact
        self.dir = REPO / "tests" / "goldens"
        self.fail_dir = REPO / "tests" / "_failures"

    def check(self, name: str, img: np.ndarray, atol: int = 8, max_bad_fraction: float = 0.002) -> None:
        from PIL import Image

        ref_path = self.dir / f"{name}.png"
        assert img.dtype == np.uint8 and img.ndim == 3
        # whatever the GPU, an image must not be blank
        assert img.reshape(-1, img.shape[-1]).std(axis=0).max() > 5.0, f"{name}: image is (nearly) uniform"
        if self.regen:
            self.dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(ref_path)
            return
        assert ref_path.is_file(), f"missing golden {ref_path}; run pytest --regenerate-goldens"
        if not self.exact:
            return  # other GPUs rasterise differently: the non-blank check above is what holds there
        ref = np.asarray(Image.open(ref_path).convert("RGB"))
        assert ref.shape == img.shape, f"{name}: size {img.shape} != golden {ref.shape}"
        diff = np.abs(ref.astype(int) - img.astype(int)).max(axis=-1)
        bad = float((diff > atol).mean())
        if bad > max_bad_fraction:
            self.fail_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(self.fail_dir / f"{name}.actual.png")
            Image.fromarray(np.clip(diff * 8, 0, 255).astype(np.uint8)).save(self.fail_dir / f"{name}.diff.png")
            raise AssertionError(f"{name}: {bad:.2%} of pixels differ by more than {atol} "
                                 f"(diff written to {self.fail_dir})")


@pytest.fixture
def goldens(request: pytest.FixtureRequest, is_llvmpipe: bool) -> Goldens:
    return Goldens(request, exact=is_llvmpipe)


def moved_bundle(bundle, m: np.ndarray):
    """A copy of a loaded bundle with every coordinate moved by the rigid 4x4 ``m``: meshes and the
    landmarks' points (incenter, centroid, vertices) and directions. Planners and derivations must give
    the same answers, moved: nothing may be tuned to the shipped files' coordinates."""
    from vr_trainer.anatomy.bundle import Bundle, Structure

    r, t = m[:3, :3], m[:3, 3]

    def pt(p) -> list[float]:
        return (r @ np.asarray(p, float) + t).tolist()

    structs = []
    for s in bundle.structures:
        mesh = s.mesh.copy()
        mesh.apply_transform(m)
        structs.append(Structure.from_mesh(s.name, s.tissue, mesh))
    landmarks = {}
    for name, lm in bundle.landmarks.items():
        if isinstance(lm, dict):
            lm = dict(lm)
            for k in ("incenter_mm", "centroid_mm"):
                if k in lm:
                    lm[k] = pt(lm[k])
            if "vertices_mm" in lm:
                lm["vertices_mm"] = [pt(v) for v in lm["vertices_mm"]]
            if "approach_direction" in lm:
                lm["approach_direction"] = (r @ np.asarray(lm["approach_direction"], float)).tolist()
        landmarks[name] = lm
    return Bundle(bundle.path, dict(bundle.manifest, landmarks=landmarks), structs)


@pytest.fixture
def move_bundle():
    """:func:`moved_bundle`, for tests in any folder."""
    return moved_bundle


PATIENT_NAME = "DOE^JOHN"  # put into the copied bundle's provenance: it must never reach a recording


@pytest.fixture(scope="session")
def pted_attempts(tmp_path_factory) -> dict:
    """The default scenario's two shared attempts, recorded by resident r07 on a copy of the
    scenario and its bundle (a patient name put into the bundle's provenance), in this order:

    - ``weak``: the novice autopilot (seed 1), simulated and scored without drawing, as the cohort
      runs do (``a1.mcap``);
    - ``expert``: the scenario's own demo (the expert autopilot) as ``vr-trainer run`` plays it:
      rendered headless at 32x24 with the C-arm shots imaged, its output in ``run/`` (``a2.mcap``).

    Several modules read these instead of playing the whole staged operation again each."""
    from vr_trainer.app.autopilot_cohort import run_autopilot_unrendered
    from vr_trainer.app.run import run_session
    from vr_trainer.scenario.loader import default_scenario_path

    d = tmp_path_factory.mktemp("attempts")
    src = default_scenario_path()
    shutil.copytree(REPO / "assets" / "spine_l3_s1", d / "spine_l3_s1")
    manifest = d / "spine_l3_s1" / "manifest.json"
    m = json.loads(manifest.read_text())
    m["provenance"]["patient_name"] = PATIENT_NAME
    manifest.write_text(json.dumps(m, indent=1))
    scenario = d / src.name
    shutil.copy(src, scenario)
    weak = run_autopilot_unrendered(scenario, "novice", None, 1, record=d / "a1.mcap", resident="r07")
    expert = run_session(str(scenario), "headless", size=(32, 24), record=d / "a2.mcap", out_dir=str(d / "run"),
                         resident="r07")
    return {"patient_name": PATIENT_NAME, "dir": d, "scenario": scenario, "manifest": manifest, "run_dir": d / "run",
            "weak": (d / "a1.mcap", weak), "expert": (d / "a2.mcap", expert)}


def point_inside_root(scene, meshes, root_name: str) -> tuple[np.ndarray, np.ndarray]:
    """From the bundle's own geometry: 1 mm inside the root ``root_name`` at the vertex nearest
    the Kambin target that is clear of its tolerance (10 mm away, so the step stays open) and
    reachable by a straight 40 mm push along its normal without meeting bone (bone stops the
    needle); returns that point and the outward normal there (patient frame, mm)."""
    import trimesh

    m = meshes[f"anatomy:{root_name}"]
    root = trimesh.Trimesh(m.vertices_mm, m.faces, process=False)
    bones = [trimesh.Trimesh(b.vertices_mm, b.faces, process=False)
             for k, b in meshes.items() if k.startswith("anatomy:") and b.tissue == "bone"]
    bone = trimesh.util.concatenate(bones)
    pfw = scene.simulation.patient_from_world
    kambin = pfw[:3, :3] @ scene.simulation.targets["kambin"].point_world_mm + pfw[:3, 3]
    d = np.linalg.norm(root.vertices - kambin, axis=1)
    order = [i for i in np.argsort(d) if d[i] > 10.0][:400]
    normals = root.vertex_normals[order]
    inside = root.vertices[order] - 1.0 * normals
    starts = inside + 41.0 * normals
    hits, rays, _ = bone.ray.intersects_location(starts, -normals, multiple_hits=False)
    blocked = np.zeros(len(order), bool)
    reach = np.linalg.norm(hits - starts[rays], axis=1) if len(rays) else np.zeros(0)
    blocked[rays[reach < 41.0]] = True
    if blocked.all():
        raise AssertionError(f"no straight 40 mm approach to {root_name} clear of bone")
    k = int(np.argmin(blocked))
    return inside[k], normals[k]


def root_contact_track(scenario, scene, meshes, root_name: str):
    """A 1.5 s pose track (30 Hz) whose needle comes 40 mm along the outward normal, clear of bone,
    to 1 mm inside ``root_name`` (:func:`point_inside_root`) and stays there."""
    from vr_trainer.xr.posetrack import PoseTrack

    inside, normal = point_inside_root(scene, meshes, root_name)
    wfp = scene.world_from_patient

    def world(p):
        return (wfp @ np.append(p, 1.0))[:3]

    tool = [{"t_s": t, "tip_mm": world(inside + back * normal), "toward_mm": world(inside + (back + 100) * normal)}
            for t, back in ((0.0, 40.0), (1.0, 0.0), (1.5, 0.0))]
    return PoseTrack.from_keys([h.model_dump() for h in scenario.demo.head[:1]], tool, 30.0)
