"""A frame id carried in a strip of cells above the video picture, out of the expert's sight.

The publisher puts a ``STRIP_PX``-row strip on top of every picture it sends; the strip
holds a row of black/white cells and is mid-grey elsewhere. The console reads the id
from the strip (``static/framecode.js`` is the twin of this module) and shows only the
picture below it (the strip is cropped away by the console's layout), so the expert
never sees the code; every stroke names the exact frame it was drawn on, and
glass-to-glass latency can still be measured. Cells are ``CELL_PX`` wide and the
strip's height tall: 2 sync cells (white, black) to set the threshold, 24 data bits
(frame id mod 2**24, most significant first), 8 CRC-8 bits. The strip is 16 rows so
the picture below keeps the codec's 16-pixel macroblock rows; a frame whose CRC fails
reads as ``None``.
"""

from __future__ import annotations

import numpy as np

CELL_PX = 8
STRIP_PX = 16  # rows above the picture; announced to viewers in ``hello`` (frame_code.strip_px)
SYNC_CELLS = 2
DATA_BITS = 24
CHECK_BITS = 8
N_CELLS = SYNC_CELLS + DATA_BITS + CHECK_BITS
STAMP_WIDTH_PX = N_CELLS * CELL_PX
STAMP_HEIGHT_PX = STRIP_PX
ID_MODULO = 1 << DATA_BITS
Y_WHITE, Y_BLACK, Y_GREY = 235, 16, 126  # limited-range luma, as the encoder expects


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
    """Whether a picture is wide enough to carry the code (its height does not matter)."""
    return width_px >= STAMP_WIDTH_PX and height_px >= 2


def strip_luma(width_px: int, frame_id: int, white: int = Y_WHITE, black: int = Y_BLACK,
               grey: int = Y_GREY) -> np.ndarray:
    """The strip's (STRIP_PX, width) luma: the cells, then grey."""
    row = np.full(width_px, grey, dtype=np.uint8)
    cells = np.where(code_bits(frame_id) > 0, white, black).astype(np.uint8)
    row[:STAMP_WIDTH_PX] = np.repeat(cells, CELL_PX)
    return np.repeat(row[None, :], STRIP_PX, axis=0)


def add_strip_i420(yuv: np.ndarray, width_px: int, height_px: int, frame_id: int) -> tuple[np.ndarray, int]:
    """A new I420 picture (PyAV's yuv420p ndarray, shaped (H*3/2, width)) of height
    ``H = height_px + STRIP_PX``: the code strip on top, the picture below, unchanged."""
    if not fits(width_px, height_px) or width_px % 2 or height_px % 2:
        raise ValueError(f"a {width_px}x{height_px} picture cannot carry the frame code")
    w, h, big_h = width_px, height_px, height_px + STRIP_PX
    flat = yuv.reshape(-1)
    n_y, n_c = w * h, (w // 2) * (h // 2)
    out = np.empty(w * big_h + 2 * (w // 2) * (big_h // 2), dtype=np.uint8)
    y_out = out[:w * big_h].reshape(big_h, w)
    y_out[:STRIP_PX] = strip_luma(w, frame_id)
    y_out[STRIP_PX:] = flat[:n_y].reshape(h, w)
    c_rows = STRIP_PX // 2
    for k in range(2):  # U then V
        src = flat[n_y + k * n_c:n_y + (k + 1) * n_c].reshape(h // 2, w // 2)
        start = w * big_h + k * (w // 2) * (big_h // 2)
        dst = out[start:start + (w // 2) * (big_h // 2)].reshape(big_h // 2, w // 2)
        dst[:c_rows] = 128
        dst[c_rows:] = src
    return out.reshape(-1, w), big_h


def add_strip_rgb(rgb: np.ndarray, frame_id: int) -> np.ndarray:
    """An HxWx3 uint8 image with the code strip on top (tests, recordings)."""
    h, w = rgb.shape[:2]
    if not fits(w, h):
        raise ValueError(f"a {w}x{h} picture cannot carry the frame code")
    strip = strip_luma(w, frame_id, 255, 0, 128)
    return np.concatenate([np.repeat(strip[:, :, None], 3, axis=2), rgb[..., :3]], axis=0)


def picture(image: np.ndarray) -> np.ndarray:
    """The picture the expert sees: the image without its code strip."""
    return image[STRIP_PX:]


def read_luma(luma: np.ndarray) -> int | None:
    """Read a frame id from an HxW luma (or grey) image with its strip; None when unreadable."""
    h, w = luma.shape[:2]
    if w < STAMP_WIDTH_PX or h < STRIP_PX:
        return None
    c = CELL_PX // 2
    samples = luma[STRIP_PX // 2, c:STAMP_WIDTH_PX:CELL_PX].astype(np.float32)[:N_CELLS]
    white, black = float(samples[0]), float(samples[1])
    if white - black < 40.0:
        return None
    bits = (samples > (white + black) / 2.0).astype(np.uint8)
    return decode_bits(bits)


def read_rgb(rgb: np.ndarray) -> int | None:
    return read_luma(rgb[..., :3].astype(np.float32).mean(axis=2))
