"""`vr-trainer new-scenario`: write a commented, valid format-2 scenario from a bundle.

The procedure's plan (:mod:`vr_trainer.app.authoring_plans`) finds targets and risk
structures in the bundle's own landmarks, structure names and meshes; this module places the
demo track from the bundle's bounds and the patient's orientation, writes the YAML with
comments an instructor can follow, checks the result with the scenario loader (and the bundle
checks when present) and only then moves it into place. Units: millimetres, seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vr_trainer.app.authoring_plans import APPROACH_MM, AuthoringError, ScenarioPlan, plan_pted

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "scenarios" / "schema.json"
ROOM_POSITION_MM = (0.0, 950.0, 0.0)  # where the anatomy's centre stands in the room (table height, y up)


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON strings are YAML)."""
    return json.dumps(text, ensure_ascii=False)


def _v(p: Sequence[float] | np.ndarray) -> str:
    return "[" + ", ".join(f"{float(x):.1f}" if abs(float(x)) >= 0.05 else "0.0" for x in p) + "]"


def _text(en: str, zh: str) -> str:
    return f"{{en: {_q(en)}, zh: {_q(zh)}}}"


def world_from_patient(plan: ScenarioPlan, vertices_mm: np.ndarray) -> np.ndarray:
    """The session's placement (see ``vr_trainer.app.session.build_session``): the bbox centre of the
    shown structures at the room position, rotated by the patient orientation."""
    from vr_trainer.app.session import ORIENTATIONS
    from vr_trainer.sim.transforms import translation

    centre = (vertices_mm.min(0) + vertices_mm.max(0)) / 2.0
    rot = np.eye(4)
    rot[:3, :3] = ORIENTATIONS[plan.orientation]
    return translation(np.asarray(ROOM_POSITION_MM)) @ rot @ translation(-centre)


def demo_head(plan: ScenarioPlan, vertices_mm: np.ndarray,
              duration_s: float) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """Head keys (t_s, position, look_at), room mm: standing on the plan's side of the table, 250 mm
    beyond the anatomy and 250 mm above its top, looking at the first target."""
    wfp = world_from_patient(plan, vertices_mm)
    vw = vertices_mm @ wfp[:3, :3].T + wfp[:3, 3]
    centre = np.asarray(ROOM_POSITION_MM)
    stand = wfp[:3, :3] @ plan.stand_ras
    stand[1] = 0.0
    stand = stand / np.linalg.norm(stand) if np.linalg.norm(stand) > 1e-6 else np.array([0.0, 0.0, -1.0])
    reach = float(((vw - centre) @ stand).max())
    top = float(vw[:, 1].max())
    target_w = wfp[:3, :3] @ plan.targets[0].point_ras_mm + wfp[:3, 3]
    across = np.cross([0.0, 1.0, 0.0], stand)
    p0 = centre + stand * (reach + 250.0) + np.array([0.0, top - centre[1] + 250.0, 0.0]) - 60.0 * across
    p1 = p0 + 120.0 * across - np.array([0.0, 20.0, 0.0]) - 20.0 * stand
    return [(0.0, p0, target_w + [0, 40.0, 0]), (duration_s, p1, target_w + [0, 30.0, 0])]


def demo_tool(plan: ScenarioPlan) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """Tool keys (t_s, tip offset, toward offset) from the first target along the approach, RAS mm."""
    a = plan.approach_ras
    keys = [(0.0, APPROACH_MM), (2.0, 110.0), (5.0, 40.0), (7.0, 6.0), (8.0, 0.0)]
    if plan.hold_s > 0:
        keys.append((8.0 + plan.hold_s, 0.0))
    return [(t, d * a, (d + 105.0) * a) for t, d in keys]


def _rel(path: Path, start: Path) -> str:
    try:
        return Path(os.path.relpath(path, start)).as_posix()
    except ValueError:  # another drive (Windows)
        return path.as_posix()


def bundle_ref(bundle_dir: Path, out: Path) -> str:
    """How the scenario names its bundle: a name under assets/ when it is one (and nothing beside the
    file shadows it), else a path relative to the file."""
    b = bundle_dir.resolve()
    assets = (REPO_ROOT / "assets").resolve()
    if b.parent == assets and not (out.parent / b.name / "manifest.json").is_file():
        return b.name
    return _rel(b, out.parent.resolve())


def scenario_id(out: Path, plan: ScenarioPlan) -> str:
    sid = re.sub(r"[^a-z0-9_\-]+", "_", out.stem.lower()).strip("_-")[:64]
    return sid or plan.procedure


