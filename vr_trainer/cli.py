"""The one command-line entry point: `vr-trainer <run|validate|metrics|import|mentor|bench> ...`."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from typing import Callable, Sequence

# Optional parts register their own subcommands: module -> function name.
OPTIONAL_COMMANDS = (
    ("vr_trainer.anatomy.cli", "register"),
    ("remote.cli", "register"),
    ("vr_trainer.app.authoring", "register"),  # new-scenario, preview
    ("vr_trainer.app.replay", "register"),  # replay
    ("vr_trainer.app.report_cli", "register"),  # report
)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean 'the user gave us something wrong' (no traceback)."""
    from vr_trainer.scenario.loader import ScenarioError
    from vr_trainer.xr.base import BackendError

    errs: list[type[BaseException]] = [ScenarioError, BackendError, FileNotFoundError]
    for mod, name in (("vr_trainer.anatomy.errors", "AnatomyError"), ("vr_trainer.anatomy.bundle", "AnatomyError"),
                      ("remote.errors", "RemoteError")):
        try:
            errs.append(getattr(importlib.import_module(mod), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errs)


def cmd_run(args: argparse.Namespace) -> int:
    from vr_trainer.app.run import parse_size, run_session

    size = parse_size(args.size)
    summary = run_session(args.scenario, args.backend, args.frames, args.out, size, video=args.video,
                          mirror_layout=args.mirror, locale=args.locale, mentor_url=args.mentor, token=args.token,
                          realtime=args.realtime, samples=args.samples, autopilot=args.autopilot,
                          autopilot_skill=args.autopilot_skill, seed=args.seed,
                          record=False if args.no_record else (args.record or True), resident=args.resident)
    print(json.dumps(summary, ensure_ascii=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from vr_trainer.scenario.cli import register as register_scenario_commands

    p = argparse.ArgumentParser(prog="vr-trainer", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command")

    r = sub.add_parser("run", help="run a scenario (default: the built-in lumbar PTED scenario)")
    r.add_argument("scenario", nargs="?", help="scenario YAML (default: scenarios/pted_l4_l5.yaml)")
    r.add_argument("--backend", default="auto", help="auto|headless|desktop|openxr (default auto)")
    r.add_argument("--frames", type=int, default=None, help="stop after N frames")
    r.add_argument("--out", default=None, help="write eye0.png, eye1.png, mirror.png, summary.json here")
    r.add_argument("--size", default="640x480", help="per-eye size WxH for headless/desktop")
    r.add_argument("--video", action="store_true", help="also write the mirror as DIR/mirror.mp4")
    r.add_argument("--mirror", default="side_by_side", choices=["side_by_side", "left", "right"])
    r.add_argument("--locale", default=None, choices=["en", "zh"], help="language of in-scene text")
    r.add_argument("--realtime", action="store_true",
                   help="headless: run at the pose track's pace on wall time (implied by --mentor)")
    r.add_argument("--samples", type=int, default=None,
                   help="MSAA samples (default: 4 on a GPU, 0 on a software rasteriser such as llvmpipe)")
    r.add_argument("--mentor", default=None, help="mentoring server URL to publish this session to")
    r.add_argument("--token", default=None, help="trainee token for --mentor")
    r.add_argument("--autopilot", default=None, choices=["expert", "novice"],
                   help="drive the instruments from the procedure's planner instead of the demo track (headless); "
                        "the run ends when the plan ends")
    r.add_argument("--autopilot-skill", type=float, default=None, metavar="0..1",
                   help="autopilot skill: 0 novice-sized errors .. 1 expert (default: expert 1, novice 0.15)")
    r.add_argument("--seed", type=int, default=0, help="seed of the autopilot's errors (default 0)")
    r.add_argument("--record", default=None, metavar="FILE.mcap",
                   help="record the session here (default: sessions/<scenario>-<UTC time>.mcap, "
                        "the folder from $VR_TRAINER_SESSIONS if set)")
    r.add_argument("--no-record", action="store_true", help="do not record the session")
    r.add_argument("--resident", default=None, metavar="ID",
                   help="the trainee's id in the recording, for cohorts (letters, digits, _ . -; a trainee code, "
                        "never a patient identifier)")
    r.set_defaults(func=cmd_run)

    register_scenario_commands(sub)  # validate, metrics

    b = sub.add_parser("bench", help="benchmarks against peers measured in the same run")
    bsub = b.add_subparsers(dest="bench")

    for mod, fn in OPTIONAL_COMMANDS:
        _register(mod, fn, sub)
    from vr_trainer.bench import register_all

    register_all(bsub)
    return p


def _register(mod: str, fn: str, sub: argparse._SubParsersAction) -> None:
    try:
        register: Callable = getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError):
        return
    register(sub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        if args.command is None:
            args = parser.parse_args(["run", *(argv or [])])
        else:
            parser.parse_args([args.command, "--help"])
            return 2
    try:
        return int(args.func(args) or 0)
    except _user_errors() as e:
        msg = str(e) if not isinstance(e, FileNotFoundError) else f"{e.filename}: no such file"
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
