import { Result } from "effect"
import { describe, expect, it } from "vitest"
import type { DemoMetrics } from "../src/demo/Metrics.js"
import { reading } from "../src/demo/Report.js"
import { attentionOverlap, attentionShare, meanShares, objectMasks, ownObjectShares, scoreImage, summarise } from "../src/demo/Metrics.js"
import { parseCaption } from "../src/world/Caption.js"
import { renderScene } from "../src/world/Render.js"
import { detect } from "../src/world/Detect.js"
import { type Scene, sceneFromSpec } from "../src/world/Scene.js"

const concepts = { "<v1>": "ring", "<v2>": "split" } as const
const spec = (caption: string) => Result.getOrThrow(parseCaption(caption))
/** A clean render of what the caption asks for, modifiers drawn as their concepts. */
const render = (caption: string, index = 0) => renderScene(Result.getOrThrow(sceneFromSpec(spec(caption), { seed: 3, index, concepts })))

describe("demo metrics on rendered world images", () => {
  it("a render of the prompt itself scores full alignment and no leakage", () => {
    for (const caption of ["a <v1> circle on a black background", "a <v1> circle and a <v2> square on a gray background", "a green circle and a <v2> square on a black background"]) {
      const s = scoreImage(render(caption), spec(caption), concepts)
      expect(s.imageAlignment, caption).toBeGreaterThan(0.95)
      expect(s.textAlignment, caption).toBe(1)
      expect(s.allCorrect, caption).toBe(true)
      expect(s.leaked, caption).toBe(false)
    }
  })

  it("the other concept appearing beside a concept prompted alone is leakage", () => {
    const image = render("a <v1> circle and a <v2> square on a black background")
    const s = scoreImage(image, spec("a <v1> circle on a black background"), concepts)
    expect(s.leaked).toBe(true)
    // the ring is there and matched: alignment stays high, but the count is wrong
    expect(s.imageAlignment).toBeGreaterThan(0.95)
    expect(s.textAlignment).toBeLessThan(1)
  })

  it("the asked object taking on the other concept's look is leakage, and half image alignment (shape only)", () => {
    const base = Result.getOrThrow(sceneFromSpec(spec("a <v1> circle on a white background"), { seed: 3, index: 0, concepts }))
    const swapped: Scene = { ...base, objects: base.objects.map((o) => ({ ...o, appearance: { kind: "novel", concept: "split", modifier: "<v2>" } })) }
    const s = scoreImage(renderScene(swapped), spec("a <v1> circle on a white background"), concepts)
    expect(s.leaked).toBe(true)
    expect(s.imageAlignment).toBeCloseTo(0.5, 2)
    expect(s.textAlignment).toBe(0.75) // count, shape and background right; the appearance wrong
  })

  it("two rings for a prompt asking for a ring and a split square leak the ring", () => {
    const s = scoreImage(render("a <v1> circle and a <v1> circle on a gray background"), spec("a <v1> circle and a <v2> square on a gray background"), concepts)
    expect(s.leaked).toBe(true)
    // the ring matches its object fully; the split square's best object is a circle in the wrong tones
    expect(s.imageAlignment).toBeGreaterThan(0.45)
    expect(s.imageAlignment).toBeLessThan(0.55)
  })

  it("a named-colour circle for a ring scores the shape only; an empty image scores nothing but the background", () => {
    const red = scoreImage(render("a red circle on a black background"), spec("a <v1> circle on a black background"), concepts)
    expect(red.imageAlignment).toBeCloseTo(0.5, 5)
    expect(red.textAlignment).toBe(0.75)
    expect(red.leaked).toBe(false)
    const empty = scoreImage({ width: 32, height: 32, data: new Float32Array(32 * 32 * 3).fill(0.05) }, spec("a <v1> circle on a black background"), concepts)
    expect(empty).toEqual({ imageAlignment: 0, textAlignment: 0.25, leaked: false, allCorrect: false })
  })

  it("summarise averages alignments and counts leaking images", () => {
    const s = summarise([
      { imageAlignment: 1, textAlignment: 0.5, leaked: true, allCorrect: false },
      { imageAlignment: 0.5, textAlignment: 1, leaked: false, allCorrect: true },
      { imageAlignment: 0, textAlignment: 0.75, leaked: false, allCorrect: false },
      { imageAlignment: 0.5, textAlignment: 0.25, leaked: true, allCorrect: false }
    ])
    expect(s).toEqual({ images: 4, imageAlignment: 0.5, textAlignment: 0.625, leakage: 0.5, allCorrect: 0.25 })
  })

  it("attention overlap is the soft IoU of min-max normalised maps", () => {
    expect(attentionOverlap([0, 1, 0.5], [1, 0, 0.5])).toBeCloseTo(0.25 / 2.75, 10)
    // scale and offset do not matter
    expect(attentionOverlap([3, 5, 4], [7, 1, 4])).toBeCloseTo(0.25 / 2.75, 10)
    // identical maps overlap fully only where they are 0 or 1: [0, 1, 0.25, 0.25] gives 1.125 / (3 - 1.125)
    expect(attentionOverlap([0.1, 0.9, 0.3, 0.3], [0.1, 0.9, 0.3, 0.3])).toBeCloseTo(0.6, 10)
    expect(attentionOverlap([2, 0, 2, 0], [5, 1, 5, 1])).toBeCloseTo(1, 10)
    expect(attentionOverlap([1, 0, 0, 0], [0, 0, 0, 1])).toBe(0)
  })
})

