/**
 * Novel appearances for personalisation: objects whose look the world's vocabulary cannot name. Each is
 * two flat tones laid out at low frequency (a ring, two halves), in colours outside the named palette,
 * so a small model can learn it from one image and the evaluator can recognise it.
 *
 * The tones were chosen by a grid search over RGB (step 0.1) for: every tone at least 0.44 from every
 * named object colour and 0.45 from every background; the six tones at least 0.5 apart; the two tones of
 * one appearance at least 1.0 apart (the layout shows); and every blend of the two tones (the pixels
 * along their boundary, or a model's blur of it) at least 0.45 from every background, so that the
 * evaluator never sees one object fall apart into two at its internal boundary. (A teal/pink or
 * olive/cyan pair blends into gray halfway and did fall apart.)
 *
 * Layouts are symmetric under a horizontal flip, because the method's data pipeline flips every training
 * row at random (`training/Data.ts`): a diagonal split would show the model both diagonals.
 */
import { CAP_LEVEL, type LayoutName, RING_INNER } from "./Variation.js"
import type { Rgb, ShapeName } from "./Vocabulary.js"

export const NOVEL_NAMES = Object.freeze(["ring", "split", "capped"] as const)
export type NovelName = (typeof NOVEL_NAMES)[number]

export interface NovelAppearance {
  readonly name: NovelName
  /** The shape the appearance goes with (it can be painted on any shape). */
  readonly shape: ShapeName
  readonly description: string
  /** The same look as world v2's layouts describe it (`Variation.ts`): main tone, then second tone. */
  readonly layout: LayoutName
  readonly tones: readonly [Rgb, Rgb]
  /** Its two tones, named for humans only (these names are not world words). */
  readonly palette: readonly [{ readonly name: string; readonly rgb: Rgb }, { readonly name: string; readonly rgb: Rgb }]
  /**
   * The colour at local coordinates (u, v) (`Shape.ts`), defined over the whole plane: one of the two
   * `palette` arrays itself (the evaluator tells the regions apart by identity).
   */
  readonly colourAt: (u: number, v: number) => Rgb
}

const magenta: Rgb = [1, 0, 0.9]
const azure: Rgb = [0, 0.7, 1]
const navy: Rgb = [0, 0, 0.6]
const spring: Rgb = [0.1, 1, 0.6]
const chartreuse: Rgb = [0.5, 0.9, 0]
const aqua: Rgb = [0.4, 1, 1]

// RING_INNER (0.6 r): the centre holds 36% of the area, large enough to survive 32 px. CAP_LEVEL (0.2):
// the tip of the triangle holds ((0.2 + 1) / 2)^2 = 36% of its area. Both are v2 layouts' constants.

export const NOVEL_APPEARANCES: ReadonlyArray<NovelAppearance> = Object.freeze([
  {
    name: "ring",
    shape: "circle",
    description: "a circle with a magenta outer ring and an azure centre disc",
    layout: "ring",
    tones: [magenta, azure],
    palette: [{ name: "magenta", rgb: magenta }, { name: "azure", rgb: azure }],
    colourAt: (u: number, v: number) => (u * u + v * v <= RING_INNER * RING_INNER ? azure : magenta)
  },
  {
    name: "split",
    shape: "square",
    description: "a square with a navy top half and a spring-green bottom half",
    layout: "halves",
    tones: [navy, spring],
    palette: [{ name: "navy", rgb: navy }, { name: "spring green", rgb: spring }],
    colourAt: (_u: number, v: number) => (v < 0 ? navy : spring)
  },
  {
    name: "capped",
    shape: "triangle",
    description: "a triangle with a chartreuse tip and an aqua base",
    layout: "cap",
    tones: [aqua, chartreuse],
    palette: [{ name: "chartreuse", rgb: chartreuse }, { name: "aqua", rgb: aqua }],
    colourAt: (_u: number, v: number) => (v < CAP_LEVEL ? chartreuse : aqua)
  }
] satisfies Array<NovelAppearance>)

export const novelAppearance = (name: NovelName): NovelAppearance => NOVEL_APPEARANCES.find((a) => a.name === name)!
