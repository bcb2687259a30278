"""Spoken prompts: when the needle touches the exiting root, the patient's "sharp pain down the
leg!" is shown and also heard. A real PulseAudio server with a null sink stands in for the
speakers; its monitor is recorded and must carry the synthesized speech."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import need, root_contact_track
from vr_trainer.app.clock import FakeClock
from vr_trainer.app.loop import FrameLoop
from vr_trainer.app.session import build_session
from vr_trainer.app.speech import (AudioOutput, SpeechService, SpeechSynthesizer, audio_message, find_audio_output,
                                   spoken_prompts)
from vr_trainer.scenario.loader import REPO_ROOT, ScenarioError, load_scenario
from vr_trainer.scenario.schema import Scenario
from vr_trainer.xr.headless import HeadlessBackend

ROOT = "nerve_root_L4_exiting_left"
TWO_STEPS = Path(__file__).parents[1] / "scenario" / "data" / "pted_two_steps.yaml"  # a frozen two-step PTED
PAIN_EN = "Patient: sharp pain down the leg!"
PAIN_ZH = "患者：腿部剧痛！"
RATE_HZ = 22050
WINDOW_S = 0.05
SPEECH_RMS = 300.0  # int16 RMS of a 50 ms window that carries speech (espeak-ng peaks near 10^4)


def need_espeak() -> None:
    need(shutil.which("espeak-ng") is not None, "espeak-ng is not installed (apt-get install espeak-ng)")


def spoken_scenario(locale: str) -> Scenario:
    """The frozen two-step PTED, its root-contact prompt marked ``speak: true``, in ``locale``."""
    base = load_scenario(TWO_STEPS)
    data = base.model_dump(mode="json", exclude_none=True)
    ev = next(e for e in data["events"] if e["id"] == "root_contact")
    next(eff for eff in ev["effects"] if "prompt" in eff)["prompt"]["speak"] = True
    data["locale"] = locale
    out = Scenario.model_validate(data)
    out._source_dir = base._source_dir
    return out


def touch_root(scenario: Scenario, out_dir: Path | None, output: AudioOutput | None = None,
               synth: SpeechSynthesizer | None = None, recorder=None) -> tuple[FrameLoop, SpeechService, list[dict]]:
    """A 1.5 s session (simulated, not drawn) whose needle goes into the exiting root, with the
    speech service listening to the loop's notices; returns the loop, the service and its list."""
    scene, meshes = build_session(scenario)
    track = root_contact_track(scenario, scene, meshes, ROOT)
    backend = HeadlessBackend(track, (32, 24))
    backend.open()
    service = SpeechService(scenario, out_dir, synthesizer=synth, output=output)
    if recorder is not None:  # as attach_speech hooks a run's recording
        service.listeners.append(lambda entry, wav: recorder.record_audio(audio_message(entry, wav)))
    try:
        loop = FrameLoop(backend, None, scene.simulation, scene.initial_state, scene.snapshot, None,
                         FakeClock(0.0, 1 / 30))
        loop.rules.append(scene.rules)
        loop.notice_sinks.append(service)
        loop.run()
    finally:
        backend.close()
    return loop, service, service.close()


def rms_windows(pcm: np.ndarray) -> np.ndarray:
    n = int(RATE_HZ * WINDOW_S)
    k = len(pcm) // n
    w = pcm[: k * n].astype(float).reshape(k, n)
    return np.sqrt((w ** 2).mean(axis=1))


def read_wav(path: Path) -> tuple[np.ndarray, int, int]:
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1, "16-bit mono PCM"
        return np.frombuffer(w.readframes(w.getnframes()), "<i2"), w.getframerate(), w.getnframes()


