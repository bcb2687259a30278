"""``import mesh --frame CODE``: orientation codes to RAS, recorded; wrong superior direction warned;
third-party tracebacks turned into one line."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import trimesh

from vr_trainer.anatomy import AnatomyError, load_bundle
from vr_trainer.anatomy.cli import main
from vr_trainer.anatomy.frames import frame_matrix
from vr_trainer.anatomy.importers import import_mesh

# a vertebral body 40 mm wide (x), 30 mm deep (y), 25 mm high (z) on the patient's right and front
BODY_RAS = np.array([15.0, 20.0, 0.0])


def _body(center_ras: np.ndarray) -> trimesh.Trimesh:
    m = trimesh.creation.box((40.0, 30.0, 25.0))
    m.apply_translation(center_ras)
    return m


def _write_in(code: str, m: trimesh.Trimesh, path: Path) -> Path:
    """Write ``m`` (RAS) in frame ``code``: file = M^-1 @ ras."""
    inv = np.linalg.inv(frame_matrix(code))
    v = np.asarray(m.vertices) @ inv.T
    f = m.faces[:, ::-1] if np.linalg.det(inv) < 0 else m.faces
    trimesh.Trimesh(vertices=v, faces=f, process=False).export(path)
    return path


@pytest.mark.parametrize("code", ["RAS", "LPS", "ALS", "LAS", "PIR"])
def test_frame_codes_come_back_in_ras(code: str, tmp_path: Path) -> None:
    f = _write_in(code, _body(BODY_RAS), tmp_path / "L4.stl")
    b = load_bundle(import_mesh([f], tmp_path / "b", units="mm", frame=code))
    s = b["L4"]
    np.testing.assert_allclose(s.centroid_mm, BODY_RAS, atol=1e-3)
    np.testing.assert_allclose(s.size_mm, [40.0, 30.0, 25.0], atol=1e-3)
    assert s.watertight and s.volume_ml == pytest.approx(30.0, rel=1e-3), "outward winding kept (mirrors too)"
    assert b.manifest["provenance"]["frame"]["source"] == code and s.extra["source_frame"] == code


def test_slicer_space_header_is_read_and_a_contradicting_frame_refused(tmp_path: Path) -> None:
    f = _write_in("LPS", _body(BODY_RAS), tmp_path / "L4.stl")
    data = bytearray(f.read_bytes())
    data[:80] = b"SPACE=LPS".ljust(80, b" ")  # 3D Slicer >= 4.11 writes this in the STL header
    f.write_bytes(bytes(data))
    b = load_bundle(import_mesh([f], tmp_path / "b", units="mm"))
    np.testing.assert_allclose(b["L4"].centroid_mm, BODY_RAS, atol=1e-3)
    assert b.manifest["provenance"]["frame"]["decided_by"] == ["file header (SPACE=...)"]
    with pytest.raises(AnatomyError, match=r"L4\.stl.*declares SPACE=LPS.*--frame RAS"):
        import_mesh([f], tmp_path / "c", units="mm", frame="RAS")


@pytest.mark.parametrize("bad,why", [("RAR", "R/L axis twice"), ("XYZ", "not an orientation code"),
                                     ("RA", "not an orientation code")])
def test_invalid_codes_are_a_clear_error(bad: str, why: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    f = _write_in("RAS", _body(BODY_RAS), tmp_path / "L4.stl")
    rc = main(["import", "mesh", str(f), "--units", "mm", "--frame", bad, "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and why in err[0] and "RAS, LPS" in err[0]
    assert not (tmp_path / "b").exists()


def _stack(tmp_path: Path, code: str, flip_z: bool) -> list[Path]:
    files = []
    for k, level in enumerate(("L3", "L4", "L5")):
        z = -35.0 * k * (-1.0 if flip_z else 1.0)  # L3 on top, 35 mm per level
        files.append(_write_in(code, _body(BODY_RAS + [0.0, 0.0, z]), tmp_path / f"vertebra_{level}.stl"))
    return files


def test_vertebrae_stacked_against_the_declared_frame_are_warned(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    good = load_bundle(import_mesh(_stack(tmp_path, "LPS", flip_z=False), tmp_path / "ok", units="mm", frame="LPS"))
    assert "warning" not in capsys.readouterr().err and "notes" not in good.manifest
    (tmp_path / "flipped").mkdir()
    files = _stack(tmp_path / "flipped", "LPS", flip_z=True)  # superior points to -z of the file
    b = load_bundle(import_mesh(files, tmp_path / "bad", units="mm", frame="LPS"))
    err = capsys.readouterr().err
    assert "warning:" in err and "L3 lies below L4" in err and "--frame LPI" in err
    assert any("L3 lies below L4" in w for w in b.manifest["notes"]["warnings"])
    assert b["vertebra_L3"].centroid_mm[2] < b["vertebra_L4"].centroid_mm[2]  # imported as declared


def test_missing_ply_texture_gives_one_line_not_a_traceback(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str],
                                                            caplog: pytest.LogCaptureFixture) -> None:
    m = trimesh.creation.icosphere(subdivisions=2, radius=20.0)
    uv = (m.vertices[:, :2] - m.vertices[:, :2].min(0)) / np.ptp(m.vertices[:, :2], axis=0)
    head = ["ply", "format ascii 1.0", "comment TextureFile skin_texture.png", f"element vertex {len(m.vertices)}",
            "property float x", "property float y", "property float z", "property float texture_u",
            "property float texture_v", f"element face {len(m.faces)}", "property list uchar int vertex_indices",
            "end_header"]
    rows = [" ".join(f"{c:.6f}" for c in (*v, *t)) for v, t in zip(m.vertices, uv)]
    rows += ["3 " + " ".join(map(str, f)) for f in m.faces]
    f = tmp_path / "patella.ply"
    f.write_text("\n".join(head + rows) + "\n")
    with caplog.at_level(logging.DEBUG):
        rc = main(["import", "mesh", str(f), "--units", "mm", "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert rc == 0 and "Traceback" not in err and "FileNotFoundError" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "patella.ply" in lines[0]
    assert "skin_texture.png" in lines[0] and "missing" in lines[0]
    assert not [r for r in caplog.records if r.name.startswith("trimesh") and r.levelno >= logging.WARNING]
    assert load_bundle(tmp_path / "b")["patella"].watertight
