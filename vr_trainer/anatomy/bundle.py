"""Asset bundles: a folder with ``manifest.json`` and glTF binary meshes.

Layout::

    NAME/
      manifest.json        versioned description (see ``FORMAT_VERSION``)
      meshes/<name>.glb    one mesh per structure

Coordinates in every mesh file are **millimetres in the patient RAS frame**
(+x right, +y anterior, +z superior) exactly as stored; glTF's own metre /
Y-up convention is *not* applied, the manifest's ``units`` and ``frame`` are
authoritative.  A bundle is written atomically (temporary sibling folder, then
rename), so a failed import never leaves a half-written bundle behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import trimesh

from .errors import AnatomyError
from .tissues import check_tissue

if TYPE_CHECKING:
    from .volume import Volume

FORMAT_NAME = "vr_trainer.anatomy.bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class Structure:
    """One anatomical structure: a closed surface in RAS millimetres.

    ``volume_ml`` is ``None`` when the surface is not watertight (a volume
    would be meaningless); ``bbox_mm`` is ``[[xmin, ymin, zmin], [xmax, ymax,
    zmax]]``; ``extra`` holds optional manifest fields (``description``,
    ``hu_mean``, ``label_id`` ...).
    """

    name: str
    tissue: str
    mesh: trimesh.Trimesh
    volume_ml: float | None
    bbox_mm: list[list[float]]
    watertight: bool
    face_count: int
    centroid_mm: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mesh(
        cls, name: str, tissue: str, mesh: trimesh.Trimesh, **extra: Any
    ) -> "Structure":
        """Measure ``mesh`` (millimetres) and wrap it as a structure."""
        if not _NAME_RE.match(name):
            raise AnatomyError(
                f"structure name {name!r} is not usable as a file name; "
                "use letters, digits, '_', '-' or '.' (at most 64)"
            )
        check_tissue(tissue, f"structure {name!r}")
        if len(mesh.faces) == 0:
            raise AnatomyError(f"structure {name!r} has no surface (0 faces)")
        watertight = bool(mesh.is_watertight)
        volume_ml = round(float(mesh.volume) / 1000.0, 3) if watertight else None
        bounds = np.asarray(mesh.bounds, dtype=float)
        centroid = mesh.center_mass if watertight else mesh.centroid
        return cls(
            name=name,
            tissue=tissue,
            mesh=mesh,
            volume_ml=volume_ml,
            bbox_mm=[[round(float(v), 3) for v in row] for row in bounds],
            watertight=watertight,
            face_count=int(len(mesh.faces)),
            centroid_mm=[round(float(v), 3) for v in centroid],
            extra=dict(extra),
        )

    @property
    def size_mm(self) -> np.ndarray:
        """Extent of the bounding box along x, y, z (mm)."""
        b = np.asarray(self.bbox_mm)
        return b[1] - b[0]

    def cap_face_mask(self) -> np.ndarray:
        """(face_count,) bool: True for faces that close a cut by the scan's edge (not anatomy).

        Importers put those faces last and record their number as ``cap_faces``."""
        mask = np.zeros(len(self.mesh.faces), dtype=bool)
        n = int(self.extra.get("cap_faces", 0) or 0)
        if n:
            mask[-n:] = True
        return mask

    def manifest_entry(self, file: str) -> dict[str, Any]:
        """The ``structures[]`` entry for this structure."""
        entry: dict[str, Any] = {
            "name": self.name,
            "tissue": self.tissue,
            "file": file,
            "volume_ml": self.volume_ml,
            "bbox_mm": self.bbox_mm,
            "centroid_mm": self.centroid_mm,
            "watertight": self.watertight,
            "face_count": self.face_count,
        }
        entry.update(self.extra)
        return entry


@dataclass
class Bundle:
    """A loaded bundle: the manifest as a dict and the structures with meshes."""

    path: Path
    manifest: dict[str, Any]
    structures: list[Structure]

    def __getitem__(self, name: str) -> Structure:
        for s in self.structures:
            if s.name == name:
                return s
        raise KeyError(name)

    def names(self) -> list[str]:
        """Structure names in manifest order."""
        return [s.name for s in self.structures]

    def by_tissue(self, *tissues: str) -> list[Structure]:
        """Structures whose tissue is one of ``tissues``."""
        return [s for s in self.structures if s.tissue in tissues]

    @property
    def landmarks(self) -> dict[str, Any]:
        """Named landmarks in RAS mm (e.g. Kambin's triangle); may be empty."""
        return dict(self.manifest.get("landmarks", {}))

    def scene(self) -> trimesh.Scene:
        """All structures as one trimesh scene (node names = structure names)."""
        sc = trimesh.Scene()
        for s in self.structures:
            sc.add_geometry(s.mesh, node_name=s.name, geom_name=s.name)
        return sc


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            b = fh.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def combined_sha256(digests: Iterable[str]) -> str:
    """One digest over many (order independent: digests are sorted first)."""
    h = hashlib.sha256()
    for d in sorted(digests):
        h.update(d.encode("ascii"))
    return h.hexdigest()


def _mesh_to_glb(mesh: trimesh.Trimesh) -> bytes:
    plain = trimesh.Trimesh(
        vertices=np.asarray(mesh.vertices, dtype=np.float32),
        faces=np.asarray(mesh.faces, dtype=np.uint32),
        process=False,
    )
    data = plain.export(file_type="glb")
    assert isinstance(data, bytes)
    return data


def write_bundle(
    out: str | os.PathLike[str],
    structures: Sequence[Structure],
    *,
    source_units: str,
    provenance: dict[str, Any],
    deidentification: dict[str, Any],
    landmarks: dict[str, Any] | None = None,
    notes: dict[str, Any] | None = None,
    hu_volume: "Volume | None" = None,
    hu_source: str = "ct",
) -> Path:
    """Write a bundle folder atomically and return its path.

    ``hu_volume``: a CT in Hounsfield units to keep, down-sampled, as ``volume/hu.npz`` for the
    virtual C-arm (:mod:`vr_trainer.anatomy.hu_volume`; ``hu_source`` says where it came from).

    ``out`` may already hold a bundle (it is replaced); any other non-empty
    folder is refused so an import never clobbers unrelated files.
    """
    out_path = Path(out).absolute()
    if not structures:
        raise AnatomyError(f"{out_path}: nothing to write (no structures were found)")
    names = [s.name for s in structures]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise AnatomyError(f"{out_path}: duplicate structure names {dup}; give each a unique --name")
    if out_path.exists():
        if not out_path.is_dir():
            raise AnatomyError(f"{out_path} exists and is not a folder; choose another --out")
        if any(out_path.iterdir()) and not (out_path / MANIFEST).is_file():
            raise AnatomyError(
                f"{out_path} exists and is not an asset bundle; refusing to replace it, "
                "choose an empty or new --out folder"
            )
    parent = out_path.parent
    parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:12]
    tmp = parent / f".{out_path.name}.tmp-{token}"
    old = parent / f".{out_path.name}.old-{token}"
    try:
        (tmp / "meshes").mkdir(parents=True)
        entries = []
        for s in structures:
            rel = f"meshes/{s.name}.glb"
            (tmp / rel).write_bytes(_mesh_to_glb(s.mesh))
            entries.append(s.manifest_entry(rel))
        manifest: dict[str, Any] = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "units": "mm",
            "source_units": source_units,
            "frame": "RAS",
            "frame_note": "+x right, +y anterior, +z superior; mesh files hold these "
            "millimetre coordinates as-is (no glTF metre/Y-up conversion)",
            "structures": entries,
            "provenance": provenance,
            "deidentification": deidentification,
        }
        if landmarks:
            manifest["landmarks"] = landmarks
        if notes:
            manifest["notes"] = notes
        if hu_volume is not None:
            from .hu_volume import write_hu_volume

            manifest["hu_volume"] = write_hu_volume(tmp, hu_volume, hu_source)
        text = json.dumps(manifest, indent=1, sort_keys=False)
        (tmp / MANIFEST).write_text(text + "\n", encoding="utf-8")
        if out_path.exists():
            os.rename(out_path, old)
        os.rename(tmp, out_path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not out_path.exists():
            os.rename(old, out_path)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return out_path


def _load_glb(path: Path) -> trimesh.Trimesh:
    try:
        with open(path, "rb") as fh:
            loaded = trimesh.load_mesh(fh, file_type="glb", process=False)
    except Exception as exc:  # trimesh raises many types on bad bytes
        raise AnatomyError(
            f"{path}: mesh file is unreadable ({type(exc).__name__}: {exc}); "
            "re-run the import that made this bundle"
        ) from exc
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise AnatomyError(f"{path}: mesh file holds no triangles; re-run the import")
    return loaded


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Load a bundle folder (or its ``manifest.json``) with all its meshes."""
    p = Path(path)
    if p.is_file() and p.name == MANIFEST:
        p = p.parent
    mpath = p / MANIFEST
    if not mpath.is_file():
        raise AnatomyError(f"{p}: not an asset bundle (no {MANIFEST}); pass a folder made by 'vr-trainer import'")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AnatomyError(f"{mpath}: manifest is not valid JSON ({exc}); re-run the import") from exc
    if not isinstance(manifest, dict):
        raise AnatomyError(f"{mpath}: manifest must be a JSON object; re-run the import")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise AnatomyError(
            f"{mpath}: format_version {version!r} is not supported (this program reads "
            f"<= {FORMAT_VERSION}); update vr-trainer or re-import"
        )
    if manifest.get("units") != "mm" or manifest.get("frame") != "RAS":
        raise AnatomyError(f"{mpath}: units must be 'mm' and frame 'RAS'; re-run the import")
    entries = manifest.get("structures")
    if not isinstance(entries, list) or not entries:
        raise AnatomyError(f"{mpath}: 'structures' is missing or empty; re-run the import")
    structures: list[Structure] = []
    known = {"name", "tissue", "file", "volume_ml", "bbox_mm", "centroid_mm", "watertight", "face_count"}
    for i, e in enumerate(entries):
        try:
            name, tissue, file = str(e["name"]), str(e["tissue"]), str(e["file"])
        except (KeyError, TypeError) as exc:
            raise AnatomyError(f"{mpath}: structures[{i}] lacks field {exc}; re-run the import") from exc
        check_tissue(tissue, f"{mpath}: structures[{i}]")
        fpath = (p / file).resolve()
        if p.resolve() not in fpath.parents:
            raise AnatomyError(f"{mpath}: structures[{i}].file {file!r} points outside the bundle")
        if not fpath.is_file():
            raise AnatomyError(f"{fpath}: mesh file of {name!r} is missing; re-run the import")
        mesh = _load_glb(fpath)
        if "face_count" in e and int(e["face_count"]) != len(mesh.faces):
            raise AnatomyError(
                f"{fpath}: has {len(mesh.faces)} faces but the manifest says {e['face_count']}; "
                "the bundle was modified or damaged, re-run the import"
            )
        structures.append(
            Structure(
                name=name,
                tissue=tissue,
                mesh=mesh,
                volume_ml=e.get("volume_ml"),
                bbox_mm=e.get("bbox_mm") or np.asarray(mesh.bounds).tolist(),
                watertight=bool(e.get("watertight", mesh.is_watertight)),
                face_count=len(mesh.faces),
                centroid_mm=e.get("centroid_mm") or list(map(float, mesh.centroid)),
                extra={k: v for k, v in e.items() if k not in known},
            )
        )
    return Bundle(path=p, manifest=manifest, structures=structures)
