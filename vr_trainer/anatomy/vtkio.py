"""Readers for VTK polygon meshes: legacy ``.vtk`` (ASCII/BINARY, file
versions up to 5.1) and XML ``.vtp`` (ascii, base64 or raw appended data,
optionally zlib-compressed), as written by 3D Slicer and ParaView.

Returns ``(vertices, triangles, space)``: float64 (N, 3), int64 (M, 3) with
polygons fan-triangulated and strips unrolled, and ``"LPS"``/``"RAS"`` when
the file says so (3D Slicer writes ``SPACE=LPS`` in the header) else ``None``.
Malformed or truncated files raise :class:`AnatomyError`.
"""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import numpy as np

from .errors import AnatomyError

_LEGACY_TYPES = {"float": ">f4", "double": ">f8", "int": ">i4", "unsigned_int": ">u4", "long": ">i8",
                 "unsigned_long": ">u8", "short": ">i2", "unsigned_short": ">u2", "char": ">i1",
                 "unsigned_char": ">u1", "vtktypeint64": ">i8", "vtktypeint32": ">i4",
                 "vtktypeuint64": ">u8", "vtktypeuint32": ">u4"}
_XML_TYPES = {"Float32": "f4", "Float64": "f8", "Int8": "i1", "UInt8": "u1", "Int16": "i2", "UInt16": "u2",
              "Int32": "i4", "UInt32": "u4", "Int64": "i8", "UInt64": "u8"}


def _cells_to_triangles(offsets: np.ndarray, conn: np.ndarray, strips: bool = False) -> np.ndarray:
    tris: list[np.ndarray] = []
    for a, b in zip(offsets[:-1], offsets[1:]):
        c = conn[a:b]
        if len(c) < 3:
            continue
        if strips:
            for i in range(len(c) - 2):
                t = (c[i], c[i + 1], c[i + 2]) if i % 2 == 0 else (c[i + 1], c[i], c[i + 2])
                tris.append(np.array(t))
        elif len(c) == 3:
            tris.append(c)
        else:
            tris.extend(np.array([c[0], c[i], c[i + 1]]) for i in range(1, len(c) - 1))
    return np.asarray(tris, dtype=np.int64).reshape(-1, 3)


def _tri_fast(offsets: np.ndarray, conn: np.ndarray) -> np.ndarray:
    sizes = np.diff(offsets)
    if len(sizes) and np.all(sizes == 3):
        return conn[: 3 * len(sizes)].reshape(-1, 3).astype(np.int64)
    return _cells_to_triangles(offsets, conn)


class _Cursor:
    def __init__(self, data: bytes, path: Path) -> None:
        self.d, self.i, self.path = data, 0, path

    def line(self) -> str:
        while True:
            if self.i >= len(self.d):
                raise AnatomyError(f"{self.path}: VTK file ends early (truncated); export it again")
            j = self.d.find(b"\n", self.i)
            j = len(self.d) if j < 0 else j
            s = self.d[self.i : j].decode("latin-1").strip()
            self.i = j + 1
            if s:
                return s

    def ascii(self, n: int, dtype: str) -> np.ndarray:
        out: list[str] = []
        while len(out) < n:
            out.extend(self.line().split())
        if len(out) != n:
            raise AnatomyError(f"{self.path}: VTK data block has {len(out)} values, expected {n}")
        try:
            return np.asarray(out, dtype=np.float64 if dtype[-2] == "f" else np.int64)
        except ValueError as exc:
            raise AnatomyError(f"{self.path}: VTK data is not numeric ({exc}); the file is corrupt") from exc

    def binary(self, n: int, dtype: str) -> np.ndarray:
        nbytes = n * np.dtype(dtype).itemsize
        if self.i + nbytes > len(self.d):
            raise AnatomyError(f"{self.path}: VTK binary data ends early (truncated); export it again")
        arr = np.frombuffer(self.d, dtype=dtype, count=n, offset=self.i)
        self.i += nbytes
        return arr


