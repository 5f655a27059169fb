/**
 * Captions of the shapes world and their grammar:
 *
 *   caption    = object { "and" object } [ "on" "a" background "background" ]
 *   object     = ("a" | "an") [ size ] [ colour | modifier ] shape
 *
 * e.g. "a red circle and a blue square on a gray background", "a <v1> circle and a <v2> square". A
 * modifier token stands right before its class word, as the method's token layout requires
 * (`training/Prompt.ts`). Objects are named left to right. `parseCaption` turns such text into the
 * requested spec, and fails with a `CaptionError` that names the offending word and lists the
 * vocabulary: this is how a prompt outside the built-in world is rejected.
 */
import { Result, Schema } from "effect"
import { splitWords } from "@disendiff/core/tokenizer/WordTokenizer.js"
import type { Scene } from "./Scene.js"
import {
  articleFor,
  WORD_ALIASES,
  BACKGROUNDS,
  type BackgroundName,
  type ColourName,
  COLOURS,
  FUNCTION_WORDS,
  isBackground,
  isColour,
  isShape,
  isSize,
  SIZES,
  type SizeName,
  MODIFIER_PATTERN,
  SHAPES,
  type ShapeName,
  WORLD_WORDS
} from "./Vocabulary.js"

export interface ObjectSpec {
  readonly shape: ShapeName
  /** The named colour, or null when the prompt leaves it open or gives a modifier instead. */
  readonly colour: ColourName | null
  readonly modifier: string | null
  /** The size word (world v2), absent or null when the prompt says none. */
  readonly size?: SizeName | null | undefined
}

export interface PromptSpec {
  /** The named background, or null when the prompt does not name one. */
  readonly background: BackgroundName | null
  /** Left to right. */
  readonly objects: ReadonlyArray<ObjectSpec>
}

/** A caption the built-in world cannot draw. `word` is the offending word ("" when the caption ends early). */
export class CaptionError extends Schema.TaggedError<CaptionError>()("CaptionError", {
  caption: Schema.String,
  word: Schema.String,
  reason: Schema.String,
  fix: Schema.String
}) {
  override get message() {
    return `caption "${this.caption}": ${this.reason}. Fix: ${this.fix}`
  }
}

/** The most objects one caption may name: as many as the world's scenes hold (`Scene.ts`), so every caption is one the model has learned to draw. */
export const MAX_OBJECTS = 2

const EXAMPLE = "a <v1> circle and a red square on a gray background"
const VOCABULARY = `the built-in world knows only the shapes ${SHAPES.join(", ")}; the object colours ${
  COLOURS.join(", ")
}; the sizes ${SIZES.join(", ")}; the backgrounds ${BACKGROUNDS.join(", ")}; the words ${FUNCTION_WORDS.join(", ")}; and modifier tokens such as <v1> right before a shape, e.g. "${EXAMPLE}"`

export const parseCaption = (text: string): Result.Result<PromptSpec, CaptionError> => {
  const words = splitWords(text).map((w) => WORD_ALIASES[w] ?? w)
  const fail = (word: string, reason: string, fix: string) => Result.fail(new CaptionError({ caption: text, word, reason, fix }))
  const unknown = words.find((w) => !WORLD_WORDS.includes(w) && !isSize(w) && !MODIFIER_PATTERN.test(w))
  if (unknown !== undefined) return fail(unknown, `unknown word "${unknown}"`, `write it in the world's words: ${VOCABULARY}`)
  if (words.length === 0) return fail("", "it is empty", `write e.g. "${EXAMPLE}"`)
  const found = (w: string | undefined) => (w === undefined ? "the caption ends" : `found "${w}"`)

  const objects: Array<ObjectSpec> = []
  let i = 0
  for (;;) {
    if (words[i] !== "a") return fail(words[i] ?? "", `expected "a" to begin an object but ${found(words[i])}`, `name each object as "a [colour] shape", e.g. "${EXAMPLE}"`)
    i++
    let size: SizeName | null = null
    const z = words[i]
    if (z !== undefined && isSize(z)) {
      size = z
      i++
    }
    const w = words[i]
    let colour: ColourName | null = null
    let modifier: string | null = null
    if (w !== undefined && isColour(w)) colour = w
    else if (w !== undefined && MODIFIER_PATTERN.test(w)) modifier = w
    else if (w !== undefined && isBackground(w)) {
      return fail(w, `"${w}" is only a background colour in the built-in world`, `give the object one of ${COLOURS.join(", ")}`)
    }
    if (colour !== null || modifier !== null) i++
    const s = words[i]
    if (s === undefined || !isShape(s)) {
      const fix = s !== undefined && MODIFIER_PATTERN.test(s)
        ? `a modifier replaces the colour and stands right before the shape, e.g. "a ${s} circle"`
        : `follow it with one of ${SHAPES.join(", ")}`
      return fail(s ?? "", `expected a shape after "${words[i - 1]}" but ${found(s)}`, fix)
    }
    i++
    objects.push(size === null ? { shape: s, colour, modifier } : { shape: s, colour, modifier, size })
    if (words[i] !== "and") break
    i++
  }
  if (objects.length > MAX_OBJECTS) {
    return fail("and", `it names ${objects.length} objects`, `name at most ${MAX_OBJECTS}; the built-in world's scenes hold no more`)
  }

  let background: BackgroundName | null = null
  if (words[i] === "on") {
    const [a, b, last] = [words[i + 1], words[i + 2], words[i + 3]]
    if (a !== "a") return fail(a ?? "", `expected "a" after "on" but ${found(a)}`, `write "on a gray background"`)
    if (b === undefined || !isBackground(b)) {
      const why = b !== undefined && isColour(b) ? `"${b}" is an object colour, not a background` : `expected a background colour but ${found(b)}`
      return fail(b ?? "", why, `use one of ${BACKGROUNDS.join(", ")}, e.g. "on a gray background"`)
    }
    if (last !== "background") return fail(last ?? "", `expected "background" after "${b}" but ${found(last)}`, `write "on a ${b} background"`)
    background = b
    i += 4
  }
  if (i < words.length) {
    return fail(words[i]!, `unexpected "${words[i]}" after "${words.slice(0, i).join(" ")}"`, `join objects with "and" and end with "on a <colour> background", e.g. "${EXAMPLE}"`)
  }
  return Result.succeed({ background, objects })
}

export const formatCaption = (spec: PromptSpec): string => {
  const objects = spec.objects.map((o) => {
    const words = [o.size ?? null, o.modifier ?? o.colour, o.shape].filter((w) => w !== null)
    return [articleFor(words[0]!), ...words].join(" ")
  })
  const text = objects.join(" and ")
  return spec.background === null ? text : `${text} on a ${spec.background} background`
}

/** What a scene's caption says: named colours, modifiers for novel objects, the background if named. */
export const specOf = (scene: Scene): PromptSpec => ({
  background: scene.namesBackground ? scene.background : null,
  objects: scene.objects.map((o) => {
    const colour = o.appearance.kind === "novel" ? null : o.appearance.colour
    const modifier = o.appearance.kind === "novel" ? o.appearance.modifier : null
    return o.size === undefined || o.size === null ? { shape: o.shape, colour, modifier } : { shape: o.shape, colour, modifier, size: o.size }
  })
})

export const captionOf = (scene: Scene): string => formatCaption(specOf(scene))
