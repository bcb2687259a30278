"""`vr-trainer validate` and `vr-trainer metrics`.

``validate FILE... [--format text|json] [--schema]``: exit 0 when every file is valid, 1 when
any has an error (warnings alone do not fail), 2 on a usage error. ``--format json`` prints one
list of ``{file, line, col, field, message, hint, severity}`` for editors and CI.
``metrics [--procedure P] [--format text|json]`` lists the metric registry.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import typing

from vr_trainer.scenario.conditions import GRAMMAR_HELP
from vr_trainer.scenario.schema import Scenario

PROCEDURES: tuple[str, ...] = typing.get_args(Scenario.model_fields["procedure"].annotation)


def cmd_validate(args: argparse.Namespace) -> int:
    from vr_trainer.scenario.validate import schema_text, validate_file

    if args.schema:
        if args.files:
            print("error: give either scenario files or --schema, not both", file=sys.stderr)
            return 2
        sys.stdout.write(schema_text())
        return 0
    if not args.files:
        print("error: give one or more scenario files (or --schema to print the JSON Schema)", file=sys.stderr)
        return 2
    failed = False
    everything = []
    for f in args.files:
        scenario, issues = validate_file(f)
        errors = [i for i in issues if i.severity == "error"]
        failed = failed or bool(errors) or scenario is None
        everything += issues
        if args.format == "text":
            for issue in issues:
                print(issue, file=sys.stderr)
            if scenario is not None and not errors:
                warn = f", {len(issues)} warning{'s' if len(issues) != 1 else ''}" if issues else ""
                print(f"{f}: ok ({scenario.id}: {len(scenario.steps)} steps, {len(scenario.events)} events, "
                      f"{len(scenario.rubric.metrics)} rubric metrics{warn})")
    if args.format == "json":
        print(json.dumps([i.to_dict() for i in everything], indent=1, ensure_ascii=False))
    return 1 if failed else 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from vr_trainer.scenario.metrics import metrics_for

    defs = sorted(metrics_for(args.procedure), key=lambda d: ("*" not in d.procedures, d.name))
    if args.format == "json":
        print(json.dumps([{"name": d.name, "unit": d.unit, "definition": d.definition, "source": d.source,
                           "procedures": list(d.procedures)} for d in defs], indent=1, ensure_ascii=False))
        return 0
    for d in defs:
        scope = "all procedures" if "*" in d.procedures else ", ".join(d.procedures)
        print(f"{d.name} [{d.unit}] ({scope})")
        print(textwrap.fill(d.definition, 100, initial_indent="    ", subsequent_indent="    "))
        print(textwrap.fill("source: " + d.source, 100, initial_indent="    ", subsequent_indent="      "))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `validate` and `metrics` subcommands to the main parser."""
    v = sub.add_parser("validate", help="check scenario files (syntax, schema, conditions, references, bundle)",
                       description="Check scenario files: YAML syntax, the schema, conditions, references inside "
                       "the file and against the anatomy bundle. Each problem prints as "
                       "file:line:col: field: message (hint: ...). Exit 0: valid, 1: invalid, 2: usage.",
                       epilog=GRAMMAR_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    v.add_argument("files", nargs="*", metavar="FILE", help="scenario YAML files")
    v.add_argument("--format", choices=["text", "json"], default="text",
                   help="text (default) or json: a list of {file, line, col, field, message, hint, severity}")
    v.add_argument("--schema", action="store_true",
                   help="print the scenario JSON Schema (vr-trainer validate --schema > scenarios/schema.json)")
    v.set_defaults(func=cmd_validate)

    m = sub.add_parser("metrics", help="list the metrics a rubric may score (name, unit, definition, source)")
    m.add_argument("--procedure", choices=PROCEDURES, default=None,
                   help="only the metrics a scenario of this procedure may use (generic ones included)")
    m.add_argument("--format", choices=["text", "json"], default="text")
    m.set_defaults(func=cmd_metrics)
