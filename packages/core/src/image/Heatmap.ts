/**
 * Attention maps as pictures: a map upsampled bilinearly to the image, coloured with a perceptual
 * ramp (dark blue, teal, yellow: viridis-like), and blended over the image.
 */
import type { RgbImage } from "./Image.js"

const ramp: ReadonlyArray<readonly [number, number, number]> = [
  [0.267, 0.005, 0.329],
  [0.229, 0.322, 0.546],
  [0.128, 0.567, 0.551],
  [0.369, 0.789, 0.383],
  [0.993, 0.906, 0.144]
]

export const colour = (v: number): readonly [number, number, number] => {
  const x = Math.min(1, Math.max(0, v)) * (ramp.length - 1)
  const i = Math.min(ramp.length - 2, Math.floor(x))
  const t = x - i
  const [a, b] = [ramp[i]!, ramp[i + 1]!]
  return [a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]), a[2] + t * (b[2] - a[2])]
}

/** `map` is `h * w` values; returns the map at `height x width` by bilinear interpolation (align_corners=False). */
export const upsample = (map: ArrayLike<number>, h: number, w: number, height: number, width: number): Float32Array => {
  const out = new Float32Array(height * width)
  for (let y = 0; y < height; y++) {
    const sy = Math.min(Math.max(((y + 0.5) * h) / height - 0.5, 0), h - 1)
    const y0 = Math.floor(sy)
    const y1 = Math.min(y0 + 1, h - 1)
    const fy = sy - y0
    for (let x = 0; x < width; x++) {
      const sx = Math.min(Math.max(((x + 0.5) * w) / width - 0.5, 0), w - 1)
      const x0 = Math.floor(sx)
      const x1 = Math.min(x0 + 1, w - 1)
      const fx = sx - x0
      const top = map[y0 * w + x0]! * (1 - fx) + map[y0 * w + x1]! * fx
      const bottom = map[y1 * w + x0]! * (1 - fx) + map[y1 * w + x1]! * fx
      out[y * width + x] = top * (1 - fy) + bottom * fy
    }
  }
  return out
}

/** The map (min-max normalised) coloured and blended over `image` with weight `alpha`. */
export const heatmap = (map: ArrayLike<number>, h: number, w: number, image: RgbImage, alpha = 0.6): RgbImage => {
  const up = upsample(map, h, w, image.height, image.width)
  let lo = Infinity
  let hi = -Infinity
  for (const v of up) {
    lo = Math.min(lo, v)
    hi = Math.max(hi, v)
  }
  const data = new Float32Array(image.data.length)
  for (let i = 0; i < up.length; i++) {
    const c = colour((up[i]! - lo) / (hi - lo + 1e-12))
    for (let k = 0; k < 3; k++) data[3 * i + k] = alpha * c[k]! + (1 - alpha) * image.data[3 * i + k]!
  }
  return { width: image.width, height: image.height, data }
}

/** The colour ramp as a vertical bar, `height` pixels high: the map's maximum at the top, its minimum at the bottom. */
export const colourScale = (height: number, width = 4): RgbImage => {
  const data = new Float32Array(width * height * 3)
  for (let y = 0; y < height; y++) {
    const c = colour(1 - y / Math.max(1, height - 1))
    for (let x = 0; x < width; x++) data.set(c, (y * width + x) * 3)
  }
  return { width, height, data }
}

/** Images side by side (same height), with `gap` pixels of white between them. */
export const row = (images: ReadonlyArray<RgbImage>, gap = 2): RgbImage => {
  const height = Math.max(...images.map((i) => i.height))
  const width = images.reduce((a, i) => a + i.width, 0) + gap * (images.length - 1)
  const data = new Float32Array(width * height * 3).fill(1)
  let x0 = 0
  for (const img of images) {
    for (let y = 0; y < img.height; y++) data.set(img.data.subarray(y * img.width * 3, (y + 1) * img.width * 3), (y * width + x0) * 3)
    x0 += img.width + gap
  }
  return { width, height, data }
}

/** Rows stacked vertically (left-aligned), with `gap` pixels of white between them. */
export const column = (images: ReadonlyArray<RgbImage>, gap = 2): RgbImage => {
  const width = Math.max(...images.map((i) => i.width))
  const height = images.reduce((a, i) => a + i.height, 0) + gap * (images.length - 1)
  const data = new Float32Array(width * height * 3).fill(1)
  let y0 = 0
  for (const img of images) {
    for (let y = 0; y < img.height; y++) data.set(img.data.subarray(y * img.width * 3, (y + 1) * img.width * 3), ((y0 + y) * width) * 3)
    y0 += img.height + gap
  }
  return { width, height, data }
}

/** Nearest-neighbour enlargement by an integer factor (tiny images stay crisp in reports). */
export const enlarge = (img: RgbImage, f: number): RgbImage => {
  const width = img.width * f
  const height = img.height * f
  const data = new Float32Array(width * height * 3)
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const s = (Math.floor(y / f) * img.width + Math.floor(x / f)) * 3
      data.set(img.data.subarray(s, s + 3), (y * width + x) * 3)
    }
  }
  return { width, height, data }
}

const escapeXml = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")

/**
 * A row of cells (as `row` lays them out, enlarged `scale` times) as an SVG with each cell's label under
 * it: the PNG embedded, the labels as text, so tokens such as `<v1>` read as words.
 */
export const labelledRowSvg = (png: Uint8Array, o: {
  readonly height: number
  readonly gap: number
  readonly scale: number
  readonly cells: ReadonlyArray<{ readonly width: number; readonly label: string }>
}): string => {
  const labelHeight = 18
  const w = (o.cells.reduce((a, c) => a + c.width, 0) + o.gap * (o.cells.length - 1)) * o.scale
  const h = o.height * o.scale
  let x0 = 0
  const texts = o.cells.map((c) => {
    const x = (x0 + c.width / 2) * o.scale
    x0 += c.width + o.gap
    return `<text x="${x}" y="${h + 13}" text-anchor="middle" font-family="sans-serif" font-size="12">${escapeXml(c.label)}</text>`
  })
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h + labelHeight}" viewBox="0 0 ${w} ${h + labelHeight}">` +
    `<rect width="100%" height="100%" fill="white"/>` +
    `<image width="${w}" height="${h}" style="image-rendering: pixelated" href="data:image/png;base64,${Buffer.from(png).toString("base64")}"/>` +
    texts.join("") + `</svg>\n`
}
