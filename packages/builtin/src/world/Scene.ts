/**
 * Scenes of the shapes world as data: a background and one to three objects, each a shape with a named
 * flat colour or a novel appearance, a centre and a half-size in pixels of the 32x32 image.
 *
 * Layout rules (the model learns them from the captions, the evaluator relies on them): one object is
 * large (half-size 7-10 px) near the middle; with two or three, objects are smaller and sit side by side
 * in the order the caption names them, left to right, at least 2 px apart and 1 px inside the border,
 * so they never overlap. Every random choice comes from the counter-based generator keyed by
 * (seed, scene index), so scene k never depends on the scenes before it.
 */
import { Result } from "effect"
import { type RandomStream, stream } from "@disendiff/core/random/Rng.js"
import { CaptionError, formatCaption, MAX_OBJECTS, type PromptSpec } from "./Caption.js"
import type { NovelName } from "./NovelAppearance.js"
import { nameableColour, type Paint, P_SAY_COLOUR, samplePaint } from "./Variation.js"
import { BACKGROUNDS, type BackgroundName, type ColourName, COLOURS, SHAPES, type ShapeName, type SizeName, type WorldName } from "./Vocabulary.js"

export const WORLD_SIZE = 32

export type Appearance =
  | { readonly kind: "named"; readonly colour: ColourName }
  | { readonly kind: "novel"; readonly concept: NovelName; readonly modifier: string }
  /** World v2: a layout and tones (`Variation.ts`), and the colour word the caption says, if any. */
  | { readonly kind: "painted"; readonly paint: Paint; readonly colour: ColourName | null }

export interface SceneObject {
  readonly shape: ShapeName
  readonly appearance: Appearance
  /** Centre in pixels; pixel (i, j) covers [j, j + 1] x [i, i + 1]. */
  readonly centre: { readonly x: number; readonly y: number }
  readonly halfSize: number
  /** World v2: the size word the caption says ("small", "large"); absent or null when it says none. */
  readonly size?: SizeName | null | undefined
}

export interface Scene {
  readonly background: BackgroundName
  /** Whether the caption names the background (p = 0.8 in sampled scenes). */
  readonly namesBackground: boolean
  /** Left to right, in caption order. */
  readonly objects: ReadonlyArray<SceneObject>
}

/** Probability that a sampled scene has one object (else two), and that its caption names the background. */
export const P_ONE_OBJECT = 0.5
export const P_NAMED_BACKGROUND = 0.8

const BORDER = 1
const GAP = 2
/** Half-size ranges by object count: three objects must fit in 30 px with two 2-px gaps. */
const HALF_SIZE: ReadonlyArray<readonly [number, number]> = [[7, 10], [5, 7], [3.75, 4.25]]
const ONE_JITTER = 3
const ROW_Y: readonly [number, number] = [9, 23]

const between = (rnd: RandomStream, lo: number, hi: number) => lo + (hi - lo) * rnd.uniform()

/** Centres and half-sizes for `count` objects (1-3), left to right. */
const layout = (rnd: RandomStream, count: number): Array<{ x: number; y: number; halfSize: number }> => {
  const [lo, hi] = HALF_SIZE[count - 1]!
  return place(rnd, Array.from({ length: count }, () => between(rnd, lo, hi)))
}

/** Centres for objects of the given half-sizes, left to right. */
const place = (rnd: RandomStream, sizes: ReadonlyArray<number>): Array<{ x: number; y: number; halfSize: number }> => {
  const count = sizes.length
  if (count === 1) {
    const c = WORLD_SIZE / 2
    // large objects move less, so they stay 1 px inside the border
    const j = Math.min(ONE_JITTER, c - BORDER - sizes[0]!)
    return [{ x: between(rnd, c - j, c + j), y: between(rnd, c - j, c + j), halfSize: sizes[0]! }]
  }
  // Slack left after the objects, the minimum gaps and the border; up to half of it goes to each outer
  // margin and what remains widens the gaps equally, so the first object stays in the left part.
  const slack = WORLD_SIZE - 2 * BORDER - 2 * sizes.reduce((a, r) => a + r, 0) - GAP * (count - 1)
  const left = (rnd.uniform() * slack) / 2
  const right = (rnd.uniform() * slack) / 2
  const gap = GAP + (slack - left - right) / (count - 1)
  let x = BORDER + left
  return sizes.map((r) => {
    const y = between(rnd, Math.max(ROW_Y[0], BORDER + r), Math.min(ROW_Y[1], WORLD_SIZE - BORDER - r))
    const item = { x: x + r, y, halfSize: r }
    x += 2 * r + gap
    return item
  })
}

/** Scene `index` of the world drawn with `seed`. */
export const sampleScene = (seed: number, index: number): Scene => {
  const rnd = stream(seed, index, "world-scene")
  const count = rnd.uniform() < P_ONE_OBJECT ? 1 : 2
  const background = BACKGROUNDS[rnd.int(0, BACKGROUNDS.length - 1)]!
  const namesBackground = rnd.uniform() < P_NAMED_BACKGROUND
  const kinds = Array.from({ length: count }, () => ({
    shape: SHAPES[rnd.int(0, SHAPES.length - 1)]!,
    colour: COLOURS[rnd.int(0, COLOURS.length - 1)]!
  }))
  const places = layout(rnd, count)
  return {
    background,
    namesBackground,
    objects: kinds.map((k, i) => ({
      shape: k.shape,
      appearance: { kind: "named", colour: k.colour },
      centre: { x: places[i]!.x, y: places[i]!.y },
      halfSize: places[i]!.halfSize
    }))
  }
}

