"""Text panels rendered with a font that covers Chinese as well as Latin text."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

log = logging.getLogger(__name__)

# Searched in order; the first covers CJK (Debian: fonts-wqy-microhei / fonts-noto-cjk).
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)


@functools.lru_cache(maxsize=1)
def font_path() -> str | None:
    for p in FONT_CANDIDATES:
        if Path(p).is_file():
            if "DejaVu" in p:
                log.warning("no CJK font found (install fonts-wqy-microhei); Chinese text will show as boxes")
            return p
    return None


@functools.lru_cache(maxsize=8)
def _font(size_px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    p = font_path()
    if p is None:
        return ImageFont.load_default(size=size_px)
    return ImageFont.truetype(p, size_px)


def covers_cjk() -> bool:
    p = font_path()
    return p is not None and "DejaVu" not in p


def wrap_lines(lines: list[str], font: ImageFont.FreeTypeFont | ImageFont.ImageFont, max_px: int) -> list[str]:
    """Break lines to fit ``max_px``: at spaces for Latin text, anywhere for Chinese."""
    out: list[str] = []
    for line in lines:
        out.extend(_wrap_line(line, font, max_px))
    return out


@functools.lru_cache(maxsize=4096)
def _wrap_line(line: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, max_px: int) -> tuple[str, ...]:
    """One line broken to fit (remembered: live panels redraw the same lines many times)."""
    out: list[str] = []
    rest = line
    while len(rest) > 1 and font.getlength(rest) > max_px:
        lo, hi = 1, len(rest)  # the longest prefix that fits (at least one character): rest[:lo] fits, rest[:hi] not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if font.getlength(rest[:mid]) <= max_px:
                lo = mid
            else:
                hi = mid
        cur, ch = rest[:lo], rest[lo]
        cut = cur.rfind(" ")
        if cut > 0 and ch != " ":  # Latin text: back to the last space
            out.append(cur[:cut])
            rest = rest[cut + 1:]
        else:
            out.append(cur.rstrip())
            rest = rest[lo + 1:] if ch == " " else rest[lo:]
    out.append(rest)
    return tuple(out)


def render_text_rgba(lines: list[str], font_px: int = 28, width_px: int = 512, padding_px: int = 14,
                     fg: tuple[int, int, int] = (235, 245, 255), bg: tuple[int, int, int, int] = (12, 22, 38, 210)
                     ) -> np.ndarray:
    """Rasterise lines of text into a premultiplied-alpha sRGB image (HxWx4 uint8, top row first)."""
    font = _font(font_px)
    lines = wrap_lines(lines, font, width_px - 2 * padding_px)
    line_h = int(font_px * 1.35)
    h = max(padding_px * 2 + line_h * max(len(lines), 1), 8)
    img = Image.new("RGBA", (width_px, h), bg)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((padding_px, padding_px + i * line_h), line, font=font, fill=fg + (255,))
    a = np.asarray(img, dtype=np.uint16)
    out = a.copy()
    out[..., :3] = (a[..., :3] * a[..., 3:4]) // 255
    return out.astype(np.uint8)
