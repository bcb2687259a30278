"""The C-arm shot service: turns each shot the simulation reports into a radiograph.

:class:`FluoroService` is one of the frame loop's step rules (``after_step``): when a fixed step's
``observation.shot_view`` names a view (``ap``, ``lateral``, ``oblique``), it freezes the shot's
geometry (:func:`vr_trainer.sim.carm.carm_geometry`, isocentre the scenario's first target,
patient frame) and the instruments' poses (patient frame, as steel segments) and hands them to
a worker thread that owns its own OpenGL context (EGL, standalone) and a
:class:`~vr_trainer.render.drr.DrrRenderer` of the bundle's HU volume (its stored
``volume/hu.npz``, else voxelised from its meshes). The frame loop never waits in the default
asynchronous mode: ``after_step`` only queues the job. ``synchronous=True`` waits for each shot
before returning (deterministic headless runs and tests); GL still runs on the worker, so the
caller's current context is never touched.

Results: :meth:`latest` (the newest image, its version = shot number, its geometry) for the
monitor panel and the mentor; with ``out_dir``, every shot is written as
``out_dir/fluoro/NNN_<view>.png`` and ``NNN_<view>.json`` (geometry, simulation time, shot number,
render time, instruments), each atomically. :meth:`close` finishes pending shots.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from vr_trainer.sim.carm import VIEWS, CArmGeometry, carm_geometry

log = logging.getLogger("vr_trainer.app.fluoro")

WORKER_NICE = 10  # the shot worker's (and its rasteriser threads') scheduling niceness

#: instrument kinds that are tubes (steel wall around a lumen): wall thickness in mm
TUBE_WALL_MM = {"working_cannula": 0.5, "dilator": 0.6}


@dataclass(frozen=True)
class Shot:
    """One requested shot: everything the worker needs, frozen at the step that took it."""

    number: int
    view: str
    time_s: float
    geometry: CArmGeometry
    segments: tuple[tuple[Any, ...], ...]
    instruments: tuple[str, ...]


def instrument_segments(state: Any, patient_from_world: np.ndarray) -> tuple[list[tuple[Any, ...]], list[str]]:
    """The instruments a shot sees (those drawn: visible and held or active) as steel segments
    ``(tip_ras_mm, handle_end_ras_mm, radius_mm[, inner_radius_mm])`` and their ids."""
    segs: list[tuple[Any, ...]] = []
    ids: list[str] = []
    r3, t3 = patient_from_world[:3, :3], patient_from_world[:3, 3]
    for k, inst in enumerate(getattr(state, "instruments", ())):
        if not (inst.visible and (inst.held or k == state.active_instrument)):
            continue
        m = np.asarray(inst.world_from_tool, float)
        tip_w = m[:3, 3]
        up = m[:3, 2] / max(float(np.linalg.norm(m[:3, 2])), 1e-12)  # tool +z: towards the handle
        end_w = tip_w + up * float(inst.spec.shaft_length_mm)
        radius = float(inst.spec.shaft_diameter_mm) / 2.0
        seg: tuple[Any, ...] = (r3 @ tip_w + t3, r3 @ end_w + t3, radius)
        wall = TUBE_WALL_MM.get(inst.spec.kind)
        if wall is not None and radius > wall:
            seg = seg + (radius - wall,)
        segs.append(seg)
        ids.append(str(inst.instrument_id))
    return segs, ids


def _default_context() -> Any:
    import moderngl

    os.environ.setdefault("EGL_PLATFORM", "surfaceless")
    return moderngl.create_standalone_context(backend="egl", require=330)  # type: ignore[arg-type]


class FluoroService:
    """C-arm shots as DRRs, off the frame loop (see the module docstring).

    ``bundle``: the loaded anatomy bundle; ``scene``: the session scene (``world_from_patient``,
    ``simulation.targets``); ``scenario``: its C-arm settings (``carm``), side and first target;
    ``out_dir``: where ``fluoro/`` goes (None: nothing written). ``pixels`` overrides the
    scenario's ``carm.image_px``; ``context_factory`` makes the worker's GL context."""

    def __init__(self, bundle: Any, scene: Any, scenario: Any, out_dir: Path | None = None,
                 synchronous: bool = False, pixels: int | None = None,
                 context_factory: Callable[[], Any] | None = None) -> None:
        self.bundle = bundle
        self.scenario = scenario
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.synchronous = synchronous
        self.patient_from_world = np.linalg.inv(np.asarray(scene.world_from_patient, float))
        carm = scenario.carm
        self.sad_mm = float(carm.source_to_isocentre_mm)
        self.sid_mm = float(carm.source_to_detector_mm)
        self.detector_mm = float(carm.detector_size_mm)
        self.pixels = int(pixels or carm.image_px)
        self.side = getattr(scenario.anatomy, "side", None) or "left"
        self.isocentre_ras_mm = self._isocentre(scene, scenario)
        self._context_factory = context_factory or _default_context
        self._jobs: queue.Queue[Shot | None] = queue.Queue()
        self._done = threading.Condition()
        self._finished = 0
        self._submitted = 0
        self._latest: tuple[np.ndarray, int, CArmGeometry] | None = None
        self._lock = threading.Lock()
        self.errors: list[str] = []
        self.render_ms: list[float] = []
        self._closed = False
        self.volume_source: str | None = None  # where the worker's HU volume came from
        self.ready = threading.Event()  # set once the worker has its renderer (or has given up)
        #: called on the worker after each shot with (meta, rgb): meta as the shot's JSON file
        #: (shot, view, time_s, render_ms, geometry, instruments, display); exceptions are logged
        self.listeners: list[Callable[[dict[str, Any], np.ndarray], None]] = []
        self._thread = threading.Thread(target=self._work, name="fluoro", daemon=True)
        self._thread.start()

    # the StepRules protocol -------------------------------------------------------------
    @property
    def step_ids(self) -> Sequence[str]:
        return ()

    def after_step(self, state: Any) -> tuple[Any, list[Any]]:
        """Queue a shot when this step took one (``state.observation.shot_view``); never renders here."""
        view = getattr(state.observation, "shot_view", None) if state.observation is not None else None
        if view is None or self._closed:
            return state, []
        if view not in VIEWS:
            log.warning("C-arm: unknown view %r, shot as AP", view)
            view = "ap"
        segs, ids = instrument_segments(state, self.patient_from_world)
        geom = carm_geometry(view, self.isocentre_ras_mm, self.side, self.sad_mm, self.sid_mm, self.detector_mm,
                             self.pixels)
        self._submitted += 1
        shot = Shot(self._submitted, view, float(state.time_s), geom, tuple(segs), tuple(ids))
        self._jobs.put(shot)
        if self.synchronous:
            self.wait(shot.number)
        return state, []

    # results ----------------------------------------------------------------------------
    def latest(self) -> tuple[np.ndarray, int, CArmGeometry] | None:
        """(rgb (h, w, 3) uint8, version (the shot number), geometry) of the newest shot, or None."""
        with self._lock:
            return self._latest

    @property
    def shots_done(self) -> int:
        with self._done:
            return self._finished

    def summary(self) -> dict[str, Any]:
        """For the run's summary.json: shots asked for and imaged, render times, volume, errors."""
        ms = self.render_ms
        return {"shots_requested": self._submitted, "shots_imaged": len(ms), "pixels": self.pixels,
                "render_ms_median": round(float(np.median(ms)), 2) if ms else None,
                "render_ms_max": round(float(np.max(ms)), 2) if ms else None,
                "volume": self.volume_source, "synchronous": self.synchronous, "errors": list(self.errors)}

    def wait(self, number: int | None = None, timeout_s: float = 120.0) -> bool:
        """Block until shot ``number`` (default: every shot queued so far) is done."""
        target = self._submitted if number is None else number
        deadline = time.monotonic() + timeout_s
        with self._done:
            while self._finished < target:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._done.wait(min(left, 0.5))
        return True

    def close(self) -> None:
        """Finish every pending shot, then release the worker's GL context."""
        if self._closed:
            return
        self._closed = True
        self._jobs.put(None)
        self._thread.join(timeout=300)

    # worker -----------------------------------------------------------------------------
    def _isocentre(self, scene: Any, scenario: Any) -> np.ndarray:
        targets = getattr(scene.simulation, "targets", {}) or {}
        ids = [t.id for t in getattr(scenario, "targets", [])]
        first = next((targets[i] for i in ids if i in targets), None)
        if first is None and targets:
            first = next(iter(targets.values()))
        if first is None:  # no target: the anatomy's centre
            centre = np.mean([np.asarray(s.centroid_mm, float) for s in self.bundle.structures], axis=0)
            return np.asarray(centre, float)
        p = np.append(np.asarray(first.point_world_mm, float), 1.0)
        return (self.patient_from_world @ p)[:3]

    def _work(self) -> None:
        ctx = drr = None
        try:
            # below the frame loop's priority, before the GL context exists: a software
            # rasteriser's threads, started with the context, inherit it (Linux: per thread)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKER_NICE)
        except (AttributeError, OSError):
            pass
        try:
            from vr_trainer.anatomy.hu_volume import bundle_hu_volume
            from vr_trainer.render.drr import DrrRenderer

            vol = bundle_hu_volume(self.bundle)
            self.volume_source = str(vol.notes.get("source", "?"))
            ctx = self._context_factory()
            drr = DrrRenderer(ctx, vol)
            drr.prepare()  # every slice direction uploaded now, not during a shot
        except Exception as e:  # noqa: BLE001 - no GL or no volume: shots are counted, not imaged
            self.errors.append(f"C-arm images unavailable: {e}")
            log.warning("C-arm images unavailable: %s", e)
        self.ready.set()
        while True:
            shot = self._jobs.get()
            if shot is None:
                break
            try:
                if drr is not None:
                    self._render(drr, shot)
            except Exception as e:  # noqa: BLE001 - one bad shot never stops the service
                self.errors.append(f"shot {shot.number}: {e}")
                log.warning("C-arm shot %d failed: %s", shot.number, e)
            finally:
                with self._done:
                    self._finished += 1
                    self._done.notify_all()
        if drr is not None:
            drr.release()
        if ctx is not None:
            ctx.release()

    def _render(self, drr: Any, shot: Shot) -> None:
        from vr_trainer.render.drr import to_rgb

        t0 = time.perf_counter()
        anatomy, metal = drr.render_layers(shot.geometry, shot.segments)
        rgb = to_rgb(anatomy + metal, anatomy=anatomy)
        ms = (time.perf_counter() - t0) * 1000.0
        self.render_ms.append(ms)
        with self._lock:
            self._latest = (rgb, shot.number, shot.geometry)
        meta = {
            "shot": shot.number, "view": shot.view, "time_s": round(shot.time_s, 4),
            "render_ms": round(ms, 2), "geometry": shot.geometry.to_json(),
            "instruments": [{"id": i, "p0_ras_mm": [round(float(x), 3) for x in s[0]],
                             "p1_ras_mm": [round(float(x), 3) for x in s[1]], "radius_mm": float(s[2]),
                             "inner_radius_mm": float(s[3]) if len(s) > 3 else 0.0}
                            for i, s in zip(shot.instruments, shot.segments)],
            "display": "C-arm monitor: bone and metal dark on a bright background (transmitted intensity)",
        }
        if self.out_dir is not None:
            from vr_trainer.app.run import write_json_atomic, write_png_atomic

            d = self.out_dir / "fluoro"
            d.mkdir(parents=True, exist_ok=True)
            stem = f"{shot.number:03d}_{shot.view}"
            write_png_atomic(d / f"{stem}.png", rgb)
            write_json_atomic(d / f"{stem}.json", meta)
        for listener in list(self.listeners):
            try:
                listener(meta, rgb)
            except Exception as e:  # noqa: BLE001 - a listener never stops the worker
                self.errors.append(f"shot {shot.number}: listener {listener!r}: {e}")
                log.warning("C-arm shot listener failed: %s", e)
