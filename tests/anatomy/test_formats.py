"""Every mesh format the hospital tools save reads back to the same solid; label maps."""

from __future__ import annotations

import base64
import zlib
from pathlib import Path

import numpy as np
import pytest
import trimesh

from vr_trainer.anatomy import AnatomyError, load_bundle
from vr_trainer.anatomy.importers import import_mesh
from vr_trainer.anatomy.labelmaps import load_yaml_map, totalsegmentator_specs
from vr_trainer.anatomy.meshes import read_mesh_file
from vr_trainer.anatomy.vtkio import write_vtk_legacy_ascii


@pytest.fixture(scope="module")
def ball() -> trimesh.Trimesh:
    m = trimesh.creation.icosphere(subdivisions=3, radius=25.0)
    m.apply_translation([40.0, -10.0, 120.0])
    return m


def _vtp_appended_zlib(path: Path, m: trimesh.Trimesh) -> None:
    """A .vtp as VTK writes it: raw appended data, UInt64 headers, zlib blocks."""
    arrays = [np.asarray(m.vertices, "<f4").ravel(), np.asarray(m.faces, "<i8").ravel(),
              np.arange(3, 3 * len(m.faces) + 1, 3, dtype="<i8")]
    blob, offsets = b"", []
    for a in arrays:
        raw = a.tobytes()
        comp = zlib.compress(raw)
        offsets.append(len(blob))
        blob += np.array([1, len(raw), len(raw), len(comp)], "<u8").tobytes() + comp
    xml = f"""<?xml version="1.0"?>
<!-- SPACE=RAS -->
<VTKFile type="PolyData" version="1.0" byte_order="LittleEndian" header_type="UInt64" \
compressor="vtkZLibDataCompressor">
<PolyData><Piece NumberOfPoints="{len(m.vertices)}" NumberOfPolys="{len(m.faces)}">
<Points><DataArray type="Float32" NumberOfComponents="3" format="appended" offset="{offsets[0]}"/></Points>
<Polys><DataArray type="Int64" Name="connectivity" format="appended" offset="{offsets[1]}"/>
<DataArray type="Int64" Name="offsets" format="appended" offset="{offsets[2]}"/></Polys>
</Piece></PolyData>
<AppendedData encoding="raw">_"""
    path.write_bytes(xml.encode() + blob + b"\n</AppendedData></VTKFile>\n")


@pytest.mark.parametrize("fmt", ["stl", "obj", "ply", "glb", "vtk", "vtk-lps", "vtp", "vtp-base64"])
def test_formats_read_back_to_the_same_solid(fmt: str, ball: trimesh.Trimesh, tmp_path: Path) -> None:
    f = tmp_path / f"ball.{fmt.split('-')[0]}"
    if fmt in ("stl", "obj", "ply", "glb"):
        ball.export(f)
    elif fmt == "vtk":
        write_vtk_legacy_ascii(f, ball.vertices, ball.faces)
    elif fmt == "vtk-lps":
        write_vtk_legacy_ascii(f, ball.vertices * [-1, -1, 1], ball.faces, title="Slicer model SPACE=LPS")
    elif fmt == "vtp":
        _vtp_appended_zlib(f, ball)
    else:
        pts = base64.b64encode(np.uint32(ball.vertices.size * 4).tobytes() + np.asarray(ball.vertices, "<f4").tobytes())
        f.write_text(f"""<VTKFile type="PolyData" byte_order="LittleEndian" header_type="UInt32"><PolyData>
<Piece NumberOfPoints="{len(ball.vertices)}" NumberOfPolys="{len(ball.faces)}">
<Points><DataArray type="Float32" NumberOfComponents="3" format="binary">{pts.decode()}</DataArray></Points>
<Polys><DataArray type="Int32" Name="connectivity" format="ascii">{' '.join(map(str, ball.faces.ravel()))}</DataArray>
<DataArray type="Int32" Name="offsets" format="ascii">\
{' '.join(str(3 * (i + 1)) for i in range(len(ball.faces)))}</DataArray>
</Polys></Piece></PolyData></VTKFile>""")
    out = import_mesh([f], tmp_path / "b", units="mm", tissue="bone")
    s = load_bundle(out).structures[0]
    assert s.watertight and s.face_count == len(ball.faces)
    assert s.volume_ml == pytest.approx(ball.volume / 1000, rel=1e-3)
    np.testing.assert_allclose(s.mesh.bounds, ball.bounds, atol=1e-3)  # LPS files come back in RAS


