"""The frame id rides in a strip above the picture: it survives VP8 at low bit rates,
reads back, and leaves the picture itself untouched."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from remote import framecode as fc


def test_bits_roundtrip_and_crc_catches_errors():
    for fid in (0, 1, 4095, 123456, fc.ID_MODULO - 1, fc.ID_MODULO + 7):
        bits = fc.code_bits(fid)
        assert len(bits) == fc.N_CELLS and fc.decode_bits(bits) == fid % fc.ID_MODULO
        for k in range(fc.SYNC_CELLS, fc.N_CELLS):
            flipped = bits.copy()
            flipped[k] ^= 1
            assert fc.decode_bits(flipped) != fid % fc.ID_MODULO


def test_strip_rgb_reads_back_and_the_picture_is_untouched():
    img = np.random.default_rng(1).integers(0, 255, (240, 640, 3)).astype(np.uint8)
    out = fc.add_strip_rgb(img, 777)
    assert out.shape == (240 + fc.STRIP_PX, 640, 3)
    assert fc.read_rgb(out) == 777
    assert np.array_equal(fc.picture(out), img)
    assert fc.read_rgb(np.zeros((240, 640, 3), np.uint8)) is None
    with pytest.raises(ValueError):
        fc.add_strip_rgb(np.zeros((8, 100, 3), np.uint8), 5)


@pytest.mark.parametrize("w,h", [(640, 240), (320, 362), (1280, 720)])
def test_strip_i420_keeps_every_plane_of_the_picture(w, h):
    rgb = np.random.default_rng(2).integers(0, 255, (h, w, 3)).astype(np.uint8)
    yuv = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()
    out, big_h = fc.add_strip_i420(yuv, w, h, 4242)
    assert big_h == h + fc.STRIP_PX and out.shape == (big_h * 3 // 2, w)
    frame = av.VideoFrame.from_ndarray(out, format="yuv420p")
    assert (frame.width, frame.height) == (w, big_h)
    back = frame.to_ndarray(format="rgb24")
    assert fc.read_rgb(back) == 4242
    ref = av.VideoFrame.from_ndarray(yuv, format="yuv420p").to_ndarray(format="rgb24")
    assert np.array_equal(fc.picture(back), ref), "the picture below the strip is what it was"


@pytest.mark.parametrize("bitrate", [150_000, 500_000])
def test_code_survives_vp8(bitrate):
    w, h = 384, 216
    enc = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt, enc.bit_rate = w, h + fc.STRIP_PX, "yuv420p", bitrate
    enc.time_base = Fraction(1, 30)
    enc.options = {"deadline": "realtime", "cpu-used": "-6", "lag-in-frames": "0"}
    dec = av.CodecContext.create("libvpx", "r")
    rng = np.random.default_rng(3)
    read, ids = [], list(range(1000, 1040))
    for i, fid in enumerate(ids):
        rgb = (rng.integers(0, 255, (h, w, 3))).astype(np.uint8)  # noise: the worst case for the encoder
        yuv = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()
        yuv, big_h = fc.add_strip_i420(yuv, w, h, fid)
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = i
        for pkt in enc.encode(frame):
            for out in dec.decode(pkt):
                read.append(fc.read_luma(out.to_ndarray(format="yuv420p")[:big_h]))
    assert len(read) >= 36
    good = [r for r in read if r is not None]
    assert all(r in ids for r in good), "a corrupted code must read as None, never as another id"
    assert len(good) >= 0.9 * len(read)


def test_javascript_twin_uses_the_same_layout():
    js = (Path(fc.__file__).parent / "static" / "framecode.js").read_text()
    assert f"CELL_PX = {fc.CELL_PX};" in js and f"N_CELLS = {fc.N_CELLS};" in js and "0x07" in js
    assert f"STRIP_PX = {fc.STRIP_PX};" in js


def test_publisher_puts_the_strip_on_pictures_wide_enough_for_it():
    from remote.publisher import convert_frame
    from vr_trainer.frame import MirrorFrame

    wide = MirrorFrame(31, 0.0, np.full((240, 320, 3), 90, np.uint8), None, [])
    yuv, w, h, strip = convert_frame(wide, (1280, 720), True)
    assert (w, h, strip) == (320, 240 + fc.STRIP_PX, fc.STRIP_PX) and fc.read_luma(yuv[:h]) == 31
    narrow = MirrorFrame(32, 0.0, np.full((200, 200, 3), 90, np.uint8), None, [])
    yuv, w, h, strip = convert_frame(narrow, (1280, 720), True)
    assert (w, h, strip) == (200, 200, 0), "too narrow for the code: no strip, and the viewer is told so"



def test_the_code_reads_on_every_picture_of_a_long_lived_shared_encoder():
    """The publisher's one VP8 encoder a view lives on across viewers: the pump stops while
    nobody watches and a newcomer asks for a key frame. Every picture before and after must
    read, a swaying board on a flat background included (an encoder's temporal denoiser
    averaged flipped cells with the last picture's: up to 1 picture in 6 unreadable)."""
    from remote.publisher import VIDEO_CLOCK_HZ, StreamConfig, Vp8Encoder, convert_frame
    from vr_trainer.frame import MirrorFrame

    w, h = 320, 240
    yy, xx = np.mgrid[0:h, 0:w]
    enc, dec = Vp8Encoder(StreamConfig()), av.CodecContext.create("libvpx", "r")
    read: list[int | None] = []
    pts = 0
    for i in range(300):
        if i == 90:
            pts += 2 * VIDEO_CLOCK_HZ  # nobody watched for 2 s; then a newcomer asks for a key frame
        board = (np.abs(xx - 160 - 20 * np.sin(i / 15)) < 60) & (np.abs(yy - 120) < 50)
        rgb = np.where(board[..., None], np.uint8(200), np.uint8(60)).repeat(3, axis=2).astype(np.uint8)
        yuv, fw, fh, _ = convert_frame(MirrorFrame(500 + i, 0.0, rgb, None, []), (1280, 720), True)
        data, _ = enc.encode(yuv, fw, fh, pts, i in (0, 90))
        pts += VIDEO_CLOCK_HZ // 30
        for out in dec.decode(av.Packet(data)):
            read.append(fc.read_luma(out.to_ndarray(format="yuv420p")[:fh]))
    assert read == list(range(500, 800)), f"{sum(r is None for r in read)} of {len(read)} pictures unreadable"
