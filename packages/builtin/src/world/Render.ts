/**
 * Draws scenes as 32x32 RGB images (float32 HWC in [0, 1]). Anti-aliasing by 4x4 supersampling of every
 * pixel an object's square can touch: each pixel mixes the background with the colours of the subsamples
 * that fall inside the shape, so edges and the internal boundaries of novel appearances get the same
 * smooth falloff. This is the prototype's filter (render 4x larger, box-downsample: ~3 ms per scene)
 * computed only where objects are: 0.07-0.12 ms per scene measured on the shared 2-core dev machine
 * (Node 22, 20,000 scenes).
 */
import type { RgbImage } from "@disendiff/core/image/Image.js"
import { novelAppearance } from "./NovelAppearance.js"
import type { Appearance, Scene, SceneObject } from "./Scene.js"
import { WORLD_SIZE } from "./Scene.js"
import { inside } from "./Shape.js"
import { secondToneAt } from "./Variation.js"
import { BACKGROUND_RGB, COLOUR_RGB, type Rgb, type ShapeName } from "./Vocabulary.js"

export const SUPERSAMPLE = 4
const OFFSETS = Array.from({ length: SUPERSAMPLE }, (_, k) => (k + 0.5) / SUPERSAMPLE)
const SAMPLES = SUPERSAMPLE * SUPERSAMPLE

/** The colour of an appearance at local coordinates (u, v) (`Shape.ts`). */
export const appearanceColour = (appearance: Appearance): ((u: number, v: number) => Rgb) => {
  if (appearance.kind === "novel") return novelAppearance(appearance.concept).colourAt
  if (appearance.kind === "painted") {
    const { layout, tones } = appearance.paint
    return (u, v) => (secondToneAt(layout, u, v) ? tones[1] : tones[0])
  }
  const c = COLOUR_RGB[appearance.colour]
  return () => c
}

/** Pixel columns (or rows) an object spanning [centre - r, centre + r] can touch. */
const span = (centre: number, r: number, size: number): readonly [number, number] => [
  Math.max(0, Math.floor(centre - r)),
  Math.min(size - 1, Math.ceil(centre + r) - 1)
]

/** Fraction of pixel (px, py) inside the shape with this centre and half-size. */
export const pixelCoverage = (shape: ShapeName, cx: number, cy: number, r: number, px: number, py: number): number => {
  let k = 0
  for (const oy of OFFSETS) {
    const v = (py + oy - cy) / r
    for (const ox of OFFSETS) if (inside(shape, (px + ox - cx) / r, v)) k++
  }
  return k / SAMPLES
}

/** Paints one object over what `data` holds. */
const paint = (data: Float32Array, size: number, o: SceneObject): void => {
  const colourAt = appearanceColour(o.appearance)
  const { x: cx, y: cy } = o.centre
  const r = o.halfSize
  const [x0, x1] = span(cx, r, size)
  const [y0, y1] = span(cy, r, size)
  for (let py = y0; py <= y1; py++) {
    for (let px = x0; px <= x1; px++) {
      let k = 0
      let sr = 0
      let sg = 0
      let sb = 0
      for (const oy of OFFSETS) {
        const v = (py + oy - cy) / r
        for (const ox of OFFSETS) {
          const u = (px + ox - cx) / r
          if (!inside(o.shape, u, v)) continue
          const c = colourAt(u, v)
          sr += c[0]
          sg += c[1]
          sb += c[2]
          k++
        }
      }
      if (k === 0) continue
      const keep = 1 - k / SAMPLES
      const i = (py * size + px) * 3
      data[i] = data[i]! * keep + sr / SAMPLES
      data[i + 1] = data[i + 1]! * keep + sg / SAMPLES
      data[i + 2] = data[i + 2]! * keep + sb / SAMPLES
    }
  }
}

export const renderScene = (scene: Scene): RgbImage => {
  const size = WORLD_SIZE
  const data = new Float32Array(size * size * 3)
  const bg = BACKGROUND_RGB[scene.background]
  for (let i = 0; i < size * size; i++) {
    data[3 * i] = bg[0]
    data[3 * i + 1] = bg[1]
    data[3 * i + 2] = bg[2]
  }
  for (const o of scene.objects) paint(data, size, o)
  return { width: size, height: size, data }
}
