/**
 * The world-aware evaluator's eyes: finds the background and the objects of a world image (rendered or
 * generated) with plain image analysis, no model.
 *
 * 1. Background: the per-channel median of the 1-px border (objects stay 1 px inside it; a median
 *    ignores the few a generated image lets touch it). The spread of the border around that median
 *    (1.4826 x MAD, a Gaussian sigma estimate) measures the image's per-pixel static.
 * 2. When that static exceeds `NOISY_SIGMA`, a 3x3 per-channel median filter removes it first; clean
 *    renders skip it, because it rounds off the corners of small triangles and diamonds.
 * 3. Foreground: RGB distance from the background above `FOREGROUND_DISTANCE` (0.25, about half the
 *    smallest object-to-background distance in the palette, 0.45), 8-connected components of at least
 *    `MIN_PIXELS` pixels. A lower threshold (0.15 was tried) let static bridge the 2-px gap between two
 *    objects at sigma 0.1; the faint anti-aliased edge pixels it leaves out come back in step 4.
 * 4. Each component plus its 1-px rim gets a soft coverage per pixel: 1 inside, and at the edge the
 *    pixel's distance from the background relative to that of the interior pixels next to it (so each
 *    tone of a two-tone object is its own reference), so anti-aliased edges count by how much they cover.
 * 5. Shape: each of the four templates is fitted by moments (same area and centroid, `Shape.ts`) and
 *    scored by soft IoU with the coverage; the best wins.
 * 6. Colour: majority vote of the nearest named colour over interior pixels (coverage >= 0.75), plus the
 *    mean and the two dominant colours (2-means) for novel appearances.
 */
import type { RgbImage } from "@disendiff/core/image/Image.js"
import { pixelCoverage } from "./Render.js"
import { fitByMoments } from "./Shape.js"
import { type BackgroundName, type ColourName, COLOURS, nearestBackground, nearestColour, type Rgb, SHAPES, type ShapeName } from "./Vocabulary.js"

/** Border static (sigma per channel) above which the median filter runs. */
export const NOISY_SIGMA = 0.02
export const FOREGROUND_DISTANCE = 0.25
/** Components smaller than this are noise: the smallest world object (a triangle of half-size 3.75) covers 28 px. */
export const MIN_PIXELS = 12
const INTERIOR = 0.75

export interface BBox {
  /** Inclusive pixel indices. */
  readonly x0: number
  readonly y0: number
  readonly x1: number
  readonly y1: number
}

/**
 * An object's pixels (its component and 1-px rim) with their soft coverage and their colours as the
 * image has them (not denoised: statistics over regions average the static out, while the median filter
 * would smear thin parts such as a 2-px ring).
 */
export interface ObjectPixels {
  readonly x: Int32Array
  readonly y: Int32Array
  /** 3 values per pixel. */
  readonly rgb: Float32Array
  readonly alpha: Float32Array
}

export interface DetectedObject {
  readonly bbox: BBox
  /** Coverage-weighted, in pixel coordinates (pixel (i, j) is centred at (j + 0.5, i + 0.5)). */
  readonly centroid: { readonly x: number; readonly y: number }
  /** Coverage-weighted area in pixels. */
  readonly area: number
  readonly shape: ShapeName
  /** Soft IoU of each shape's fitted template with the object's coverage. */
  readonly shapeScores: Readonly<Record<ShapeName, number>>
  /** The winning template: centre and half-size in pixels. */
  readonly fit: { readonly x: number; readonly y: number; readonly halfSize: number }
  /** Majority of the nearest named colours of the interior pixels. */
  readonly colour: ColourName
  /** Fraction of the interior pixels that voted for `colour`. */
  readonly colourShare: number
  readonly meanRgb: Rgb
  /** The two dominant interior colours (2-means), larger share first. */
  readonly dominant: readonly [{ readonly rgb: Rgb; readonly share: number }, { readonly rgb: Rgb; readonly share: number }]
  readonly pixels: ObjectPixels
}

export interface Detection {
  readonly background: { readonly colour: BackgroundName; readonly rgb: Rgb }
  /** Estimated per-pixel static (sigma per channel) at the border. */
  readonly noise: number
  /** Left to right by centroid. */
  readonly objects: ReadonlyArray<DetectedObject>
}

const median = (values: Array<number>): number => {
  values.sort((a, b) => a - b)
  const m = values.length >> 1
  return values.length % 2 === 1 ? values[m]! : (values[m - 1]! + values[m]!) / 2
}

const borderIndices = (w: number, h: number): Array<number> => {
  const out: Array<number> = []
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if (x === 0 || y === 0 || x === w - 1 || y === h - 1) out.push(y * w + x)
  return out
}

