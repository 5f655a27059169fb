/**
 * `pretrain`: trains the built-in model's text encoder and UNet from scratch on the shapes world.
 *
 * Each optimizer step accumulates micro-batches of rendered scenes (captions dropped with a small
 * probability for classifier-free guidance), noises them at uniform timesteps and regresses the
 * velocity with min-SNR weights; AdamW with warm-up, gradient clipping and an EMA of the weights.
 * Scenes, caption dropout, timesteps and noise are counter-based draws keyed by the scene or
 * micro-batch index, so resuming from a checkpoint reproduces an uninterrupted run bit for bit on the
 * same backend. Progress (loss, throughput, periodic held-out evaluation of the EMA) is a `Stream`.
 */
import { Clock, Effect, Queue, Stream } from "effect"
import * as path from "node:path"
import { makeToyBackbone } from "../backbone/ToyBackbone.js"
import { type CheckpointError, Checkpoints } from "@disendiff/core/checkpoint/Checkpoints.js"
import type { PromptError } from "@disendiff/core/tokenizer/Tokenizer.js"
import { formatVersion, type HostTensor, type LossRecord, type Snapshot, snapshotDigest } from "@disendiff/core/checkpoint/Snapshot.js"
import { initToyParameters, seededParameters, toyModelConfig } from "../models/ToyModel.js"
import { init as adamInit, type OptimizerState, step as adamStep } from "@disendiff/core/optim/Optimizer.js"
import { type OutOfMemory, TensorRuntime } from "@disendiff/core/tensor/TensorRuntime.js"
import { tf } from "@disendiff/core/tensor/Tf.js"
import { column, enlarge, row } from "@disendiff/core/image/Heatmap.js"
import { type ImageError, writePng } from "@disendiff/core/image/Image.js"
import { type CheckpointEvent, NumericalError, runLoop, sumInOrder } from "@disendiff/core/training/Loop.js"
import { squaredNorm } from "@disendiff/core/optim/Optimizer.js"
import { type GradientWorkerError, type GradientWorkers, makeMicroBatch } from "./MicroBatch.js"
import { type Evaluation, evaluate } from "./Evaluate.js"
import { learningRateAt, type PretrainConfig } from "./PretrainConfig.js"
import { toHost, toTensors } from "@disendiff/core/checkpoint/HostTensors.js"

export type PretrainEvent =
  | { readonly _tag: "Started"; readonly startStep: number; readonly totalSteps: number; readonly parameters: number; readonly backend: string }
  | {
    readonly _tag: "Step"
    readonly step: number
    readonly totalSteps: number
    readonly loss: number
    readonly lr: number
    readonly gradNorm: number
    readonly samplesPerSecond: number
    readonly etaSeconds: number
  }
  | { readonly _tag: "Evaluated"; readonly step: number; readonly evaluation: Evaluation }
  | CheckpointEvent

export interface EvaluationRecord {
  readonly step: number
  readonly samples: number
  readonly seconds: number
  readonly backend: string
  readonly evaluation: Evaluation
}

export interface PretrainOptions {
  readonly config: PretrainConfig
  readonly out: string
  readonly resume?: { readonly path: string; readonly snapshot: Snapshot } | undefined
  readonly onInterrupted?: ((step: number, checkpoint: string) => Effect.Effect<void>) | undefined
  /**
   * Start from another model's weights (its EMA), e.g. world v2 from the v1 model; `words` is that
   * model's vocabulary, so each token row goes to the same word. Ignored when resuming.
   */
  readonly init?: { readonly weights: ReadonlyMap<string, HostTensor>; readonly words: ReadonlyArray<string> } | undefined
  /** Compute the micro-batches in parallel threads (absent or one: in this thread). */
  readonly workers?: GradientWorkers | undefined
}

export const pretrainCheckpointPath = (out: string) => path.join(out, "checkpoint.msgpack")

export type PretrainError = CheckpointError | NumericalError | OutOfMemory | PromptError | ImageError | GradientWorkerError

export const pretrain = (options: PretrainOptions) =>
  Stream.callback<PretrainEvent, PretrainError, Checkpoints | TensorRuntime>(
    (queue) => run(options, (e) => Queue.offer(queue, e)).pipe(Effect.andThen(Queue.end(queue)))
  )

