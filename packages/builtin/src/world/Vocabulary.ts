/**
 * The words and colours of the built-in shapes world: four shapes, six object colours, three background
 * colours and four function words. Captions use these words and nothing else (`WORLD_WORDS`), plus
 * modifier tokens such as `<v1>` for personalised concepts.
 *
 * Colours are flat sRGB values in [0, 1] chosen far apart: every pair of object colours is at least
 * 0.44 apart in RGB (red/orange, orange/yellow are the closest), every object colour is at least 0.47
 * from every background (purple/gray), and the novel appearances' tones (`NovelAppearance.ts`) are at
 * least 0.44 from every named colour and background, so the evaluator can tell them apart even in
 * noisy samples. The prototype (`builtin-model-prototype.md`) found flat colours far cheaper to learn
 * than textures, so objects carry no patterns.
 */

export type Rgb = readonly [number, number, number]

export const SHAPES = Object.freeze(["circle", "square", "triangle", "diamond"] as const)
export type ShapeName = (typeof SHAPES)[number]

export const COLOURS = Object.freeze(["red", "green", "blue", "yellow", "purple", "orange"] as const)
export type ColourName = (typeof COLOURS)[number]

export const BACKGROUNDS = Object.freeze(["black", "gray", "white"] as const)
export type BackgroundName = (typeof BACKGROUNDS)[number]

export const FUNCTION_WORDS = Object.freeze(["a", "and", "on", "background"] as const)

/** Size words of world v2 (scale augmentation needs words for "smaller" and "larger"). */
export const SIZES = Object.freeze(["small", "large"] as const)
export type SizeName = (typeof SIZES)[number]

/**
 * The world's versions: "shapes" (v1: flat named colours, the first built-in model) and "shapes-v2"
 * (unnamed variation: shades, two-tone layouts and sizes the captions do not always name; `Variation.ts`).
 */
export const WORLD_NAMES = Object.freeze(["shapes", "shapes-v2"] as const)
export type WorldName = (typeof WORLD_NAMES)[number]

/** Every word a v1 caption may contain (modifier tokens aside), in tokenizer order. */
export const WORLD_WORDS: ReadonlyArray<string> = Object.freeze([...FUNCTION_WORDS, ...SHAPES, ...COLOURS, ...BACKGROUNDS])

/** v2 appends its size words, so every v1 word keeps its token id (a v1 model can seed a v2 one). */
export const WORLD_V2_WORDS: ReadonlyArray<string> = Object.freeze([...WORLD_WORDS, ...SIZES])

export const worldWords = (world: WorldName): ReadonlyArray<string> => (world === "shapes" ? WORLD_WORDS : WORLD_V2_WORDS)

/** Spellings read as another word (the same token): "an orange circle" is English and costs the model nothing. */
export const WORD_ALIASES: Readonly<Record<string, string>> = Object.freeze({ an: "a" })

/** The article before a word: "an" before a vowel. */
export const articleFor = (word: string) => (/^[aeiou]/.test(word) ? "an" : "a")

export const COLOUR_RGB: Readonly<Record<ColourName, Rgb>> = Object.freeze({
  red: [0.9, 0.1, 0.15],
  green: [0.1, 0.7, 0.15],
  blue: [0.12, 0.25, 0.95],
  yellow: [0.95, 0.92, 0.15],
  purple: [0.6, 0.15, 0.8],
  orange: [1, 0.5, 0]
})

/** Not pure black and white, so that noise and model error around them are not cut off by clamping. */
export const BACKGROUND_RGB: Readonly<Record<BackgroundName, Rgb>> = Object.freeze({
  black: [0.05, 0.05, 0.05],
  gray: [0.5, 0.5, 0.5],
  white: [0.95, 0.95, 0.95]
})

/** Modifier tokens as the tokenizer keeps them whole: `<v1>`, `<cat-toy>`. */
export const MODIFIER_PATTERN = /^<[^<>\s]+>$/

export const isShape = (w: string): w is ShapeName => (SHAPES as ReadonlyArray<string>).includes(w)
export const isColour = (w: string): w is ColourName => (COLOURS as ReadonlyArray<string>).includes(w)
export const isBackground = (w: string): w is BackgroundName => (BACKGROUNDS as ReadonlyArray<string>).includes(w)
export const isSize = (w: string): w is SizeName => (SIZES as ReadonlyArray<string>).includes(w)

/** Euclidean distance in RGB. */
export const rgbDistance = (a: Rgb, b: Rgb): number => Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2])

const nearest = <K extends string>(table: Readonly<Record<K, Rgb>>, names: ReadonlyArray<K>, r: number, g: number, b: number): K => {
  let best = names[0]!
  let bestD = Infinity
  for (const name of names) {
    const c = table[name]
    const d = (r - c[0]) ** 2 + (g - c[1]) ** 2 + (b - c[2]) ** 2
    if (d < bestD) {
      bestD = d
      best = name
    }
  }
  return best
}

export const nearestColour = (r: number, g: number, b: number): ColourName => nearest(COLOUR_RGB, COLOURS, r, g, b)
export const nearestBackground = (r: number, g: number, b: number): BackgroundName => nearest(BACKGROUND_RGB, BACKGROUNDS, r, g, b)
