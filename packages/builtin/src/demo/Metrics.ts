/**
 * The demo's metrics: the shapes world's counterparts of the paper's, computed with the world's
 * analytic evaluator (`world/Detect.ts`, `world/Score.ts`) instead of CLIP. Every number is in [0, 1].
 *
 * - Image alignment: how close each generated concept is to its reference object. Each concept the
 *   prompt asks for is matched to its own detected object (the assignment with the highest total score)
 *   and scores the mean of its appearance similarity to the concept's novel appearance
 *   (`appearanceSimilarity`: both tones, each in its place) and its shape check (1 when the detected
 *   shape is the asked one); a concept without an object scores 0. An image scores the mean over its
 *   concepts.
 * - Text alignment: the share of the prompt's requests the image meets (`checkAgainstPrompt` with the
 *   concept mapping: object count, shapes, colours or appearances, background).
 * - Leakage: the image shows some concept more often than the prompt asks for it (`isNovel`), e.g. a
 *   concept prompted alone appears together with the other one, or an object takes on another concept's
 *   appearance. A group's leakage is the share of its images that leak.
 * - Attention on own object: the share of a modifier's or class word's map (summed to 1) that falls on
 *   the object it names, found by the detector (`ownObjectShares`); calibration should raise it.
 * - Attention overlap: the soft IoU of two class tokens' maps (each min-max normalised), the quantity
 *   DisenDiff's L_s&s lowers (`loss/LossCalibrator.ts`), here without smoothing, blur or suppression.
 *   It is 0 for disjoint maps and 1 only for equal maps of 0s and 1s (equal soft maps score less).
 */
import type { RgbImage } from "@disendiff/core/image/Image.js"
import type { PromptSpec } from "../world/Caption.js"
import { type DetectedObject, detect } from "../world/Detect.js"
import { type NovelAppearance, type NovelName, novelAppearance } from "../world/NovelAppearance.js"
import { appearanceSimilarity, checkAgainstPrompt, isNovel } from "../world/Score.js"
import { isShape, MODIFIER_PATTERN, type ShapeName } from "../world/Vocabulary.js"
import type { DemoPlan, GroupName, MethodName } from "./DemoPlan.js"

export interface ImageScore {
  readonly imageAlignment: number
  readonly textAlignment: number
  readonly leaked: boolean
  /** Every request of the prompt is met. */
  readonly allCorrect: boolean
}

interface Wanted {
  readonly appearance: NovelAppearance
  readonly shape: ShapeName
}

const matchScore = (d: DetectedObject, w: Wanted) => (appearanceSimilarity(d, w.appearance) + (d.shape === w.shape ? 1 : 0)) / 2

/** The highest total score of matching each wanted concept to a different object (or to none, scoring 0). */
const bestAssignment = (objects: ReadonlyArray<DetectedObject>, wanted: ReadonlyArray<Wanted>): number => {
  const scores = wanted.map((w) => objects.map((d) => matchScore(d, w)))
  const best = (k: number, used: ReadonlySet<number>): number => {
    if (k === wanted.length) return 0
    let top = best(k + 1, used)
    scores[k]!.forEach((s, j) => {
      if (!used.has(j)) top = Math.max(top, s + best(k + 1, new Set([...used, j])))
    })
    return top
  }
  return best(0, new Set())
}

/**
 * Scores one generated image against its prompt. `concepts` maps every modifier of the run to its
 * appearance (all of them, also those this prompt leaves out: that is what leakage looks for).
 */
export const scoreImage = (image: RgbImage, spec: PromptSpec, concepts: Readonly<Record<string, NovelName>>): ImageScore => {
  const detection = detect(image)
  const wanted = spec.objects.flatMap((o) => {
    const concept = o.modifier === null ? undefined : concepts[o.modifier]
    return concept === undefined ? [] : [{ appearance: novelAppearance(concept), shape: o.shape }]
  })
  const check = checkAgainstPrompt(detection, spec, concepts)
  const leaked = Object.entries(concepts).some(([modifier, concept]) => {
    const asked = spec.objects.filter((o) => o.modifier === modifier).length
    const seen = detection.objects.filter((d) => isNovel(d, novelAppearance(concept))).length
    return seen > asked
  })
  return {
    imageAlignment: wanted.length === 0 ? 0 : bestAssignment(detection.objects, wanted) / wanted.length,
    textAlignment: [check.count, check.shapes, check.colours, check.background].filter(Boolean).length / 4,
    leaked,
    allCorrect: check.allCorrect
  }
}

export interface Scores {
  readonly images: number
  readonly imageAlignment: number
  readonly textAlignment: number
  /** Share of the images that leak. */
  readonly leakage: number
  /** Share of the images that meet every request. */
  readonly allCorrect: number
}

export const summarise = (scores: ReadonlyArray<ImageScore>): Scores => {
  const mean = (f: (s: ImageScore) => number) => (scores.length === 0 ? 0 : scores.reduce((a, s) => a + f(s), 0) / scores.length)
  return {
    images: scores.length,
    imageAlignment: mean((s) => s.imageAlignment),
    textAlignment: mean((s) => s.textAlignment),
    leakage: mean((s) => +s.leaked),
    allCorrect: mean((s) => +s.allCorrect)
  }
}

const normalise = (m: ArrayLike<number>): Float64Array => {
  let lo = Infinity
  let hi = -Infinity
  for (let i = 0; i < m.length; i++) {
    lo = Math.min(lo, m[i]!)
    hi = Math.max(hi, m[i]!)
  }
  return Float64Array.from(m, (v) => (hi > lo ? (v - lo) / (hi - lo) : 0))
}

