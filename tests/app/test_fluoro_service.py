"""The C-arm shot service: a shot makes a radiograph with the instrument on it, files per shot,
and the frame loop does not wait for it (asynchronous mode)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import trimesh
from PIL import Image

from vr_trainer.anatomy.bundle import Structure, load_bundle, write_bundle
from vr_trainer.anatomy.volume import Volume
from vr_trainer.app.fluoro import FluoroService, instrument_segments
from vr_trainer.scenario.schema import CArm
from vr_trainer.sim.instruments import CATALOGUE, InstrumentState
from vr_trainer.sim.observation import Observation
from vr_trainer.sim.simulation import SimState, Target
from vr_trainer.sim.transforms import pose_from_axis

# the room: patient RAS -> world (y up): prone (anterior down, head towards -z) on a table, moved
WORLD_FROM_PATIENT = np.array([[1.0, 0, 0, 100.0], [0, -1, 0, 950.0], [0, 0, -1, 30.0], [0, 0, 0, 1]])


def to_world(p_ras) -> np.ndarray:
    return (WORLD_FROM_PATIENT @ np.append(np.asarray(p_ras, float), 1.0))[:3]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A water block with a bone block inside, stored with its HU volume (2 mm)."""
    hu = np.full((60, 50, 70), -1000, np.int16)
    hu[10:50, 8:42, 5:65] = 40
    hu[25:35, 20:30, 25:45] = 900
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = [-59.0, -49.0, -69.0]
    bone = trimesh.creation.box(extents=(20, 20, 40))
    out = write_bundle(tmp_path_factory.mktemp("fluoro") / "b", [Structure.from_mesh("bone", "bone", bone)],
                       source_units="mm", provenance={"source": "test"}, deidentification={"status": "test"},
                       hu_volume=Volume(array=hu, affine=aff))
    return load_bundle(out)


def scene_and_scenario(pixels: int = 64):
    target = Target("disc", to_world([0.0, 0.0, 0.0]), 2.0)
    scene = SimpleNamespace(world_from_patient=WORLD_FROM_PATIENT, simulation=SimpleNamespace(targets={"disc": target}))
    scenario = SimpleNamespace(carm=CArm(image_px=pixels), anatomy=SimpleNamespace(side="left"),
                               targets=[SimpleNamespace(id="disc")])
    return scene, scenario


def needle_state(view: str | None, time_s: float = 1.0) -> SimState:
    """A needle from the patient's left-posterior to 5 mm left of the isocentre, and a shot."""
    tip = to_world([-5.0, 0.0, 0.0])
    toward = to_world([-60.0, -50.0, 0.0])
    inst = InstrumentState("needle", CATALOGUE["spinal_needle"], pose_from_axis(tip, toward - tip), held=True)
    obs = Observation(time_s=time_s, dt_s=1 / 120)
    if "shot_view" in {f.name for f in dataclasses.fields(Observation)}:
        obs = dataclasses.replace(obs, shot_view=view)  # type: ignore[call-arg]
    else:  # before the simulation reports views: the same attribute on a stand-in
        obs = SimpleNamespace(**dataclasses.asdict(obs), shot_view=view)  # type: ignore[assignment]
    return SimState(time_s=time_s, instruments=(inst,), observation=obs)


def test_instrument_segments_are_in_the_patient_frame():
    segs, ids = instrument_segments(needle_state("ap"), np.linalg.inv(WORLD_FROM_PATIENT))
    assert ids == ["needle"]
    p0, p1, r = segs[0]
    np.testing.assert_allclose(p0, [-5, 0, 0], atol=1e-9)
    d = (p1 - p0) / np.linalg.norm(p1 - p0)
    np.testing.assert_allclose(d, np.array([-55.0, -50.0, 0]) / np.hypot(55, 50), atol=1e-9)
    assert np.linalg.norm(p1 - p0) == pytest.approx(150.0) and r == pytest.approx(1.27 / 2)


