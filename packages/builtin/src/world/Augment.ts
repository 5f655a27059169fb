/**
 * Augmentation of a world image that stays a world image. One training image is one layout; Custom
 * Diffusion fights that by shrinking the image onto grey with a caption prefix and a loss mask. A world
 * image can do better, because its backgrounds are flat: the evaluator's detector splits it into the
 * background colour and an object layer (premultiplied colour and soft coverage), which can be moved,
 * resized and composited again on any background, exactly in the interior and to the detector's
 * coverage estimate at anti-aliased edges. The caption changes with the image:
 *
 * - background: any of the world's backgrounds; the caption's background word follows (when it has one);
 * - resize: every object smaller ("small", p = 1/3) or, for one object, larger ("large", p = 1/3), the
 *   size word put before each object, as world v2 captions say it; scales from v2's size ranges;
 * - translate: a whole-pixel shift that keeps every object 1 px inside the border;
 * - flip: mirror, with the caption's objects named in the new left-to-right order.
 *
 * The result covers the whole image, so no loss mask is needed.
 */
import type { TargetAugmentOptions } from "@disendiff/core"
import { Result } from "effect"
import type { RgbImage } from "@disendiff/core/image/Image.js"
import type { RandomStream } from "@disendiff/core/random/Rng.js"
import { formatCaption, parseCaption, type PromptSpec } from "./Caption.js"
import { detect } from "./Detect.js"
import { BACKGROUND_RGB, BACKGROUNDS, type Rgb } from "./Vocabulary.js"

/** The options are the method's (`Backbone.augmentTarget`); this is what they do in this world. */
export type WorldAugmentOptions = TargetAugmentOptions

/** A world image as background + object layer. */
export interface Layers {
  readonly width: number
  readonly height: number
  readonly background: Rgb
  /** Premultiplied object colour, 3 per pixel. */
  readonly colour: Float32Array
  /** Object coverage per pixel in [0, 1]. */
  readonly alpha: Float32Array
  /** Inclusive bounding box of all objects. */
  readonly box: { readonly x0: number; readonly y0: number; readonly x1: number; readonly y1: number }
}

export const decompose = (image: RgbImage): Layers => {
  const { width: w, height: h, data } = image
  const d = detect(image)
  const bg = d.background.rgb
  const alpha = new Float32Array(w * h)
  for (const o of d.objects) {
    const { x, y, alpha: a } = o.pixels
    for (let p = 0; p < a.length; p++) alpha[y[p]! * w + x[p]!] = Math.max(alpha[y[p]! * w + x[p]!]!, a[p]!)
  }
  const colour = new Float32Array(w * h * 3)
  let x0 = w
  let y0 = h
  let x1 = -1
  let y1 = -1
  for (let p = 0; p < w * h; p++) {
    const a = alpha[p]!
    if (a <= 0) continue
    for (let c = 0; c < 3; c++) colour[3 * p + c] = data[3 * p + c]! - (1 - a) * bg[c]!
    const px = p % w
    const py = (p - px) / w
    x0 = Math.min(x0, px)
    x1 = Math.max(x1, px)
    y0 = Math.min(y0, py)
    y1 = Math.max(y1, py)
  }
  return { width: w, height: h, background: bg, colour, alpha, box: { x0, y0, x1, y1 } }
}

/** The layer value of the pixel holding a real position, zero outside. */
const at = (values: Float32Array, stride: number, channel: number, w: number, h: number, x: number, y: number): number => {
  const ix = Math.floor(x)
  const iy = Math.floor(y)
  return ix < 0 || iy < 0 || ix >= w || iy >= h ? 0 : values[(iy * w + ix) * stride + channel]!
}

const SUB = 4

/**
 * The layers scaled by `s` about the box centre, shifted by (dx, dy) pixels and mirrored if asked, then
 * composited on `bg`. Each output pixel averages the source pixels under its 4x4 subsamples (a box
 * filter: exact for whole-pixel shifts and flips, area-averaging when shrinking).
 */