@pytest.fixture(scope="module")
def pulse_server(tmp_path_factory):
    """A private PulseAudio server whose only sink is a null sink ``vrt``; the environment points
    clients (paplay, parec, pactl) at it while the module runs."""
    for exe in ("pulseaudio", "paplay", "parec", "pactl"):
        need(shutil.which(exe) is not None, f"{exe} is not installed (apt-get install pulseaudio pulseaudio-utils)")
    run_dir = tmp_path_factory.mktemp("pulse")
    sock = run_dir / "native"
    env = {"PULSE_RUNTIME_PATH": str(run_dir), "XDG_RUNTIME_DIR": str(run_dir), "PULSE_SERVER": f"unix:{sock}",
           "PULSE_STATE_PATH": str(run_dir), "PULSE_COOKIE": str(run_dir / "cookie")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    log_f = open(run_dir / "pulseaudio.log", "wb")
    proc = subprocess.Popen(["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--disable-shm=yes",
                             "--use-pid-file=no", "--log-target=stderr",
                             "--load=module-null-sink sink_name=vrt rate=44100",
                             f"--load=module-native-protocol-unix auth-anonymous=1 socket={sock}"],
                            stdout=log_f, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15.0
        while True:
            ok = subprocess.run(["pactl", "info"], capture_output=True, timeout=5).returncode == 0
            if ok or proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        need(ok, f"PulseAudio did not start: {(run_dir / 'pulseaudio.log').read_text(errors='replace')[-500:]}")
        yield run_dir
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log_f.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def spoken_en(pulse_server, tmp_path_factory):
    """The English session played to the null sink, its monitor recorded meanwhile."""
    need_espeak()
    out = tmp_path_factory.mktemp("run_en")
    raw = out / "monitor.raw"
    with open(raw, "wb") as f:
        rec = subprocess.Popen(["parec", "-d", "vrt.monitor", "--format=s16le", f"--rate={RATE_HZ}", "--channels=1",
                                "--latency-msec=20"], stdout=f)
        try:
            deadline = time.monotonic() + 10.0
            while raw.stat().st_size < RATE_HZ * 2 * 0.5 and time.monotonic() < deadline:
                time.sleep(0.05)  # the recorder is connected (0.5 s of the idle sink) before anything plays
            assert raw.stat().st_size >= RATE_HZ, "parec records the null sink's monitor"
            output, _ = find_audio_output()
            synth = SpeechSynthesizer()
            loop, service, entries = touch_root(spoken_scenario("en"), out, output, synth)
            time.sleep(0.5)
        finally:
            rec.terminate()
            rec.wait(10)
    return loop, service, entries, out, np.frombuffer(raw.read_bytes(), "<i2")


def test_the_shipped_pted_scenarios_speak_the_patients_pain():
    for name in ("pted_l4_l5.yaml", "pted_l5_s1.yaml"):
        s = load_scenario(REPO_ROOT / "scenarios" / name)
        (spoken,) = spoken_prompts(s)
        assert spoken[0] == "root_contact" and spoken[1].startswith(PAIN_EN), name


def test_a_malformed_speak_value_is_a_located_error(tmp_path):
    text = TWO_STEPS.read_text(encoding="utf-8")
    needle = '          zh: "患者：腿部剧痛！'
    assert text.count(needle) == 1
    bad = text.replace(needle, "          speak: loudly\n" + needle)
    p = tmp_path / "pted_two_steps.yaml"
    p.write_text(bad, encoding="utf-8")
    with pytest.raises(ScenarioError) as e:
        load_scenario(p)
    line = next(i for i, ln in enumerate(bad.splitlines(), 1) if "speak: loudly" in ln)
    assert f"{p}:{line}:" in str(e.value) and "effects[0].prompt.speak" in str(e.value), str(e.value)


def test_the_root_contact_is_heard_on_the_audio_output(spoken_en):
    loop, _, entries, out, captured = spoken_en
    (entry,) = entries
    assert entry["event"] == "root_contact" and entry["text"].startswith(PAIN_EN) and entry["locale"] == "en"
    assert entry["sink"] == "pulseaudio" and entry["played"] is True, entry
    assert 0.9 <= entry["time_s"] <= 1.2, "spoken when the needle reaches the root (t = 1 s)"
    rms = rms_windows(captured)
    loud = np.flatnonzero(rms > SPEECH_RMS)
    assert loud.size, f"speech on the sink: max window RMS {rms.max():.0f}"
    floor = float(np.median(rms[: int(0.4 / WINDOW_S)]))  # the idle sink, before anything played
    heard_s = (loud[-1] - loud[0] + 1) * WINDOW_S
    assert floor < 50.0 and float(rms[loud].mean()) > 20 * max(floor, 10.0), (floor, rms[loud].mean())
    assert 0.7 * entry["duration_s"] <= heard_s <= entry["duration_s"] + 0.5, (heard_s, entry["duration_s"])


def test_the_clip_is_kept_in_the_output_folder(spoken_en):
    _, _, entries, out, _ = spoken_en
    (entry,) = entries
    assert entry["file"] == "audio/001_root_contact.wav"
    pcm, rate, frames = read_wav(out / entry["file"])
    assert frames / rate > 0.5 and abs(frames / rate - entry["duration_s"]) < 0.01
    assert (rms_windows(pcm) > SPEECH_RMS).sum() * WINDOW_S > 0.5, "more than 0.5 s of speech, not silence"


def test_the_prompt_is_still_shown(spoken_en):
    loop = spoken_en[0]
    prompt, _ = loop.last_snapshot.panels
    assert any(ln.startswith("! " + PAIN_EN) for ln in prompt.lines), prompt.lines


def test_the_chinese_session_speaks_mandarin(tmp_path):
    need_espeak()
    en = SpeechSynthesizer().synthesize("Patient: sharp pain down the leg!", "en")
    _, _, entries = touch_root(spoken_scenario("zh"), tmp_path, AudioOutput("none"))
    (entry,) = entries
    assert entry["locale"] == "zh" and entry["voice"] == "cmn" and entry["text"].startswith(PAIN_ZH)
    assert entry["played"] is False and entry["sink"] == "none"
    pcm, rate, frames = read_wav(tmp_path / entry["file"])
    assert frames / rate > 0.5 and (rms_windows(pcm) > SPEECH_RMS).sum() * WINDOW_S > 0.5
    assert (tmp_path / entry["file"]).read_bytes() != en


def test_without_espeak_the_prompt_is_shown_and_one_line_says_why(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng (nor anything else) on PATH
    caplog.set_level(logging.INFO, logger="vr_trainer.app.speech")
    scenario = spoken_scenario("en")
    loop, _, entries = touch_root(scenario, tmp_path / "out", AudioOutput("none"))
    prompt, _ = loop.last_snapshot.panels
    assert any(ln.startswith("! " + PAIN_EN) for ln in prompt.lines), prompt.lines
    assert entries[0]["file"] is None and entries[0]["played"] is False
    lines = [r for r in caplog.records if r.name == "vr_trainer.app.speech"]
    assert len(lines) == 1 and lines[0].exc_info is None, [r.getMessage() for r in lines]
    assert "not spoken" in lines[0].getMessage() and "apt-get install espeak-ng" in lines[0].getMessage()
    assert not (tmp_path / "out" / "audio").exists()


def test_the_recording_keeps_the_clip_and_its_text(tmp_path):
    need_espeak()
    pytest.importorskip("mcap", reason="recording needs mcap (pip install 'vr-trainer[record]')")
    import base64
    import io
    import json

    from mcap.reader import make_reader

    from vr_trainer.app.recording import SessionRecorder
    from vr_trainer.session.writer import SessionWriter

    writer = SessionWriter(tmp_path / "run.mcap", {"scenario": "pted_two_steps"})
    _, _, entries = touch_root(spoken_scenario("en"), tmp_path / "out", AudioOutput("none"),
                               recorder=SessionRecorder(writer, None))
    path = writer.close({"spoken_prompts": entries})
    with open(path, "rb") as f:
        msgs = [json.loads(m.data) for _, ch, m in make_reader(f).iter_messages() if ch.topic == "/audio"]
    (msg,) = msgs
    assert msg["event"] == "root_contact" and msg["text"].startswith(PAIN_EN) and msg["locale"] == "en"
    wav_bytes = base64.b64decode(msg["data"])
    assert wav_bytes == (tmp_path / "out" / entries[0]["file"]).read_bytes(), "the clip the resident heard"
    with wave.open(io.BytesIO(wav_bytes)) as w:
        seconds = w.getnframes() / w.getframerate()
    assert seconds > 0.5 and seconds == pytest.approx(msg["duration_s"], abs=0.01)
