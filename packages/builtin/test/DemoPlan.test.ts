import { describe, expect, it } from "vitest"
import { officialCalibration } from "@disendiff/core/loss/LossCalibrator.js"
import { trainingImage, regularizationSet } from "../src/demo/DemoData.js"
import { checkPlan, demoPlan, DEMO_SEED, GROUPS, plannedPrompts, trainConfig, workUnits } from "../src/demo/DemoPlan.js"
import type { DemoMetrics, MethodSummary } from "../src/demo/Metrics.js"
import { seedTable } from "../src/demo/SeedTable.js"
import { bootstrapMean, pairedDifference } from "@disendiff/core/compare/Bootstrap.js"
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
  const shares = (x: number) => ({ "<v1>": { share: x, n: 1 }, circle: { share: x, n: 1 } })
  const summary = (x: number, overlap: number): MethodSummary => ({
    combined: scores(x),
    concept1: scores(x),
    concept2: scores(x),
    attentionOverlap: overlap,
    attentionOnOwnObject: { training: shares(x), samples: {} }
  })
  // five prompts per group; DisenDiff scores 0.8 on every prompt, Custom Diffusion `x` (varying by seed)
  const prompts = (x: number) =>
    GROUPS.flatMap((group) => Array.from({ length: 5 }, (_, i) => ({ group, prompt: `${group} ${i}`, seeds: [], methods: { disendiff: scores(0.8), baseline: scores(x) } })))
  const run = (seed: number, x: number): DemoMetrics =>
    ({
      seed,
      quick: false,
      weights: { file: "w", model: "builtin-shapes", identity: "0123456789abcdef", builtin: true },
      summary: { disendiff: summary(0.8, 0.2), baseline: summary(x, 0.4) },
      prompts: prompts(x)
    }) as unknown as DemoMetrics
  const cells = (table: string, label: string, metric: string) => {
    const line = table.split("\n").find((l) => l.startsWith(`| ${label} | ${metric} |`))
    expect(line).toBeDefined()
    return line!.split("|").slice(3, -1).map((c) => c.trim().match(/^(-?[\d.]+) \[(-?[\d.]+), (-?[\d.]+)\]$/)!.slice(1).map(Number))
  }

  it("gives each method's mean with a bootstrap interval over seeds and prompts, and the paired difference", () => {
    const runs = [run(1, 0.2), run(2, 0.4), run(3, 0.6)]
    const table = seedTable(runs)
    expect(table).toContain("over 3 seeds (1, 2, 3), full demo, model builtin-shapes (identity 0123456789ab)")
    expect(table).toContain("| prompts | metric | DisenDiff | Custom Diffusion (baseline) | DisenDiff − Custom Diffusion (baseline) |")
    // constant scores have a zero-width interval
    expect(cells(table, "concept 1 alone", "image alignment ↑")[0]).toEqual([0.8, 0.8, 0.8])
    // the baseline varies by seed only: mean 0.4, interval inside the seeds' range and around the mean
    const [dd, cd, diff] = cells(table, "concept 1 alone", "image alignment ↑")
    expect(cd![0]).toBe(0.4)
    expect(cd![1]).toBeGreaterThanOrEqual(0.2)
    expect(cd![1]).toBeLessThan(0.4)
    expect(cd![2]).toBeGreaterThan(0.4)
    expect(cd![2]).toBeLessThanOrEqual(0.6)
    // paired: DisenDiff minus the baseline, with the library's paired bootstrap on the same draws
    const matrix = (method: "disendiff" | "baseline") => runs.map((r) => r.prompts.filter((p) => p.group === "concept1").map((p) => p.methods[method].imageAlignment))
    const d = pairedDifference(matrix("disendiff"), matrix("baseline"), { resamples: 2000 })
    expect(diff).toEqual([d.mean, d.low, d.high].map((x) => Number(x.toFixed(2))))
    expect(diff![0]).toBeCloseTo(dd![0]! - cd![0]!, 10)
    expect(diff![1]).toBeGreaterThan(0)
    // the same numbers as the library's bootstrap over the seeds x prompts matrix
    const m = runs.map((r) => r.prompts.filter((p) => p.group === "concept2").map((p) => p.methods.baseline.leakage))
    const i = bootstrapMean(m, { resamples: 2000 })
    expect(cells(table, "concept 2 alone", "leakage ↓")[1]).toEqual([i.mean, i.low, i.high].map((x) => Number(x.toFixed(2))))
    expect(cells(table, "training image", "attention overlap ↓")).toEqual([[0.2, 0.2, 0.2], [0.4, 0.4, 0.4], [-0.2, -0.2, -0.2]])
    expect(cells(table, "training image", "attention of `circle` on its object ↑")[0]).toEqual([0.8, 0.8, 0.8])
    // 9 prompt rows, the overlap, two tokens on the training image, none on samples (no seed has them)
    expect(table.split("\n").filter((l) => l.startsWith("| ")).length).toBe(1 + 9 + 1 + 2)
  })
})
