import { Result } from "effect"
import { createHash } from "node:crypto"
import { describe, expect, it } from "vitest"
import type { RgbImage } from "@disendiff/core/image/Image.js"
import {
  addNoise,
  appearanceSimilarity,
  BACKGROUND_RGB,
  BACKGROUNDS,
  calibrate,
  CaptionError,
  captionOf,
  checkAgainstPrompt,
  COLOUR_RGB,
  COLOURS,
  conceptImage,
  detect,
  formatCaption,
  inside,
  isNovel,
  NOVEL_APPEARANCES,
  novelAppearance,
  parseCaption,
  type PromptSpec,
  renderScene,
  rgbDistance,
  sampleScene,
  sceneFromSpec,
  SHAPES,
  specOf,
  WORD_ALIASES,
  WORLD_SIZE,
  WORLD_WORDS
} from "../src/world/index.js"
import { toyModelConfig } from "../src/models/ToyModel.js"
import { makeWordTokenizer } from "@disendiff/core/tokenizer/WordTokenizer.js"

const bytes = (img: RgbImage) => Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength)
const parsed = (text: string): PromptSpec => Result.getOrThrow(parseCaption(text))
const parseError = (text: string): CaptionError => {
  const r = parseCaption(text)
  if (Result.isSuccess(r)) throw new Error(`"${text}" parsed`)
  return r.failure
}
const scenes = Array.from({ length: 500 }, (_, i) => sampleScene(11, i))

describe("World scenes and rendering", () => {
  it("is deterministic: the same seed and index give the same scene and bytes", () => {
    expect(sampleScene(3, 17)).toEqual(sampleScene(3, 17))
    expect(bytes(renderScene(sampleScene(3, 17))).equals(bytes(renderScene(sampleScene(3, 17))))).toBe(true)
    expect(sampleScene(3, 18)).not.toEqual(sampleScene(3, 17))
    expect(sampleScene(4, 17)).not.toEqual(sampleScene(3, 17))
    const a = conceptImage({ concepts: ["ring", "split"], background: "gray" })
    expect(bytes(a.image).equals(bytes(conceptImage({ concepts: ["ring", "split"], background: "gray" }).image))).toBe(true)
  })

  it("keeps the world the built-in model was trained on (changing it means retraining)", () => {
    const h = createHash("sha256")
    for (let i = 0; i < 10; i++) h.update(bytes(renderScene(sampleScene(0, i))))
    h.update(bytes(conceptImage({ concepts: ["ring", "split"], background: "gray" }).image))
    expect(h.digest("hex")).toBe("76db3e0b446201620e95d8946e2af3e541d042e082d0e9fceeb262f78c9e4c5b")
    expect(captionOf(sampleScene(0, 0))).toBe("a red square and a yellow square on a gray background")
    expect(captionOf(sampleScene(0, 1))).toBe("a yellow circle on a gray background")
    expect(WORLD_WORDS).toEqual(["a", "and", "on", "background", "circle", "square", "triangle", "diamond", "red", "green", "blue", "yellow", "purple", "orange", "black", "gray", "white"])
  })

  it("draws 32x32 images in [0, 1] with the background at the border and the object colour inside", () => {
    const scene = sceneFromSpec(parsed("a red square on a white background"), { seed: 0, index: 0 })
    const img = renderScene(Result.getOrThrow(scene))
    expect([img.width, img.height, img.data.length]).toEqual([32, 32, 32 * 32 * 3])
    expect(Math.min(...img.data)).toBeGreaterThanOrEqual(0)
    expect(Math.max(...img.data)).toBeLessThanOrEqual(1)
    expect([...img.data.subarray(0, 3)]).toEqual([...new Float32Array(BACKGROUND_RGB.white)])
    const c = (16 * 32 + 16) * 3
    expect([...img.data.subarray(c, c + 3)]).toEqual([...new Float32Array(COLOUR_RGB.red)])
    // anti-aliased: some edge pixels mix the two colours
    const mixed = Array.from({ length: 32 * 32 }, (_, i) => img.data[3 * i + 1]!).filter((g) => g > 0.11 && g < 0.94)
    expect(mixed.length).toBeGreaterThan(4)
  })

  it("follows the layout rules: one large object near the middle, or two small ones left and right apart", () => {
    const counts = [0, 0]
    for (const s of scenes) {
      counts[s.objects.length - 1]!++
      for (const o of s.objects) {
        expect(o.centre.x - o.halfSize).toBeGreaterThanOrEqual(1 - 1e-9)
        expect(o.centre.x + o.halfSize).toBeLessThanOrEqual(WORLD_SIZE - 1 + 1e-9)
        expect(o.centre.y - o.halfSize).toBeGreaterThanOrEqual(1 - 1e-9)
        expect(o.centre.y + o.halfSize).toBeLessThanOrEqual(WORLD_SIZE - 1 + 1e-9)
      }
      if (s.objects.length === 1) {
        const [o] = s.objects
        expect(o!.halfSize).toBeGreaterThanOrEqual(7)
        expect(o!.halfSize).toBeLessThanOrEqual(10)
        expect(Math.abs(o!.centre.x - 16)).toBeLessThanOrEqual(3)
        expect(Math.abs(o!.centre.y - 16)).toBeLessThanOrEqual(3)
      } else {
        const [l, r] = s.objects
        for (const o of s.objects) expect(o.halfSize >= 5 && o.halfSize <= 7).toBe(true)
        expect(l!.centre.x).toBeLessThan(16)
        expect(r!.centre.x).toBeGreaterThan(16)
        expect(r!.centre.x - r!.halfSize - (l!.centre.x + l!.halfSize)).toBeGreaterThanOrEqual(2 - 1e-9)
      }
    }
    expect(Math.abs(counts[0]! / scenes.length - 0.5)).toBeLessThan(0.07)
  })

  it("keeps shapes and novel appearances symmetric under the training pipeline's horizontal flip", () => {
    for (let u = -1.2; u <= 1.2; u += 0.05) {
      for (let v = -1.2; v <= 1.2; v += 0.05) {
        for (const s of SHAPES) expect(inside(s, u, v)).toBe(inside(s, -u, v))
        for (const a of NOVEL_APPEARANCES) expect(a.colourAt(u, v)).toBe(a.colourAt(-u, v))
      }
    }
  })

  it("keeps every colour far from the others, and novel tones far from named colours and backgrounds", () => {
    const named = COLOURS.map((c) => COLOUR_RGB[c])
    const backgrounds = BACKGROUNDS.map((b) => BACKGROUND_RGB[b])
    const tones = NOVEL_APPEARANCES.flatMap((a) => a.palette.map((t) => t.rgb))
    const minDistance = (xs: ReadonlyArray<readonly [number, number, number]>, ys = xs) =>
      Math.min(...xs.flatMap((x) => ys.filter((y) => y !== x).map((y) => rgbDistance(x, y))))
    expect(minDistance(named)).toBeGreaterThan(0.43)
    expect(minDistance(named, backgrounds)).toBeGreaterThan(0.47)
    expect(minDistance(tones, [...named, ...backgrounds])).toBeGreaterThan(0.43)
    expect(minDistance(tones)).toBeGreaterThanOrEqual(0.5 - 1e-9)
  })
})

