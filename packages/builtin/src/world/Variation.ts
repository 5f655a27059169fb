/**
 * Unnamed variation of world v2: what an object looks like beyond the words of its caption. Stable
 * Diffusion can learn "<v1> dog" from one photo because it has seen countless dogs; a model that has only
 * seen flat named colours has nothing to narrow (measured on v1: a two-tone concept was never learned).
 * So v2 objects carry
 *
 * - a two-tone layout half the time: ring, dot, halves, stripes or cap, the layouts of the novel
 *   concepts among them (`NovelAppearance.ts`), all symmetric under a horizontal flip like the shapes;
 * - tones from a continuous range: shades of the named colours (each channel jittered by up to
 *   `SHADE_JITTER`) and free tones of any hue, lighter or darker, that no word names;
 * - a colour word only where it is true of most of the object: the main tone is a shade of a named
 *   colour and covers at least `NAMEABLE_SHARE` of it (`nameableColour`), said with p = `P_SAY_COLOUR`.
 *
 * The novel concepts are held out as combinations: no pretraining object has a concept's layout with
 * both its tones within `HELD_OUT_DISTANCE`, while their layouts and tones each occur.
 */
import type { RandomStream } from "@disendiff/core/random/Rng.js"
import { NOVEL_APPEARANCES } from "./NovelAppearance.js"
import { inside } from "./Shape.js"
import { BACKGROUND_RGB, BACKGROUNDS, COLOUR_RGB, type ColourName, COLOURS, type Rgb, rgbDistance, SHAPES, type ShapeName } from "./Vocabulary.js"

export const LAYOUTS = Object.freeze(["flat", "ring", "dot", "halves", "stripes", "cap"] as const)
export type LayoutName = (typeof LAYOUTS)[number]

/** Inner disc of a ring (36% of a circle's area; the novel ring's). */
export const RING_INNER = 0.6
/** A dot: 16% of a circle's area. */
export const DOT_RADIUS = 0.4
/** The middle band of stripes: |v| < 1/3. */
export const STRIPE_HALF_WIDTH = 1 / 3
/** A cap: everything above v = 0.2 (the tip of a triangle holds 36% of its area; the novel capped's). */
export const CAP_LEVEL = 0.2

/** Whether (u, v) (`Shape.ts` coordinates) shows the second tone. */
export const secondToneAt = (layout: LayoutName, u: number, v: number): boolean => {
  switch (layout) {
    case "flat":
      return false
    case "ring":
      return u * u + v * v <= RING_INNER * RING_INNER
    case "dot":
      return u * u + v * v <= DOT_RADIUS * DOT_RADIUS
    case "halves":
      return v >= 0
    case "stripes":
      return Math.abs(v) < STRIPE_HALF_WIDTH
    case "cap":
      return v < CAP_LEVEL
  }
}

/** Share of a shape's area in the second tone (a 200x200 grid over [-1, 1]^2). */
export const secondToneShare = (layout: LayoutName, shape: ShapeName): number => {
  const n = 200
  let all = 0
  let second = 0
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const u = -1 + (2 * j + 1) / n
      const v = -1 + (2 * i + 1) / n
      if (!inside(shape, u, v)) continue
      all++
      if (secondToneAt(layout, u, v)) second++
    }
  }
  return second / all
}

/**
 * A colour word names the main tone only where that covers at least this share of the object, so the
 * evaluator's majority vote reads it (a ring on a circle: 64%; on a diamond: 43%, not nameable).
 */
export const NAMEABLE_SHARE = 0.6
const nameable = new Map(LAYOUTS.flatMap((l) => SHAPES.map((s) => [`${l}/${s}`, 1 - secondToneShare(l, s) >= NAMEABLE_SHARE] as const)))

