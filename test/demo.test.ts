/**
 * The demo pipeline end to end on small stand-in weights (untrained, so the images are noise; what is
 * tested is the machinery: events, files, metrics.json's keys and ranges, the report), on wasm.
 */
import { WasmBackend } from "@disendiff/backend-wasm"
import { readImage } from "@disendiff/core"
import { ToyBackbone } from "@disendiff/builtin"
import { type DemoEvent, type DemoMetrics, GROUPS, METHODS, run } from "@disendiff/builtin/demo"
import { assert, describe, it } from "@effect/vitest"
import { beforeAll } from "vitest"
import { Effect, Exit, Stream } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { tempDir } from "../packages/core/test/fixtures.js"
import { tinyDemoPlan, writeToyWeights } from "../packages/builtin/test/fixtures.js"
import { disendiff } from "./cli.js"

const tinyPlan = tinyDemoPlan

let dir = ""
let weights = ""

beforeAll(async () => {
  dir = await tempDir()
  weights = await writeToyWeights(path.join(dir, "tiny.safetensors"))
})

describe("the demo pipeline on stand-in weights", () => {
  it.effect("trains both methods, samples every prompt, and writes figures, metrics.json and report.html", () =>
    Effect.gen(function*() {
      const out = path.join(dir, "demo")
      const plan = tinyPlan()
      const events = [...yield* Stream.runCollect(run({ plan, out, weights }))] as Array<DemoEvent>

      // events: started, phases in order, progress to 100%, finished
      assert.strictEqual(events[0]!._tag, "Started")
      assert.deepStrictEqual(
        events.filter((e) => e._tag === "Phase").map((e) => `${e.phase}:${e.method}`),
        ["prepare:null", "train:disendiff", "attention:disendiff", "sample:disendiff", "train:baseline", "attention:baseline", "sample:baseline", "report:null"]
      )
      const progress = events.filter((e) => e._tag === "Progress")
      // 2 training steps and 2 sampling steps of 2 chunks (8 + 7 images) per method
      assert.strictEqual(progress.length, 2 * (2 + 2 * 2))
      assert.isTrue(progress.every((p, i) => i === 0 || p.fraction > progress[i - 1]!.fraction))
      assert.closeTo(progress.at(-1)!.fraction, 1, 1e-9)
      assert.isTrue(progress.every((p) => Number.isFinite(p.etaSeconds) && p.etaSeconds >= 0))
      const finished = events.at(-1)!
      assert.strictEqual(finished._tag, "Finished")

      // metrics.json: the required summary keys, numbers in [0, 1], and per-prompt numbers
      const metrics = JSON.parse(yield* Effect.promise(() => fs.readFile(path.join(out, "metrics.json"), "utf8"))) as DemoMetrics
      for (const m of METHODS) {
        for (const g of GROUPS) {
          for (const key of ["imageAlignment", "textAlignment", "leakage"] as const) {
            const x = metrics.summary[m][g][key]
            assert.isTrue(typeof x === "number" && x >= 0 && x <= 1, `${m}.${g}.${key} = ${x}`)
          }
          assert.strictEqual(metrics.summary[m][g].images, 5)
        }
        const overlap = metrics.summary[m].attentionOverlap
        assert.isTrue(overlap > 0 && overlap <= 1, `${m} overlap ${overlap}`)
        assert.isTrue(Number.isFinite(metrics.training[m].loss))
      }
      assert.isNumber(metrics.training.disendiff.bind)
      assert.isNull(metrics.training.baseline.bind)
      assert.strictEqual(metrics.prompts.length, 15)
      assert.deepStrictEqual(metrics.prompts[0]!.methods.baseline.perImage.map((i) => i.seed), [500_000])
      assert.strictEqual(metrics.seed, 5)
      assert.deepStrictEqual(metrics.plan.prompts, plan.prompts)
      assert.isFalse(metrics.weights.builtin)

      // the files: training image, regularisation set, both checkpoints, figures, report
      const training = yield* readImage(path.join(out, "training-image.png"))
      assert.deepStrictEqual([training.width, training.height], [32, 32])
      const captions = yield* Effect.promise(() => fs.readFile(path.join(out, "regularization", "captions.txt"), "utf8"))
      assert.strictEqual(captions.trim().split("\n").length, 2)
      for (const m of METHODS) yield* Effect.promise(() => fs.access(path.join(out, m, "checkpoint.msgpack")))
      const figures = yield* Effect.promise(() => fs.readdir(path.join(out, "figures")))
      // training image, overview, 2 training-attention rows, and per method and prompt a grid and an attention row
      assert.strictEqual(figures.length, 2 + 2 + 2 * 15 * 2)
      const sampleGrid = yield* readImage(path.join(out, "figures", "samples-disendiff-concept1-1.png"))
      assert.deepStrictEqual([sampleGrid.width, sampleGrid.height], [128, 128])
      const html = yield* Effect.promise(() => fs.readFile(path.join(out, "report.html"), "utf8"))
      assert.strictEqual(html.match(/<img src="data:image\/png;base64,/g)?.length, figures.length)
      assert.include(html, '<table id="metrics">')
      assert.include(html, "a &lt;v1&gt; circle on a black background")
      assert.notInclude(html, "<v1>")
      assert.include(html, "not from the built-in model")
    }).pipe(Effect.provide(WasmBackend.layer)), 300_000)

  it("its checkpoints sample with `disendiff sample --model` naming the weights it trained on, and not without", async () => {
    const checkpoint = path.join(dir, "demo", "disendiff", "checkpoint.msgpack")
    const args = ["sample", "--checkpoint", checkpoint, "--prompt", "a <v1> circle on a black background", "--n", "1", "--steps", "1", "--workers", "1"]
    const without = await disendiff([...args, "--out", path.join(dir, "s-without")])
    assert.strictEqual(without.code, 1)
    assert.include(without.stderr, "--model FILE (tiny.safetensors)")
    const withModel = await disendiff([...args, "--model", weights, "--out", path.join(dir, "s-with")])
    assert.strictEqual(withModel.code, 0, withModel.stderr)
    assert.include(withModel.stdout, "wrote 1 images")
  }, 600_000)

  it.effect("names the missing weights file and how to make it", () =>
    Effect.gen(function*() {
      const missing = path.join(dir, "nope.safetensors")
      const a = yield* Stream.runDrain(run({ plan: tinyPlan(), out: path.join(dir, "no-weights"), weights: missing })).pipe(Effect.exit)
      assert.isTrue(Exit.isFailure(a))
      assert.include(String(Exit.isFailure(a) ? a.cause : ""), missing)
      // nothing was written before the model was found
      yield* Effect.promise(() => fs.access(path.join(dir, "no-weights")).then(() => assert.fail("out folder written"), () => undefined))
      const e = yield* Stream.runDrain(run({ plan: tinyPlan(), out: path.join(dir, "no-weights"), weights: missing })).pipe(Effect.flip)
      assert.strictEqual(e._tag, "ModelError")
      // the installed model's file, when it is missing, says how pretraining makes it
      const builtin = ToyBackbone.missingWeights(ToyBackbone.builtinWeightsPath)
      assert.include(builtin.message, ToyBackbone.builtinWeightsPath)
      assert.include(builtin.message, `disendiff export-builtin --checkpoint P/checkpoint.msgpack --out ${ToyBackbone.builtinWeightsPath}`)
    }).pipe(Effect.provide(WasmBackend.layer)))
})