/** Soft IoU `sum(PQ) / (sum P + sum Q - sum PQ)` of the two maps min-max normalised to [0, 1]. */
export const attentionOverlap = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  const p = normalise(a)
  const q = normalise(b)
  let inter = 0
  let sum = 0
  for (let i = 0; i < p.length; i++) {
    inter += p[i]! * q[i]!
    sum += p[i]! + q[i]!
  }
  return sum - inter > 0 ? inter / (sum - inter) : 0
}

export interface MethodSummary {
  readonly combined: Scores
  readonly concept1: Scores
  readonly concept2: Scores
  /** Attention overlap of the two class words on the training image, with the method's trained weights. */
  readonly attentionOverlap: number
  /**
   * Attention as evidence: for each modifier and class word, the share of its map on its own object,
   * on the training image (n = 1) and averaged over the samples that show every object they name.
   */
  readonly attentionOnOwnObject: { readonly training: AttentionShares; readonly samples: AttentionShares }
}

/** Unweighted gradient norms of the loss terms at one step, and the weight the calibration terms get. */
export interface TermGradients {
  readonly step: number
  readonly base: number
  readonly bind: number | null
  readonly separation: number | null
  readonly weight: number
}

/** The document `metrics.json` holds. */
export interface DemoMetrics {
  readonly seed: number
  readonly quick: boolean
  readonly weights: { readonly file: string; readonly model: string; readonly identity: string; readonly builtin: boolean }
  readonly backend: string
  /** Wall-clock time of the whole demo. */
  readonly seconds: number
  readonly plan: DemoPlan
  /** The training image's caption. */
  readonly caption: string
  readonly summary: Readonly<Record<MethodName, MethodSummary>>
  /** The last training step's loss terms, and the time the training took. */
  readonly training: Readonly<Record<MethodName, {
    readonly loss: number
    readonly base: number
    readonly bind: number | null
    readonly separation: number | null
    /** Each loss term's gradient norm at the first step and every 50th (calibration measured, not guessed). */
    readonly termGradients: ReadonlyArray<TermGradients>
    readonly checkpoint: string
    readonly seconds: number
  }>>
  readonly prompts: ReadonlyArray<{
    readonly group: GroupName
    readonly prompt: string
    readonly seeds: ReadonlyArray<number>
    readonly methods: Readonly<Record<MethodName, Scores & { readonly perImage: ReadonlyArray<ImageScore & { readonly seed: number }> }>>
  }>
}

/**
 * Each detected object's coverage at a map's resolution (the mean over the image pixels of each map
 * cell), left to right: where an object is, as the attention maps see the image.
 */
export const objectMasks = (image: RgbImage, h: number, w: number): Array<Float64Array> =>
  detect(image).objects.map((o) => {
    const mask = new Float64Array(h * w)
    const fy = image.height / h
    const fx = image.width / w
    const { x, y, alpha } = o.pixels
    for (let p = 0; p < alpha.length; p++) mask[Math.floor(y[p]! / fy) * w + Math.floor(x[p]! / fx)]! += alpha[p]! / (fx * fy)
    return mask
  })

/** The share of a map's mass (made to sum to 1) that falls on a mask: 1 when all of it is on the object. */
export const attentionShare = (map: ArrayLike<number>, mask: ArrayLike<number>): number => {
  let total = 0
  let on = 0
  for (let i = 0; i < map.length; i++) {
    const v = Math.max(0, map[i]!)
    total += v
    on += v * Math.min(1, mask[i]!)
  }
  return total > 0 ? on / total : 0
}

/**
 * For the object words of a caption (each class word and the modifier before it), the share of the
 * token's map on its own object. `tokens` are the caption's tokens with their positions. Null when the
 * image does not show as many objects as the caption names (no object to compare with).
 */
export const ownObjectShares = (
  image: RgbImage,
  tokens: ReadonlyArray<{ readonly position: number; readonly token: string }>,
  mapAt: (position: number) => ArrayLike<number>,
  h: number,
  w: number
): Array<{ readonly token: string; readonly share: number }> | null => {
  const objectOf: Array<{ readonly position: number; readonly token: string; readonly object: number }> = []
  let k = 0
  tokens.forEach((t, i) => {
    if (isShape(t.token)) objectOf.push({ ...t, object: k++ })
    else if (MODIFIER_PATTERN.test(t.token) && isShape(tokens[i + 1]?.token ?? "")) objectOf.push({ ...t, object: k })
  })
  const masks = objectMasks(image, h, w)
  if (masks.length !== k) return null
  return objectOf.map((t) => ({ token: t.token, share: attentionShare(mapAt(t.position), masks[t.object]!) }))
}

/** Mean share per token over several images (`n`: how many images had the right object count for it). */
export type AttentionShares = Readonly<Record<string, { readonly share: number; readonly n: number }>>

export const meanShares = (perImage: ReadonlyArray<ReadonlyArray<{ readonly token: string; readonly share: number }> | null>): AttentionShares => {
  const sums = new Map<string, { share: number; n: number }>()
  for (const shares of perImage) {
    for (const s of shares ?? []) {
      const e = sums.get(s.token) ?? { share: 0, n: 0 }
      sums.set(s.token, { share: e.share + s.share, n: e.n + 1 })
    }
  }
  return Object.fromEntries([...sums].map(([t, e]) => [t, { share: e.share / e.n, n: e.n }]))
}
