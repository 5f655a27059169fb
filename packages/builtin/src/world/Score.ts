/**
 * Scores a detection against what a prompt asked for (the toy-world counterpart of the paper's CLIP
 * metrics), and how much a detected object looks like a novel appearance.
 */
import type { PromptSpec } from "./Caption.js"
import type { Detection, DetectedObject } from "./Detect.js"
import { type NovelAppearance, type NovelName, novelAppearance } from "./NovelAppearance.js"
import { SUPERSAMPLE } from "./Render.js"
import { fitByMoments } from "./Shape.js"
import { rgbDistance } from "./Vocabulary.js"

export interface PromptCheck {
  /** As many objects as asked for. */
  readonly count: boolean
  /** Every object has the asked shape, left to right. */
  readonly shapes: boolean
  /** Every object has the asked colour, left to right (a modified object: its novel appearance). */
  readonly colours: boolean
  /** The background is the asked one, or none was asked for. */
  readonly background: boolean
  readonly allCorrect: boolean
}

/**
 * Which detected objects stand for the asked ones: with the right count, all of them; with more, the
 * largest ones (spurious blobs are small); with fewer, none, and shapes and colours are wrong. The
 * chosen objects are compared left to right, so shapes and colours earn credit even when a stray blob
 * makes the count wrong.
 */
const matched = (detection: Detection, k: number): ReadonlyArray<DetectedObject> | null => {
  if (detection.objects.length < k) return null
  if (detection.objects.length === k) return detection.objects
  const largest = [...detection.objects].sort((a, b) => b.area - a.area).slice(0, k)
  return largest.sort((a, b) => a.centroid.x - b.centroid.x)
}

/**
 * Per-criterion check of a detection against a prompt spec. `concepts` says which novel appearance each
 * modifier stands for; a modified object's colour counts as right when `isNovel` recognises that
 * appearance, and is not judged when its modifier is not in `concepts`. An object with neither colour
 * nor modifier may have any colour.
 */
export const checkAgainstPrompt = (
  detection: Detection,
  spec: PromptSpec,
  concepts: Readonly<Record<string, NovelName>> = {}
): PromptCheck => {
  const count = detection.objects.length === spec.objects.length
  const objects = matched(detection, spec.objects.length)
  const shapes = objects !== null && spec.objects.every((o, i) => objects[i]!.shape === o.shape)
  const colours = objects !== null && spec.objects.every((o, i) => {
    if (o.colour !== null) return objects[i]!.colour === o.colour
    const concept = o.modifier === null ? undefined : concepts[o.modifier]
    return concept === undefined || isNovel(objects[i]!, novelAppearance(concept))
  })
  const background = spec.background === null || detection.background.colour === spec.background
  return { count, shapes, colours, background, allCorrect: count && shapes && colours && background }
}

/**
 * Colour error (RGB distance) up to which a region's colour fully matches a tone, and beyond which it
 * does not match at all. Every named colour is at least 0.44 from every novel tone, so it scores 0.
 */
const MATCH = [0.15, 0.3] as const
const match = (e: number) => Math.min(1, Math.max(0, (MATCH[1] - e) / (MATCH[1] - MATCH[0])))

/** A pixel belongs to a tone's region of the reference when at least this share of its subsamples do. */
const PURE = 0.9

const channelMedian = (values: Array<number>): number => {
  values.sort((a, b) => a - b)
  const m = values.length >> 1
  return values.length % 2 === 1 ? values[m]! : (values[m - 1]! + values[m]!) / 2
}

/**
 * How much a detected object looks like a novel appearance, in [0, 1]. A reference render of the
 * appearance on its own shape is fitted to the object by moments (same area and centroid); the object's
 * interior pixels are split into the reference's two tone regions (pixels on the reference's internal
 * boundary are left out), and each region scores how close its median colour is to its tone. The
 * similarity is the mean of the two region scores: both tones must be there, each in its place (a ring
 * needs its azure inside its magenta). Named-colour objects score 0, an object in one of the two tones
 * scores 0.5. Region medians make the score robust to per-pixel static.
 */
export const appearanceSimilarity = (object: DetectedObject, appearance: NovelAppearance): number => {
  const fit = fitByMoments(appearance.shape, object.area, object.centroid.x, object.centroid.y)
  const tones = appearance.palette.map((t) => t.rgb)
  const regions: Array<[Array<number>, Array<number>, Array<number>]> = [[[], [], []], [[], [], []]]
  const { x, y, rgb, alpha } = object.pixels
  for (let p = 0; p < alpha.length; p++) {
    if (alpha[p]! < 0.75) continue
    let first = 0
    for (let sy = 0; sy < SUPERSAMPLE; sy++) {
      const v = (y[p]! + (sy + 0.5) / SUPERSAMPLE - fit.y) / fit.halfSize
      for (let sx = 0; sx < SUPERSAMPLE; sx++) {
        if (appearance.colourAt((x[p]! + (sx + 0.5) / SUPERSAMPLE - fit.x) / fit.halfSize, v) === tones[0]) first++
      }
    }
    const share = first / SUPERSAMPLE ** 2
    const region = share >= PURE ? regions[0]! : share <= 1 - PURE ? regions[1]! : undefined
    if (region === undefined) continue
    for (let c = 0; c < 3; c++) region[c]!.push(rgb[3 * p + c]!)
  }
  const score = (k: 0 | 1) => {
    const [r, g, b] = regions[k]!
    if (r.length === 0) return 0
    return match(rgbDistance([channelMedian(r), channelMedian(g), channelMedian(b!)], tones[k]!))
  }
  return (score(0) + score(1)) / 2
}

/**
 * `appearanceSimilarity` at or above which an object counts as the novel appearance. Calibrated on
 * rendered scenes (see `Calibration.ts`): true appearances score near 1, an object in one of the two
 * tones 0.5, named-colour objects 0.
 */
export const NOVEL_THRESHOLD = 0.75

export const isNovel = (object: DetectedObject, appearance: NovelAppearance, threshold: number = NOVEL_THRESHOLD): boolean =>
  appearanceSimilarity(object, appearance) >= threshold
