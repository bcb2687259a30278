"""``vr-trainer import ...`` (``bench import`` lives in :mod:`vr_trainer.bench.anatomy_import`).

The main CLI (``vr_trainer/cli.py``) calls :func:`register`; each sub-command sets ``handler`` (also ``func``) to a
callable ``handler(args) -> int``.  User mistakes raise
:class:`~vr_trainer.anatomy.errors.AnatomyError`, which the main CLI prints
as ``error: ...`` with exit status 2.
"""

from __future__ import annotations

import argparse
from typing import Any

from .tissues import TISSUES


def set_handler(p: argparse.ArgumentParser, fn: Any) -> None:
    p.set_defaults(handler=fn, func=fn)


def run_import_ct(args: argparse.Namespace) -> int:
    """Handler of ``import ct``."""
    from .importers import describe, import_ct

    out = import_ct(args.path, args.out, labels=args.labels, label_map=args.label_map, threshold_hu=args.threshold_hu,
                    series=args.series, spine=args.spine, license=args.license, source_ref=args.source)
    print(describe(out))
    return 0


def run_import_mesh(args: argparse.Namespace) -> int:
    """Handler of ``import mesh``."""
    from .importers import describe, import_mesh

    out = import_mesh(args.files, args.out, tissue=args.tissue, units=args.units, name=args.name,
                      frame=args.frame, spine=args.spine, license=args.license, source_ref=args.source)
    print(describe(out))
    return 0


def _provenance_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--license", metavar="SPDX", default=None,
                   help="licence of the source data, an SPDX id (e.g. Apache-2.0); stored as provenance.license")
    p.add_argument("--source", metavar="TEXT", default=None,
                   help="where the source data come from (URL, repository and path, DOI); provenance.source_ref")


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``import`` with ``ct`` and ``mesh`` to the main CLI's sub-parsers."""
    imp = subparsers.add_parser("import", help="import patient anatomy into an asset bundle",
                                description="Import CT / label maps / surface meshes into a de-identified "
                                            "asset bundle (glTF meshes in RAS millimetres + manifest.json).")
    sub = imp.add_subparsers(dest="import_kind", metavar="{ct,mesh}")
    sub.required = True
    ct = sub.add_parser("ct", help="CT (DICOM folder, NIfTI, NRRD) and/or label map -> bundle",
                        description="PATH is a DICOM folder (classic series or enhanced multi-frame CT/MR, "
                                    "compressed transfer syntaxes included), "
                                    "a NIfTI (.nii/.nii.gz) or an NRRD file; a label map alone is also accepted. "
                                    "DICOM is de-identified before anything is written.")
    ct.add_argument("path", help="DICOM series folder, .nii/.nii.gz or .nrrd")
    ct.add_argument("--labels", metavar="SEG",
                    help="label map (NIfTI/NRRD, or DICOM SEG file/folder) on the CT's grid or overlapping it; "
                         "needed for MR, ultrasound and secondary-capture series")
    ct.add_argument("--series", metavar="UID", default=None,
                    help="SeriesInstanceUID to import when the DICOM folder holds several (they are listed)")
    ct.add_argument("--label-map", metavar="totalsegmentator|MAP.yaml", default=None,
                    help="meaning of the label ids (default: TotalSegmentator v2 'total')")
    ct.add_argument("--threshold-hu", type=float, metavar="HU", default=None,
                    help="bone threshold when no labels are given (default 200 HU)")
    ct.add_argument("--spine", action="store_true",
                    help="derive discs, dural sac, nerve roots and Kambin's triangles from the vertebrae "
                         "(named L1..L5, S1 or sacrum)")
    _provenance_options(ct)
    ct.add_argument("--out", required=True, metavar="assets/NAME", help="bundle folder to write (replaced atomically)")
    set_handler(ct, run_import_ct)
    mesh = sub.add_parser("mesh", help="surface meshes (STL, OBJ, PLY, glTF/GLB, VTK, VTP) -> bundle",
                          description="Units: --units auto decides from anatomical plausibility and records the "
                                      "decision; when it cannot decide it stops and asks for --units.")
    mesh.add_argument("files", nargs="+", metavar="FILE", help="mesh files (one structure each)")
    mesh.add_argument("--tissue", choices=TISSUES, default=None,
                      help="tissue class (default: from the file name, else bone)")
    mesh.add_argument("--units", choices=("auto", "mm", "cm", "m"), default="auto", help="unit of the file coordinates")
    mesh.add_argument("--name", default=None, help="structure name (a prefix when several files are given)")
    mesh.add_argument("--frame", metavar="CODE", default=None,
                      help="orientation of the file coordinates: three letters naming where +x, +y, +z point "
                           "(RAS, LPS as 3D Slicer writes since 4.11, ALS ...); default: the file's SPACE= "
                           "header, else RAS")
    mesh.add_argument("--spine", action="store_true",
                      help="derive discs, dural sac, nerve roots and Kambin's triangles from the vertebrae "
                           "(named L1..L5, S1 or sacrum)")
    _provenance_options(mesh)
    mesh.add_argument("--out", required=True, metavar="assets/NAME",
                      help="bundle folder to write (replaced atomically)")
    set_handler(mesh, run_import_mesh)
    return imp


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m vr_trainer.anatomy.cli``), same behaviour as the main CLI."""
    import sys

    from .errors import AnatomyError

    ap = argparse.ArgumentParser(prog="vr-trainer")
    sub = ap.add_subparsers(dest="command")
    sub.required = True
    register(sub)
    args = ap.parse_args(argv)
    try:
        return int(args.handler(args))
    except AnatomyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
