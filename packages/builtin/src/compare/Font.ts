/**
 * A 5x7 pixel font for the PNG versions of the comparison's charts (the SVG versions use real text):
 * capitals, digits and a little punctuation; lower case is drawn in capitals, other characters as blanks.
 * Each glyph is 7 rows of 5 bits, most significant bit left.
 */
const GLYPHS: Readonly<Record<string, ReadonlyArray<number>>> = {
  A: [14, 17, 17, 31, 17, 17, 17], B: [30, 17, 17, 30, 17, 17, 30], C: [14, 17, 16, 16, 16, 17, 14], D: [30, 17, 17, 17, 17, 17, 30],
  E: [31, 16, 16, 30, 16, 16, 31], F: [31, 16, 16, 30, 16, 16, 16], G: [14, 17, 16, 23, 17, 17, 15], H: [17, 17, 17, 31, 17, 17, 17],
  I: [14, 4, 4, 4, 4, 4, 14], J: [7, 2, 2, 2, 2, 18, 12], K: [17, 18, 20, 24, 20, 18, 17], L: [16, 16, 16, 16, 16, 16, 31],
  M: [17, 27, 21, 21, 17, 17, 17], N: [17, 17, 25, 21, 19, 17, 17], O: [14, 17, 17, 17, 17, 17, 14], P: [30, 17, 17, 30, 16, 16, 16],
  Q: [14, 17, 17, 17, 21, 18, 13], R: [30, 17, 17, 30, 20, 18, 17], S: [15, 16, 16, 14, 1, 1, 30], T: [31, 4, 4, 4, 4, 4, 4],
  U: [17, 17, 17, 17, 17, 17, 14], V: [17, 17, 17, 17, 17, 10, 4], W: [17, 17, 17, 21, 21, 21, 10], X: [17, 17, 10, 4, 10, 17, 17],
  Y: [17, 17, 10, 4, 4, 4, 4], Z: [31, 1, 2, 4, 8, 16, 31],
  "0": [14, 17, 19, 21, 25, 17, 14], "1": [4, 12, 4, 4, 4, 4, 14], "2": [14, 17, 1, 2, 4, 8, 31], "3": [31, 2, 4, 2, 1, 17, 14],
  "4": [2, 6, 10, 18, 31, 2, 2], "5": [31, 16, 30, 1, 1, 17, 14], "6": [6, 8, 16, 30, 17, 17, 14], "7": [31, 1, 2, 4, 8, 8, 8],
  "8": [14, 17, 17, 14, 17, 17, 14], "9": [14, 17, 17, 15, 1, 2, 12],
  ".": [0, 0, 0, 0, 0, 12, 12], ",": [0, 0, 0, 0, 12, 4, 8], "-": [0, 0, 0, 31, 0, 0, 0], "_": [0, 0, 0, 0, 0, 0, 31],
  "/": [1, 1, 2, 4, 8, 16, 16], "(": [2, 4, 8, 8, 8, 4, 2], ")": [8, 4, 2, 2, 2, 4, 8], "&": [12, 18, 20, 8, 21, 18, 13],
  ":": [0, 12, 12, 0, 12, 12, 0], "%": [24, 25, 2, 4, 8, 19, 3], "+": [0, 4, 4, 31, 4, 4, 0], "=": [0, 0, 31, 0, 31, 0, 0],
  "<": [2, 4, 8, 16, 8, 4, 2], ">": [8, 4, 2, 1, 2, 4, 8]
}

/** Width in pixels of `text` at `scale` (6 columns per character, the last one a gap). */
export const textWidth = (text: string, scale = 1) => text.length * 6 * scale

/** Draws `text` with its top-left corner at (x, y) by calling `set` for every lit pixel. */
export const drawText = (text: string, x: number, y: number, scale: number, set: (x: number, y: number) => void) => {
  for (const [i, ch] of [...text.toUpperCase()].entries()) {
    const g = GLYPHS[ch]
    if (g === undefined) continue
    for (let r = 0; r < 7; r++) {
      for (let c = 0; c < 5; c++) {
        if ((g[r]! >> (4 - c)) & 1) {
          for (let dy = 0; dy < scale; dy++) for (let dx = 0; dx < scale; dx++) set(x + (i * 6 + c) * scale + dx, y + r * scale + dy)
        }
      }
    }
  }
}
