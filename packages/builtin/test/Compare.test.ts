/**
 * The comparison on tiny stand-in weights (untrained: the images are noise; what is tested is the
 * machinery): every method's cell runs, results.json holds every image and an interval per group and
 * metric, the figures and report are written, a rerun reuses every finished cell and writes the same
 * results.json byte for byte, and a grid cut short (a cell's result removed, another cell's training
 * checkpoint left mid-run) resumes to the same bytes.
 */
import { WasmBackend } from "@disendiff/backend-wasm"
import { assert, describe, it } from "@effect/vitest"
import { beforeAll } from "vitest"
import { Effect, Stream } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { type CompareEvent, comparePlan, type ComparePlan, type CompareResults, run } from "../src/compare/index.js"
import { tempDir } from "../../core/test/fixtures.js"
import { writeToyWeights } from "./fixtures.js"

/** Two training steps, one sampling seed of two steps per prompt, two class images for DreamBooth. */
export const tinyComparePlan = (methods: ReadonlyArray<string>, seeds: ReadonlyArray<number>): ComparePlan => {
  const plan = comparePlan({ methods, seeds, quick: true })
  return {
    ...plan,
    demo: {
      ...plan.demo,
      training: { ...plan.demo.training, steps: 2, regularizationImages: 2 },
      sampling: { ...plan.demo.sampling, steps: 2, seedsPerPrompt: 1 },
      attentionTimesteps: [500]
    },
    schedules: {
      textualInversion: { ...plan.schedules.textualInversion, steps: 3 },
      dreambooth: { ...plan.schedules.dreambooth, steps: 2, classImages: 2 }
    },
    resamples: 200
  }
}

let dir = ""
let weights = ""
beforeAll(async () => {
  dir = await tempDir()
  weights = await writeToyWeights(path.join(dir, "tiny.safetensors"))
})

const runAll = (plan: ComparePlan, out: string) =>
  Stream.runCollect(run({ plan, out, weights })).pipe(Effect.map((c) => [...c] as Array<CompareEvent>), Effect.provide(WasmBackend.make({ threads: 1 })))

const read = (file: string) => Effect.promise(() => fs.readFile(file, "utf8"))

describe("the comparison on stand-in weights", () => {
  it.effect("runs every method, writes results.json with intervals, figures and report, and reuses finished cells", () =>
    Effect.gen(function*() {
      const out = path.join(dir, "cmp")
      const methods = ["disendiff", "custom-diffusion", "textual-inversion", "dreambooth"]
      const plan = tinyComparePlan(methods, [1, 2])
      const events = yield* runAll(plan, out)
      const started = events.find((e) => e._tag === "GridStarted")
      assert.strictEqual(started?._tag === "GridStarted" && started.reused, 0)
      const progress = events.filter((e) => e._tag === "GridProgress")
      assert.closeTo(progress.at(-1)!._tag === "GridProgress" ? progress.at(-1)!.fraction : 0, 1, 1e-9)
      const results = JSON.parse(yield* read(path.join(out, "results.json"))) as CompareResults
      assert.deepStrictEqual(results.methods.map((m) => m.id), methods)
      assert.deepStrictEqual(results.methods.map((m) => m.trainable), ["kv", "kv", "tokens", "unet"])
      // 4 methods x 2 seeds x 15 prompts x 1 image
      assert.strictEqual(results.images.length, 4 * 2 * 15)
      for (const g of ["combined", "concept1", "concept2"] as const) {
        for (const m of methods) {
          const e = results.table[g].imageAlignment[m]!
          assert.isTrue(e.low <= e.mean + 1e-12 && e.mean <= e.high + 1e-12, `${g} ${m} ${JSON.stringify(e)}`)
          assert.strictEqual(e.differenceFromDisenDiff === undefined, m === "disendiff")
        }
      }
      // the same sampling seeds for every method
      const seedsOf = (m: string) => results.images.filter((i) => i.method === m).map((i) => i.seed).join()
      assert.strictEqual(seedsOf("dreambooth"), seedsOf("disendiff"))
      for (const f of ["figures/bars-imageAlignment.svg", "figures/bars-imageAlignment.png", "figures/samples-dreambooth.png", "figures/attention-textual-inversion.png", "report.html"]) {
        yield* Effect.promise(() => fs.access(path.join(out, f)))
      }
      const first = yield* read(path.join(out, "results.json"))

      // rerun: every cell reused, the same bytes
      const again = yield* runAll(plan, out)
      const s2 = again.find((e) => e._tag === "GridStarted")
      assert.strictEqual(s2?._tag === "GridStarted" && s2.reused, 8)
      assert.strictEqual(yield* read(path.join(out, "results.json")), first)

      // cut short: one cell's result gone, another's checkpoint back at step 1 of 2: resumes to the same bytes
      yield* Effect.promise(() => fs.rm(path.join(out, "runs/custom-diffusion/seed-2/result.json")))
      yield* Effect.promise(() => fs.rm(path.join(out, "runs/disendiff/seed-1"), { recursive: true }))
      const partial = tinyComparePlan(["disendiff"], [1])
      const cut = { ...partial, demo: { ...partial.demo, training: { ...partial.demo.training, steps: 1 } } }
      // a one-step run leaves a checkpoint at step 1 (its result, of other settings, is removed)
      yield* runAll(cut, out)
      yield* Effect.promise(() => fs.rm(path.join(out, "runs/disendiff/seed-1/result.json")))
      const third = yield* runAll(plan, out)
      const s3 = third.find((e) => e._tag === "GridStarted")
      assert.strictEqual(s3?._tag === "GridStarted" && s3.reused, 6)
      assert.strictEqual(yield* read(path.join(out, "results.json")), first)

      // a grid of other settings refuses a folder that holds finished runs of these
      const refused = yield* runAll(cut, out).pipe(Effect.flip)
      assert.match(refused.message, /other settings/)
    }), 300_000)
})
