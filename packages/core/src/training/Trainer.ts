/**
 * The training program: personalise the backbone on one image and caption with DisenDiff.
 *
 * Each optimizer step accumulates `gradientAccumulation` micro-batches (each loss divided by it, as
 * Lightning does), checks that the loss and gradients are finite, and takes one AdamW step over the
 * trainable set. Noise, timesteps, data order and augmentation are drawn from the counter-based
 * generator keyed by (seed, micro-batch or row index, purpose), so a run resumed from a checkpoint at
 * step k computes bit for bit what an uninterrupted run computes. Progress is a typed `Stream`;
 * interrupting it (Ctrl-C) saves a checkpoint of the last completed step before the fiber ends.
 */
import { Clock, Effect, Layer, Queue, Schema, Stream } from "effect"
import { createHash } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { AttentionProbe } from "../attention/AttentionProbe.js"
import { Backbone } from "../backbone/Backbone.js"
import { CheckpointError, Checkpoints } from "../checkpoint/Checkpoints.js"
import { formatVersion, type LossRecord, type Snapshot, snapshotDigest } from "../checkpoint/Snapshot.js"
import { ImageError, readImage } from "../image/Image.js"
import { LossCalibrator, probeSelection } from "../loss/LossCalibrator.js"
import { Optimizer, type OptimizerState, squaredNorm } from "../optim/Optimizer.js"
import { type CheckpointEvent, NumericalError, runLoop, sumInOrder } from "./Loop.js"
import { type OutOfMemory, TensorRuntime } from "../tensor/TensorRuntime.js"
import { tf } from "../tensor/Tf.js"
import type { PromptError } from "../tokenizer/Tokenizer.js"
import { checkPrompt } from "./Prompt.js"
import { type Item, prepareImage } from "./Data.js"
import { makeTrainMicroBatch, type MicroBatchTask, readValues, type TrainData, type TrainWorkers } from "./TrainMicroBatch.js"
import type { WorkerError } from "./WorkerError.js"
import { effectiveLearningRate, type TrainConfig } from "./TrainConfig.js"
import { regularizationItems } from "./Regularization.js"
import { toHost, toTensors } from "../checkpoint/HostTensors.js"

export type TrainEvent =
  | {
    readonly _tag: "Started"
    readonly startStep: number
    readonly totalSteps: number
    readonly learningRate: number
    readonly backend: string
    readonly baseModel: string
    readonly trainableParameters: number
    readonly resumedFrom: string | null
  }
  | {
    readonly _tag: "Step"
    readonly step: number
    readonly totalSteps: number
    readonly loss: number
    readonly base: number
    readonly bind: number | null
    readonly separation: number | null
    readonly lr: number
    readonly gradNorm: number
    readonly stepSeconds: number
    readonly etaSeconds: number
  }
  | {
    /**
     * Gradient norms over the trainable set of each loss term, unweighted, on the step's first
     * micro-batch (`TrainOptions.termGradientsEvery`): how hard each term pulls. Weighted, the
     * calibration terms pull `weight x norm` (null: the term is off or no row holds a concept).
     */
    readonly _tag: "TermGradients"
    readonly step: number
    readonly base: number
    readonly bind: number | null
    readonly separation: number | null
    readonly weight: number
  }
  | CheckpointEvent

/** A checkpoint that belongs to another run than the one asked for. */
export class ResumeMismatch extends Schema.TaggedError<ResumeMismatch>()("ResumeMismatch", {
  path: Schema.String,
  reason: Schema.String,
  fix: Schema.String
}) {
  override get message() {
    return `cannot resume from ${this.path}: ${this.reason}. Fix: ${this.fix}`
  }
}

