import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Stream } from "effect"
import * as path from "node:path"
import {
  AttentionProbe,
  Backbone,
  Checkpoints,
  CheckpointFile,
  CpuBackend,
  defaultTrainConfig,
  FakeBackbone,
  LossCalibrator,
  Optimizer,
  snapshotDigest,
  tf,
  type TrainConfig,
  Trainer,
  type TrainEvent
} from "../src/index.js"
import { tempDir, writeTestImage } from "./fixtures.js"

const services = (config: TrainConfig) =>
  Layer.mergeAll(
    FakeBackbone.layer({ modifiers: ["<v1>", "<v2>"] }),
    AttentionProbe.layer(),
    LossCalibrator.layer(config.calibration),
    Optimizer.layer(config.optimizer),
    Checkpoints.layer
  ).pipe(Layer.provideMerge(CpuBackend.layer))

const fakeConfig = (image: string, over: Partial<TrainConfig> = {}): TrainConfig => ({
  ...defaultTrainConfig({ backbone: "fake", image, prompt: "<v1> cat and <v2> dog" }),
  steps: 4,
  seed: 7,
  gradientAccumulation: 2,
  learningRate: 1e-3,
  ...over
})

const runTrain = (config: TrainConfig, out: string, resume?: string, termGradientsEvery?: number) =>
  Effect.gen(function*() {
    const resumeFrom = resume === undefined ? undefined : { path: resume, snapshot: yield* CheckpointFile.load(resume) }
    const events = yield* Stream.runCollect(Trainer.train({ config, out, resume: resumeFrom, termGradientsEvery }))
    const snapshot = yield* CheckpointFile.load(Trainer.checkpointPath(out))
    return { events: [...events] as Array<TrainEvent>, snapshot, digest: snapshotDigest(snapshot) }
  }).pipe(Effect.provide(services(config)))

describe("Trainer on the fake backbone (cpu)", () => {
  it.effect("trains, reports every step, and writes a final checkpoint", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.promise(() => tempDir())
      const image = yield* Effect.promise(() => writeTestImage(dir))
      const r = yield* runTrain(fakeConfig(image), path.join(dir, "run"))
      const tags = r.events.map((e) => e._tag)
      assert.deepStrictEqual(tags, ["Started", "Step", "Step", "Step", "Step", "Finished"])
      const steps = r.events.filter((e) => e._tag === "Step")
      for (const s of steps) {
        assert.isTrue(Number.isFinite(s.loss) && s.loss > 0)
        assert.isNotNull(s.bind)
        assert.isNotNull(s.separation)
      }
      assert.strictEqual(r.snapshot.header.step, 4)
      assert.strictEqual(r.snapshot.header.lossHistory.length, 4)
      assert.strictEqual(r.snapshot.optimizer.step, 4)
      assert.deepStrictEqual([...r.snapshot.trainable.keys()].sort(), [
        "text.modifier_embeddings",
        "unet.down.attn2.to_k.weight",
        "unet.down.attn2.to_v.weight",
        "unet.up.attn2.to_k.weight",
        "unet.up.attn2.to_v.weight"
      ])
    }))

  it.effect("measures each loss term's gradient norm when asked, without changing the run", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.promise(() => tempDir())
      const image = yield* Effect.promise(() => writeTestImage(dir))
      const plain = yield* runTrain(fakeConfig(image), path.join(dir, "plain"))
      const measured = yield* runTrain(fakeConfig(image), path.join(dir, "measured"), undefined, 2)
      assert.strictEqual(measured.digest, plain.digest)
      const norms = measured.events.filter((e) => e._tag === "TermGradients")
      assert.deepStrictEqual(norms.map((e) => e.step), [1, 2, 4])
      for (const n of norms) {
        assert.isTrue(n.base > 0)
        assert.isTrue(n.bind !== null && n.bind > 0)
        assert.isTrue(n.separation !== null && n.separation > 0)
        assert.strictEqual(n.weight, 0.01)
      }
      // with calibration off the attention terms are not there to pull
      const off = yield* runTrain(fakeConfig(image, { calibration: { ...fakeConfig(image).calibration, enabled: false } }), path.join(dir, "off"), undefined, 4)
      const offNorms = off.events.filter((e) => e._tag === "TermGradients")
      assert.deepStrictEqual(offNorms.map((e) => [e.step, e.bind, e.separation]), [[1, null, null], [4, null, null]])
    }))

  it.effect("k steps, stop, resume to N equals N steps straight, bit for bit; another seed differs", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.promise(() => tempDir())
      const image = yield* Effect.promise(() => writeTestImage(dir))
      const straight = yield* runTrain(fakeConfig(image, { steps: 5 }), path.join(dir, "a"))
      const first = yield* runTrain(fakeConfig(image, { steps: 2 }), path.join(dir, "b"))
      const resumed = yield* runTrain(fakeConfig(image, { steps: 5 }), path.join(dir, "b"), path.join(dir, "b", "checkpoint.msgpack"))
      assert.strictEqual(first.snapshot.header.step, 2)
      assert.strictEqual(resumed.digest, straight.digest)
      assert.deepStrictEqual(resumed.snapshot.header.lossHistory, straight.snapshot.header.lossHistory)
      assert.strictEqual(resumed.events[0]!._tag === "Started" && resumed.events[0]!.startStep, 2)
      const other = yield* runTrain(fakeConfig(image, { steps: 5, seed: 8 }), path.join(dir, "c"))
      assert.notStrictEqual(other.digest, straight.digest)
    }))

  it.effect("a training step leaks no tensors", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.promise(() => tempDir())
      const image = yield* Effect.promise(() => writeTestImage(dir))
      // warm up (the backbone's own tensors are created once per layer build)
      const config = fakeConfig(image, { steps: 1 })
      const counts = yield* Effect.gen(function*() {
        yield* Stream.runDrain(Trainer.train({ config, out: path.join(dir, "w") }))
        const before = tf.memory().numTensors
        yield* Stream.runDrain(Trainer.train({ config: { ...config, steps: 3 }, out: path.join(dir, "x") }))
        return { before, after: tf.memory().numTensors }
      }).pipe(Effect.provide(services(config)))
      assert.strictEqual(counts.after, counts.before)
    }))

  it.effect("frozen parameters are bit-for-bit unchanged, also under weight decay", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.promise(() => tempDir())
      const image = yield* Effect.promise(() => writeTestImage(dir))
      const config = fakeConfig(image, { steps: 3, optimizer: { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.5, clipGradNorm: null } })
      const result = yield* Effect.gen(function*() {
        const backbone = yield* Backbone
        const before = new Map([...backbone.parameters.frozen].map(([k, t]) => [k, Buffer.from(t.dataSync().buffer).toString("base64")]))
        const initialRows = backbone.parameters.trainable.get("text.modifier_embeddings")!.dataSync().slice()
        yield* Stream.runDrain(Trainer.train({ config, out: path.join(dir, "f") }))
        const after = new Map([...backbone.parameters.frozen].map(([k, t]) => [k, Buffer.from(t.dataSync().buffer).toString("base64")]))
        return { before, after, initialRows, frozenNames: [...backbone.parameters.frozen.keys()] }
      }).pipe(Effect.provide(services(config)))
      assert.deepStrictEqual(result.after, result.before)
      // the whole token table (every row but the modifiers) is frozen and outside the optimizer
      assert.isTrue(result.frozenNames.includes("text.token_embedding.weight"))
      const snapshot = yield* CheckpointFile.load(path.join(dir, "f", "checkpoint.msgpack"))
      const rows = snapshot.trainable.get("text.modifier_embeddings")!.data
      assert.isTrue(rows.some((v, i) => v !== result.initialRows[i]))
    }))
})

