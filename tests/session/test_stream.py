"""Streaming a recording: the frames come one by one from the file, the same as a full read gives,
in memory that does not grow with the session's length; a cut or damaged file streams its
readable part and then says where the damage is, with the full reader's words."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from vr_trainer.frame import Fov, Frame, HandInput, InputState, View
from vr_trainer.session.format import quantize_frame
from vr_trainer.session.reader import (RecordingError, RecordingStream, iter_frames, read_for,
                                       read_recording)
from vr_trainer.session.writer import SessionWriter

FPS = 90.0


def _frames(n: int, seed: int = 0) -> list[Frame]:
    """``n`` frames of two eyes and two hands moving with tracking jitter (mm)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        views = []
        for k in range(2):
            m = np.eye(4)
            m[:3, 3] = (k * 63.0 + 10 * np.sin(i / FPS), 1600.0, 400.0) + rng.normal(0, 0.2, 3)
            views.append(View(k, m, Fov(-0.87, 0.73, 0.8, -0.8), 64, 48))
        hands = []
        for k in range(2):
            m = np.eye(4)
            m[:3, 3] = ((-1) ** k * 150.0, 1100.0 + 20 * np.cos(i / FPS), 0.0) + rng.normal(0, 0.2, 3)
            hands.append(HandInput(m if i % 50 else None, trigger=float(i % 7) / 7, grip=0.0,
                                   primary_pressed=bool(i % 3 == 0)))
        keys = frozenset({"space"}) if i % 40 == 0 else frozenset()
        out.append(Frame(i, i / FPS, views, InputState(hands=hands, active_hand=1, keys=keys)))
    return out


def write_recording(path: Path, n: int, close: bool = True) -> Path:
    """A recording of ``n`` frames at 90 Hz made by the project's writer, in chunks of about half a
    second as a live run has them, with mentor changes, metric samples, a notice and a summary."""
    w = SessionWriter(path, {"format": "vr_trainer.session", "synthetic": True}, flush_interval_s=0.002)
    for i, f in enumerate(_frames(n)):
        quantize_frame(f)
        w.frame(i / FPS, f)
        if i % 22 == 0:
            w.message("/metrics", i / FPS, {"frame": i, "time_s": i / FPS, "values": {"total_time_s": i / FPS}})
        if i % 500 == 7:
            w.message("/inbox", i / FPS, {"frame": i, "mentor_notes": [[i / FPS, "look"]]})
        if i == 100:
            w.message("/notices", i / FPS, {"kind": "step_started"})
        if i % 45 == 44:
            time.sleep(0.006)  # the writer thread ends a chunk (every 0.5 s of a live run)
    assert w.dropped == 0
    return w.close({"score": 50.0} if close else None)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    return write_recording(tmp_path_factory.mktemp("stream") / "s.mcap", 1500)


def _same(a, b) -> None:
    assert a.clock_s == b.clock_s and a.frame.index == b.frame.index
    assert a.frame.should_render == b.frame.should_render and a.frame.input.keys == b.frame.input.keys
    for v, w in zip(a.frame.views, b.frame.views, strict=True):
        np.testing.assert_array_equal(v.pose_world_from_eye, w.pose_world_from_eye)
        assert v.fov == w.fov and (v.width, v.height) == (w.width, w.height)
    for h, g in zip(a.frame.input.hands, b.frame.input.hands, strict=True):
        assert (h.pose_world_from_hand is None) == (g.pose_world_from_hand is None)
        if h.pose_world_from_hand is not None:
            np.testing.assert_array_equal(h.pose_world_from_hand, g.pose_world_from_hand)
        assert (h.trigger, h.grip, h.primary_pressed) == (g.trigger, g.grip, g.primary_pressed)


def test_streaming_yields_the_frames_and_channels_of_a_full_read(synthetic):
    full = read_recording(synthetic)
    assert full.complete and len(full.frames) == 1500
    with RecordingStream(synthetic) as stream:
        assert stream.recording.session == full.session  # the header is there before any frame
        streamed = list(stream.frames())
    assert len(streamed) == len(full.frames)
    for a, b in zip(full.frames, streamed):
        _same(a, b)
    rec = stream.recording
    assert rec.complete and rec.summary == full.summary == {"score": 50.0}
    assert (rec.inbox, rec.notices, rec.metrics) == (full.inbox, full.notices, full.metrics)
    assert rec.frame_count == 1500 and rec.duration_s == full.duration_s and rec.readable() == full.readable()
    light = read_recording(synthetic, frames=False)  # frames counted, never built
    assert light.frames == [] and light.readable() == full.readable() and light.metrics == full.metrics
    again = list(light.iter_frames())  # streamed from the file again
    assert len(again) == 1500
    _same(again[-1], full.frames[-1])


def _peak_mb(fn) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def test_streaming_memory_stays_bounded(tmp_path):
    path = write_recording(tmp_path / "long.mcap", 3000)

    def stream() -> None:
        n = 0
        for _rf in iter_frames(path):
            n += 1
        assert n == 3000

    full_mb = _peak_mb(lambda: read_recording(path))
    stream_mb = _peak_mb(stream)
    light_mb = _peak_mb(lambda: read_recording(path, frames=False))
    # the full read holds ~3 KB per frame; the stream holds one chunk (~45 frames) at a time
    assert full_mb > 5.0, full_mb
    assert stream_mb < full_mb / 10, (stream_mb, full_mb)
    assert light_mb < full_mb / 10, (light_mb, full_mb)


def test_a_cut_file_streams_its_readable_part_then_says_where(synthetic, tmp_path):
    data = synthetic.read_bytes()
    cut = tmp_path / "cut.mcap.partial"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    full = read_recording(synthetic).frames
    whole = read_recording(cut)  # what the full reader says about it
    with RecordingStream(cut) as stream:
        streamed = list(stream.frames())
    assert 0 < len(streamed) < len(full) and len(streamed) == len(whole.frames)
    for a, b in zip(full, streamed):
        _same(a, b)
    rec = stream.recording
    assert rec.damage is not None and rec.damage == whole.damage
    assert "cut short" in rec.damage and str(cut) in rec.damage and rec.summary is None
    got = []
    with pytest.raises(RecordingError) as err:
        for rf in iter_frames(cut, use="replay"):
            got.append(rf.frame.index)
    assert got == [rf.frame.index for rf in streamed], "the readable part comes before the message"
    with pytest.raises(RecordingError) as refused:
        read_for(cut, False, "replay", "")
    assert str(err.value) == str(refused.value)  # the same words as the full reader's refusal
    assert f"{len(streamed)} frames" in str(err.value) and "Pass --partial to replay" in str(err.value)
    assert len(list(iter_frames(cut, partial=True))) == len(streamed)


def test_corrupt_bytes_stream_the_part_before_them(synthetic, tmp_path):
    data = bytearray(synthetic.read_bytes())
    at = len(data) // 2
    data[at:at + 64] = bytes(64)
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(bytes(data))
    with RecordingStream(bad) as stream:
        n = sum(1 for _ in stream.frames())
    assert stream.recording.damage == read_recording(bad).damage
    # where the zeroed bytes land depends on the chunk layout: inside a chunk, reading stops there; in a
    # part only the data section's checksum covers, every frame reads and the closing check says so
    assert "damaged after byte" in str(stream.recording.damage) and 0 < n <= 1500
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"not a recording at all")
    with pytest.raises(RecordingError, match="not a readable vr-trainer recording"):
        RecordingStream(junk)
