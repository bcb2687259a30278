"""Surface mesh import: STL, OBJ, PLY, glTF/GLB, VTK legacy and VTP.

Files are checked for truncation before parsing, converted to millimetres
(``--units auto`` decides from anatomical plausibility and says why; when the
size reads plausibly in two units and the mesh resolution does not settle it,
it stops and asks for ``--units``), moved to RAS from the frame the file
declares (3D Slicer's ``SPACE=LPS`` header comment) or ``--frame CODE`` gives
(:mod:`vr_trainer.anatomy.frames`), repaired (vertices merged by position even when
the file stores per-face normals, winding fixed, degenerate faces and tiny
islands dropped) and measured.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import trimesh

from .bundle import Structure
from .errors import AnatomyError
from .frames import code_of, frame_matrix, superior_order_warning, to_ras, vertebra_level
from .quiet import library_logs, warn
from .surface import decimate, repair
from .tissues import check_tissue
from .volume import input_record

SUFFIXES = (".stl", ".obj", ".ply", ".gltf", ".glb", ".vtk", ".vtp")
UNIT_TO_MM = {"mm": 1.0, "cm": 10.0, "m": 1000.0}
#: largest extent (mm) an imported anatomical part may plausibly have
PLAUSIBLE_MM = (20.0, 1000.0)
#: the same for explicit --units (more lenient: only absurd sizes are refused)
POSSIBLE_MM = (2.0, 2500.0)
#: median triangle edge (mm) of scanner/segmentation derived surfaces
EDGE_MM = (0.05, 4.0)
MAX_FACES = 60_000
_TISSUE_WORDS = [
    (("cartilage", "menisc"), "cartilage"), (("disc", "disk", "annulus", "nucleus"), "disc"),
    (("nerve", "root", "cord", "ganglion"), "nerve"), (("dura", "thecal"), "dura"),
    (("artery", "vein", "aorta", "vena", "vessel"), "vessel"), (("muscle", "psoas", "gluteus", "autochthon"), "muscle"),
    (("skin",), "skin"), (("ligament", "acl", "pcl", "mcl", "lcl", "flavum"), "ligament"),
    (("implant", "prosthesis", "component", "screw", "cage", "insert"), "implant"),
    (("hernia", "tumor", "tumour", "fragment"), "pathology"), (("fat",), "fat"),
]


def infer_tissue(stem: str) -> str:
    """Tissue class guessed from a file name (``bone`` when nothing matches)."""
    low = stem.lower()
    for words, tissue in _TISSUE_WORDS:
        if any(w in low for w in words):
            return tissue
    return "bone"


def _check_stl(path: Path, data: bytes) -> None:
    if len(data) < 84:
        raise AnatomyError(f"{path}: STL file is only {len(data)} bytes (truncated or empty); export it again")
    n = int.from_bytes(data[80:84], "little")
    if len(data) == 84 + 50 * n and n > 0:
        return  # well-formed binary STL
    head = data[:512].lstrip().lower()
    if head.startswith(b"solid") and b"facet" in data[:4096].lower():
        if b"endsolid" not in data[-1024:].lower():
            raise AnatomyError(f"{path}: ASCII STL has no closing 'endsolid' (truncated); export it again")
        return
    if len(data) < 84 + 50 * n:
        raise AnatomyError(f"{path}: binary STL declares {n} triangles but holds only "
                           f"{(len(data) - 84) // 50} (truncated); export it again")
    raise AnatomyError(f"{path}: not a valid STL (size does not match its triangle count); the file is corrupt")


def _check_obj(path: Path, data: bytes) -> None:
    if not data.strip():
        raise AnatomyError(f"{path}: OBJ file is empty")
    if not data.endswith(b"\n"):
        raise AnatomyError(f"{path}: OBJ file's last line is incomplete (truncated); export it again")
    nv = len(re.findall(rb"(?m)^v\s", data))
    top = 0
    for line in re.findall(rb"(?m)^f[ \t]+(.*)$", data):
        for tok in line.split():
            try:
                top = max(top, abs(int(tok.split(b"/")[0])))
            except ValueError:
                raise AnatomyError(f"{path}: OBJ face entry {tok[:20]!r} is not a vertex index "
                                   "(corrupt file)") from None
    if top > nv:
        raise AnatomyError(f"{path}: OBJ faces use vertex {top} but only {nv} vertices exist (truncated or corrupt)")


def _declared_space(data: bytes) -> str | None:
    """``SPACE=LPS`` / ``SPACE=RAS`` as 3D Slicer writes it in an STL header or OBJ/PLY comment."""
    found = re.search(rb"SPACE=([A-Za-z]{3})", data[:4096])
    return found.group(1).decode("ascii").upper() if found else None


def read_mesh_file(path: Path) -> tuple[trimesh.Trimesh, dict[str, Any]]:
    """One file -> raw triangle mesh in file units and file axes, and notes
    (``format``, ``declared_frame`` when the file names its frame, ``warnings``)."""
    if not path.is_file():
        raise AnatomyError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise AnatomyError(f"{path}: unsupported mesh format {suffix!r}; use one of {', '.join(SUFFIXES)}")
    notes: dict[str, Any] = {"format": suffix[1:], "declared_frame": None, "warnings": []}
    if suffix in (".vtk", ".vtp"):
        from .vtkio import read_vtk_legacy, read_vtp

        v, f, space = (read_vtk_legacy if suffix == ".vtk" else read_vtp)(path)
        notes["declared_frame"] = space
        return trimesh.Trimesh(vertices=v, faces=f, process=False), notes
    data = path.read_bytes()
    if suffix == ".stl":
        _check_stl(path, data)
    elif suffix == ".obj":
        _check_obj(path, data)
    if suffix in (".stl", ".obj", ".ply"):
        notes["declared_frame"] = _declared_space(data)
    try:
        with library_logs() as logged:
            loaded = trimesh.load_mesh(str(path), process=False)
    except Exception as exc:
        raise AnatomyError(f"{path}: cannot read {suffix[1:].upper()} ({type(exc).__name__}: {exc}); "
                           "the file is truncated or corrupt, export it again") from exc
    notes["warnings"] = list(logged)
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise AnatomyError(f"{path}: holds no triangles (point cloud or empty scene); export a surface mesh")
    if not np.all(np.isfinite(loaded.vertices)):
        raise AnatomyError(f"{path}: vertex coordinates are not finite; the file is corrupt")
    return trimesh.Trimesh(vertices=np.asarray(loaded.vertices, float), faces=np.asarray(loaded.faces),
                           process=False), notes


def _frame_of(path: Path, declared: str | None, frame: str | None) -> tuple[str, str]:
    """(orientation code, how it was decided) for one file."""
    if declared is not None:
        try:
            declared = code_of(frame_matrix(declared))
        except AnatomyError:
            raise AnatomyError(f"{path}: the file declares SPACE={declared}, which is not an orientation code; "
                               "export it again from 3D Slicer (LPS or RAS)") from None
    if frame is not None:
        code = code_of(frame_matrix(frame))
        if declared is not None and declared != code:
            raise AnatomyError(f"{path}: the file declares SPACE={declared} but --frame {frame} was given; "
                               f"drop --frame (the file's own frame is used) or re-export the file")
        return code, "--frame"
    if declared is not None:
        return declared, "file header (SPACE=...)"
    return "RAS", "default (file declares no frame)"


def _median_edge(mesh: trimesh.Trimesh) -> float:
    e = mesh.vertices[mesh.faces[:, [1, 2, 0]]] - mesh.vertices[mesh.faces]
    return float(np.median(np.linalg.norm(e.reshape(-1, 3), axis=1)))


def decide_units(meshes: Sequence[trimesh.Trimesh], requested: str, label: str) -> tuple[float, str, dict[str, Any]]:
    """(scale to mm, source unit, decision record) for meshes from one source."""
    extent = max(float(np.max(m.extents)) for m in meshes)
    edge = float(np.median([_median_edge(m) for m in meshes]))
    readings = {u: extent * k for u, k in UNIT_TO_MM.items()}
    if requested != "auto":
        if requested not in UNIT_TO_MM:
            raise AnatomyError(f"--units {requested!r}: use auto, mm, cm or m")
        mm = readings[requested]
        if not POSSIBLE_MM[0] <= mm <= POSSIBLE_MM[1]:
            fits = [u for u, v in readings.items() if PLAUSIBLE_MM[0] <= v <= PLAUSIBLE_MM[1]]
            hint = f"; did you mean --units {fits[0]}?" if len(fits) == 1 else ""
            raise AnatomyError(f"{label}: with --units {requested} the largest extent is {mm:.4g} mm, "
                               f"which is not a plausible anatomical size{hint}")
        return UNIT_TO_MM[requested], requested, {"requested": requested, "decided": requested,
                                                    "largest_extent_mm": round(mm, 3)}
    fits = [u for u, v in readings.items() if PLAUSIBLE_MM[0] <= v <= PLAUSIBLE_MM[1]]
    why = ", ".join(f"as {u}: {v:.4g} mm" for u, v in readings.items())
    if len(fits) > 1:  # size alone is ambiguous: let the mesh resolution decide
        by_edge = [u for u in fits if EDGE_MM[0] <= edge * UNIT_TO_MM[u] <= EDGE_MM[1]]
        if len(by_edge) == 1:
            fits = by_edge
            why += (f"; median edge {edge * UNIT_TO_MM[fits[0]]:.3g} mm fits a segmentation-derived mesh "
                    f"only as {fits[0]}")
    if len(fits) != 1:
        raise AnatomyError(f"{label}: cannot tell the unit from the size (largest extent {extent:.4g} in file units; "
                           f"{why}); pass --units mm, cm or m")
    unit = fits[0]
    return UNIT_TO_MM[unit], unit, {"requested": "auto", "decided": unit, "largest_extent_file_units": round(extent, 6),
                                    "reason": f"plausible anatomical size {PLAUSIBLE_MM[0]:g}-{PLAUSIBLE_MM[1]:g} mm "
                                              f"only {why}"}


def structures_from_meshes(paths: Sequence[Path], *, tissue: str | None = None, units: str = "auto",
                           name: str | None = None, max_faces: int = MAX_FACES, frame: str | None = None
                           ) -> tuple[list[Structure], str, dict[str, Any], list[dict[str, Any]]]:
    """Files -> structures in mm, RAS; returns (structures, source unit, record, input records).

    ``frame`` is the orientation code of the file coordinates (default: what the
    file declares, else RAS).  The record holds ``units``, ``frame`` and ``warnings``.
    """
    if tissue is not None:
        check_tissue(tissue, "--tissue")
    if frame is not None:
        frame_matrix(frame)  # a bad code is refused before any file is read
    raw = [(p, *read_mesh_file(p)) for p in paths]
    label = str(paths[0]) if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} more)"
    scale, unit, record = decide_units([m for _, m, _ in raw], units, label)
    structures, inputs, warnings, frames = [], [], [], []
    levels: list[tuple[str, np.ndarray]] = []
    for p, mesh, notes in raw:
        code, how = _frame_of(p, notes["declared_frame"], frame)
        frames.append({"source_frame": code, "decided_by": how})
        v, f = to_ras(mesh.vertices * scale, mesh.faces, code)
        fixed = repair(trimesh.Trimesh(vertices=v, faces=f, process=False))
        if len(fixed.faces) > max_faces:
            fixed = repair(decimate(fixed, max_faces))
        for w in notes["warnings"]:
            warnings.append(f"{p.name}: {w}")
        warn(str(p), notes["warnings"])
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", p.stem)
        sname = name if (name and len(paths) == 1) else (f"{name}_{stem}" if name else stem)
        t = tissue or infer_tissue(p.stem)
        note = "as stored (RAS)" if code == "RAS" else f"{code} converted to RAS"
        s = Structure.from_mesh(sname, t, fixed, source_format=notes["format"], source_frame=code,
                                frame_note=f"{note}; frame from {how}", tissue_inferred=tissue is None)
        structures.append(s)
        level = vertebra_level(p.stem)
        if level is not None and t == "bone":
            levels.append((level, np.asarray(s.centroid_mm)))
        inputs.append(input_record(p, f"mesh/{notes['format']}", keep_name=False))
    codes = sorted({fr["source_frame"] for fr in frames})
    order = superior_order_warning(levels, codes[0]) if len(codes) == 1 else None
    if order is not None:
        warn(label, [order])
        warnings.append(order)
    record = {"units": record, "frame": {"source": codes[0] if len(codes) == 1 else codes, "to": "RAS",
                                         "decided_by": sorted({fr["decided_by"] for fr in frames})},
              "warnings": warnings}
    return structures, unit, record, inputs