def read_vtk_legacy(path: Path) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Read a legacy VTK POLYDATA file."""
    cur = _Cursor(path.read_bytes(), path)
    head = cur.line()
    if not head.lower().startswith("# vtk datafile"):
        raise AnatomyError(f"{path}: not a legacy VTK file (first line {head[:40]!r})")
    title = cur.line()
    space = "LPS" if "SPACE=LPS" in title.upper() else ("RAS" if "SPACE=RAS" in title.upper() else None)
    mode = cur.line().upper()
    if mode not in ("ASCII", "BINARY"):
        raise AnatomyError(f"{path}: VTK mode {mode!r} is neither ASCII nor BINARY")
    ds = cur.line().split()
    if len(ds) < 2 or ds[1].upper() != "POLYDATA":
        raise AnatomyError(f"{path}: only POLYDATA VTK files hold surfaces (found {' '.join(ds)}); "
                           "export the model as a surface")
    read = cur.ascii if mode == "ASCII" else cur.binary
    pts: np.ndarray | None = None
    tris: list[np.ndarray] = []
    while cur.i < len(cur.d):
        try:
            tok = cur.line().split()
        except AnatomyError:
            break
        key = tok[0].upper()
        if key == "POINTS":
            n, typ = int(tok[1]), _LEGACY_TYPES.get(tok[2].lower(), ">f4")
            pts = np.asarray(read(3 * n, typ), dtype=np.float64).reshape(n, 3)
        elif key in ("POLYGONS", "TRIANGLE_STRIPS", "VERTICES", "LINES"):
            a, b = int(tok[1]), int(tok[2])
            nxt = cur.d[cur.i : cur.i + 40].decode("latin-1", "replace").lstrip().upper()
            if nxt.startswith("OFFSETS"):  # file version 5.x
                typ = _LEGACY_TYPES.get(cur.line().split()[1].lower(), ">i8")
                offs = np.asarray(read(a, typ), dtype=np.int64)
                typ = _LEGACY_TYPES.get(cur.line().split()[1].lower(), ">i8")
                conn = np.asarray(read(b, typ), dtype=np.int64)
            else:
                raw = np.asarray(read(b, ">i4"), dtype=np.int64)
                offs_l, conn_l, k = [0], [], 0
                for _ in range(a):
                    if k >= len(raw):
                        raise AnatomyError(f"{path}: {key} block is shorter than declared; the file is corrupt")
                    m = int(raw[k])
                    conn_l.append(raw[k + 1 : k + 1 + m])
                    offs_l.append(offs_l[-1] + m)
                    k += m + 1
                offs = np.asarray(offs_l, dtype=np.int64)
                conn = np.concatenate(conn_l) if conn_l else np.zeros(0, np.int64)
            if key == "POLYGONS":
                tris.append(_tri_fast(offs, conn))
            elif key == "TRIANGLE_STRIPS":
                tris.append(_cells_to_triangles(offs, conn, strips=True))
        elif key in ("POINT_DATA", "CELL_DATA", "FIELD"):
            break
        elif key == "METADATA":
            continue
    return _finish(path, pts, tris, space)


def _finish(path: Path, pts: np.ndarray | None, tris: list[np.ndarray],
            space: str | None) -> tuple[np.ndarray, np.ndarray, str | None]:
    if pts is None or not len(pts):
        raise AnatomyError(f"{path}: no POINTS in the file; it is empty or corrupt")
    faces = np.concatenate(tris) if tris else np.zeros((0, 3), np.int64)
    if not len(faces):
        raise AnatomyError(f"{path}: no polygons in the file; export the model as a surface mesh")
    if faces.min() < 0 or faces.max() >= len(pts):
        raise AnatomyError(f"{path}: polygons point at missing vertices; the file is truncated or corrupt")
    if not np.all(np.isfinite(pts)):
        raise AnatomyError(f"{path}: vertex coordinates are not finite; the file is corrupt")
    return pts, faces, space


def _xml_array(el: ET.Element, vtk: ET.Element, appended: bytes | None, path: Path) -> np.ndarray:
    dtype = np.dtype(_XML_TYPES.get(el.get("type", "Float32"), "f4")).newbyteorder(
        "<" if vtk.get("byte_order", "LittleEndian") == "LittleEndian" else ">")
    htype = np.dtype("<u8" if vtk.get("header_type", "UInt32") == "UInt64" else "<u4")
    compressed = vtk.get("compressor") is not None
    fmt = el.get("format", "ascii")
    if fmt == "ascii":
        return np.asarray((el.text or "").split(), dtype=dtype)
    if fmt == "binary":
        text = (el.text or "").strip().encode()
        if compressed:
            hs = htype.itemsize
            first = base64.b64decode(text[: 4 * ((3 * hs + 2) // 3)])
            nblocks = int(np.frombuffer(first[:hs], htype)[0])
            hlen = 4 * (((3 + nblocks) * hs + 2) // 3)
            header = np.frombuffer(base64.b64decode(text[:hlen]), htype)
            body = base64.b64decode(text[hlen:])
            return _inflate(header, body, 0, dtype, path)
        raw = base64.b64decode(text)
        n = int(np.frombuffer(raw[: htype.itemsize], htype)[0])
        return np.frombuffer(raw[htype.itemsize : htype.itemsize + n], dtype)
    if fmt == "appended" and appended is not None:
        off = int(el.get("offset", "0"))
        if compressed:
            nb = int(np.frombuffer(appended[off : off + htype.itemsize], htype)[0])
            header = np.frombuffer(appended[off : off + (3 + nb) * htype.itemsize], htype)
            return _inflate(header, appended, off + (3 + nb) * htype.itemsize, dtype, path)
        n = int(np.frombuffer(appended[off : off + htype.itemsize], htype)[0])
        start = off + htype.itemsize
        if start + n > len(appended):
            raise AnatomyError(f"{path}: appended data ends early (truncated); export it again")
        return np.frombuffer(appended[start : start + n], dtype)
    raise AnatomyError(f"{path}: DataArray format {fmt!r} is not supported")


def _inflate(header: np.ndarray, buf: bytes, start: int, dtype: np.dtype, path: Path) -> np.ndarray:
    nb = int(header[0])
    sizes = [int(s) for s in header[3 : 3 + nb]]
    out, pos = [], start
    for s in sizes:
        try:
            out.append(zlib.decompress(buf[pos : pos + s]))
        except zlib.error as exc:
            raise AnatomyError(f"{path}: compressed data is damaged ({exc}); export it again") from exc
        pos += s
    return np.frombuffer(b"".join(out), dtype)


def read_vtp(path: Path) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Read an XML PolyData (``.vtp``) file."""
    data = path.read_bytes()
    appended = None
    m = re.search(rb"<AppendedData[^>]*>", data)
    if m:
        start = data.index(b"_", m.end()) + 1
        end = data.rfind(b"</AppendedData>")
        if end < 0:
            raise AnatomyError(f"{path}: XML ends early (no </AppendedData>); the file is truncated")
        appended = data[start:end]
        enc = re.search(rb'encoding="(\w+)"', m.group(0))
        if enc and enc.group(1) == b"base64":
            appended = base64.b64decode(appended.strip())
        data = data[: m.start()] + b"</VTKFile>"
    try:
        vtk = ET.fromstring(data)
    except ET.ParseError as exc:
        raise AnatomyError(f"{path}: not valid VTK XML ({exc}); the file is truncated or corrupt") from exc
    if vtk.get("type") != "PolyData":
        raise AnatomyError(f"{path}: VTK XML type {vtk.get('type')!r}; only PolyData (.vtp) surfaces are supported")
    space = None
    comment = data[:400].decode("latin-1", "replace").upper()
    if "SPACE=LPS" in comment:
        space = "LPS"
    pts_list, tris, base = [], [], 0
    for piece in vtk.iter("Piece"):
        parr = piece.find("Points/DataArray")
        if parr is None:
            continue
        p = np.asarray(_xml_array(parr, vtk, appended, path), dtype=np.float64).reshape(-1, 3)
        for tag, strips in (("Polys", False), ("Strips", True)):
            sec = piece.find(tag)
            if sec is None:
                continue
            arrs = {a.get("Name"): a for a in sec.findall("DataArray")}
            if "connectivity" not in arrs or "offsets" not in arrs:
                raise AnatomyError(f"{path}: <{tag}> lacks connectivity/offsets arrays")
            conn = np.asarray(_xml_array(arrs["connectivity"], vtk, appended, path), dtype=np.int64)
            offs = np.concatenate([[0], np.asarray(_xml_array(arrs["offsets"], vtk, appended, path), dtype=np.int64)])
            t = _cells_to_triangles(offs, conn, strips=True) if strips else _tri_fast(offs, conn)
            tris.append(t + base)
        pts_list.append(p)
        base += len(p)
    for fd in vtk.iter("DataArray"):
        if fd.get("Name", "").upper() == "SPACE" and fd.text:
            space = fd.text.strip().upper()[:3] or space
    return _finish(path, np.concatenate(pts_list) if pts_list else None, tris, space)


def write_vtk_legacy_ascii(path: Path, vertices: np.ndarray, faces: np.ndarray, title: str = "vr_trainer") -> None:
    """Write a small ASCII legacy VTK (used by tests and for interchange)."""
    lines = ["# vtk DataFile Version 3.0", title, "ASCII", "DATASET POLYDATA", f"POINTS {len(vertices)} float"]
    lines += [" ".join(f"{v:.6g}" for v in row) for row in vertices]
    lines.append(f"POLYGONS {len(faces)} {4 * len(faces)}")
    lines += ["3 " + " ".join(str(int(i)) for i in f) for f in faces]
    path.write_text("\n".join(lines) + "\n")

