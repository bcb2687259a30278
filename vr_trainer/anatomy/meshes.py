"""Surface mesh import: STL, OBJ, PLY, glTF/GLB, VTK legacy and VTP.

Files are checked for truncation before parsing, converted to millimetres
(``--units auto`` decides from anatomical plausibility and says why; when the
size reads plausibly in two units and the mesh resolution does not settle it,
it stops and asks for ``--units``), moved to RAS when the file declares LPS
(3D Slicer's ``SPACE=LPS``), repaired (vertices merged by position even when
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


def read_mesh_file(path: Path) -> tuple[trimesh.Trimesh, dict[str, Any]]:
    """One file -> raw triangle mesh in file units (RAS axes) and notes."""
    if not path.is_file():
        raise AnatomyError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise AnatomyError(f"{path}: unsupported mesh format {suffix!r}; use one of {', '.join(SUFFIXES)}")
    notes: dict[str, Any] = {"format": suffix[1:]}
    if suffix in (".vtk", ".vtp"):
        from .vtkio import read_vtk_legacy, read_vtp

        v, f, space = (read_vtk_legacy if suffix == ".vtk" else read_vtp)(path)
        if space == "LPS":
            v = v * np.array([-1.0, -1.0, 1.0])  # a 180 deg turn about z: winding unchanged
            notes["frame"] = "file declares LPS (3D Slicer); converted to RAS"
        else:
            notes["frame"] = "as stored (taken as RAS)"
        return trimesh.Trimesh(vertices=v, faces=f, process=False), notes
    data = path.read_bytes()
    if suffix == ".stl":
        _check_stl(path, data)
    elif suffix == ".obj":
        _check_obj(path, data)
    try:
        loaded = trimesh.load_mesh(str(path), process=False)
    except Exception as exc:
        raise AnatomyError(f"{path}: cannot read {suffix[1:].upper()} ({type(exc).__name__}: {exc}); "
                           "the file is truncated or corrupt, export it again") from exc
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise AnatomyError(f"{path}: holds no triangles (point cloud or empty scene); export a surface mesh")
    if not np.all(np.isfinite(loaded.vertices)):
        raise AnatomyError(f"{path}: vertex coordinates are not finite; the file is corrupt")
    notes["frame"] = "as stored (taken as RAS)"
    return trimesh.Trimesh(vertices=np.asarray(loaded.vertices, float), faces=np.asarray(loaded.faces),
                           process=False), notes


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
                           name: str | None = None, max_faces: int = MAX_FACES
                           ) -> tuple[list[Structure], str, dict[str, Any], list[dict[str, Any]]]:
    """Files -> structures in mm; returns (structures, source unit, units record, input records)."""
    if tissue is not None:
        check_tissue(tissue, "--tissue")
    raw = [(p, *read_mesh_file(p)) for p in paths]
    label = str(paths[0]) if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} more)"
    scale, unit, record = decide_units([m for _, m, _ in raw], units, label)
    structures, inputs = [], []
    for p, mesh, notes in raw:
        mesh.vertices = mesh.vertices * scale
        fixed = repair(mesh)
        if len(fixed.faces) > max_faces:
            fixed = repair(decimate(fixed, max_faces))
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", p.stem)
        sname = name if (name and len(paths) == 1) else (f"{name}_{stem}" if name else stem)
        t = tissue or infer_tissue(p.stem)
        structures.append(Structure.from_mesh(sname, t, fixed, source_format=notes["format"],
                                              frame_note=notes["frame"], tissue_inferred=tissue is None))
        inputs.append(input_record(p, f"mesh/{notes['format']}", keep_name=False))
    return structures, unit, record, inputs