describe("World captions", () => {
  it("use only the world's words in the documented grammar", () => {
    const grammar =
      /^(a (red|green|blue|yellow|purple)|an orange) (circle|square|triangle|diamond)( and (a (red|green|blue|yellow|purple)|an orange) (circle|square|triangle|diamond))?( on a (black|gray|white) background)?$/
    let named = 0
    for (const s of scenes) {
      const caption = captionOf(s)
      expect(caption).toMatch(grammar)
      for (const w of caption.split(" ")) expect(WORLD_WORDS).toContain(WORD_ALIASES[w] ?? w)
      named += +caption.endsWith("background")
    }
    expect(Math.abs(named / scenes.length - 0.8)).toBeLessThan(0.06)
    expect(Object.isFrozen(WORLD_WORDS)).toBe(true)
    expect(COLOURS.some((c) => (BACKGROUNDS as ReadonlyArray<string>).includes(c))).toBe(false)
  })

  it("round-trip through parseCaption", () => {
    for (const s of scenes) {
      expect(parsed(captionOf(s))).toEqual(specOf(s))
      expect(formatCaption(parsed(captionOf(s)))).toBe(captionOf(s))
    }
    const c = conceptImage({ concepts: ["capped", "split"], background: "white" })
    expect(c.caption).toBe("a <v1> triangle and a <v2> square on a white background")
    // as many objects as the world's scenes hold, no more
    expect(() => conceptImage({ concepts: ["ring", "split", "capped"], background: "white" })).toThrow(RangeError)
    expect(parseError("a red circle and a blue square and a green triangle").reason).toBe("it names 3 objects")
    expect(parsed(c.caption)).toEqual(specOf(c.scene))
    expect(parsed("A <V1> Circle and a red square")).toEqual({
      background: null,
      objects: [{ shape: "circle", colour: null, modifier: "<v1>" }, { shape: "square", colour: "red", modifier: null }]
    })
    expect(parsed("a diamond on a black background")).toEqual({ background: "black", objects: [{ shape: "diamond", colour: null, modifier: null }] })
  })

  it("write \"an\" before a vowel, read it as \"a\" (one token, so the trained model is unchanged)", () => {
    const spec = { background: null, objects: [{ shape: "circle" as const, colour: "orange" as const, modifier: null }, { shape: "square" as const, colour: "red" as const, modifier: null }] }
    expect(formatCaption(spec)).toBe("an orange circle and a red square")
    expect(parsed("an orange circle and a red square")).toEqual(spec)
    expect(parsed("a orange circle and a red square")).toEqual(spec)
    const cfg = toyModelConfig()
    const tokenizer = makeWordTokenizer({ words: cfg.words, aliases: cfg.aliases, modifiers: [], maxLength: cfg.maxLength })
    expect(tokenizer.encode("an orange circle").ids).toEqual(tokenizer.encode("a orange circle").ids)
  })

  it("reject words outside the world with an error naming the word and listing the vocabulary", () => {
    const e = parseError("a <v1> dog")
    expect(e).toBeInstanceOf(CaptionError)
    expect(e._tag).toBe("CaptionError")
    expect(e.word).toBe("dog")
    expect(e.message).toContain('unknown word "dog"')
    for (const w of ["circle", "diamond", "orange", "gray", "background", "<v1>"]) expect(e.message).toContain(w)
    expect(parseError("a red circle.").word).toBe(".")
  })

  it("reject captions outside the grammar, saying what to write", () => {
    expect(parseError("a white circle").reason).toContain("only a background colour")
    expect(parseError("a red <v1> circle").fix).toContain("modifier replaces the colour")
    expect(parseError("a red circle on a red background").reason).toContain("object colour, not a background")
    expect(parseError("a red circle and").word).toBe("")
    expect(parseError("red circle").reason).toContain('expected "a"')
    expect(parseError("a red circle a blue square").reason).toContain("unexpected")
    expect(parseError("a circle and a circle and a circle and a circle").reason).toContain("4 objects")
    expect(parseError("").reason).toContain("empty")
    expect(parseError("a red circle on a gray").word).toBe("")
  })

  it("build scenes for any prompt, named and novel objects mixed", () => {
    const spec = parsed("a <v1> circle and a square")
    const scene = Result.getOrThrow(sceneFromSpec(spec, { seed: 2, index: 5, concepts: { "<v1>": "ring" } }))
    expect(scene.objects[0]!.appearance).toEqual({ kind: "novel", concept: "ring", modifier: "<v1>" })
    expect(scene.objects[1]!.appearance.kind).toBe("named")
    expect(scene.namesBackground).toBe(false)
    expect(specOf(scene).objects[1]!.colour).not.toBeNull()
    const missing = sceneFromSpec(spec, { seed: 2, index: 5 })
    expect(Result.isFailure(missing) && missing.failure.word).toBe("<v1>")
    const none = sceneFromSpec({ background: null, objects: [] }, { seed: 2, index: 5 })
    expect(Result.isFailure(none) && none.failure.reason).toBe("it names 0 objects")
  })
})

