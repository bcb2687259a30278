"""Recording and replay: a headless autopilot run records, replays to the same score, metrics,
steps and events (and the same eye images on the same renderer); a cut or damaged file says
where and how much is readable; a changed scenario or bundle is reported; no patient identifiers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vr_trainer.app.replay import COMPARED, replay_recording
from vr_trainer.cli import main
from vr_trainer.session.reader import RecordingError, read_recording

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.gl


@pytest.fixture(scope="module")
def recorded(pted_attempts) -> dict:
    """The shared expert run (conftest ``pted_attempts``): the default scenario and a copy of its
    bundle (with a patient name in the manifest's provenance), played by its expert demo, recorded."""
    path, summary = pted_attempts["expert"]
    return {"patient": pted_attempts["patient_name"], "dir": pted_attempts["dir"],
            "run_dir": pted_attempts["run_dir"], "path": path, "summary": summary,
            "scenario": pted_attempts["scenario"], "manifest": pted_attempts["manifest"]}


def test_replay_without_rendering_reproduces_score_metrics_steps_and_events(recorded):
    s = recorded["summary"]
    assert s["recording"] == str(recorded["path"]) and recorded["path"].is_file()
    assert not Path(str(recorded["path"]) + ".partial").exists()
    assert s["recording_dropped"] == 0
    assert s["passed"] and s["score"] > 70
    r = replay_recording(recorded["path"], render=False)
    assert r["frames"] == s["frames"]
    for key in COMPARED:
        assert r[key] == s[key], key
    assert r["matches_recording"] == {k: True for k in COMPARED}
    assert r["metric_samples_match"], "every 0.25 s metric sample (exact floats) is reproduced"
    assert r["sound_cues"] == s["sound_cues"]
    assert r["warnings"] == []


def test_replay_renders_the_same_eye_images(recorded, tmp_path):
    assert main(["replay", str(recorded["path"]), "--out", str(tmp_path)]) == 0
    for k in (0, 1):
        live = np.asarray(Image.open(recorded["run_dir"] / f"eye{k}.png"))
        again = np.asarray(Image.open(tmp_path / f"eye{k}.png"))
        assert live.std() > 0, "the eye image shows something"
        np.testing.assert_array_equal(again, live)
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["score"] == recorded["summary"]["score"]


def test_recording_holds_the_session_and_no_patient_identifiers(recorded):
    rec = read_recording(recorded["path"])
    assert rec.complete and rec.damage is None
    sess = rec.session
    assert sess["scenario"]["text"] == recorded["scenario"].read_text()
    assert set(sess["bundle"]) == {"name", "manifest_sha256", "files", "deidentification_status"}
    assert "meshes/L4.glb" in sess["bundle"]["files"]
    assert sess["autopilot"]["mode"] == "expert"
    raw = json.dumps(sess) + json.dumps(rec.summary) + json.dumps(rec.notices)
    assert recorded["patient"] not in raw and "provenance" not in raw
    assert recorded["patient"].encode() not in recorded["path"].read_bytes()
    kinds = {n["kind"] for n in rec.notices}
    assert {"step_started", "step_completed", "run_finished"} <= kinds
    assert len(rec.metrics) >= int(rec.duration_s / 0.25) - 1
    assert rec.summary["score"] == recorded["summary"]["score"]


def test_truncated_recording_says_how_much_is_readable(recorded, tmp_path):
    data = recorded["path"].read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    rec = read_recording(cut)
    total = len(read_recording(recorded["path"]).frames)
    assert rec.damage is not None and "cut short" in rec.damage and str(cut) in rec.damage
    assert 0 < len(rec.frames) < total and rec.summary is None
    with pytest.raises(RecordingError, match=r"readable.*Pass --partial"):
        replay_recording(cut)
    r = replay_recording(cut, partial=True)
    assert r["frames"] == len(rec.frames) and not r["complete"]
    assert any("cut short" in w for w in r["warnings"])


def _chunk_offsets(path: Path) -> list[int]:
    """Where each chunk record starts in an MCAP file."""
    from mcap.records import Chunk
    from mcap.stream_reader import StreamReader

    class Pos:
        def __init__(self, fh):
            self.fh, self.pos = fh, 0

        def read(self, n=-1):
            b = self.fh.read(n)
            self.pos += len(b)
            return b

    out = []
    with open(path, "rb") as fh:
        src = Pos(fh)
        before = 0
        for rec in StreamReader(src, emit_chunks=True).records:
            if isinstance(rec, Chunk):
                out.append(before)
            before = src.pos
    assert len(out) >= 3, "a recording of several seconds has several chunks (one per 0.5 s)"
    return out


def test_a_changed_byte_anywhere_is_found(recorded, tmp_path):
    """Bytes outside the chunks (the indexes after them) do not hold inputs, but a changed byte
    there is still reported (the data section's checksum), with every frame readable."""
    data = bytearray(recorded["path"].read_bytes())
    first = _chunk_offsets(recorded["path"])[1]
    at = first - 8  # the message index records written after the first chunk
    data[at] ^= 0xFF
    bad = tmp_path / "index.mcap"
    bad.write_bytes(bytes(data))
    rec = read_recording(bad)
    assert rec.damage is not None and "damaged" in rec.damage


def test_corrupt_bytes_give_a_clear_error_and_the_readable_part(recorded, tmp_path, capsys):
    data = bytearray(recorded["path"].read_bytes())
    at = _chunk_offsets(recorded["path"])[len(_chunk_offsets(recorded["path"])) // 2] + 100
    data[at:at + 64] = bytes(64)  # zeros inside the middle chunk
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(bytes(data))
    rec = read_recording(bad)
    assert rec.damage is not None and "damaged after byte" in rec.damage
    assert 0 < len(rec.frames) < len(read_recording(recorded["path"]).frames)
    assert main(["replay", str(bad), "--no-render"]) == 2
    err = capsys.readouterr().err
    assert "damaged after byte" in err and "frames" in err and "--partial" in err
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"not a recording at all")
    with pytest.raises(RecordingError, match="not a readable vr-trainer recording"):
        read_recording(junk)


def test_changed_scenario_is_reported_and_the_recorded_one_replayed(recorded):
    sc = recorded["scenario"]
    original = sc.read_text()
    try:
        sc.write_text(original.replace("pass_mark:", "pass_mark: 99 #", 1) if "pass_mark:" in original
                      else original + "\n# edited\n")
        r = replay_recording(recorded["path"])
    finally:
        sc.write_text(original)
    assert any("changed since this recording" in w and str(sc) in w for w in r["warnings"])
    assert r["score"] == recorded["summary"]["score"] and r["passed"] == recorded["summary"]["passed"]


def test_changed_bundle_is_refused_unless_allowed(recorded):
    manifest = recorded["manifest"]
    original = manifest.read_text()
    try:
        manifest.write_text(original + "\n")
        with pytest.raises(RecordingError, match=r"differs from the one .*manifest.json changed.*--allow-changed"):
            replay_recording(recorded["path"])
        r = replay_recording(recorded["path"], allow_changed_bundle=True)
    finally:
        manifest.write_text(original)
    assert any("manifest.json changed" in w for w in r["warnings"])


def test_sigkill_mid_session_leaves_a_readable_partial_with_at_most_a_second_lost(tmp_path):
    import os
    import signal
    import time

    path = tmp_path / "live.mcap"
    partial = Path(str(path) + ".partial")
    proc = subprocess.Popen([sys.executable, "-m", "vr_trainer", "run", "--backend", "headless", "--realtime",
                             "--size", "32x24", "--record", str(path)], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:  # wait until frames are on disk
            if partial.exists() and partial.stat().st_size > 2000:
                try:
                    if len(read_recording(partial).frames) >= 5:  # the session has started its frames
                        break
                except RecordingError:  # the header is not complete yet
                    pass
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        time.sleep(2.0)
        killed_at = time.perf_counter()  # CLOCK_MONOTONIC: the child's loop clock reads the same clock
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert partial.exists() and not path.exists()
    rec = read_recording(partial)
    assert "not closed" in (rec.damage or "") or "cut short" in (rec.damage or "")
    assert len(rec.frames) > 30
    lost_s = killed_at - rec.frames[-1].clock_s
    assert 0 <= lost_s <= 1.0, f"{lost_s:.2f} s of input lost"
    r = replay_recording(partial, partial=True)
    assert r["frames"] == len(rec.frames)



def test_run_records_by_default_and_not_with_no_record(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VR_TRAINER_SESSIONS", str(tmp_path / "sessions"))
    args = ["run", "--backend", "headless", "--frames", "3", "--size", "32x24"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    made = list((tmp_path / "sessions").glob("pted_l4_l5-*.mcap"))
    assert len(made) == 1 and not list((tmp_path / "sessions").glob("*.partial"))
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["recording"] == str(made[0]) and summary["recording_bytes"] == made[0].stat().st_size
    assert len(read_recording(made[0]).frames) == 3
    assert main([*args, "--no-record", "--out", str(tmp_path / "b")]) == 0
    assert len(list((tmp_path / "sessions").iterdir())) == 1
    assert "recording" not in json.loads((tmp_path / "b" / "summary.json").read_text())
    blocked = tmp_path / "file"
    blocked.write_text("x")
    capsys.readouterr()
    assert main([*args, "--record", str(blocked / "x.mcap")]) == 2
    assert "cannot write there" in capsys.readouterr().err
