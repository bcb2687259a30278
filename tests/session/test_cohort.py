"""Cohort learning curves: seeded autopilot attempts with rising skill, recorded, give CSV and
HTML learning curves per resident with CUSUM charts; the SQLite index re-reads only what changed;
a corrupt recording is listed, never fatal.

The attempts are recorded by :func:`vr_trainer.app.autopilot_cohort.record_autopilot_attempts`
(the real planner, frame loop, scenario engine and recorder; nothing drawn, the planner's context
shared), about 1 s each instead of 3-12 s rendered; one rendered ``vr-trainer run --resident``
recording checks that it scores the same as its generated twin.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vr_trainer.app.autopilot_cohort import AutopilotAttempt, record_autopilot_attempts
from vr_trainer.cli import main
from vr_trainer.session.cohort import CusumSettings, build_cohort, learning_cusum, sprt_cusum
from vr_trainer.session.reader import read_recording

REPO = Path(__file__).resolve().parents[2]
SCENARIO = REPO / "tests" / "scenario" / "data" / "tka_touch.yaml"  # a short autopilot run (one reach step)
pytestmark = pytest.mark.gl
N_R01 = 24


def r01_skill(k: int) -> float:
    """Resident r01's skill at attempt ``k`` (0-based): rising from novice to expert, then held."""
    return round(min(1.0, 0.15 + 0.06 * k), 3)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("cohort")
    rec = d / "recordings"
    attempts = [AutopilotAttempt("r01", r01_skill(k), 100 + k, rec / "r01" / f"attempt-{k:02d}.mcap")
                for k in range(N_R01)]
    attempts += [AutopilotAttempt("r02", s, 7 + k, rec / "r02" / f"a{k}.mcap") for k, s in enumerate((0.3, 0.6))]
    attempts.append(AutopilotAttempt(None, 0.5, 3, rec / "no-resident.mcap"))
    summaries = record_autopilot_attempts(SCENARIO, attempts)
    # r02's last attempt through the command line, rendered: its generated twin must score the same
    cli = rec / "r02" / "cli.mcap"
    assert main(["run", str(SCENARIO), "--backend", "headless", "--size", "32x24", "--autopilot", "novice",
                 "--autopilot-skill", "0.9", "--seed", "9", "--resident", "r02", "--record", str(cli)]) == 0
    twin = record_autopilot_attempts(SCENARIO, [AutopilotAttempt("r02", 0.9, 9, d / "twin.mcap")])[0]
    (rec / "broken.mcap").write_bytes(b"\x89MCAP0\r\n" + b"this is not a recording" * 20)
    full = cli.read_bytes()
    (rec / "r02" / "cut.mcap.partial").write_bytes(full[: len(full) // 2])  # a killed run's leftover
    out = d / "report"
    result = build_cohort(rec, out, "en")
    return {"dir": rec, "out": out, "result": result, "summaries": summaries, "twin": twin, "cli": cli,
            "attempts": attempts}


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def ranks(xs: list[float]) -> list[float]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return r


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    return cov / (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5


def test_resident_id_is_recorded_and_validated(cohort, capsys):
    assert read_recording(cohort["cli"]).session["resident"] == "r02"
    assert main(["run", "--resident", "Doe, John", "--no-record"]) == 2
    err = capsys.readouterr().err
    assert "--resident 'Doe, John'" in err and "never a patient identifier" in err


def test_generated_attempt_scores_like_the_rendered_command_line_run(cohort):
    rec = read_recording(cohort["cli"])
    assert rec.summary is not None
    twin = cohort["twin"]
    assert twin["score"] == rec.summary["score"] and twin["passed"] == rec.summary["passed"]
    assert {k: v["value"] for k, v in twin["metrics"].items()} == {k: v["value"]
                                                                   for k, v in rec.summary["metrics"].items()}


def test_cohort_csv_has_every_attempt_in_order(cohort):
    rows = read_csv(cohort["out"] / "cohort.csv")
    r01 = [r for r in rows if r["resident"] == "r01"]
    assert [int(r["attempt"]) for r in r01] == list(range(1, N_R01 + 1))
    assert [r["path"] for r in r01] == [f"r01/attempt-{k:02d}.mcap" for k in range(N_R01)]
    assert [float(r["autopilot_skill"]) for r in r01] == [r01_skill(k) for k in range(N_R01)]
    assert [float(r["score"]) for r in r01] == [s["score"] for s in cohort["summaries"][:N_R01]]
    r02 = [r for r in rows if r["resident"] == "r02"]
    assert [r["path"] for r in r02] == ["r02/a0.mcap", "r02/a1.mcap", "r02/cli.mcap", "r02/cut.mcap.partial"]
    assert r02[-1]["status"] == "incomplete" and r02[-1]["score"] == ""
    assert [r["path"] for r in rows if r["resident"] == "unassigned"] == ["no-resident.mcap"]
    for r in r01:
        assert r["scenario_id"] == "tka_touch_reference" and float(r["total_time_s"]) > 0
        assert r["fluoro_shots"] != "" and r["risk_contacts"] != ""


def test_scores_rise_with_skill(cohort):
    rows = [r for r in read_csv(cohort["out"] / "cohort.csv") if r["resident"] == "r01"]
    skill = [float(r["autopilot_skill"]) for r in rows]
    assert spearman(skill, [float(r["score"]) for r in rows]) > 0.7
    assert spearman(skill, [float(r["total_time_s"]) for r in rows]) < -0.7
    assert not int(rows[0]["passed"]) and int(rows[-1]["passed"])


def test_cusum_of_failures_turns_down_once_attempts_pass(cohort):
    rows = [r for r in read_csv(cohort["out"] / "cohort.csv") if r["resident"] == "r01"]
    cus = [float(r["cusum_failures"]) for r in rows]
    first_pass = next(int(r["attempt"]) for r in rows if int(r["passed"]))
    assert first_pass > 3, "the novice attempts fail"
    assert cus[first_pass - 2] == max(cus), "the CUSUM peaks at the last failure before the first pass"
    for prev, now, r in zip(cus, cus[1:], rows[1:]):
        assert (now < prev) == bool(int(r["passed"])), r["attempt"]
    res = {r["resident"]: r for r in read_csv(cohort["out"] / "residents.csv")}
    r01 = res["r01"]
    assert int(r01["attempts"]) == N_R01 and int(r01["attempts_to_first_pass"]) == first_pass
    assert float(r01["last_score"]) == float(rows[-1]["score"])
    assert int(r01["cusum_unacceptable_at"]) < first_pass < int(r01["cusum_acceptable_at"]) <= N_R01
    decided = [r for r in rows if r["cusum_decision"] == "acceptable"]
    assert decided and int(decided[0]["attempt"]) == int(r01["cusum_acceptable_at"])


def test_cusum_definitions():
    s = CusumSettings(p0=0.1, p1=0.2, alpha=0.1, beta=0.1)  # P = ln 2, Q = ln(0.9/0.8), P + Q = 0.81093
    step, h0, h1 = s.limits()
    assert step == pytest.approx(0.11778 / 0.81093, abs=1e-4)  # s = Q / (P + Q)
    assert h0 == pytest.approx(2.19722 / 0.81093, abs=1e-4) and h1 == h0  # ln(0.9 / 0.1) / (P + Q)
    assert learning_cusum([True, False, False], 0.2) == pytest.approx([0.8, 0.6, 0.4])
    sp = sprt_cusum([False] * 25, s)
    assert sp.acceptable_at == [19] and sp.values[18] == pytest.approx(-19 * step)
    with pytest.raises(ValueError, match="0 < p0 < p1 < 1"):
        CusumSettings(p0=0.3, p1=0.2).check()


def test_html_has_one_chart_per_resident_and_no_network_references(cohort):
    page = (cohort["out"] / "cohort.html").read_text(encoding="utf-8")
    charts = re.findall(r'<img class="chart" alt="([^"]+)" src="data:image/png;base64,', page)
    assert charts == ["r01", "r02", "unassigned"]
    assert not re.search(r"(?:src|href)=\"(?!data:)", page), "every image is embedded"
    assert "http://" not in page and "https://" not in page and "<script" not in page and "<link" not in page
    assert "Learning curves" in page and "broken.mcap" in page
    for uri in re.findall(r'src="data:image/png;base64,([^"]+)"', page):  # each chart is drawn, not blank
        img = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri))).convert("L"), float)
        assert img.shape[0] > 300 and img.shape[1] > 600
        assert (img < 128).mean() > 0.01, "lines and labels are drawn"


