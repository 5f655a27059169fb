/**
 * The comparison's generic part: bootstrap intervals against hand-computed cases, every method's
 * trainable set on the fake backbone (what changes, what stays bit for bit), and the grid program on the
 * fake backbone (results in cell order whatever the jobs, finished cells reused).
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Layer, Stream } from "effect"
import * as path from "node:path"
import { bootstrapMean, pairedDifference, quantile } from "../src/compare/Bootstrap.js"
import { trainCell } from "../src/compare/Cell.js"
import { type CellRunner, type GridEvent, gridCells, runGrid } from "../src/compare/Grid.js"
import { allMethods, methodDefinition, paperSchedules, parseMethods } from "../src/compare/Methods.js"
import {
  AttentionProbe,
  Backbone,
  CheckpointFile,
  Checkpoints,
  CpuBackend,
  defaultTrainConfig,
  FakeBackbone,
  LossCalibrator,
  modifierEmbeddingsName,
  Optimizer,
  type TrainConfig,
  Trainer
} from "../src/index.js"
import { tempDir, writeTestImage } from "./fixtures.js"

describe("bootstrap intervals", () => {
  it("quantile interpolates between order statistics (R type 7)", () => {
    assert.strictEqual(quantile([1, 2, 3, 4], 0), 1)
    assert.strictEqual(quantile([1, 2, 3, 4], 1), 4)
    assert.closeTo(quantile([1, 2, 3, 4], 0.5), 2.5, 1e-12)
    // h = 3 * 0.25 = 0.75: 1 + 0.75 * (2 - 1)
    assert.closeTo(quantile([1, 2, 3, 4], 0.25), 1.75, 1e-12)
    assert.closeTo(quantile([0, 10], 0.975), 9.75, 1e-12)
  })

  it("a constant matrix has a zero-width interval", () => {
    const e = bootstrapMean([[0.3, 0.3], [0.3, 0.3]], { resamples: 100 })
    assert.closeTo(e.mean, 0.3, 1e-12)
    assert.closeTo(e.low, 0.3, 1e-12)
    assert.closeTo(e.high, 0.3, 1e-12)
  })

  it("two seeds 0 and 1: replicates are 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4, so the interval is [0, 1]", () => {
    const e = bootstrapMean([[0], [1]], { resamples: 4000 })
    assert.strictEqual(e.mean, 0.5)
    assert.strictEqual(e.low, 0)
    assert.strictEqual(e.high, 1)
  })

  it("three seeds 0, 0, 1: P(mean = 1) = 1/27 > 2.5%, P(mean = 0) = 8/27: interval [0, 1]; one prompt per seed, prompts add nothing", () => {
    const e = bootstrapMean([[0], [0], [1]], { resamples: 4000 })
    assert.closeTo(e.mean, 1 / 3, 1e-12)
    assert.strictEqual(e.low, 0)
    assert.strictEqual(e.high, 1)
    // eight seeds of which one is 1: P(mean >= 1/4) = 1 - (7/8)^8 - 8 (1/8)(7/8)^7 = 0.264 ; P(mean >= 3/8) = 0.0850 ; P(mean >= 1/2) = 0.0158
    // so the 97.5% quantile is 3/8 (between 1-0.0850 and 1-0.0158)
    const f = bootstrapMean([[1], [0], [0], [0], [0], [0], [0], [0]], { resamples: 20000 })
    assert.strictEqual(f.high, 3 / 8)
    assert.strictEqual(f.low, 0)
  })

  it("resamples prompts too: one seed with prompts 0 and 1 gives [0, 1]", () => {
    const e = bootstrapMean([[0, 1]], { resamples: 4000 })
    assert.strictEqual(e.low, 0)
    assert.strictEqual(e.high, 1)
  })

  it("paired differences cancel what both methods share", () => {
    const b = [[0.1, 0.9], [0.5, 0.2], [0.7, 0.4]]
    const a = b.map((r) => r.map((v) => v + 0.25))
    const d = pairedDifference(a, b, { resamples: 500 })
    assert.closeTo(d.mean, 0.25, 1e-12)
    assert.closeTo(d.low, 0.25, 1e-12)
    assert.closeTo(d.high, 0.25, 1e-12)
    // unpaired, the same data would have a wide interval
    const own = bootstrapMean(a, { resamples: 500 })
    assert.isTrue(own.high - own.low > 0.1)
  })

  it("is the same on every call, and refuses ragged input", () => {
    const x = [[0.2, 0.4, 0.9], [0.1, 0.3, 0.3]]
    assert.deepStrictEqual(bootstrapMean(x), bootstrapMean(x))
    assert.throws(() => bootstrapMean([[1, 2], [1]]))
    assert.throws(() => bootstrapMean([]))
  })
})

describe("methods", () => {
  it("parses method lists, ablations and trainable sets, and names an unknown one", () => {
    assert.deepStrictEqual(parseMethods({}), { ok: true, ids: ["disendiff", "custom-diffusion", "textual-inversion", "dreambooth"] })
    const all = parseMethods({ methods: "disendiff", ablations: "all", trainable: "qkv" })
    assert.isTrue(all.ok && all.ids.length === 9 && all.ids.at(-1) === "trainable-qkv")
    assert.deepStrictEqual(parseMethods({ methods: "disendiff,foo" }), { ok: false, unknown: "foo", choices: allMethods.map((m) => m.id) })
  })

  const base = defaultTrainConfig({ backbone: "fake", image: "a.png", prompt: "<v1> cat and <v2> dog" })
  it("sets each method up from DisenDiff's configuration", () => {
    const setup = (id: string) => methodDefinition(id)!.setup(base, paperSchedules)
    assert.deepStrictEqual(setup("disendiff"), base)
    assert.isFalse(setup("custom-diffusion").calibration.enabled)
    const ti = setup("textual-inversion")
    assert.deepStrictEqual([ti.trainable, ti.steps, ti.learningRate, ti.batchSize, ti.calibration.enabled, ti.regularization.generate], ["tokens", 5000, 5e-4, 4, false, 0])
    const db = setup("dreambooth")
    assert.deepStrictEqual([db.trainable, db.steps, db.learningRate, db.batchSize, db.calibration.enabled, db.regularization.generate], ["unet", 250, 5e-6, 2, false, 200])
    // DreamBooth's setup with DisenDiff's calibration: only the attention terms differ from DreamBooth
    const dbdd = setup("dreambooth-disendiff")
    assert.deepStrictEqual(dbdd, { ...db, calibration: base.calibration })
    assert.isTrue(dbdd.calibration.enabled)
    assert.isTrue(parseMethods({ methods: "dreambooth,dreambooth-disendiff" }).ok)
    assert.strictEqual(setup("no-bind").calibration.bind, false)
    assert.strictEqual(setup("twice-suppression").calibration.suppression, "twice")
    assert.strictEqual(setup("trainable-attn2").trainable, "attn2")
  })

  it("calibration-weight variants: DisenDiff with only the weight changed, by --weights or by id", () => {
    const parsed = parseMethods({ methods: "disendiff,custom-diffusion", weights: "0.1, 1,0.1" })
    assert.deepStrictEqual(parsed, { ok: true, ids: ["disendiff", "custom-diffusion", "disendiff-w0.1", "disendiff-w1"] })
    assert.deepStrictEqual(parseMethods({ methods: "disendiff-w0.3" }), { ok: true, ids: ["disendiff-w0.3"] })
    for (const bad of ["0", "-1", "x", "1e400"]) assert.isFalse(parseMethods({ weights: bad }).ok, bad)
    assert.isUndefined(methodDefinition("disendiff-w0.10"))
    const variant = methodDefinition("disendiff-w0.3")!
    const config = variant.setup(base, paperSchedules)
    assert.deepStrictEqual(config, { ...base, calibration: { ...base.calibration, weight: 0.3 } })
    assert.strictEqual(variant.kind, "weight")
  })

  it("learning-rate variants: Textual Inversion or DreamBooth with only the learning rate changed, by id", () => {
    assert.deepStrictEqual(parseMethods({ methods: "dreambooth,dreambooth-lr4e-5,textual-inversion-lr5e-3,dreambooth-lr4e-5" }), {
      ok: true,
      ids: ["dreambooth", "dreambooth-lr4e-5", "textual-inversion-lr5e-3"]
    })
    // one spelling per rate, and only for the methods with a schedule of their own
    for (const bad of ["dreambooth-lr0.00004", "dreambooth-lr4.0e-5", "textual-inversion-lr0.005", "dreambooth-lr0", "dreambooth-lr-1", "disendiff-lr1e-3", "custom-diffusion-lr1e-3", "dreambooth-lr1e400"]) {
      assert.isFalse(parseMethods({ methods: bad }).ok, bad)
      assert.isUndefined(methodDefinition(bad), bad)
    }
    assert.deepStrictEqual(parseMethods({ methods: "dreambooth-lr0.00004" }), { ok: false, unknown: "dreambooth-lr0.00004", choices: ["dreambooth-lr4e-5"] })
    for (const [id, method, rate] of [["dreambooth-lr4e-5", "dreambooth", 4e-5], ["textual-inversion-lr5e-3", "textual-inversion", 0.005]] as const) {
      const variant = methodDefinition(id)!
      assert.strictEqual(variant.kind, "learning-rate")
      assert.deepStrictEqual(variant.setup(base, paperSchedules), { ...methodDefinition(method)!.setup(base, paperSchedules), learningRate: rate })
    }
  })
})

const layers = (config: TrainConfig) => FakeBackbone.layer({ modifiers: ["<v1>", "<v2>"], trainable: config.trainable })

describe("every method's trainable set on the fake backbone", () => {
  for (const id of ["disendiff", "textual-inversion", "dreambooth", "dreambooth-disendiff", "trainable-qkv", "trainable-attn2"]) {
    it.effect(`${id}: the set trains, everything else stays bit for bit`, () =>
      Effect.gen(function*() {
        const dir = yield* Effect.promise(() => tempDir())
        const image = yield* Effect.promise(() => writeTestImage(dir))
        const base = { ...defaultTrainConfig({ backbone: "fake", image, prompt: "<v1> cat and <v2> dog" }), steps: 2, learningRate: 1e-2, scaleLearningRate: false, batchSize: 2, gradientAccumulation: 1 }
        const config = { ...methodDefinition(id)!.setup(base, { ...paperSchedules, textualInversion: { steps: 2, learningRate: 1e-2, batchSize: 2 }, dreambooth: { steps: 2, learningRate: 1e-3, batchSize: 2, classImages: 2, classPrompt: "a cat and a dog" } }) }
        const out = path.join(dir, id)
        yield* trainCell({ config, out }).pipe(Effect.provide(layers(config)))
        const snap = yield* CheckpointFile.load(path.join(out, "checkpoint.msgpack"))
        yield* Effect.gen(function*() {
          const backbone = yield* Backbone
          const names = [...snap.trainable.keys()].sort()
          const unet = names.filter((n) => n.startsWith("unet."))
          const expectUnet = { disendiff: /attn2\.to_[kv]\.weight$/, "trainable-qkv": /attn2\.to_[qkv]\.weight$/, "trainable-attn2": /\.attn2\./, dreambooth: /./, "dreambooth-disendiff": /./, "textual-inversion": /$^/ }[id]!
          assert.isTrue(unet.length > 0 || id === "textual-inversion")
          assert.isTrue(unet.every((n) => expectUnet.test(n)), `${id}: ${unet.join(", ")}`)
          assert.strictEqual(names.includes(modifierEmbeddingsName), !id.startsWith("dreambooth"))
          // every trained tensor moved; the frozen ones are the backbone's, untouched
          for (const n of names) {
            const before = (backbone.parameters.trainable.get(n) ?? backbone.parameters.frozen.get(n))!.dataSync()
            const after = snap.trainable.get(n)!.data
            assert.isTrue(after.some((v, i) => v !== before[i]), `${id}: ${n} did not change`)
          }
          for (const n of backbone.parameters.frozen.keys()) assert.isFalse(names.includes(n), `${id}: frozen ${n} was trained`)
          if (id.startsWith("dreambooth")) {
            // every UNet weight is in the set; the identifier rows are frozen
            assert.isTrue([...backbone.parameters.frozen.keys()].every((n) => !n.startsWith("unet.")))
            assert.isTrue(backbone.parameters.frozen.has(modifierEmbeddingsName))
          }
          if (id === "textual-inversion") assert.deepStrictEqual(names, [modifierEmbeddingsName])
        }).pipe(Effect.provide(layers(config)))
      }).pipe(Effect.provide(CpuBackend.layer)), 120_000)
  }
})

describe("the all-resolutions ablation", () => {
  const config = (image: string, id: string) => {
    const base = { ...defaultTrainConfig({ backbone: "fake", image, prompt: "<v1> cat and <v2> dog" }), steps: 2, learningRate: 1e-2, scaleLearningRate: false, batchSize: 2, gradientAccumulation: 1 }
    return methodDefinition(id)!.setup(base, paperSchedules)
  }
  it.effect("trains on every layer's maps (the fake backbone's 16x16 and 8x8): its weights differ from DisenDiff's", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.promise(() => tempDir())
      const image = yield* Effect.promise(() => writeTestImage(dir))
      const kv: Array<ArrayLike<number>> = []
      for (const id of ["disendiff", "all-resolutions"]) {
        const c = config(image, id)
        yield* trainCell({ config: c, out: path.join(dir, id) }).pipe(Effect.provide(layers(c)))
        const snap = yield* CheckpointFile.load(path.join(dir, id, "checkpoint.msgpack"))
        kv.push(snap.trainable.get([...snap.trainable.keys()].find((n) => n.startsWith("unet."))!)!.data)
      }
      // the same data, noise and base loss: only the maps the terms read differ
      const [a, b] = kv as [ArrayLike<number>, ArrayLike<number>]
      assert.isTrue(Array.from(a).some((v, i) => v !== b[i]), "all-resolutions trained as DisenDiff")
    }).pipe(Effect.provide(CpuBackend.layer)), 120_000)

  it.effect("the trainer refuses a probe that records other maps than the calibration reads", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.promise(() => tempDir())
      const image = yield* Effect.promise(() => writeTestImage(dir))
      const c = config(image, "all-resolutions")
      const exit = yield* Trainer.train({ config: c, out: path.join(dir, "run") }).pipe(
        Stream.runDrain,
        Effect.provide(Layer.mergeAll(FakeBackbone.layer({ modifiers: ["<v1>", "<v2>"] }), AttentionProbe.layer(), LossCalibrator.layer(c.calibration), Optimizer.layer(c.optimizer), Checkpoints.layer)),
        Effect.exit
      )
      assert.isTrue(Exit.isFailure(exit))
      assert.include(String(Cause.squash((exit as Exit.Failure<unknown, unknown>).cause)), "calibration.maps \"all-resolutions\"")
    }).pipe(Effect.provide(CpuBackend.layer)), 60_000)
})

describe("the grid program", () => {
  // a runner whose cells take different times: results must still come in cell order
  const runner = (done: Set<string>): CellRunner<string, never, never> => ({
    load: (c) => Effect.succeed(done.has(`${c.method}/${c.seed}`) ? `stored ${c.method}/${c.seed}` : undefined),
    run: (c, progress) =>
      Effect.gen(function*() {
        yield* Effect.sleep(`${(c.seed * 7) % 5} millis`)
        yield* progress(0.5, "half")
        return `ran ${c.method}/${c.seed}`
      }),
    cost: () => 1
  })
  const collect = (jobs: number, done: Set<string>) =>
    Stream.runCollect(runGrid({ cells: gridCells(["a", "b"], [1, 2, 3]), jobs, runner: runner(done) })).pipe(Effect.map((c) => [...c] as Array<GridEvent<string>>))

  it.live("gives results in cell order whatever the jobs, and reuses stored cells", () =>
    Effect.gen(function*() {
      const one = (yield* collect(1, new Set())).at(-1)!
      const three = (yield* collect(3, new Set())).at(-1)!
      assert.strictEqual(one._tag, "GridFinished")
      assert.deepStrictEqual(one._tag === "GridFinished" && one.results, three._tag === "GridFinished" && three.results)
      const partial = yield* collect(2, new Set(["a/2", "b/3"]))
      const started = partial[0]!
      assert.isTrue(started._tag === "GridStarted" && started.reused === 2)
      const last = partial.at(-1)!
      assert.deepStrictEqual(last._tag === "GridFinished" && last.results.map((r) => r.result), ["ran a/1", "stored a/2", "ran a/3", "ran b/1", "ran b/2", "stored b/3"])
      const progress = partial.filter((e) => e._tag === "GridProgress")
      assert.isTrue(progress.every((p, i) => i === 0 || p.fraction >= progress[i - 1]!.fraction))
      assert.strictEqual(progress.at(-1)!.fraction, 1)
    }))
})
