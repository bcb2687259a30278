// Reads the frame id carried in the strip above the video picture (twin of
// remote/framecode.py): STRIP_PX rows on top of the picture the console never shows,
// holding a row of CELL_PX-wide cells: white, black (threshold), 24 data bits (frame
// id, most significant first), 8 CRC-8 bits.
export const CELL_PX = 8;
export const STRIP_PX = 16;
export const N_CELLS = 34;
export const STAMP_WIDTH_PX = CELL_PX * N_CELLS;

export function crc8(bytes) {
  let crc = 0;
  for (const b of bytes) {
    crc ^= b;
    for (let i = 0; i < 8; i++) crc = crc & 0x80 ? ((crc << 1) ^ 0x07) & 0xff : (crc << 1) & 0xff;
  }
  return crc;
}

export function decodeBits(bits) {
  if (bits.length !== N_CELLS || bits[0] !== 1 || bits[1] !== 0) return null;
  let id = 0;
  for (let k = 2; k < 26; k++) id = id * 2 + bits[k];
  let check = 0;
  for (let k = 26; k < 34; k++) check = check * 2 + bits[k];
  return crc8([(id >> 16) & 0xff, (id >> 8) & 0xff, id & 0xff]) === check ? id : null;
}

export class FrameCodeReader {
  constructor() {
    this.canvas = document.createElement('canvas');
    this.canvas.width = STAMP_WIDTH_PX;
    this.canvas.height = 1;
    this.ctx = this.canvas.getContext('2d', { willReadFrequently: true });
  }

  // The frame id of the picture the video element shows now, or null. ``stripPx``:
  // the strip's height as the trainee announced it (0: no strip, nothing to read).
  read(video, stripPx = STRIP_PX) {
    if (!stripPx || !video.videoWidth || video.videoWidth < STAMP_WIDTH_PX || video.videoHeight < stripPx) return null;
    const row = Math.floor(stripPx / 2);
    this.ctx.drawImage(video, 0, row, STAMP_WIDTH_PX, 1, 0, 0, STAMP_WIDTH_PX, 1);
    const px = this.ctx.getImageData(0, 0, STAMP_WIDTH_PX, 1).data;
    const luma = [];
    for (let k = 0; k < N_CELLS; k++) {
      const i = (k * CELL_PX + CELL_PX / 2) * 4;
      luma.push((px[i] + px[i + 1] + px[i + 2]) / 3);
    }
    const white = luma[0], black = luma[1];
    if (white - black < 40) return null;
    const mid = (white + black) / 2;
    return decodeBits(luma.map((y) => (y > mid ? 1 : 0)));
  }
}