describe("World evaluator", () => {
  it("finds the background and objects of rendered scenes, left to right", () => {
    const scene = Result.getOrThrow(sceneFromSpec(parsed("a blue triangle and a yellow diamond on a black background"), { seed: 0, index: 3 }))
    const d = detect(renderScene(scene))
    expect(d.background.colour).toBe("black")
    expect(d.noise).toBe(0)
    expect(d.objects.map((o) => [o.shape, o.colour])).toEqual([["triangle", "blue"], ["diamond", "yellow"]])
    scene.objects.forEach((o, k) => {
      const found = d.objects[k]!
      expect(found.colourShare).toBe(1)
      expect(Math.abs(found.fit.x - o.centre.x)).toBeLessThan(0.3)
      expect(Math.abs(found.fit.y - o.centre.y)).toBeLessThan(0.3)
      expect(Math.abs(found.fit.halfSize - o.halfSize)).toBeLessThan(0.3)
      expect(found.shapeScores[o.shape]).toBeGreaterThan(0.9)
    })
    expect(checkAgainstPrompt(d, specOf(scene)).allCorrect).toBe(true)
    const wrong = checkAgainstPrompt(d, parsed("a yellow triangle and a blue diamond on a gray background"))
    expect(wrong).toEqual({ count: true, shapes: true, colours: false, background: false, allCorrect: false })
    // a spec asking for more objects than there are (captions cannot name three; a spec can)
    const tooMany = checkAgainstPrompt(d, {
      background: null,
      objects: [...parsed("a blue triangle and a yellow diamond").objects, { shape: "circle", colour: "red", modifier: null }]
    })
    expect([tooMany.count, tooMany.shapes, tooMany.allCorrect]).toEqual([false, false, false])
    // a single-object prompt is judged on the largest object; the count is still wrong
    const one = checkAgainstPrompt(d, parsed("a triangle"))
    expect([one.count, one.allCorrect]).toEqual([false, false])
    expect(detect(renderScene({ background: "white", namesBackground: true, objects: [] })).objects).toEqual([])
  })

  it("is accurate on held-out ground truth, clean and with noise (calibration)", () => {
    const clean = calibrate({ scenes: 300, noise: 0 })
    for (const a of [clean.one, clean.two, clean.mixed]) expect(a.allCorrect).toBeGreaterThanOrEqual(0.98)
    expect(clean.one.scenes + clean.two.scenes).toBe(300)
    expect(clean.novel.truePositiveRate).toBeGreaterThanOrEqual(0.98)
    expect(clean.novel.falsePositiveRateNamed).toBe(0)
    expect(clean.novel.falsePositiveRateOther).toBe(0)
    expect(clean.novel.namedNegatives).toBeGreaterThan(3 * 300)
    const noisy = calibrate({ scenes: 300, noise: 0.05 })
    for (const a of [noisy.one, noisy.two, noisy.mixed]) expect(a.allCorrect).toBeGreaterThanOrEqual(0.9)
    expect(noisy.novel.truePositiveRate).toBeGreaterThanOrEqual(0.9)
    expect(noisy.novel.falsePositiveRateNamed).toBeLessThanOrEqual(0.01)
  })

  it("recognises the novel concepts of a concept image and tells them apart", () => {
    const c = conceptImage({ concepts: ["ring", "split"], background: "gray" })
    expect(c.caption).toBe("a <v1> circle and a <v2> square on a gray background")
    for (const image of [c.image, addNoise(c.image, 0.1, 0, 0)]) {
      const d = detect(image)
      expect(d.objects.map((o) => o.shape)).toEqual(["circle", "square"])
      const [ring, split] = d.objects
      expect(appearanceSimilarity(ring!, novelAppearance("ring"))).toBeGreaterThan(0.95)
      expect(appearanceSimilarity(split!, novelAppearance("split"))).toBeGreaterThan(0.95)
      expect(isNovel(ring!, novelAppearance("split"))).toBe(false)
      expect(isNovel(split!, novelAppearance("ring"))).toBe(false)
      expect(checkAgainstPrompt(d, parsed(c.caption), c.concepts).allCorrect).toBe(true)
      expect(checkAgainstPrompt(d, parsed(c.caption), { "<v1>": "split", "<v2>": "ring" }).colours).toBe(false)
    }
  })

  it("gives an object in one tone of an appearance half the similarity, below the threshold", () => {
    const scene = Result.getOrThrow(sceneFromSpec(parsed("a red circle on a gray background"), { seed: 0, index: 1 }))
    const red = renderScene(scene)
    const bg = BACKGROUND_RGB.gray
    const ring = novelAppearance("ring")
    for (const tone of ring.palette) {
      // repaint the red disc in one of the ring's tones, keeping each pixel's coverage
      const data = new Float32Array(red.data.length)
      for (let i = 0; i < 32 * 32; i++) {
        const p = [red.data[3 * i]!, red.data[3 * i + 1]!, red.data[3 * i + 2]!] as const
        const coverage = rgbDistance(p, bg) / rgbDistance(COLOUR_RGB.red, bg)
        for (let k = 0; k < 3; k++) data[3 * i + k] = bg[k]! + coverage * (tone.rgb[k]! - bg[k]!)
      }
      const [object] = detect({ width: 32, height: 32, data }).objects
      expect(appearanceSimilarity(object!, ring)).toBeCloseTo(0.5, 5)
      expect(isNovel(object!, ring)).toBe(false)
    }
    const [named] = detect(red).objects
    expect(appearanceSimilarity(named!, ring)).toBe(0)
  })
})
