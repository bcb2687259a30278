"""A frame id stamped into the video picture as a row of black/white cells.

The browser reads it back from a canvas (``static/framecode.js`` is the twin of
this module) so that each stroke names the exact frame it was drawn on, and so that
glass-to-glass latency can be measured. Layout, top-left corner of the picture:
``CELL_PX``-square cells, 2 sync cells (white, black) to set the threshold, 24 data
bits (frame id mod 2**24, most significant first), 8 CRC-8 bits. Cells are aligned
to the codec's 8-pixel blocks so VP8 at low bit rates keeps them readable; a frame
whose CRC fails reads as ``None``.
"""

from __future__ import annotations

import numpy as np

CELL_PX = 8
SYNC_CELLS = 2
DATA_BITS = 24
CHECK_BITS = 8
N_CELLS = SYNC_CELLS + DATA_BITS + CHECK_BITS
STAMP_WIDTH_PX = N_CELLS * CELL_PX
STAMP_HEIGHT_PX = CELL_PX
ID_MODULO = 1 << DATA_BITS
Y_WHITE, Y_BLACK = 235, 16  # limited-range luma, as the encoder expects


def crc8(data: bytes) -> int:
    """CRC-8 (polynomial 0x07, init 0)."""
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def code_bits(frame_id: int) -> np.ndarray:
    """The N_CELLS cell values (1 white, 0 black) for a frame id."""
    fid = int(frame_id) % ID_MODULO
    data = fid.to_bytes(3, "big")
    word = (fid << CHECK_BITS) | crc8(data)
    bits = [(word >> (DATA_BITS + CHECK_BITS - 1 - k)) & 1 for k in range(DATA_BITS + CHECK_BITS)]
    return np.array([1, 0, *bits], dtype=np.uint8)


def decode_bits(bits: np.ndarray | list[int]) -> int | None:
    b = [int(x) for x in bits]
    if len(b) != N_CELLS or b[0] != 1 or b[1] != 0:
        return None
    word = 0
    for x in b[SYNC_CELLS:]:
        word = (word << 1) | x
    fid, check = word >> CHECK_BITS, word & 0xFF
    return fid if crc8(fid.to_bytes(3, "big")) == check else None


def fits(width_px: int, height_px: int) -> bool:
    return width_px >= STAMP_WIDTH_PX and height_px >= STAMP_HEIGHT_PX


def stamp_i420(yuv: np.ndarray, width_px: int, height_px: int, frame_id: int) -> None:
    """Stamp in place into an I420 buffer shaped (height*3/2, width) as PyAV's yuv420p ndarray."""
    if not fits(width_px, height_px):
        return
    y = yuv[:height_px]
    cells = np.where(code_bits(frame_id) > 0, Y_WHITE, Y_BLACK).astype(np.uint8)
    y[:CELL_PX, :STAMP_WIDTH_PX] = np.repeat(cells, CELL_PX)[None, :]
    # neutral chroma under the stamp (U then V planes, each (h/2, w/2) stored as h/4 rows of w)
    half_w, half_h = width_px // 2, height_px // 2
    u = yuv[height_px:height_px + half_h // 2].reshape(half_h, half_w)
    v = yuv[height_px + half_h // 2:height_px + half_h].reshape(half_h, half_w)
    u[:CELL_PX // 2, :STAMP_WIDTH_PX // 2] = 128
    v[:CELL_PX // 2, :STAMP_WIDTH_PX // 2] = 128


def stamp_rgb(rgb: np.ndarray, frame_id: int) -> None:
    """Stamp in place into an HxWx3 uint8 image (tests, recordings)."""
    h, w = rgb.shape[:2]
    if not fits(w, h):
        return
    cells = np.where(code_bits(frame_id) > 0, 255, 0).astype(np.uint8)
    rgb[:CELL_PX, :STAMP_WIDTH_PX] = np.repeat(cells, CELL_PX)[None, :, None]


def read_luma(luma: np.ndarray) -> int | None:
    """Read a frame id from an HxW luma (or grey) image; None when unreadable."""
    h, w = luma.shape[:2]
    if not fits(w, h):
        return None
    c = CELL_PX // 2
    samples = luma[c, c:STAMP_WIDTH_PX:CELL_PX].astype(np.float32)[:N_CELLS]
    white, black = float(samples[0]), float(samples[1])
    if white - black < 40.0:
        return None
    bits = (samples > (white + black) / 2.0).astype(np.uint8)
    return decode_bits(bits)


def read_rgb(rgb: np.ndarray) -> int | None:
    return read_luma(rgb[..., :3].astype(np.float32).mean(axis=2))