def test_per_face_normals_do_not_split_vertices(ball: trimesh.Trimesh, tmp_path: Path) -> None:
    """An OBJ with one normal per face corner (3 distinct normals per vertex) still merges."""
    lines = [f"v {x} {y} {z}" for x, y, z in ball.vertices]
    lines += [f"vn {x} {y} {z}" for x, y, z in ball.face_normals]
    lines += [f"f {a + 1}//{i + 1} {b + 1}//{i + 1} {c + 1}//{i + 1}" for i, (a, b, c) in enumerate(ball.faces)]
    f = tmp_path / "faceted.obj"
    f.write_text("\n".join(lines) + "\n")
    out = import_mesh([f], tmp_path / "b", units="mm")
    s = load_bundle(out).structures[0]
    assert s.watertight and len(s.mesh.vertices) == len(ball.vertices)


def test_inside_out_and_degenerate_input_is_repaired(ball: trimesh.Trimesh, tmp_path: Path) -> None:
    faces = np.array(ball.faces)
    faces[::3] = faces[::3, ::-1]  # a third of the triangles wound the wrong way
    faces = np.vstack([faces, [[0, 0, 1]]])  # and a degenerate one
    speck = trimesh.creation.icosphere(subdivisions=1, radius=0.5)
    speck.apply_translation([150.0, 0, 0])
    m = trimesh.util.concatenate([trimesh.Trimesh(ball.vertices, faces, process=False), speck])
    f = tmp_path / "messy.ply"
    m.export(f)
    s = load_bundle(import_mesh([f], tmp_path / "b", units="mm")).structures[0]
    assert s.watertight and s.volume_ml == pytest.approx(ball.volume / 1000, rel=1e-3)
    assert s.face_count == len(ball.faces), "degenerate face and the 0.5 mm speck must go"


def test_corrupt_vtk_is_a_user_error(tmp_path: Path, ball: trimesh.Trimesh) -> None:
    f = tmp_path / "cut.vtk"
    write_vtk_legacy_ascii(f, ball.vertices, ball.faces)
    f.write_text(f.read_text()[:3000])
    with pytest.raises(AnatomyError, match=r"cut\.vtk"):
        read_mesh_file(f)


def test_totalsegmentator_table() -> None:
    t = totalsegmentator_specs()
    assert len(t) == 117
    assert (t[30].name, t[30].tissue) == ("L2", "bone") and (t[32].name, t[32].tissue) == ("T12", "bone")
    assert (t[79].name, t[79].tissue) == ("spinal_cord", "nerve")
    assert t[52].tissue == t[63].tissue == "vessel" and t[86].tissue == t[88].tissue == "muscle"
    assert (t[25].name, t[77].name, t[76].name) == ("sacrum", "hip_left", "femur_right")
    assert t[5].tissue == "organ" and t[117].tissue == "cartilage"


def test_yaml_label_map_and_its_errors(tmp_path: Path) -> None:
    good = tmp_path / "map.yaml"
    good.write_text("default_tissue: bone\nlabels:\n  1: L4\n  2: {name: disc_L4_L5, tissue: disc}\n")
    m = load_yaml_map(good)
    assert (m[1].name, m[1].tissue, m[2].tissue) == ("L4", "bone", "disc")
    bad = tmp_path / "bad.yaml"
    bad.write_text("labels:\n  1: L4\n  2: {name: root, tissue: nerves}\n")
    with pytest.raises(AnatomyError, match=r"bad\.yaml:3: label 2: field 'tissue' is 'nerves'"):
        load_yaml_map(bad)
    bad.write_text("labels:\n  1: [L4\n")
    with pytest.raises(AnatomyError, match=r"bad\.yaml:\d+: not valid YAML"):
        load_yaml_map(bad)


def test_nrrd_in_lps_lands_in_ras(tmp_path: Path) -> None:
    """A Slicer-style NRRD (LPS space): a label block on the patient's right must come out at +x."""
    import nrrd

    from vr_trainer.anatomy.importers import import_ct

    seg = np.zeros((40, 30, 20), np.uint8)
    seg[2:12, 5:25, 4:16] = 1  # low i = low LPS x = patient right
    header = {"space": "left-posterior-superior", "space directions": np.diag([1.5, 1.5, 2.0]),
              "space origin": np.array([-30.0, -20.0, 0.0])}
    f = tmp_path / "seg.nrrd"
    nrrd.write(str(f), seg, header)
    ymap = tmp_path / "map.yaml"
    ymap.write_text("labels:\n  1: {name: block, tissue: organ}\n")
    s = load_bundle(import_ct(f, tmp_path / "b", label_map=str(ymap)))["block"]
    c = np.asarray(s.centroid_mm)
    # LPS x of the block centre = -30 + 1.5*6.5 = -20.25 -> RAS x = +20.25 (right)
    assert c[0] == pytest.approx(20.25, abs=0.6) and c[2] == pytest.approx(19.0, abs=0.6)
    assert s.extra["voxel_volume_ml"] == pytest.approx(10 * 20 * 12 * 4.5 / 1000)