def render_yaml(plan: ScenarioPlan, bundle_dir: Path, vertices_mm: np.ndarray, out: Path) -> str:
    """The scenario text: every section with a comment for the instructor who edits it."""
    o: list[str] = []
    add = o.append
    add(f"# yaml-language-server: $schema={_rel(SCHEMA_PATH, out.parent.resolve())}")
    add(f"# Written by `vr-trainer new-scenario --procedure {plan.procedure}` from the bundle {bundle_dir.name}.")
    add("# Edit freely, then check it with `vr-trainer validate FILE` and look at it with")
    add("# `vr-trainer preview FILE --out DIR`.")
    add("# Positions are millimetres in the bundle's patient frame (RAS: +x right, +y anterior, +z superior);")
    add("# the head track is in the room (y up). Texts a resident reads have English (en) and Chinese (zh).")
    for n in plan.notes:
        add(f"# {n}")
    add("format_version: 2")
    add(f"id: {scenario_id(out, plan)}")
    add('version: "1"')
    add("author: vr-trainer new-scenario")
    add(f"title: {_text(*plan.title)}")
    add(f"description: {_text(*plan.description)}")
    add(f"procedure: {plan.procedure}")
    add("locale: en  # en or zh: the language of the in-scene panels")
    add("")
    add("# The anatomy: the bundle folder (a name under assets/ or a path relative to this file), the level")
    add("# and side operated on, where the anatomy stands in the room and how the patient lies.")
    add("anatomy:")
    add(f"  bundle: {_q(bundle_ref(bundle_dir, out))}")
    if plan.level:
        add(f"  level: {plan.level}")
    if plan.side:
        add(f"  side: {plan.side}")
    add(f"  position_mm: {_v(ROOM_POSITION_MM)}")
    add(f"  patient_orientation: {plan.orientation}")
    if plan.hide:
        add(f"  hide: [{', '.join(plan.hide)}]  # bundle structures not shown")
    add("")
    add("# Instruments the resident may pick up (kinds: `vr-trainer validate --schema`); each step lists its own.")
    add("instruments:")
    for iid, kind in plan.instruments:
        add(f"  - {{id: {iid}, kind: {kind}}}")
    add("")
    add("# Targets: points to reach, from a bundle landmark, a bundle structure (its centroid) or point_mm.")
    add("# tolerance_mm is how close the tip must come for reached(target).")
    add("targets:")
    for t in plan.targets:
        add(f"  # {t.comment}")
        add(f"  - id: {t.id}")
        val = _v(t.value) if t.source == "point_mm" else _q(t.value)
        add(f"    {t.source}: {val}")
        add(f"    tolerance_mm: {t.tolerance_mm:g}")
        add(f"    label: {_text(*t.label)}")
    add("")
    add("# Risk structures: bundle structures the instruments must stay clear of. Touching one is a contact")
    add("# (contact(id)); coming closer than margin_mm is a near miss (near(id)). severity: minor|major|critical.")
    if plan.risks:
        add("risk_structures:")
        for r in plan.risks:
            add(f"  # {r.comment}")
            add(f"  - {{id: {r.id}, structure: {_q(r.structure)}, margin_mm: {r.margin_mm:g}, severity: {r.severity},")
            add(f"     label: {_text(*r.label)}}}")
    else:
        add("risk_structures: []  # the bundle names none this procedure knows; add some by structure name")
    add("")
    add("# Steps, in order. A step completes when complete_when becomes true (conditions: `vr-trainer validate")
    add("# --help`); time_allowance_s is the expected time (overtime is scored); hints appear after_s into the step.")
    add("steps:")
    for s in plan.steps:
        add(f"  # {s.comment}")
        add(f"  - id: {s.id}")
        add(f"    instruments: [{', '.join(s.instruments)}]")
        add(f"    complete_when: {_q(s.complete_when)}")
        add(f"    time_allowance_s: {s.time_allowance_s:g}")
        add(f"    prompt: {_text(*s.prompt)}")
        if s.hints:
            add("    hints:")
        for after, en, zh in s.hints:
            add(f"      - {{after_s: {after:g}, text: {_text(en, zh)}}}")
    add("")
    add("# Events: when `when` becomes true the effects happen (a prompt on the panels and the mentor console,")
    add("# a haptic pulse, a sound, an overlay, fail_step, or a critical_error declared in the rubric).")
    add("# cooldown_s: least time between two firings; once: at most once per run.")
    add("events:" if plan.events else "events: []")
    for e in plan.events:
        add(f"  # {e.comment}")
        add(f"  - id: {e.id}")
        add(f"    when: {_q(e.when)}")
        if e.once:
            add("    once: true")
        else:
            add(f"    cooldown_s: {e.cooldown_s:g}")
        add("    effects:")
        for eff in e.effects:
            add(f"      - {eff}")
    add("")
    _rubric(plan, add)
    add("")
    add("# Virtual C-arm: geometry and what one shot costs in fluoroscopy time and dose.")
    add("carm: {source_to_detector_mm: 1000, source_to_isocentre_mm: 600, exposure_s: 0.5, dose_per_shot_mgy: 0.1}")
    add("")
    _demo(plan, vertices_mm, add)
    return "\n".join(o) + "\n"