export interface TrainOptions {
  readonly config: TrainConfig
  /** Output folder: the final checkpoint is `out/checkpoint.msgpack`. */
  readonly out: string
  /** A checkpoint to continue from (its run's configuration must match `config` but for `steps`). */
  readonly resume?: { readonly path: string; readonly snapshot: Snapshot } | undefined
  /** Called after an interrupted run has saved its checkpoint (the stream's consumer is gone by then). */
  readonly onInterrupted?: ((step: number, checkpoint: string) => Effect.Effect<void>) | undefined
  /**
   * Measure each loss term's gradient norm every K steps (and at the first), three more backward
   * passes each time; 0 or absent: never. The run's result does not change.
   */
  readonly termGradientsEvery?: number | undefined
  /**
   * Threads that compute a step's micro-batches in parallel (with gradient accumulation above 1); the
   * result is the same bit for bit with or without them.
   */
  readonly workers?: TrainWorkers | undefined
}

export const checkpointPath = (out: string) => path.join(out, "checkpoint.msgpack")

/** Configuration fields that may differ between a checkpoint and the run continuing it. */
const resumableFields = new Set(["steps", "checkpointEvery"])

export const configDifferences = (a: TrainConfig, b: TrainConfig): Array<string> =>
  Object.keys(a).filter((k) =>
    !resumableFields.has(k) && JSON.stringify((a as Record<string, unknown>)[k]) !== JSON.stringify((b as Record<string, unknown>)[k])
  )

/**
 * The services a run of `config` trains with besides its backbone: the probe on the maps its calibration
 * reads, its calibrator and optimizer, and checkpoint files. Every command builds a run's layers here, so
 * no caller can pair a calibration with a probe on other layers.
 */
export const trainingServices = (config: TrainConfig): Layer.Layer<AttentionProbe | LossCalibrator | Optimizer | Checkpoints> =>
  Layer.mergeAll(AttentionProbe.layer(probeSelection(config.calibration)), LossCalibrator.layer(config.calibration), Optimizer.layer(config.optimizer), Checkpoints.layer)

export const train = (options: TrainOptions) =>
  Stream.callback<TrainEvent, TrainError, Backbone | AttentionProbe | LossCalibrator | Optimizer | Checkpoints | TensorRuntime>(
    (queue) => run(options, (e) => Queue.offer(queue, e)).pipe(Effect.andThen(Queue.end(queue)))
  )

export { NumericalError }

export type TrainError = ImageError | CheckpointError | NumericalError | ResumeMismatch | PromptError | OutOfMemory | WorkerError

