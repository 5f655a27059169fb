/**
 * The personalisation target of the built-in world: one image holding one to three novel objects side
 * by side, each on the shape its appearance goes with, on a named background, with a caption that puts
 * a modifier token before each class word: "a <v1> circle and a <v2> square on a gray background".
 */
import { Result } from "effect"
import type { RgbImage } from "@disendiff/core/image/Image.js"
import { captionOf, MAX_OBJECTS } from "./Caption.js"
import { type NovelName, novelAppearance } from "./NovelAppearance.js"
import { renderScene } from "./Render.js"
import { type Scene, sceneFromSpec } from "./Scene.js"
import { type BackgroundName, MODIFIER_PATTERN } from "./Vocabulary.js"

export interface ConceptImageOptions {
  /** Left to right; 1 to 3 of them. */
  readonly concepts: ReadonlyArray<NovelName>
  readonly background: BackgroundName
  /** One per concept; `<v1>`, `<v2>`, ... by default. */
  readonly modifiers?: ReadonlyArray<string>
  /** Which layout (positions and sizes) to draw; 0 and 0 by default. */
  readonly seed?: number
  readonly index?: number
}

export interface ConceptImage {
  readonly image: RgbImage
  readonly caption: string
  readonly scene: Scene
  /** Which appearance each modifier stands for. */
  readonly concepts: Readonly<Record<string, NovelName>>
}

export const conceptImage = (o: ConceptImageOptions): ConceptImage => {
  const n = o.concepts.length
  if (n < 1 || n > MAX_OBJECTS) throw new RangeError(`a concept image holds 1 to ${MAX_OBJECTS} concepts, got ${n}`)
  const modifiers = o.modifiers ?? o.concepts.map((_, i) => `<v${i + 1}>`)
  if (modifiers.length !== n || new Set(modifiers).size !== n || !modifiers.every((m) => MODIFIER_PATTERN.test(m))) {
    throw new RangeError(`need ${n} distinct modifier tokens like <v1>, got ${JSON.stringify(modifiers)}`)
  }
  const concepts = Object.fromEntries(o.concepts.map((c, i) => [modifiers[i]!, c]))
  const spec = {
    background: o.background,
    objects: o.concepts.map((c, i) => ({ shape: novelAppearance(c).shape, colour: null, modifier: modifiers[i]! }))
  }
  // cannot fail: every modifier is mapped just above
  const scene = Result.getOrThrow(sceneFromSpec(spec, { seed: o.seed ?? 0, index: o.index ?? 0, concepts }))
  return { image: renderScene(scene), caption: captionOf(scene), scene, concepts }
}