def _rubric(plan: ScenarioPlan, add: Any) -> None:
    allow = sum(s.time_allowance_s for s in plan.steps)
    reach_steps = sum(1 for s in plan.steps if s.complete_when.startswith("reached("))
    path = APPROACH_MM * max(reach_steps, 1)
    tol = plan.targets[0].tolerance_mm
    hints = sum(len(s.hints) for s in plan.steps)
    rows: list[tuple[str, float, float, float, str]] = [
        ("steps_completed_pct", 3, 100, 0, "every step done"),
        ("total_time_s", 2, round(0.4 * allow), round(3 * allow),
         f"against the steps' allowances ({allow:g} s in all)"),
        ("target_error_mm", 1, round(tol / 3, 1), tol + 1, "tip distance from the targets when reached"),
        ("path_length_mm", 1, round(1.6 * path), round(8 * path), "economy of motion (straight approach: "
         f"{path:g} mm)"),
        ("hints_shown", 1, 0, max(hints, 1), "needing no hints"),
    ]
    if plan.risks:
        margin = max(r.margin_mm for r in plan.risks)
        rows += [("risk_contacts", 3, 0, 3, "touching a risk structure"),
                 ("min_risk_distance_mm", 1, margin, 0, "the closest approach to any risk structure")]
    rows += plan.extra_rubric
    add("# The rubric: each metric (`vr-trainer metrics`) scores linearly from zero_marks_at (0) to full_marks_at")
    add("# (1), weighted; the score is 0-100. A run passes at pass_mark unless a critical error occurred.")
    add("rubric:")
    add("  pass_mark: 70")
    add("  metrics:")
    for name, w, full, zero, why in rows:
        add(f"    - {{metric: {name}, weight: {w:g}, full_marks_at: {full:g}, zero_marks_at: {zero:g}}}  # {why}")
    if plan.critical_errors:
        add("  # errors that fail the run whatever the score (raised by events' critical_error effects)")
        add("  critical_errors:")
        for cid, en, zh in plan.critical_errors:
            add(f"    - {{id: {cid}, description: {_text(en, zh)}}}")


def _demo(plan: ScenarioPlan, vertices_mm: np.ndarray, add: Any) -> None:
    tool = demo_tool(plan)
    head = demo_head(plan, vertices_mm, tool[-1][0])
    side = {"pted": "on the approach side", "tka": "at the operated side", "tha": "in front of the patient"}
    add("# The demo track (headless runs and `vr-trainer run` without a headset): the head in the room frame,")
    add(f"# standing {side.get(plan.procedure, 'beside the table')}, 250 mm beyond the anatomy's bounds; the tool as")
    add(f"# offsets (RAS mm) from the first target, coming in along the approach {_v(np.round(plan.approach_ras, 3))}.")
    add("demo:")
    add("  fps: 30")
    add(f"  tool_relative_to: {plan.targets[0].id}")
    add("  head:")
    for t, p, look in head:
        add(f"    - {{t_s: {t:g}, position_mm: {_v(p)}, look_at_mm: {_v(look)}}}")
    add("  tool:")
    for t, tip, tow in tool:
        add(f"    - {{t_s: {t:g}, tip_mm: {_v(tip)}, toward_mm: {_v(tow)}}}")


def make_plan(procedure: str, bundle: Any, level: str | None, side: str | None) -> ScenarioPlan:
    if procedure != "pted":  # the joint workflows are written by authoring_tka / authoring_tha
        raise AuthoringError(f"new-scenario has no plan for procedure {procedure!r}; choose pted, tka or tha")
    return plan_pted(bundle, level, side)


