"""Spoken prompts: an event's message marked ``speak: true`` is said aloud.

Under local anaesthesia the patient tells the surgeon when an instrument touches a nerve
root ("Patient: sharp pain down the leg!"); the scenario shows that message and, marked
``prompt: {en: ..., zh: ..., speak: true}``, :class:`SpeechService` also says it.

The service is a :class:`~vr_trainer.app.bridge.NoticeSink` of the frame loop: on the loop's
thread ``publish_notice`` only queues the prompt (never blocks a frame). A worker thread
synthesizes it with espeak-ng (a subprocess; English ``en``, Mandarin ``cmn`` for the ``zh``
locale; one WAV per (text, voice), cached), writes the clip into the run's output folder
(``OUT/audio/NNN_<event>.wav``) and plays it on the machine's audio output: a PulseAudio or
PipeWire server through ``paplay`` when one answers, else an ALSA device through ``aplay``,
else none. What is missing (espeak-ng, any audio output) is said in one log line; the prompt
is still shown. :meth:`SpeechService.close` waits for the queued clips and returns the
``spoken_prompts`` list for ``summary.json``.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vr_trainer.scenario.schema import Scenario

log = logging.getLogger("vr_trainer.app.speech")

VOICES = {"en": "en", "zh": "cmn"}  # session locale -> espeak-ng voice
WORDS_PER_MIN = 160
SYNTH_TIMEOUT_S = 20.0  # a deadline on every blocking call
PROBE_TIMEOUT_S = 3.0
PLAY_TIMEOUT_S = 60.0
QUEUE_ITEMS = 16


def spoken_prompts(scenario: Scenario) -> set[tuple[str, str]]:
    """(event id, English text) of every event prompt the scenario marks ``speak: true``."""
    return {(ev.id, eff.prompt.en) for ev in scenario.events for eff in ev.effects
            if eff.prompt is not None and eff.prompt.speak}


def wav_duration_s(data: bytes) -> float:
    """Length of a PCM WAV clip, seconds."""
    import io

    with wave.open(io.BytesIO(data)) as w:
        return w.getnframes() / float(w.getframerate())


class SpeechSynthesizerError(RuntimeError):
    pass


class SpeechSynthesizer:
    """espeak-ng as a subprocess: ``synthesize(text, locale)`` -> WAV bytes (16-bit mono PCM),
    cached per (text, voice). ``available`` is False when espeak-ng is not on PATH."""

    def __init__(self, exe: str | None = None, words_per_min: int = WORDS_PER_MIN) -> None:
        self.exe = exe or shutil.which("espeak-ng")
        self.words_per_min = words_per_min
        self._cache: dict[tuple[str, str], bytes] = {}
        self.synth_ms: list[float] = []  # wall time of each synthesis actually run (cache misses)

    @property
    def available(self) -> bool:
        return self.exe is not None

    @staticmethod
    def voice(locale: str) -> str:
        return VOICES.get(locale, "en")

    def synthesize(self, text: str, locale: str) -> bytes:
        voice = self.voice(locale)
        key = (text, voice)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if self.exe is None:
            raise SpeechSynthesizerError("espeak-ng is not installed")
        with tempfile.TemporaryDirectory(prefix="vrt-speech-") as tmp:
            wav = Path(tmp) / "clip.wav"
            t0 = time.perf_counter()
            # -w writes a WAV with true sizes (--stdout streams one with placeholder sizes);
            # the text goes on stdin so that a leading '-' is never read as an option
            try:
                proc = subprocess.run([self.exe, "-v", voice, "-s", str(self.words_per_min), "-w", str(wav)],
                                      input=text.encode("utf-8"), capture_output=True, timeout=SYNTH_TIMEOUT_S)
            except (OSError, subprocess.TimeoutExpired) as e:
                raise SpeechSynthesizerError(f"espeak-ng failed: {e}") from None
            if proc.returncode != 0 or not wav.is_file():
                err = proc.stderr.decode("utf-8", "replace").strip()
                raise SpeechSynthesizerError(f"espeak-ng exited {proc.returncode}: {err or 'no output'}")
            data = wav.read_bytes()
            self.synth_ms.append((time.perf_counter() - t0) * 1000.0)
        self._cache[key] = data
        return data


@dataclass(frozen=True)
class AudioOutput:
    """Where clips are played: ``sink`` is ``pulseaudio`` (paplay), ``alsa`` (aplay) or ``none``."""

    sink: str
    exe: str | None = None

    def play(self, wav_path: Path) -> bool:
        """Play a WAV file to the end (blocks: call it off the frame thread); True when it played."""
        if self.exe is None:
            return False
        cmd = [self.exe, "--client-name=vr-trainer", str(wav_path)] if self.sink == "pulseaudio" \
            else [self.exe, "-q", str(wav_path)]
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=PLAY_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as e:
            log.warning("spoken prompt not played: %s failed (%s)", Path(self.exe).name, e)
            return False
        if proc.returncode != 0:
            log.warning("spoken prompt not played: %s exited %d: %s", Path(self.exe).name, proc.returncode,
                        proc.stderr.decode("utf-8", "replace").strip()[:200])
            return False
        return True


def find_audio_output() -> tuple[AudioOutput, str]:
    """The machine's audio output and a sentence on why that one: a reachable PulseAudio/PipeWire
    server (``pactl info`` answers) with ``paplay``; else an ALSA card (``/proc/asound/cards``)
    with ``aplay``; else none."""
    paplay, pactl = shutil.which("paplay"), shutil.which("pactl")
    why = []
    if paplay and pactl:
        try:
            ok = subprocess.run([pactl, "info"], capture_output=True, timeout=PROBE_TIMEOUT_S).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if ok:
            return AudioOutput("pulseaudio", paplay), "a PulseAudio/PipeWire server answers (paplay)"
        why.append("no PulseAudio/PipeWire server answers")
    else:
        why.append("paplay/pactl are not installed (apt-get install pulseaudio-utils)")
    aplay = shutil.which("aplay")
    if aplay and _alsa_cards():
        return AudioOutput("alsa", aplay), "an ALSA sound card (aplay)"
    why.append("no ALSA sound card" if aplay else "aplay is not installed (apt-get install alsa-utils)")
    return AudioOutput("none"), "; ".join(why)


def _alsa_cards() -> bool:
    try:
        text = Path("/proc/asound/cards").read_text()
    except OSError:
        return False
    return bool(re.search(r"^\s*\d+\s+\[", text, re.M))


@dataclass
class _Job:
    time_s: float
    event_id: str | None
    text: str
    locale: str


class SpeechService:
    """Speaks the scenario's ``speak: true`` prompts (see the module docstring); a
    :class:`~vr_trainer.app.bridge.NoticeSink`. ``out_dir``: the run's output folder (clips go to
    ``out_dir/audio``), or None. ``output``: where to play (default: :func:`find_audio_output`)."""

    def __init__(self, scenario: Scenario, out_dir: Path | None = None,
                 synthesizer: SpeechSynthesizer | None = None, output: AudioOutput | None = None) -> None:
        self.locale = scenario.locale
        self.spoken = spoken_prompts(scenario)
        self.out_dir = out_dir
        self.synth = synthesizer or SpeechSynthesizer()
        self._output = output
        self.entries: list[dict[str, Any]] = []
        self.listeners: list[Callable[[dict[str, Any], bytes], None]] = []  # (entry, WAV) of each clip
        self.dropped = 0
        self._q: queue.Queue[_Job | None] = queue.Queue(maxsize=QUEUE_ITEMS)
        self._thread: threading.Thread | None = None
        self._closed = False
        self._warned_synth = False

    # ---- the frame loop's side: never blocks ------------------------------------------
    def publish_notice(self, notice: dict[str, Any]) -> None:
        if notice.get("kind") != "prompt" or (notice.get("event_id"), notice.get("text_en")) not in self.spoken:
            return
        zh = self.locale == "zh" and notice.get("text_zh")
        job = _Job(float(notice.get("time_s") or 0.0), notice.get("event_id"),
                   str(notice["text_zh"] if zh else notice["text_en"]), "zh" if zh else "en")
        if self._closed:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="speech", daemon=True)
            self._thread.start()
        try:
            self._q.put_nowait(job)
        except queue.Full:
            self.dropped += 1

    # ---- the worker thread --------------------------------------------------------------
    def _run(self) -> None:
        if self._output is None:
            self._output, why = find_audio_output()
            if self._output.sink == "none":
                log.warning("spoken prompts are shown and saved but not played: no audio output (%s)", why)
        while True:
            job = self._q.get()
            if job is None:
                return
            try:
                self._speak(job)
            except Exception:  # noqa: BLE001 - one bad clip must not end the others
                log.exception("spoken prompt failed: %r", job.text)

    def _speak(self, job: _Job) -> None:
        entry: dict[str, Any] = {"time_s": round(job.time_s, 3), "event": job.event_id, "text": job.text,
                                 "locale": job.locale, "voice": self.synth.voice(job.locale), "file": None,
                                 "duration_s": None, "played": False, "sink": None}
        self.entries.append(entry)
        try:
            data = self.synth.synthesize(job.text, job.locale)
        except SpeechSynthesizerError as e:
            if not self._warned_synth:
                self._warned_synth = True
                hint = " (apt-get install espeak-ng)" if not self.synth.available else ""
                log.warning("spoken prompts are shown but not spoken: %s%s", e, hint)
            return
        entry["duration_s"] = round(wav_duration_s(data), 3)
        for listener in self.listeners:
            try:
                listener(entry, data)
            except Exception:  # noqa: BLE001 - the recording failing must not silence the prompt
                log.exception("spoken prompt: a clip listener failed")
        if self.out_dir is not None:
            audio = self.out_dir / "audio"
            audio.mkdir(parents=True, exist_ok=True)
            path = audio / f"{len(self.entries):03d}_{job.event_id or 'prompt'}.wav"
            path.write_bytes(data)
            entry["file"] = str(path.relative_to(self.out_dir))
            self._play(entry, path)
        else:
            with tempfile.TemporaryDirectory(prefix="vrt-speech-") as tmp:
                path = Path(tmp) / "clip.wav"
                path.write_bytes(data)
                self._play(entry, path)

    def _play(self, entry: dict[str, Any], path: Path) -> None:
        out = self._output or AudioOutput("none")
        entry["sink"] = out.sink
        entry["played"] = out.play(path)

    # ---- the end of the run -------------------------------------------------------------
    def close(self, timeout_s: float = 120.0) -> list[dict[str, Any]]:
        """Let the queued prompts be spoken (at most ``timeout_s``), stop the worker and return
        the ``spoken_prompts`` of ``summary.json``; safe to call twice."""
        if not self._closed:
            self._closed = True
            if self._thread is not None:
                deadline = time.monotonic() + timeout_s
                while True:
                    try:
                        self._q.put(None, timeout=0.1)
                        break
                    except queue.Full:
                        if time.monotonic() > deadline:
                            break
                self._thread.join(max(0.0, deadline - time.monotonic()))
                if self._thread.is_alive():
                    log.warning("spoken prompts: still speaking after %.0f s; the summary lists what was done",
                                timeout_s)
        return [dict(e) for e in self.entries]

    def timing(self) -> dict[str, Any]:
        """Median synthesis time (ms) over the clips synthesized (cache misses)."""
        ms = self.synth.synth_ms
        return {"synth_ms_median": round(statistics.median(ms), 1) if ms else None, "synthesized": len(ms)}


def audio_message(entry: dict[str, Any], wav: bytes) -> dict[str, Any]:
    """A recording's ``/audio`` message: the clip (WAV, ``data`` base64) and what was said."""
    import base64

    return {"format": "wav", "data": base64.b64encode(wav).decode("ascii"),
            **{k: entry[k] for k in ("time_s", "event", "text", "locale", "voice", "duration_s")}}


def attach_speech(scenario: Scenario, loop: Any, out_dir: Path | None, recorder: Any = None) -> SpeechService | None:
    """Speak ``scenario``'s spoken prompts during ``loop`` (a frame loop's ``notice_sinks``); each
    clip also goes into ``recorder``'s ``/audio`` channel when given (a
    :class:`~vr_trainer.app.recording.SessionRecorder`). None when the scenario marks no prompt
    ``speak: true``; ``VR_TRAINER_NO_SPEECH=1`` turns speech off."""
    if not spoken_prompts(scenario) or os.environ.get("VR_TRAINER_NO_SPEECH") == "1":
        return None
    service = SpeechService(scenario, out_dir)
    if recorder is not None:
        service.listeners.append(lambda entry, wav: recorder.record_audio(audio_message(entry, wav)))
    loop.notice_sinks.append(service)
    return service
