import { describe, expect, it } from "vitest"
import { officialCalibration } from "@disendiff/core/loss/LossCalibrator.js"
import { trainingImage, regularizationSet } from "../src/demo/DemoData.js"
import { checkPlan, demoPlan, DEMO_SEED, GROUPS, plannedPrompts, trainConfig, workUnits } from "../src/demo/DemoPlan.js"
import type { DemoMetrics, MethodSummary } from "../src/demo/Metrics.js"
import { seedTable } from "../src/demo/SeedTable.js"
import { detect } from "../src/world/Detect.js"
import { novelAppearance } from "../src/world/NovelAppearance.js"
import { isNovel } from "../src/world/Score.js"
import { rgbDistance } from "../src/world/Vocabulary.js"

describe("the demo's fixed plan", () => {
  it("has at least five world prompts per group, each asking for exactly its group's concepts", () => {
    const plan = demoPlan()
    expect(plan.seed).toBe(DEMO_SEED)
    for (const g of GROUPS) expect(plan.prompts[g].length).toBeGreaterThanOrEqual(5)
    expect(checkPlan(plan)).toBeUndefined()
    expect(plan.prompts.concept1.every((p) => p.includes("<v1>") && !p.includes("<v2>"))).toBe(true)
    expect(plan.prompts.concept2.every((p) => p.includes("<v2>") && !p.includes("<v1>"))).toBe(true)
  })

  it("refuses prompts outside the world, with a concept's wrong class word, or in the wrong group", () => {
    const plan = demoPlan()
    const withPrompt = (group: "combined" | "concept1", prompt: string) => checkPlan({ ...plan, prompts: { ...plan.prompts, [group]: [prompt] } })
    expect(withPrompt("concept1", "a <v1> cat on a black background")?.message).toContain('unknown word "cat"')
    expect(withPrompt("concept1", "a <v1> square on a black background")?.message).toContain('write "<v1> circle"')
    expect(withPrompt("concept1", "a <v2> square on a black background")?.message).toContain("must ask for <v1>")
    expect(withPrompt("combined", "a <v1> circle on a black background")?.message).toContain("must ask for <v1> and <v2>")
  })

  it("gives every image its own sampling seed, derived from the plan's seed", () => {
    const prompts = plannedPrompts(demoPlan({ seed: 3 }))
    const seeds = prompts.flatMap((p) => p.seeds)
    expect(prompts.length).toBe(15)
    expect(new Set(seeds).size).toBe(15 * 4)
    expect(prompts[1]!.seeds).toEqual([300_100, 300_101, 300_102, 300_103])
    expect(prompts.map((p) => p.first)).toEqual(prompts.map((_, i) => 4 * i))
    expect(plannedPrompts(demoPlan({ seed: 4 }))[1]!.seeds[0]).toBe(400_100)
  })

  it("--quick does less work; both methods train on the same data and differ only in calibration", () => {
    const full = demoPlan()
    const quick = demoPlan({ quick: true })
    expect(quick.training.steps).toBeLessThan(full.training.steps)
    expect(quick.sampling.seedsPerPrompt).toBeLessThan(full.sampling.seedsPerPrompt)
    // 800 steps x 4 rows x 3 passes; 60 images x 25 steps x 2 rows (guidance)
    expect(workUnits(full)).toEqual({ train: 9600, sample: 3000, total: 2 * (9600 + 3000) })
    const files = { image: "i.png", regularization: "reg", caption: "a <v1> circle and a <v2> square on a gray background" }
    const a = trainConfig(full, "disendiff", files)
    const b = trainConfig(full, "baseline", files)
    expect(a.calibration.enabled).toBe(true)
    // the built-in model's weight (docs/method.md), the rest of the calibration official
    expect(a.calibration).toEqual({ ...officialCalibration, weight: 0.1 })
    expect(b.calibration.enabled).toBe(false)
    expect({ ...a, calibration: null }).toEqual({ ...b, calibration: null })
    expect(a).toMatchObject({ backbone: "toy", template: "{}", seed: DEMO_SEED, steps: 800, learningRate: 2e-3, scaleLearningRate: false, batchSize: 4, gradientAccumulation: 1 })
  })

  it("draws the training image with both concepts and world-caption regularisation renders", () => {
    const plan = demoPlan()
    const data = trainingImage(plan)
    expect(data.caption).toBe("a <v1> circle and a <v2> square on a gray background")
    expect([data.image.width, data.image.height]).toEqual([32, 32])
    const objects = detect(data.image).objects
    expect(objects.map((o) => o.shape)).toEqual(["circle", "square"])
    expect(isNovel(objects[0]!, novelAppearance("ring"))).toBe(true)
    expect(isNovel(objects[1]!, novelAppearance("split"))).toBe(true)
    const reg = regularizationSet(plan)
    expect(reg.length).toBe(plan.training.regularizationImages)
    // class words alone, over the world's unnamed variation: flat and two-tone objects, many tones
    for (const r of reg) expect(r.caption).toMatch(/^a circle and a square on a (black|gray|white) background$/)
    const found = reg.flatMap((r) => detect(r.image).objects)
    expect(found.length).toBe(2 * reg.length)
    const twoTone = found.filter((o) => o.dominant[1].share >= 0.2 && rgbDistance(o.dominant[0].rgb, o.dominant[1].rgb) >= 0.3).length
    expect(twoTone / found.length).toBeGreaterThan(0.3)
    expect(twoTone / found.length).toBeLessThan(0.7)
    expect(new Set(found.map((o) => o.meanRgb.map((c) => c.toFixed(1)).join())).size).toBeGreaterThan(30)
  })
})

describe("seedTable", () => {
  const scores = (x: number) => ({ images: 4, imageAlignment: x, textAlignment: x / 2, leakage: 1 - x, allCorrect: 0 })
  const summary = (x: number, overlap: number): MethodSummary => ({ combined: scores(x), concept1: scores(x), concept2: scores(x), attentionOverlap: overlap, attentionOnOwnObject: { training: {}, samples: {} } })
  const run = (seed: number, x: number): DemoMetrics =>
    ({
      seed,
      quick: false,
      weights: { file: "w", model: "builtin-shapes", identity: "0123456789abcdef", builtin: true },
      summary: { disendiff: summary(x, 0.2), baseline: summary(x / 2, 0.4) }
    }) as unknown as DemoMetrics

  it("writes mean ± sample standard deviation [min, max] per method, group and metric", () => {
    const table = seedTable([run(1, 0.6), run(2, 0.8), run(3, 1.0)])
    expect(table).toContain("over 3 seeds (1, 2, 3), full demo, model builtin-shapes (identity 0123456789ab)")
    expect(table).toContain("| prompts | metric | DisenDiff | Custom Diffusion (baseline) |")
    // image alignment 0.6, 0.8, 1.0: mean 0.8, sd 0.2; the baseline's half of that
    expect(table).toContain("| concept 1 alone | image alignment ↑ | 0.80 ± 0.20 [0.60, 1.00] | 0.40 ± 0.10 [0.30, 0.50] |")
    expect(table).toContain("| concept 2 alone | leakage ↓ | 0.20 ± 0.20 [0.00, 0.40] | 0.60 ± 0.10 [0.50, 0.70] |")
    expect(table).toContain("| training image | attention overlap ↓ | 0.20 ± 0.00 [0.20, 0.20] | 0.40 ± 0.00 [0.40, 0.40] |")
    expect(table.split("\n").filter((l) => l.startsWith("| ")).length).toBe(1 + 9 + 1)
  })
})