const run = Effect.fnUntraced(function*(options: PretrainOptions, emit: (e: PretrainEvent) => Effect.Effect<unknown>) {
  const checkpoints = yield* Checkpoints
  const runtime = yield* TensorRuntime
  const c = options.config
  const cfg = toyModelConfig(c.size, c.recipe, c.world)
  const adam = { beta1: 0.9, beta2: c.beta2, eps: 1e-8, weightDecay: c.weightDecay, clipGradNorm: c.clipGradNorm }

  let params: Map<string, tf.Tensor>
  let ema: Map<string, tf.Tensor>
  let opt: OptimizerState
  let history: Array<LossRecord>
  let evaluations: Array<EvaluationRecord>
  let step = 0
  let seconds = 0
  if (options.resume !== undefined) {
    const s = options.resume.snapshot
    params = toTensors(s.trainable)
    ema = toTensors(s.ema ?? s.trainable)
    opt = { step: s.optimizer.step, m: toTensors(s.optimizer.m), v: toTensors(s.optimizer.v) }
    history = [...s.header.lossHistory]
    const extra = (s.header as unknown as { pretraining?: { evaluations: Array<EvaluationRecord>; seconds: number } }).pretraining
    evaluations = [...(extra?.evaluations ?? [])]
    seconds = extra?.seconds ?? 0
    step = s.header.step
  } else if (options.init !== undefined) {
    params = seededParameters(cfg, c.initSeed, options.init.weights, options.init.words)
    ema = new Map([...params].map(([k, t]) => [k, tf.clone(t)]))
    opt = adamInit(params)
    history = []
    evaluations = []
  } else {
    params = new Map(Object.entries(initToyParameters(cfg, c.initSeed)))
    ema = new Map([...params].map(([k, t]) => [k, tf.clone(t)]))
    opt = adamInit(params)
    history = []
    evaluations = []
  }
  const names = [...params.keys()]
  const parameters = names.reduce((a, n) => a + params.get(n)!.size, 0)
  const outFile = pretrainCheckpointPath(options.out)
  const B = c.batchSize
  const samplesAt = (s: number) => s * B * c.gradientAccumulation

  const snapshot = Effect.gen(function*() {
    return {
      header: {
        formatVersion,
        kind: "pretrain" as const,
        step,
        config: c,
        rng: { algorithm: "philox4x32-10" as const, seed: c.seed },
        dataCursor: samplesAt(step),
        baseModel: c.initFrom === undefined
          ? { kind: "toy", name: "from scratch", identity: `init-seed-${c.initSeed}` }
          : { kind: "toy", name: `from ${c.initFrom.checkpoint} step ${c.initFrom.step}`, identity: c.initFrom.digest },
        lossHistory: history,
        pretraining: { evaluations, seconds }
      },
      trainable: yield* toHost(params),
      optimizer: { step: opt.step, m: yield* toHost(opt.m), v: yield* toHost(opt.v) },
      ema: yield* toHost(ema)
    } as Snapshot
  })
  const save = (file: string) =>
    Effect.gen(function*() {
      const s = yield* snapshot
      yield* checkpoints.save(file, s)
      return snapshotDigest(s)
    })

  yield* emit({ _tag: "Started", startStep: step, totalSteps: c.steps, parameters, backend: runtime.backend })

  const microBatch = makeMicroBatch(c, names)
  const gradientsOf = (first: number) =>
    Effect.gen(function*() {
      const mbs = Array.from({ length: c.gradientAccumulation }, (_, a) => first + a)
      if (options.workers === undefined || options.workers.count <= 1) {
        const out: Array<{ readonly loss: number; readonly grads: Array<tf.Tensor> }> = []
        for (const mb of mbs) {
          const { value, grads } = yield* microBatch(params, mb)
          const loss = (yield* Effect.promise(() => value.data()))[0]!
          value.dispose()
          out.push({ loss, grads })
        }
        return out
      }
      const host = yield* toHost(new Map(names.map((n) => [n, params.get(n)!])))
      const results = yield* options.workers.compute(host, mbs)
      return results.map((r) => ({ loss: r.loss, grads: r.grads.map((g, i) => tf.tensor(g, params.get(names[i]!)!.shape)) }))
    })

  let t0 = yield* Clock.currentTimeMillis
  let runStart = t0
  const startStep = step
  yield* runLoop<null, PretrainError, Checkpoints | TensorRuntime>({
    startStep,
    totalSteps: c.steps,
    checkpointEvery: c.checkpointEvery,
    checkpoint: outFile,
    numericalFix: "resume from the last checkpoint with a lower learning rate",
    compute: (s) =>
      Effect.gen(function*() {
        const parts = yield* gradientsOf(s * c.gradientAccumulation)
        // the losses and gradients summed in micro-batch order wherever they were computed: the same numbers bit for bit
        const loss = parts.reduce((sum, p) => sum + p.loss, 0)
        const grads = sumInOrder(parts.map((p) => p.grads))
        const norm = tf.tidy(() => tf.sqrt(squaredNorm(grads)))
        const gradNorm = (yield* Effect.promise(() => norm.data()))[0]!
        norm.dispose()
        return { grads, loss, gradNorm, extra: null }
      }),
    apply: (grads, s) =>
      Effect.sync(() => {
        const updated = adamStep(adam, params, new Map(names.map((n, i) => [n, grads[i]!])), opt, learningRateAt(c, s))
        updated.gradNorm.dispose()
        params = updated.params
        opt = updated.state
        // EMA warm-up as diffusers' EMAModel: early on the average follows the weights closely
        const decay = Math.min(c.emaDecay, (1 + s) / (10 + s))
        // tf.tidy keeps tensors in plain objects, not in Maps
        const nextEma = new Map(Object.entries(tf.tidy(() =>
          Object.fromEntries([...ema].map(([k, e]) => [k, tf.add(tf.mul(e, decay), tf.mul(params.get(k)!, 1 - decay))]))
        )))
        tf.dispose([...ema.values()])
        ema = nextEma
      }),
    after: (completed, { loss, gradNorm }) =>
      Effect.gen(function*() {
        const lr = learningRateAt(c, completed - 1)
        step = completed
        const now = yield* Clock.currentTimeMillis
        seconds += (now - t0) / 1000
        const perStep = (now - runStart) / 1000 / (step - startStep)
        t0 = now
        history.push({ step, loss, base: loss, bind: null, separation: null, lr, gradNorm })
        yield* emit({
          _tag: "Step",
          step,
          totalSteps: c.steps,
          loss,
          lr,
          gradNorm,
          samplesPerSecond: (B * c.gradientAccumulation) / Math.max(1e-9, perStep),
          etaSeconds: perStep * (c.steps - step)
        })
        if (c.evalEvery > 0 && step % c.evalEvery === 0) {
          const backbone = makeToyBackbone(cfg, new Map([...ema].map(([k, t]) => [k, t])), { modifiers: [], name: "ema", identity: "ema" })
          const e = yield* evaluate(backbone, { n: c.evalSamples, steps: c.evalSteps, guidance: c.evalGuidance, seed: 1000, world: c.world })
          const evaluation: Evaluation = { oneObject: e.oneObject, twoObjects: e.twoObjects, ...(e.unnamed === undefined ? {} : { unnamed: e.unnamed }) }
          // the samples themselves, enlarged, one row per group, for looking at progress
          const perRow = Math.min(12, c.evalSamples)
          const grid = column([row(e.images.slice(0, perRow)), row(e.images.slice(c.evalSamples, c.evalSamples + perRow))])
          yield* writePng(path.join(options.out, `eval-${String(step).padStart(6, "0")}.png`), enlarge(grid, 3))
          evaluations.push({ step, samples: samplesAt(step), seconds, backend: runtime.backend, evaluation })
          yield* emit({ _tag: "Evaluated", step, evaluation })
          // evaluation time counts neither into training seconds nor into the throughput
          const later = yield* Clock.currentTimeMillis
          runStart += later - t0
          t0 = later
        }
      }),
    save,
    emit,
    onInterrupted: options.onInterrupted
  }).pipe(
    Effect.ensuring(Effect.sync(() => tf.dispose([...params.values(), ...ema.values(), ...opt.m.values(), ...opt.v.values()])))
  )
})