const medianFilter3 = (img: RgbImage): Float32Array => {
  const { width: w, height: h, data } = img
  const out = new Float32Array(data.length)
  const win = new Float32Array(9)
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++) {
        let k = 0
        for (let dy = -1; dy <= 1; dy++) {
          const yy = Math.min(h - 1, Math.max(0, y + dy))
          for (let dx = -1; dx <= 1; dx++) {
            // insertion sort as the window fills: nine values, no allocation
            const v = data[(yy * w + Math.min(w - 1, Math.max(0, x + dx))) * 3 + c]!
            let j = k++
            while (j > 0 && win[j - 1]! > v) {
              win[j] = win[j - 1]!
              j--
            }
            win[j] = v
          }
        }
        out[(y * w + x) * 3 + c] = win[4]!
      }
    }
  }
  return out
}

/** Two dominant colours by 2-means, seeded by the pixel farthest from the mean and the one farthest from it. */
const twoMeans = (rgb: Float32Array, idx: ReadonlyArray<number>, mean: Rgb): DetectedObject["dominant"] => {
  const dist2 = (i: number, c: Rgb) => (rgb[3 * i]! - c[0]) ** 2 + (rgb[3 * i + 1]! - c[1]) ** 2 + (rgb[3 * i + 2]! - c[2]) ** 2
  const at = (i: number): Rgb => [rgb[3 * i]!, rgb[3 * i + 1]!, rgb[3 * i + 2]!]
  const farthest = (c: Rgb) => idx.reduce((best, i) => (dist2(i, c) > dist2(best, c) ? i : best), idx[0]!)
  let a = at(farthest(mean))
  let b = at(farthest(a))
  let na = 0
  for (let iter = 0; iter < 8; iter++) {
    const sa = [0, 0, 0]
    const sb = [0, 0, 0]
    na = 0
    for (const i of idx) {
      const s = dist2(i, a) <= dist2(i, b) ? (na++, sa) : sb
      for (let c = 0; c < 3; c++) s[c]! += rgb[3 * i + c]!
    }
    const nb = idx.length - na
    if (na > 0) a = [sa[0]! / na, sa[1]! / na, sa[2]! / na]
    if (nb > 0) b = [sb[0]! / nb, sb[1]! / nb, sb[2]! / nb]
  }
  const first = { rgb: a, share: na / idx.length }
  const second = { rgb: b, share: 1 - na / idx.length }
  return first.share >= second.share ? [first, second] : [second, first]
}

/** Calls `f` with each of the (up to 8) neighbours of pixel `p` inside the image. */
const forNeighbours = (p: number, w: number, h: number, f: (q: number) => unknown): void => {
  const px = p % w
  const py = (p - px) / w
  for (let y = Math.max(0, py - 1); y <= Math.min(h - 1, py + 1); y++) {
    for (let x = Math.max(0, px - 1); x <= Math.min(w - 1, px + 1); x++) if (x !== px || y !== py) f(y * w + x)
  }
}

/** Soft IoU of a shape template with a coverage map, over the union of their supports. */
const templateIoU = (
  shape: ShapeName,
  fit: { x: number; y: number; halfSize: number },
  alpha: Float32Array,
  w: number,
  h: number,
  box: BBox
): number => {
  const r = fit.halfSize
  const x0 = Math.max(0, Math.min(box.x0, Math.floor(fit.x - r)))
  const x1 = Math.min(w - 1, Math.max(box.x1, Math.ceil(fit.x + r)))
  const y0 = Math.max(0, Math.min(box.y0, Math.floor(fit.y - r)))
  const y1 = Math.min(h - 1, Math.max(box.y1, Math.ceil(fit.y + r)))
  let inter = 0
  let union = 0
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const a = alpha[y * w + x]!
      const t = pixelCoverage(shape, fit.x, fit.y, r, x, y)
      inter += Math.min(a, t)
      union += Math.max(a, t)
    }
  }
  return union > 0 ? inter / union : 0
}

