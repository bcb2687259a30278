// Reads the frame id stamped into the video picture (twin of remote/framecode.py):
// a row of CELL_PX-square cells in the top-left corner: white, black (threshold),
// 24 data bits (frame id, most significant first), 8 CRC-8 bits.
export const CELL_PX = 8;
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
    this.canvas.height = CELL_PX;
    this.ctx = this.canvas.getContext('2d', { willReadFrequently: true });
  }

  // The frame id of the picture the video element shows now, or null.
  read(video) {
    if (!video.videoWidth || video.videoWidth < STAMP_WIDTH_PX || video.videoHeight < CELL_PX) return null;
    this.ctx.drawImage(video, 0, 0, STAMP_WIDTH_PX, CELL_PX, 0, 0, STAMP_WIDTH_PX, CELL_PX);
    const row = this.ctx.getImageData(0, CELL_PX / 2, STAMP_WIDTH_PX, 1).data;
    const luma = [];
    for (let k = 0; k < N_CELLS; k++) {
      const i = (k * CELL_PX + CELL_PX / 2) * 4;
      luma.push((row[i] + row[i + 1] + row[i + 2]) / 3);
    }
    const white = luma[0], black = luma[1];
    if (white - black < 40) return null;
    const mid = (white + black) / 2;
    return decodeBits(luma.map((y) => (y > mid ? 1 : 0)));
  }
}