def check_written(path: Path) -> None:
    """Load the written file as `vr-trainer run` would; any problem is ours, reported as an error."""
    from vr_trainer.scenario.loader import ScenarioError, load_scenario, resolve_bundle_path

    try:
        s = load_scenario(path)
        resolve_bundle_path(s)
    except ScenarioError as e:
        raise AuthoringError("new-scenario wrote a scenario that does not validate (please report this):\n"
                             f"{e}") from None
    try:
        from vr_trainer.scenario.validate import validate_against_bundle
    except ImportError:
        return
    problems = [i for i in validate_against_bundle(s) if getattr(i, "severity", "error") == "error"]
    if problems:
        raise AuthoringError("new-scenario wrote a scenario the bundle checks reject (please report this):\n"
                             + "\n".join(map(str, problems)))


def new_scenario(procedure: str, bundle_dir: str | Path, out: str | Path, level: str | None = None,
                 side: str | None = None, force: bool = False) -> Path:
    """Write the scenario to ``out`` atomically (refusing to replace a file unless ``force``)."""
    from vr_trainer.anatomy.bundle import load_bundle

    out_path = Path(out)
    if out_path.exists() and not force:
        raise AuthoringError(f"{out_path} exists; choose another --out or pass --force to replace it")
    if out_path.exists() and not out_path.is_file():
        raise AuthoringError(f"{out_path} is not a file; choose another --out")
    bdir = Path(bundle_dir)
    if not (bdir / "manifest.json").is_file() and (REPO_ROOT / "assets" / bdir / "manifest.json").is_file():
        bdir = REPO_ROOT / "assets" / bdir
    if not (bdir / "manifest.json").is_file():
        raise AuthoringError(f"--bundle {bundle_dir}: not an asset bundle (no manifest.json); give a folder made by "
                             "`vr-trainer import` or a name under assets/")
    bundle = load_bundle(bdir)
    if procedure == "tka":  # the gap-balanced workflow
        from vr_trainer.app.authoring_tka import render_tka_workflow

        if level is not None:
            raise AuthoringError(f"--level applies to spine procedures only, not {procedure}")
        try:
            text = render_tka_workflow(bundle, _q(bundle_ref(bdir, out_path)), side, bdir.name)
        except ValueError as e:
            raise AuthoringError(str(e)) from None
    elif procedure == "tha":  # the anterior-approach reaming and cup workflow
        from vr_trainer.app.authoring_tha import render_tha_workflow

        if level is not None:
            raise AuthoringError(f"--level applies to spine procedures only, not {procedure}")
        try:
            text = render_tha_workflow(bundle, _q(bundle_ref(bdir, out_path)), side, bdir.name)
        except ValueError as e:
            raise AuthoringError(str(e)) from None
    else:
        plan = make_plan(procedure, bundle, level, side)
        shown = [s for s in bundle.structures if s.name not in plan.hide]
        verts = np.concatenate([np.asarray(s.mesh.vertices, float) for s in shown])
        text = render_yaml(plan, bdir, verts, out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.stem}.", suffix=".yaml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        check_written(Path(tmp))
        if out_path.exists() and not force:  # appeared while we worked
            raise AuthoringError(f"{out_path} exists; choose another --out or pass --force to replace it")
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out_path


def cmd_new_scenario(args: argparse.Namespace) -> int:
    path = new_scenario(args.procedure, args.bundle, args.out, args.level, args.side, args.force)
    print(f"{path}: written; check it with `vr-trainer validate {path}`, see it with "
          f"`vr-trainer preview {path} --out DIR`")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """`vr-trainer new-scenario` and `vr-trainer preview`."""
    n = sub.add_parser("new-scenario", help="write a commented, valid scenario from an anatomy bundle")
    n.add_argument("--procedure", required=True, choices=["pted", "tka", "tha"])
    n.add_argument("--bundle", required=True, metavar="DIR", help="asset bundle folder (or a name under assets/)")
    n.add_argument("--level", default=None, help="spinal level, e.g. L4-L5 (pted; default: the bundle's only one)")
    n.add_argument("--side", default=None, choices=["left", "right"],
                   help="side operated on (default: from the bundle)")
    n.add_argument("--out", required=True, metavar="FILE", help="scenario YAML to write")
    n.add_argument("--force", action="store_true", help="replace FILE if it exists")
    n.set_defaults(func=cmd_new_scenario)
    from vr_trainer.app.preview import add_preview_parser

    add_preview_parser(sub)