describe("attention on its own object", () => {
  const caption = "a <v1> circle and a <v2> square on a gray background"
  const image = render(caption)
  const tokens = ["a", "<v1>", "circle", "and", "a", "<v2>", "square", "on", "a", "gray", "background"].map((token, i) => ({ position: i + 1, token }))
  const [left, right] = objectMasks(image, 16, 16)

  it("finds each object's coverage at the map's resolution, left to right", () => {
    const total = (m: Float64Array) => m.reduce((a, v) => a + v, 0)
    // a 32 px image in 16x16 cells: each cell is 4 pixels
    expect(total(left!) * 4).toBeCloseTo(detectArea(0), 5)
    expect(total(right!) * 4).toBeCloseTo(detectArea(1), 5)
    expect(Math.max(...left!)).toBeLessThanOrEqual(1 + 1e-9)
  })

  it("is 1 for a map on the object, its area share for a uniform map, and follows each word to its object", () => {
    expect(attentionShare(left!.map((v) => (v >= 1 ? 3 : 0)), left!)).toBe(1)
    const uniform = new Float64Array(256).fill(1)
    expect(attentionShare(uniform, left!)).toBeCloseTo(left!.reduce((a, v) => a + Math.min(1, v), 0) / 256, 10)
    // maps that sit inside the left object for the first concept's words and inside the right for the second's
    const core = (m: Float64Array) => m.map((v) => (v >= 1 - 1e-9 ? 1 : 0))
    const mapAt = (p: number) => (p <= 3 ? core(left!) : core(right!))
    const shares = ownObjectShares(image, tokens, mapAt, 16, 16)!
    expect(shares.map((s) => s.token)).toEqual(["<v1>", "circle", "<v2>", "square"])
    for (const s of shares) expect(s.share).toBeCloseTo(1, 10)
    const swapped = ownObjectShares(image, tokens, (p) => (p <= 3 ? core(right!) : core(left!)), 16, 16)!
    for (const s of swapped) expect(s.share).toBe(0)
    // an image without both objects has nothing to compare with
    expect(ownObjectShares(render("a <v1> circle on a gray background"), tokens, mapAt, 16, 16)).toBeNull()
    expect(meanShares([shares, null, swapped])).toEqual({
      "<v1>": { share: (shares[0]!.share + swapped[0]!.share) / 2, n: 2 },
      circle: { share: (shares[1]!.share + swapped[1]!.share) / 2, n: 2 },
      "<v2>": { share: (shares[2]!.share + swapped[2]!.share) / 2, n: 2 },
      square: { share: (shares[3]!.share + swapped[3]!.share) / 2, n: 2 }
    })
  })
})

const detectArea = (k: number) => detect(render("a <v1> circle and a <v2> square on a gray background")).objects[k]!.area

describe("the report's one-line reading", () => {
  const scores = (imageAlignment: number, leakage: number) => ({ images: 8, imageAlignment, textAlignment: 0.5, leakage, allCorrect: 0 })
  const metrics = (d: [number, number], b: [number, number]) =>
    ({
      summary: {
        disendiff: { combined: scores(0, 0), concept1: scores(...d), concept2: scores(...d) },
        baseline: { combined: scores(0, 0), concept1: scores(...b), concept2: scores(...b) }
      }
    }) as unknown as DemoMetrics

  it("compares the concept-alone groups and says when the concepts were not learned", () => {
    expect(reading(metrics([0.8, 0.1], [0.75, 0.3]))).toBe(
      "with concepts prompted alone, DisenDiff's leakage (0.10) is lower than Custom Diffusion's (0.30) and its image alignment (0.80) higher than Custom Diffusion's (0.75); one seed is one draw: the table over several seeds (docs/demo-seeds.md) says whether the difference holds."
    )
    expect(reading(metrics([0.4, 0], [0.4, 0]))).toContain("is the same as Custom Diffusion's (0.00)")
    expect(reading(metrics([0.4, 0], [0.4, 0]))).toContain("the model did not learn the concepts")
  })
})