const run = Effect.fnUntraced(function*(options: TrainOptions, emit: (e: TrainEvent) => Effect.Effect<unknown>) {
  const backbone = yield* Backbone
  const probe = yield* AttentionProbe
  const calibrator = yield* LossCalibrator
  const optimizer = yield* Optimizer
  const checkpoints = yield* Checkpoints
  const runtime = yield* TensorRuntime
  // the probe records the maps the calibration reads; a probe for other layers would train another method
  const wanted = probeSelection(options.config.calibration)
  if (options.config.calibration.enabled && probe.selection.queries !== wanted.queries) {
    return yield* Effect.die(
      new Error(`the AttentionProbe layer selects ${JSON.stringify(probe.selection)} but calibration.maps "${options.config.calibration.maps}" reads ${JSON.stringify(wanted)}: provide trainingServices(config)`)
    )
  }

  // ---- data ----
  const imageBytes = yield* Effect.tryPromise({
    try: () => fs.readFile(options.config.image),
    catch: () => new ImageError({ path: options.config.image, reason: "no such file or unreadable", fix: "check the path to the training image" })
  })
  const config: TrainConfig = {
    ...options.config,
    imageSha256: createHash("sha256").update(imageBytes).digest("hex"),
    // record what the services actually use, whatever layers the caller composed
    calibration: calibrator.config,
    optimizer: optimizer.config
  }
  const caption = config.template.replace("{}", config.prompt)
  const unreadable = backbone.checkCaption?.(caption)
  if (unreadable !== undefined) return yield* unreadable
  yield* checkPrompt(backbone.tokenizer, config.prompt, caption)
  const size = backbone.info.imageSize.height
  const image = yield* readImage(config.image)
  const unusable = backbone.checkImage?.(config.image, image)
  if (unusable !== undefined) return yield* unusable
  const target: Item = { image: prepareImage(image, size), caption, isTarget: true }
  const regularization = (yield* regularizationItems(config, options.out, backbone)).map((r) => ({ ...r, image: prepareImage(r.image, size) }))
  for (const r of regularization) {
    const bad = backbone.checkCaption?.(r.caption)
    if (bad !== undefined) return yield* bad
  }

  // ---- state ----
  const names = [...backbone.parameters.trainable.keys()]
  let params: Map<string, tf.Tensor>
  let optState: OptimizerState
  let history: Array<LossRecord>
  let startStep = 0
  if (options.resume !== undefined) {
    const { path: from, snapshot } = options.resume
    const h = snapshot.header
    if (h.baseModel.identity !== backbone.info.identity) {
      return yield* new CheckpointError({
        path: from,
        reason: `it was trained on base model ${h.baseModel.name} (${h.baseModel.identity.slice(0, 12)}), not ${backbone.info.name} (${backbone.info.identity.slice(0, 12)})`,
        fix: "resume with the same base model the checkpoint was trained on"
      })
    }
    const saved = h.config as TrainConfig
    const diff = configDifferences(saved, config)
    if (diff.length > 0) {
      return yield* new ResumeMismatch({
        path: from,
        reason: `the run differs in ${diff.join(", ")}`,
        fix: "resume with the checkpoint's own settings (only --steps and --checkpoint-every may change)"
      })
    }
    for (const n of names) {
      const t = snapshot.trainable.get(n)
      const want = backbone.parameters.trainable.get(n)!.shape
      if (t === undefined || t.shape.join() !== want.join()) {
        return yield* new CheckpointError({ path: from, reason: `trainable tensor ${n} is missing or has another shape`, fix: "resume with the model and settings it was trained with" })
      }
    }
    if (h.step > config.steps) {
      return yield* new ResumeMismatch({ path: from, reason: `it is already at step ${h.step}, past --steps ${config.steps}`, fix: `ask for --steps ${h.step} or more` })
    }
    params = toTensors(snapshot.trainable)
    optState = { step: snapshot.optimizer.step, m: toTensors(snapshot.optimizer.m), v: toTensors(snapshot.optimizer.v) }
    history = [...h.lossHistory]
    startStep = h.step
  } else {
    params = new Map(names.map((n) => [n, tf.clone(backbone.parameters.trainable.get(n)!)]))
    optState = optimizer.init(params)
    history = []
  }

  const lr = effectiveLearningRate(config)
  const outFile = checkpointPath(options.out)
  let step = startStep

  const snapshot = Effect.gen(function*() {
    const s: Snapshot = {
      header: {
        formatVersion,
        step,
        config,
        rng: { algorithm: "philox4x32-10", seed: config.seed },
        dataCursor: step * config.gradientAccumulation,
        baseModel: { kind: backbone.info.kind, name: backbone.info.name, identity: backbone.info.identity },
        lossHistory: history
      },
      trainable: yield* toHost(params),
      optimizer: { step: optState.step, m: yield* toHost(optState.m), v: yield* toHost(optState.v) }
    }
    return s
  })
  const saveTo = (file: string) =>
    Effect.gen(function*() {
      const s = yield* snapshot
      yield* checkpoints.save(file, s)
      return snapshotDigest(s)
    })

  yield* emit({
    _tag: "Started",
    startStep,
    totalSteps: config.steps,
    learningRate: lr,
    backend: runtime.backend,
    baseModel: backbone.info.name,
    trainableParameters: names.reduce((a, n) => a + backbone.parameters.trainable.get(n)!.size, 0),
    resumedFrom: options.resume?.path ?? null
  })

  const data: TrainData = { config, target, regularization, selection: probe.selection }
  const microBatch = makeTrainMicroBatch({ data, backbone, probe, calibrator, names })
  const workers = options.workers !== undefined && options.workers.count > 1 && config.gradientAccumulation > 1 ? options.workers : undefined

  /** The step's micro-batches, in micro-batch order: loss terms as numbers, gradients as tensors. */
  const parts = (tasks: ReadonlyArray<MicroBatchTask>) =>
    Effect.gen(function*() {
      if (workers === undefined) {
        const out: Array<{ readonly values: ReadonlyArray<number>; readonly grads: Array<tf.Tensor> }> = []
        for (const task of tasks) {
          const r = yield* microBatch(params, task)
          out.push({ values: yield* readValues(r), grads: r.grads })
        }
        return out
      }
      const host = yield* toHost(new Map(names.map((n) => [n, params.get(n)!])))
      const results = yield* workers.compute(data, host, tasks)
      return results.map((r) => ({ values: r.values, grads: r.grads.map((g, i) => tf.tensor(g, params.get(names[i]!)!.shape)) }))
    })

  const t0 = yield* Clock.currentTimeMillis
  let tStep = t0
  yield* runLoop<{ base: number; bind: number | null; separation: number | null }, TrainError, TensorRuntime>({
    startStep,
    totalSteps: config.steps,
    checkpointEvery: config.checkpointEvery,
    checkpoint: outFile,
    numericalFix: "lower the learning rate, or check the input image and the regularisation images",
    compute: (s) =>
      Effect.gen(function*() {
        tStep = yield* Clock.currentTimeMillis
        const every = options.termGradientsEvery ?? 0
        const measure = every > 0 && (s === startStep || (s + 1) % every === 0)
        const accum = config.gradientAccumulation
        const computed = yield* parts(Array.from({ length: accum }, (_, a) => ({ index: s * accum + a, termNorms: measure && a === 0 })))
        if (measure) {
          const [v, [base, bind, separation]] = [computed[0]!.values, computed[0]!.values.slice(4)]
          // a term that is NaN (off, or no concept in the rows) has no gradient to speak of
          yield* emit({
            _tag: "TermGradients",
            step: s + 1,
            base: base!,
            bind: Number.isNaN(v[2]!) ? null : bind!,
            separation: Number.isNaN(v[3]!) ? null : separation!,
            weight: calibrator.config.weight
          })
        }
        // summed in micro-batch order wherever they were computed: the same numbers bit for bit
        const grads = sumInOrder(computed.map((p) => p.grads))
        const norm = tf.tidy(() => squaredNorm(grads))
        const squared = (yield* Effect.promise(() => norm.data()))[0]!
        norm.dispose()
        const terms = (j: number) => computed.map((p) => p.values[j]!)
        const mean = (xs: Array<number>) => xs.reduce((sum, x) => sum + x, 0) / xs.length
        const present = (xs: Array<number>) => xs.filter((x) => !Number.isNaN(x))
        const binds = present(terms(2))
        const seps = present(terms(3))
        return {
          grads,
          loss: mean(terms(0)) * accum,
          gradNorm: Math.sqrt(squared),
          extra: { base: mean(terms(1)), bind: binds.length > 0 ? mean(binds) : null, separation: seps.length > 0 ? mean(seps) : null }
        }
      }),
    apply: (grads) =>
      Effect.sync(() => {
        const updated = optimizer.step(params, new Map(names.map((n, i) => [n, grads[i]!])), optState, lr)
        updated.gradNorm.dispose()
        params = updated.params
        optState = updated.state
      }),
    after: (completed, c) =>
      Effect.gen(function*() {
        step = completed
        const record: LossRecord = { step, loss: c.loss, ...c.extra, lr, gradNorm: c.gradNorm }
        history.push(record)
        const now = yield* Clock.currentTimeMillis
        const perStep = (now - t0) / 1000 / (step - startStep)
        yield* emit({ _tag: "Step", ...record, totalSteps: config.steps, stepSeconds: (now - tStep) / 1000, etaSeconds: perStep * (config.steps - step) })
      }),
    save: saveTo,
    emit,
    onInterrupted: options.onInterrupted
  }).pipe(
    Effect.ensuring(Effect.sync(() => {
      tf.dispose([...params.values(), ...optState.m.values(), ...optState.v.values()])
    }))
  )
})