export const P_TWO_TONE = 0.5
/** The main tone is a shade of a named colour with this probability, else a free tone. */
export const P_NAMED_TONE = 0.7
export const P_SAY_COLOUR = 0.9
export const SHADE_JITTER = 0.07
/** Every tone and every half-way blend of two tones stays this far from every background (the evaluator's foreground threshold is 0.25). */
export const BACKGROUND_MARGIN = 0.45
export const BLEND_MARGIN = 0.35
/** The two tones of one object differ at least this much, so the layout shows. */
export const TONE_CONTRAST = 0.5
export const HELD_OUT_DISTANCE = 0.35

/** A painted object: its layout, its two tones (the second unused when flat), and the colour word its caption may use. */
export interface Paint {
  readonly layout: LayoutName
  readonly tones: readonly [Rgb, Rgb]
  /** The named colour the main tone is a shade of (null for free tones). */
  readonly shadeOf: ColourName | null
}

const clamp01 = (x: number) => Math.min(1, Math.max(0, x))

const hsv = (h: number, s: number, v: number): Rgb => {
  const f = (n: number) => {
    const k = (n + h / 60) % 6
    return v - v * s * Math.max(0, Math.min(k, 4 - k, 1))
  }
  return [f(5), f(3), f(1)]
}

const farFromBackgrounds = (c: Rgb, margin: number) => BACKGROUNDS.every((b) => rgbDistance(c, BACKGROUND_RGB[b]) >= margin)

export const shadeOf = (rnd: RandomStream, colour: ColourName): Rgb => {
  const c = COLOUR_RGB[colour]
  return [0, 1, 2].map((k) => clamp01(c[k]! + SHADE_JITTER * (2 * rnd.uniform() - 1))) as unknown as Rgb
}

/** A tone no word names: any hue, saturation 0.5-1, value 0.45-1, away from the backgrounds. */
export const freeTone = (rnd: RandomStream): Rgb => {
  for (;;) {
    const c = hsv(360 * rnd.uniform(), 0.5 + 0.5 * rnd.uniform(), 0.45 + 0.55 * rnd.uniform())
    if (farFromBackgrounds(c, BACKGROUND_MARGIN)) return c
  }
}

const blend = (a: Rgb, b: Rgb): Rgb => [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2, (a[2] + b[2]) / 2]

/** Whether a paint is one of the novel concepts (held out of pretraining). */
export const isNovelLike = (p: Paint): boolean =>
  NOVEL_APPEARANCES.some((n) =>
    n.layout === p.layout && rgbDistance(n.tones[0], p.tones[0]) < HELD_OUT_DISTANCE &&
    rgbDistance(n.tones[1], p.tones[1]) < HELD_OUT_DISTANCE
  )

/**
 * Draws an object's paint: the layout first (so two tones come with p = `P_TWO_TONE`), then tones by
 * rejection, which keeps them apart and away from the backgrounds, and the novel concepts out.
 */
export const samplePaint = (rnd: RandomStream): Paint => {
  const layout: LayoutName = rnd.uniform() < P_TWO_TONE ? LAYOUTS[rnd.int(1, LAYOUTS.length - 1)]! : "flat"
  for (;;) {
    const named = rnd.uniform() < P_NAMED_TONE ? COLOURS[rnd.int(0, COLOURS.length - 1)]! : null
    const first = named === null ? freeTone(rnd) : shadeOf(rnd, named)
    const second = rnd.uniform() < 0.5 ? freeTone(rnd) : shadeOf(rnd, COLOURS[rnd.int(0, COLOURS.length - 1)]!)
    if (layout !== "flat") {
      if (rgbDistance(first, second) < TONE_CONTRAST || !farFromBackgrounds(blend(first, second), BLEND_MARGIN)) continue
    }
    const paint: Paint = { layout, tones: [first, layout === "flat" ? first : second], shadeOf: named }
    if (!isNovelLike(paint)) return paint
  }
}

/** The colour word a caption may use for this paint (before the choice to say it). */
export const nameableColour = (p: Paint, shape: ShapeName): ColourName | null => (nameable.get(`${p.layout}/${shape}`) ? p.shadeOf : null)