def test_a_shot_writes_its_image_and_geometry(bundle, tmp_path: Path):
    scene, scenario = scene_and_scenario(pixels=64)
    svc = FluoroService(bundle, scene, scenario, out_dir=tmp_path, synchronous=True)
    heard: list[tuple[dict, np.ndarray]] = []
    svc.listeners.append(lambda meta, rgb: heard.append((meta, rgb)))
    svc.listeners.append(lambda meta, rgb: 1 / 0)  # a broken listener stops nothing
    try:
        svc.after_step(needle_state(None))
        assert svc.latest() is None  # no shot, nothing rendered
        state = needle_state("ap")
        out_state, notices = svc.after_step(state)
        assert out_state is state and list(notices) == []
        got = svc.latest()
        assert got is not None, svc.errors
        rgb, version, geom = got
        assert version == 1 and rgb.shape == (64, 64, 3) and geom.view == "ap"
        svc.after_step(needle_state("lateral", time_s=2.0))
    finally:
        svc.close()
    png, js = tmp_path / "fluoro" / "001_ap.png", tmp_path / "fluoro" / "001_ap.json"
    assert png.is_file() and js.is_file() and (tmp_path / "fluoro" / "002_lateral.png").is_file()
    meta = json.loads(js.read_text())
    assert meta["shot"] == 1 and meta["view"] == "ap" and meta["time_s"] == 1.0
    np.testing.assert_allclose(meta["geometry"]["isocentre_ras_mm"], [0, 0, 0], atol=1e-3)
    np.testing.assert_allclose(meta["geometry"]["source_ras_mm"], [0, CArm().source_to_isocentre_mm, 0], atol=1e-3)
    assert meta["instruments"][0]["id"] == "needle"
    assert [m["shot"] for m, _ in heard] == [1, 2] and heard[0][0] == meta and heard[0][1].shape == (64, 64, 3)
    assert any("listener" in e for e in svc.errors)
    summ = svc.summary()
    assert summ["shots_requested"] == summ["shots_imaged"] == 2 and summ["volume"] == "ct"
    img = np.asarray(Image.open(png))[:, :, 0].astype(int)
    # the needle's tip projects just left of the centre: the needle is the darkest thing there
    col, row = geom.project(np.array([[-15.0, -9.0, 0.0]]))[0]
    r, c = int(row), int(col)
    assert img[r - 1 : r + 2, c - 1 : c + 2].min() < img[r + 8, c] - 40  # darker than the tissue beside it
    assert img[32, 58] > img[32, 32]  # soft tissue at the edge brighter than the bone at the centre


def test_the_frame_loop_does_not_wait_for_a_shot(bundle, tmp_path: Path):
    scene, scenario = scene_and_scenario(pixels=1024)  # a slow shot on llvmpipe (~0.1 s: above scheduler noise)
    svc = FluoroService(bundle, scene, scenario, out_dir=tmp_path, synchronous=False)
    try:
        assert svc.ready.wait(60), "the shot worker did not start"
        step_ms = []
        for k in range(3):
            t0 = time.perf_counter()
            svc.after_step(needle_state("ap" if k == 0 else None, time_s=1.0 + k / 120))
            step_ms.append((time.perf_counter() - t0) * 1000)
        # the frame loop's thread keeps running while the shot renders (a 1 ms ticker)
        gaps, last = [], time.perf_counter()
        while svc.shots_done < 1 and time.perf_counter() - last < 60:
            time.sleep(0.001)
            now = time.perf_counter()
            gaps.append((now - last) * 1000)
            last = now
    finally:
        svc.close()  # finishes the pending shot
    assert max(step_ms) < 5.0, step_ms
    assert (tmp_path / "fluoro" / "001_ap.png").is_file(), svc.errors
    assert svc.shots_done == 1 and svc.latest() is not None
    render_ms = svc.render_ms[0]
    assert render_ms > 5 * max(step_ms)  # the shot took far longer than the steps that went on meanwhile
    # holding the GIL through the render would stall the ticker for about the whole shot
    assert len(gaps) > 3 and max(gaps) < 0.5 * render_ms, (max(gaps), render_ms)