export const composite = (l: Layers, o: { readonly scale: number; readonly dx: number; readonly dy: number; readonly flip: boolean; readonly background: Rgb }): RgbImage => {
  const { width: w, height: h } = l
  const cx = (l.box.x0 + l.box.x1 + 1) / 2
  const cy = (l.box.y0 + l.box.y1 + 1) / 2
  const out = new Float32Array(w * h * 3)
  for (let py = 0; py < h; py++) {
    for (let px = 0; px < w; px++) {
      let a = 0
      const c = [0, 0, 0]
      for (let sy = 0; sy < SUB; sy++) {
        for (let sx = 0; sx < SUB; sx++) {
          const ox = o.flip ? w - (px + (sx + 0.5) / SUB) : px + (sx + 0.5) / SUB
          const x = cx + (ox - o.dx - cx) / o.scale
          const y = cy + (py + (sy + 0.5) / SUB - o.dy - cy) / o.scale
          a += at(l.alpha, 1, 0, w, h, x, y)
          for (let k = 0; k < 3; k++) c[k]! += at(l.colour, 3, k, w, h, x, y)
        }
      }
      a /= SUB * SUB
      const i = (py * w + px) * 3
      for (let k = 0; k < 3; k++) out[i + k] = Math.min(1, Math.max(0, c[k]! / (SUB * SUB) + (1 - a) * o.background[k]!))
    }
  }
  return { width: w, height: h, data: out }
}

/** Scales that take a world object to v2's small and large size ranges (`Scene.ts`: 7-10 px -> 4.5-6 or 11-13; 5-7 -> 3.75-4.75). */
const SMALL_SCALE: readonly [number, number] = [0.6, 0.72]
const LARGE_SCALE: readonly [number, number] = [1.2, 1.35]
const BORDER = 1

/** Draws one augmented version of a world image and its caption. `layers` is `decompose(image)` (cached by the caller). */
export const augmentWorldImage = (
  image: RgbImage,
  layers: Layers,
  caption: string,
  rnd: RandomStream,
  o: WorldAugmentOptions
): { readonly image: RgbImage; readonly caption: string } => {
  const parsed = parseCaption(caption)
  // captions outside the world's grammar (caught earlier by the backbone) and empty images stay as they are
  if (Result.isFailure(parsed) || layers.box.x1 < 0) return { image, caption }
  let spec: PromptSpec = parsed.success
  const n = spec.objects.length
  let background: Rgb = layers.background
  if (o.background) {
    const name = BACKGROUNDS[rnd.int(0, BACKGROUNDS.length - 1)]!
    background = BACKGROUND_RGB[name]
    if (spec.background !== null) spec = { ...spec, background: name }
  }
  let scale = 1
  if (o.resize && spec.objects.every((x) => (x.size ?? null) === null)) {
    const u = rnd.uniform()
    const v = rnd.uniform()
    const [lo, hi] = u < 1 / 3 ? SMALL_SCALE : u < 2 / 3 && n === 1 ? LARGE_SCALE : [1, 1]
    scale = lo + (hi - lo) * v
    const size = u < 1 / 3 ? "small" as const : u < 2 / 3 && n === 1 ? "large" as const : null
    if (size !== null) spec = { ...spec, objects: spec.objects.map((x) => ({ ...x, size })) }
  }
  // the scaled box, then the whole-pixel shifts that keep it 1 px inside the border
  const { x0, y0, x1, y1 } = layers.box
  const cx = (x0 + x1 + 1) / 2
  const cy = (y0 + y1 + 1) / 2
  const halfW = ((x1 + 1 - x0) * scale) / 2
  const halfH = ((y1 + 1 - y0) * scale) / 2
  const range = (c: number, half: number, size: number): readonly [number, number] => [
    Math.ceil(BORDER + half - c),
    Math.floor(size - BORDER - half - c)
  ]
  const [dxLo, dxHi] = range(cx, halfW, layers.width)
  const [dyLo, dyHi] = range(cy, halfH, layers.height)
  // an enlargement that cannot fit is not made
  if (dxLo > dxHi || dyLo > dyHi) return augmentWorldImage(image, layers, caption, rnd, { ...o, resize: false })
  const dx = o.translate ? rnd.int(dxLo, dxHi) : Math.min(dxHi, Math.max(dxLo, 0))
  const dy = o.translate ? rnd.int(dyLo, dyHi) : Math.min(dyHi, Math.max(dyLo, 0))
  const flip = o.flip && rnd.uniform() < 0.5
  if (flip) spec = { ...spec, objects: [...spec.objects].reverse() }
  return { image: composite(layers, { scale, dx, dy, flip, background }), caption: formatCaption(spec) }
}
