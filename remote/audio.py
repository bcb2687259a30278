"""The resident's microphone (when there is one) and the mentor's voice on the speakers.

Devices come through FFmpeg's capture formats (ALSA, PulseAudio) as PyAV offers them.
``spec``: "auto" (PulseAudio when a server is running, else ALSA's default device when
the machine has a sound card, else none), "none", or "FORMAT:DEVICE" (e.g.
"alsa:hw:1", "pulse:default").
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("remote.audio")


def _pulse_running() -> bool:
    if os.environ.get("PULSE_SERVER"):
        return True
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    return Path(runtime, "pulse", "native").exists()


def _alsa_has_card() -> bool:
    try:
        text = Path("/proc/asound/cards").read_text()
    except OSError:
        return False
    return bool(text.strip()) and "no soundcards" not in text


def resolve_device(spec: str) -> tuple[str, str] | None:
    """(ffmpeg format, device) for a spec, or None for no audio device."""
    import av

    spec = (spec or "auto").strip()
    if spec == "none":
        return None
    if spec != "auto":
        fmt, _, dev = spec.partition(":")
        return (fmt, dev or "default")
    if "pulse" in av.formats_available and _pulse_running():
        return ("pulse", "default")
    if "alsa" in av.formats_available and _alsa_has_card():
        return ("alsa", "default")
    return None


def open_microphone(spec: str = "auto") -> Any | None:
    """A live audio track from the microphone, or None when there is none (never raises)."""
    dev = resolve_device(spec)
    if dev is None:
        return None
    try:
        from aiortc.contrib.media import MediaPlayer

        player = MediaPlayer(dev[1], format=dev[0])
    except Exception as e:  # noqa: BLE001 - a missing device means: no microphone
        log.warning("no microphone (%s:%s: %s); the mentor will not hear the resident", dev[0], dev[1], e)
        return None
    return player.audio


def open_speaker(spec: str = "auto") -> Any | None:
    """An FFmpeg output for the mentor's voice, or None (then the audio is only counted)."""
    dev = resolve_device(spec)
    if dev is None:
        return None
    try:
        from aiortc.contrib.media import MediaRecorder

        return MediaRecorder(dev[1], format=dev[0])
    except Exception as e:  # noqa: BLE001
        log.warning("no speaker output (%s:%s: %s)", dev[0], dev[1], e)
        return None