def test_chinese_cohort_page(cohort, tmp_path):
    build_cohort(cohort["dir"], tmp_path, "zh")
    page = (tmp_path / "cohort.html").read_text(encoding="utf-8")
    assert '<html lang="zh">' in page and "学习曲线" in page and "首次通过所需次数" in page


def test_corrupt_recording_is_listed_as_unreadable_and_does_not_stop_the_cohort(cohort, caplog):
    res = cohort["result"]
    assert [u["path"] for u in res["unreadable"]] == ["broken.mcap"]
    assert res["unreadable"][0]["error"].startswith("broken.mcap: not a readable vr-trainer recording")
    bad = [r for r in read_csv(cohort["out"] / "cohort.csv") if r["status"] == "unreadable"]
    assert [r["path"] for r in bad] == ["broken.mcap"] and bad[0]["error"]
    assert res["attempts"] == N_R01 + 2 + 2 + 1
    with caplog.at_level("WARNING"):
        build_cohort(cohort["dir"], cohort["out"], "en")
    assert "1 unreadable recording(s)" in caplog.text and "broken.mcap" in caplog.text


def test_reindexing_reads_only_new_or_changed_recordings(cohort, tmp_path):
    d = tmp_path / "rec"
    shutil.copytree(cohort["dir"], d)
    (d / ".vr-trainer-index.sqlite").unlink()
    n = len(list(d.rglob("*.mcap*")))
    first = build_cohort(d, tmp_path / "out", "en")
    assert first["read"] == n and first["unchanged"] == 0
    again = build_cohort(d, tmp_path / "out", "en")
    assert again["read"] == 0 and again["unchanged"] == n, "nothing changed: no recording is opened"
    assert read_csv(tmp_path / "out" / "cohort.csv") == read_csv(cohort["out"] / "cohort.csv")
    shutil.copy(d / "r02" / "a1.mcap", d / "r02" / "a1-copy.mcap")
    (d / "no-resident.mcap").unlink()
    third = build_cohort(d, tmp_path / "out", "en")
    assert (third["read"], third["removed"], third["unchanged"]) == (1, 1, n - 1)
    assert "unassigned" not in third["residents"]


def test_report_cohort_command_line(cohort, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["report", "--cohort", str(cohort["dir"]), "--out", str(out), "--cusum-p0", "0.1",
                 "--cusum-p1", "0.3"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["read"] == 0 and done["residents"] == ["r01", "r02", "unassigned"]
    r01 = next(r for r in read_csv(out / "residents.csv") if r["resident"] == "r01")
    assert (float(r01["p0"]), float(r01["p1"])) == (0.1, 0.3)
    assert main(["report", "--cohort", str(cohort["dir"]), "--out", str(out), "--cusum-p1", "0.1"]) == 2
    assert "need 0 < p0 < p1 < 1 (got p0 0.2, p1 0.1)" in capsys.readouterr().err


def test_bench_cohort_counts_reads(capsys):
    assert main(["bench", "cohort", "--recordings", "12", "--distinct", "2", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert (r["index_cold_read"], r["index_unchanged_read"], r["residents"]) == (12, 0, 2)
    assert r["peer_full_read_s"] > 0 and r["index_cold_s"] > 0