export const detect = (image: RgbImage): Detection => {
  const { width: w, height: h } = image
  const border = borderIndices(w, h)
  const channelMedian = (data: Float32Array, c: number) => median(border.map((i) => data[3 * i + c]!))
  const raw = image.data
  const bg0: Rgb = [channelMedian(raw, 0), channelMedian(raw, 1), channelMedian(raw, 2)]
  const noise = 1.4826 * median(border.flatMap((i) => [0, 1, 2].map((c) => Math.abs(raw[3 * i + c]! - bg0[c]!))))
  const data = noise > NOISY_SIGMA ? medianFilter3(image) : raw
  const bg: Rgb = data === raw ? bg0 : [channelMedian(data, 0), channelMedian(data, 1), channelMedian(data, 2)]

  const n = w * h
  const dist = new Float32Array(n)
  for (let i = 0; i < n; i++) dist[i] = Math.hypot(data[3 * i]! - bg[0], data[3 * i + 1]! - bg[1], data[3 * i + 2]! - bg[2])
  // the distance that plain background reaches through leftover static: coverage counts from there
  const floor = median(border.map((i) => dist[i]!))

  const label = new Int32Array(n).fill(-1)
  const objects: Array<DetectedObject> = []
  const alpha = new Float32Array(n)
  for (let seed = 0; seed < n; seed++) {
    if (label[seed] !== -1 || dist[seed]! <= FOREGROUND_DISTANCE) continue
    // flood fill (8-connected)
    const comp = [seed]
    label[seed] = seed
    for (let k = 0; k < comp.length; k++) {
      forNeighbours(comp[k]!, w, h, (q) => {
        if (label[q] === -1 && dist[q]! > FOREGROUND_DISTANCE) {
          label[q] = seed
          comp.push(q)
        }
      })
    }
    if (comp.length < MIN_PIXELS) continue
    objects.push(measure(comp, seed))
  }
  objects.sort((a, b) => a.centroid.x - b.centroid.x)
  return { background: { colour: nearestBackground(...bg), rgb: bg }, noise, objects }

  function measure(comp: Array<number>, id: number): DetectedObject {
    const inCore = (x: number, y: number) => x >= 0 && y >= 0 && x < w && y < h && label[y * w + x] === id
    // interior: core pixels whose four neighbours are core too; they are fully covered
    const interiorPixel = (p: number) => {
      const x = p % w
      const y = (p - x) / w
      return inCore(x - 1, y) && inCore(x + 1, y) && inCore(x, y - 1) && inCore(x, y + 1)
    }
    const isInterior = new Set(comp.filter(interiorPixel))
    const full = median(comp.map((p) => dist[p]!))
    // an edge pixel's coverage is its distance from the background relative to the object's colour next
    // to it (the mean distance of nearby interior pixels), so two-tone objects get the right coverage
    const cover = (p: number) => {
      if (isInterior.has(p)) return 1
      const px = p % w
      const py = (p - px) / w
      let sum = 0
      let k = 0
      for (let y = Math.max(0, py - 2); y <= Math.min(h - 1, py + 2); y++) {
        for (let x = Math.max(0, px - 2); x <= Math.min(w - 1, px + 2); x++) {
          if (isInterior.has(y * w + x)) {
            sum += dist[y * w + x]!
            k++
          }
        }
      }
      const local = k > 0 ? sum / k : full
      return Math.min(1, Math.max(0, (dist[p]! - floor) / Math.max(1e-6, local - floor)))
    }
    // the component and its rim of unclaimed pixels (anti-aliased edges below the threshold)
    const members = new Set(comp)
    for (const p of comp) forNeighbours(p, w, h, (q) => label[q] === -1 && members.add(q))
    const idx = [...members].sort((a, b) => a - b)
    alpha.fill(0)
    let area = 0
    let sx = 0
    let sy = 0
    let x0 = w
    let y0 = h
    let x1 = -1
    let y1 = -1
    for (const p of idx) {
      const a = cover(p)
      alpha[p] = a
      const x = p % w
      const y = (p - x) / w
      area += a
      sx += a * (x + 0.5)
      sy += a * (y + 0.5)
      if (label[p] === id) {
        x0 = Math.min(x0, x)
        x1 = Math.max(x1, x)
        y0 = Math.min(y0, y)
        y1 = Math.max(y1, y)
      }
    }
    const centroid = { x: sx / area, y: sy / area }
    const bbox = { x0, y0, x1, y1 }

    const fits = SHAPES.map((s) => fitByMoments(s, area, centroid.x, centroid.y))
    const ious = SHAPES.map((s, k) => templateIoU(s, fits[k]!, alpha, w, h, bbox))
    const best = ious.indexOf(Math.max(...ious))

    const interior = idx.filter((p) => alpha[p]! >= INTERIOR)
    const voters = interior.length > 0 ? interior : comp
    const votes = new Map<ColourName, number>()
    const mean = [0, 0, 0]
    for (const p of voters) {
      const c = nearestColour(data[3 * p]!, data[3 * p + 1]!, data[3 * p + 2]!)
      votes.set(c, (votes.get(c) ?? 0) + 1)
      for (let c = 0; c < 3; c++) mean[c]! += data[3 * p + c]! / voters.length
    }
    const colour = COLOURS.reduce((a, c) => ((votes.get(c) ?? 0) > (votes.get(a) ?? 0) ? c : a), COLOURS[0])
    const meanRgb: Rgb = [mean[0]!, mean[1]!, mean[2]!]

    const pixels: ObjectPixels = {
      x: Int32Array.from(idx, (p) => p % w),
      y: Int32Array.from(idx, (p) => Math.floor(p / w)),
      rgb: Float32Array.from(idx.flatMap((p) => [raw[3 * p]!, raw[3 * p + 1]!, raw[3 * p + 2]!])),
      alpha: Float32Array.from(idx, (p) => alpha[p]!)
    }
    return {
      bbox,
      centroid,
      area,
      shape: SHAPES[best]!,
      shapeScores: Object.fromEntries(SHAPES.map((s, k) => [s, ious[k]!])) as Record<ShapeName, number>,
      fit: fits[best]!,
      colour,
      colourShare: (votes.get(colour) ?? 0) / voters.length,
      meanRgb,
      dominant: twoMeans(data, voters, meanRgb),
      pixels
    }
  }
}