/**
 * Half-size ranges of world v2 by object count and size class. Normal sizes are v1's; one small or large
 * object in five, named by its size word with p = `P_SAY_SIZE`.
 */
const V2_HALF_SIZE: ReadonlyArray<Readonly<Record<"small" | "normal" | "large", readonly [number, number]>>> = [
  { small: [4.5, 6], normal: [7, 10], large: [11, 13] },
  { small: [3.75, 4.75], normal: [5, 7], large: [5, 7] }
]
export const P_SMALL = 0.2
export const P_LARGE = 0.2
export const P_SAY_SIZE = 0.9

/** Scene `index` of world v2 (`Variation.ts`): v1's objects and layouts with unnamed variation. */
export const sampleSceneV2 = (seed: number, index: number): Scene => {
  const rnd = stream(seed, index, "world-v2-scene")
  const count = rnd.uniform() < P_ONE_OBJECT ? 1 : 2
  const background = BACKGROUNDS[rnd.int(0, BACKGROUNDS.length - 1)]!
  const namesBackground = rnd.uniform() < P_NAMED_BACKGROUND
  const objects = Array.from({ length: count }, () => {
    const shape = SHAPES[rnd.int(0, SHAPES.length - 1)]!
    const paint = samplePaint(rnd)
    const colour = nameableColour(paint, shape)
    const sayColour = rnd.uniform() < P_SAY_COLOUR
    const u = rnd.uniform()
    // two objects are never large: both must fit side by side
    const cls: "small" | "normal" | "large" = u < P_SMALL ? "small" : u < P_SMALL + P_LARGE && count === 1 ? "large" : "normal"
    const [lo, hi] = V2_HALF_SIZE[count - 1]![cls]
    const saySize = rnd.uniform() < P_SAY_SIZE
    return {
      shape,
      appearance: { kind: "painted", paint, colour: sayColour ? colour : null } satisfies Appearance,
      halfSize: between(rnd, lo, hi),
      size: cls !== "normal" && saySize ? cls : null
    }
  })
  const places = place(rnd, objects.map((o) => o.halfSize))
  return {
    background,
    namesBackground,
    objects: objects.map((o, i) => ({ ...o, centre: { x: places[i]!.x, y: places[i]!.y } }))
  }
}

/** A scene of the named world. */
export const sampleWorldScene = (world: WorldName, seed: number, index: number): Scene =>
  world === "shapes" ? sampleScene(seed, index) : sampleSceneV2(seed, index)

export interface SceneOptions {
  readonly seed: number
  readonly index: number
  /** Which novel appearance each modifier token stands for, e.g. `{ "<v1>": "ring" }`. */
  readonly concepts?: Readonly<Record<string, NovelName>>
  /** World v2: objects the prompt gives no colour get any unnamed appearance (`Variation.ts`), not a named colour. */
  readonly paintUnnamed?: boolean | undefined
}

/**
 * A scene that matches a prompt: what the prompt leaves open (an object's colour, the background) and
 * the layout are drawn from (seed, index). Modified objects get the novel appearance their modifier
 * stands for, on the shape the prompt names. This renders references for any prompt, named and novel
 * objects mixed.
 */
export const sceneFromSpec = (spec: PromptSpec, options: SceneOptions): Result.Result<Scene, CaptionError> => {
  if (spec.objects.length < 1 || spec.objects.length > MAX_OBJECTS) {
    return Result.fail(
      new CaptionError({
        caption: formatCaption(spec),
        word: "",
        reason: `it names ${spec.objects.length} objects`,
        fix: `name 1 to ${MAX_OBJECTS} objects`
      })
    )
  }
  const rnd = stream(options.seed, options.index, "world-scene-from-spec")
  const appearances: Array<Appearance> = []
  for (const o of spec.objects) {
    if (o.modifier !== null) {
      const concept = options.concepts?.[o.modifier]
      if (concept === undefined) {
        return Result.fail(
          new CaptionError({
            caption: formatCaption(spec),
            word: o.modifier,
            reason: `modifier ${o.modifier} stands for no novel appearance`,
            fix: `map it to one of the world's novel appearances, e.g. { "${o.modifier}": "ring" }`
          })
        )
      }
      appearances.push({ kind: "novel", concept, modifier: o.modifier })
    } else if (o.colour === null && options.paintUnnamed === true) {
      appearances.push({ kind: "painted", paint: samplePaint(rnd), colour: null })
    } else {
      appearances.push({ kind: "named", colour: o.colour ?? COLOURS[rnd.int(0, COLOURS.length - 1)]! })
    }
  }
  const background = spec.background ?? BACKGROUNDS[rnd.int(0, BACKGROUNDS.length - 1)]!
  const n = spec.objects.length
  const places = spec.objects.every((o) => (o.size ?? null) === null)
    ? layout(rnd, n)
    : place(rnd, spec.objects.map((o) => {
      const [lo, hi] = n <= 2 ? V2_HALF_SIZE[n - 1]![o.size ?? "normal"] : HALF_SIZE[n - 1]!
      return between(rnd, lo, hi)
    }))
  return Result.succeed({
    background,
    namesBackground: spec.background !== null,
    objects: spec.objects.map((o, i) => ({
      shape: o.shape,
      appearance: appearances[i]!,
      centre: { x: places[i]!.x, y: places[i]!.y },
      halfSize: places[i]!.halfSize,
      ...(o.size === undefined || o.size === null ? {} : { size: o.size })
    }))
  })
}
