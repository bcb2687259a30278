"""`vr-trainer report`: one self-contained HTML file a person can read (score, rubric with each
metric's definition, step table, plots), drawn by headless Chromium, in English or Chinese, printed
to PDF; two recordings give a progress view; a cut recording gives a clear error or, with
--partial, the readable part."""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vr_trainer.app import report_cli
from vr_trainer.cli import main
from vr_trainer.session.labels import fail_reason
from vr_trainer.session.reader import read_recording
from vr_trainer.session.report import angle_targets

REPO = Path(__file__).resolve().parents[2]
SCENARIO = REPO / "scenarios" / "pted_l4_l5.yaml"
pytestmark = pytest.mark.gl
needs_chromium = pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")


@pytest.fixture(scope="module")
def recordings(pted_attempts) -> dict:
    """Two attempts by resident r07 (conftest ``pted_attempts``): a novice one, then the expert's."""
    return pted_attempts


def _report(args: list[str]) -> str:
    out = Path(args[args.index("--out") + 1])
    assert main(["report", *args]) == 0
    return out.read_text(encoding="utf-8")


def test_recording_samples_the_tip_and_each_risk_structure(recordings):
    path, summary = recordings["weak"]
    rec = read_recording(path)
    assert len(rec.session["patient_from_world"]) == 4
    s = rec.metrics[len(rec.metrics) // 2]
    from vr_trainer.scenario.loader import load_scenario

    assert set(s["risk_distance_mm"]) == {r.id for r in load_scenario(SCENARIO).risk_structures}
    assert len(s["tip_world_mm"]) == 3 and s["instrument"]
    closest = min(min(m["risk_distance_mm"].values()) for m in rec.metrics if m.get("risk_distance_mm"))
    assert closest == pytest.approx(summary["metrics"]["min_risk_distance_mm"]["value"], abs=1.5)
    assert 0.0 <= s["angles_deg"]["axial"] <= 90.0 and -90.0 <= s["angles_deg"]["craniocaudal"] <= 90.0


def test_angle_targets_come_from_the_scenario_conditions(tmp_path):
    from vr_trainer.scenario.loader import load_scenario

    text = SCENARIO.read_text().replace("events:\n", "events:\n  - id: steep\n    when: \"not(angle(axial) within "
                                        "[25, 45])\"\n    effects: [{sound: warning}]\n", 1)
    p = tmp_path / "angled.yaml"
    p.write_text(text)
    assert angle_targets(load_scenario(p)) == {"axial": (25.0, 45.0)}
    assert angle_targets(load_scenario(SCENARIO)) == {}


def test_report_has_score_rubric_definitions_steps_and_plots(recordings, tmp_path):
    path, summary = recordings["expert"]
    page = _report([str(path), "--out", str(tmp_path / "report.html")])
    assert f'id="score">{summary["score"]:g}<' in page
    assert "PASSED" in page and "PTED L4-L5" in page
    rubric = re.search(r"<table id=rubric>.*?</table>", page, re.S)
    assert rubric is not None
    for name, m in summary["metrics"].items():
        if m["weight"] is not None:
            assert html.escape(m["definition"]) in rubric.group(0), name
            assert name in rubric.group(0)
    steps = re.search(r"<table id=steps>.*?</table>", page, re.S)
    assert steps is not None
    for s in summary["steps"]:
        assert f"<td>{s['id']}</td>" in steps.group(0)
        shown = f"{s['time_s']:.1f}".rstrip("0").rstrip(".")  # 1.0 s reads 1
        assert f"<td class=num>{shown}</td>" in steps.group(0), (s["id"], shown)
    figures = re.findall(r"<figure class=plot id=(plot-[a-z]+)>\s*<svg", page)
    assert {"plot-timeline", "plot-distance", "plot-shots", "plot-trajectory", "plot-angles"} <= set(figures)
    assert "http://" not in page and "https://" not in page, "nothing to fetch at view time"
    assert not re.search(r"<(script|link|iframe)\b", page)


@needs_chromium
def test_report_opens_in_chromium_and_its_plots_are_drawn(recordings, tmp_path):
    path, _ = recordings["weak"]
    out = tmp_path / "report.html"
    _report([str(path), "--out", str(out)])
    png = report_cli.screenshot(out, tmp_path / "shot.png", (1000, 4600))
    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    assert img.shape[0] >= 4600 and img.shape[1] >= 1000
    not_white = (img < 235).any(axis=2)
    assert not_white.mean() > 0.05, "the page shows text and plots"
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    red_curve = (r > 180) & (g < 80) & (b < 80)  # the first risk structure's curve and the contact marks
    yellow_roots = (r > 220) & (g > 190) & (b < 150)  # the nerve roots in the trajectory plot
    assert red_curve.sum() > 200 and yellow_roots.sum() > 2000


def test_chinese_report_uses_chinese_labels(recordings, tmp_path):
    path, summary = recordings["weak"]
    page = _report([str(path), "--locale", "zh", "--out", str(tmp_path / "zh.html")])
    assert 'lang="zh-CN"' in page
    for word in ("得分", "评分细则", "步骤与时间线", "与各危险结构的距离", "器械尖端轨迹", "总用时", "经皮椎间孔镜"):
        assert word in page, word
    assert ("未通过" if not summary["passed"] else "通过") in page
    assert "Score against the rubric" not in page and "Distance to each risk structure" not in page
    assert not summary["passed"] and summary["fail_reasons"], "the weak attempt fails (so its reasons are shown)"
    for reason in summary["fail_reasons"]:
        assert html.escape(fail_reason(reason, "zh")) in page
    assert "is below the pass mark" not in page
    assert fail_reason("score 60.5 is below the pass mark 70", "zh") == "得分 60.5 低于及格线 70"


@needs_chromium
def test_pdf_is_printed_beside_the_html(recordings, tmp_path):
    path, _ = recordings["expert"]
    out = tmp_path / "r" / "report.html"
    _report([str(path), "--out", str(out), "--pdf"])
    pdf = out.with_suffix(".pdf")
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 10_000
    assert [p.name for p in pdf.parent.iterdir() if p.name.startswith(".")] == [], "no temporary file left"


def test_missing_chromium_is_a_clear_error(recordings, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(report_cli, "CHROMIUM_NAMES", ("no-such-chromium-here",))
    path, _ = recordings["expert"]
    assert main(["report", str(path), "--out", str(tmp_path / "r.html"), "--pdf"]) == 2
    assert "apt-get install -y chromium" in capsys.readouterr().err


def test_two_attempts_give_a_progress_view_in_recording_order(recordings, tmp_path):
    (p1, s1), (p2, s2) = recordings["weak"], recordings["expert"]
    page = _report([str(p2), str(p1), "--out", str(tmp_path / "progress.html")])
    table = re.search(r"<table id=progress>.*?</table>", page, re.S)
    assert table is not None
    rows = re.findall(r"<tr><td class=num>(\d)</td><td>[^<]*</td><td>([^<]+)</td><td class=num>([^<]+)</td>",
                      table.group(0))
    assert rows == [("1", "a1.mcap", f"{s1['score']:g}"), ("2", "a2.mcap", f"{s2['score']:g}")]
    assert re.search(r"<figure class=plot id=plot-progress>\s*<svg", page)
    assert "Progress over attempts — r07</h2>" in page and page.count("<td>r07</td>") == 2, "the resident's id"
    assert page.count('id="score">') == 2, "each attempt's own section follows"


def test_cut_recording_is_a_clear_error_and_partial_reports_the_readable_part(recordings, tmp_path, capsys):
    path, summary = recordings["weak"]
    cut = tmp_path / "cut.mcap"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    out = tmp_path / "cut.html"
    assert main(["report", str(cut), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(cut) in err and "readable" in err and "--partial" in err
    assert not out.exists()
    page = _report([str(cut), "--out", str(out), "--partial"])
    assert "the report shows that part" in page and "NOT FINISHED" in page
    assert html.escape(summary["metrics"]["risk_contacts"]["definition"]) in page, "definitions from the registry"
    assert re.search(r"<figure class=plot id=plot-distance>\s*<svg", page)
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"not a recording at all" * 10)
    assert main(["report", str(junk), "--out", str(out)]) == 2
    assert "not a readable vr-trainer recording" in capsys.readouterr().err


def test_mentor_notes_are_listed_with_time_and_author(tmp_path, mentored_session):
    path = tmp_path / "mentored.mcap"
    with mentored_session(path, SCENARIO, (16, 12), 30) as s:
        s.loop.run(15)
        s.inbox.put(lambda v: v.add_mentor_note("Dr Li", "aim lower <now>"))
        s.loop.run()
        assert s.scene.rules is not None
        s.recorder.writer.close(s.scene.rules.engine.result().to_summary())
    page = _report([str(path), "--out", str(tmp_path / "notes.html")])
    notes = re.search(r"<ul id=notes>(.*?)</ul>", page, re.S)
    assert notes is not None
    assert "<b>Dr Li</b>: aim lower &lt;now&gt;" in notes.group(1)
    assert re.search(r"<li>0\.\d s — ", notes.group(1)), "the note's time into the session"
    assert "FAILED" in page, "a session stopped after 30 frames has steps not completed"


def test_key_images_are_recorded_and_shown_inline(tmp_path, mentored_session):
    """A C-arm shot and an endoscope picture recorded on /images come back from the file and appear
    in the report as inline pictures (no network at view time) with their captions."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    from vr_trainer.session.reader import read_recording

    def png(rgb: tuple[int, int, int]) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(np.full((24, 24, 3), rgb, np.uint8)).save(buf, format="PNG")
        return buf.getvalue()

    path = tmp_path / "images.mcap"
    with mentored_session(path, SCENARIO, (16, 12), 20) as s:
        s.loop.run(10)
        s.recorder.record_image("carm", 0.3, png((200, 10, 10)), view="lateral", shot=1,
                                geometry={"sad_mm": 1000.0})
        s.recorder.record_image("endoscope", 0.4, png((10, 200, 10)), removed_pct=50.0)
        s.loop.run()
        assert s.scene.rules is not None
        s.recorder.writer.close(s.scene.rules.engine.result().to_summary())
    rec = read_recording(path)
    assert [m["kind"] for m in rec.images] == ["carm", "endoscope"]
    first = Image.open(io.BytesIO(base64.b64decode(rec.images[0]["data"])))
    assert first.getpixel((5, 5)) == (200, 10, 10)
    assert rec.images[0]["geometry"] == {"sad_mm": 1000.0}
    page = _report([str(path), "--out", str(tmp_path / "images.html")])
    block = re.search(r"<div id=key-images>(.*?)</div>", page, re.S)
    assert block is not None
    assert block.group(1).count('src="data:image/png;base64,') == 2
    assert "C-arm shot 1 · Lateral" in block.group(1) and "Endoscope · removed 50 %" in block.group(1)