describe("tensor lifetimes", () => {
  it.effect("a backbone's tensors are disposed when its layer's scope closes", () =>
    Effect.gen(function*() {
      yield* Effect.scoped(Layer.build(CpuBackend.layer))
      const before = tf.memory().numTensors
      const during = yield* Effect.scoped(
        Effect.gen(function*() {
          yield* Layer.build(FakeBackbone.layer({ modifiers: ["<v1>"] }).pipe(Layer.provide(CpuBackend.layer)))
          return tf.memory().numTensors
        })
      )
      assert.isAbove(during, before)
      assert.strictEqual(tf.memory().numTensors, before)
    }))
})

describe("regularisation images generated by the base model", () => {
  it.effect("are written once with captions, mixed into the batches, and reused on resume", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.promise(() => tempDir())
      const image = yield* Effect.promise(() => writeTestImage(dir))
      const config = fakeConfig(image, { steps: 4, regularization: { dir: null, generate: 3, prompt: "a cat and a dog" } })
      const straight = yield* runTrain(config, path.join(dir, "r"))
      // the generation reports its progress before the run starts: rising to 1, over the 3 images
      const started = straight.events.findIndex((e) => e._tag === "Started")
      const preparing = straight.events.slice(0, started).flatMap((e) => (e._tag === "Preparing" ? [e] : []))
      assert.strictEqual(preparing.length, started)
      assert.isAbove(preparing.length, 2)
      assert.isTrue(preparing.every((e, i) => e.total === 3 && e.fraction > 0 && (i === 0 || e.fraction >= preparing[i - 1]!.fraction)))
      assert.strictEqual(preparing.at(-1)!.fraction, 1)
      assert.isFalse(straight.events.slice(started).some((e) => e._tag === "Preparing"))
      const files = yield* Effect.promise(() => import("node:fs/promises").then((fs) => fs.readdir(path.join(dir, "r", "regularization"))))
      assert.deepStrictEqual(files.sort(), ["0000.png", "0001.png", "0002.png", "captions.txt"])
      yield* runTrain({ ...config, steps: 2 }, path.join(dir, "s"))
      const resumed = yield* runTrain(config, path.join(dir, "s"), path.join(dir, "s", "checkpoint.msgpack"))
      // a complete folder is reused: one report, at 1
      assert.deepStrictEqual(resumed.events.filter((e) => e._tag === "Preparing").map((e) => e._tag === "Preparing" && e.fraction), [1])
      assert.strictEqual(resumed.digest, straight.digest)
      // with regularisation rows some rows carry no concept: the calibration averages over the others
      assert.isTrue(straight.snapshot.header.lossHistory.every((r) => Number.isFinite(r.loss)))
    }))
})
