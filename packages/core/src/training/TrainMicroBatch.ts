/**
 * One personalisation micro-batch: its rows (augmentation keyed by row index), noise and timesteps
 * (keyed by the micro-batch index), the calibrated loss and its gradients. Shared by the trainer's own
 * loop and by worker threads (`TrainWorkers`), so a step computed on workers is the same bit for bit.
 */
import { Effect } from "effect"
import type { AttentionProbe, ProbeSelection } from "../attention/AttentionProbe.js"
import type { BackboneShape } from "../backbone/Backbone.js"
import type { HostTensor } from "../checkpoint/Snapshot.js"
import type { LossCalibrator } from "../loss/LossCalibrator.js"
import { makeWeights } from "../nn/Weights.js"
import { squaredNorm } from "../optim/Optimizer.js"
import { stream } from "../random/Rng.js"
import { addNoise, trainingTarget } from "../schedule/NoiseSchedule.js"
import { type OutOfMemory, runTensors, type TensorRuntime } from "../tensor/TensorRuntime.js"
import { tf } from "../tensor/Tf.js"
import { type Item, makeRow } from "./Data.js"
import { conceptTokens } from "./Prompt.js"
import type { TrainConfig } from "./TrainConfig.js"
import type { WorkerError } from "./WorkerError.js"

/** What a micro-batch is computed from besides the weights (the caption is in the target item). */
export interface TrainData {
  /** The run's configuration as the trainer resolved it. */
  readonly config: TrainConfig
  /** At the backbone's training resolution. */
  readonly target: Item
  readonly regularization: ReadonlyArray<Item>
  /** The attention probe's selection (the calibrator's configuration is the config's). */
  readonly selection: ProbeSelection
}

export interface MicroBatchTask {
  readonly index: number
  /** Also the gradient norm of each loss term (three more backward passes). */
  readonly termNorms: boolean
}

/**
 * A micro-batch's result as numbers: `values` are the loss terms [total / accumulation, base, bind,
 * separation] (NaN for a term that is off or has no rows), then with `termNorms` the gradient norms of
 * base, bind and separation; `grads` follow the trainable names.
 */
export interface HostPart {
  readonly values: ReadonlyArray<number>
  readonly grads: ReadonlyArray<Float32Array>
}

/**
 * Micro-batches computed on other threads from the same data and weights. `compute` answers one
 * result per task in the order given; the trainer sums them in that order, as it does its own.
 */
export interface TrainWorkers {
  readonly count: number
  readonly compute: (
    data: TrainData,
    params: ReadonlyMap<string, HostTensor>,
    tasks: ReadonlyArray<MicroBatchTask>
  ) => Effect.Effect<ReadonlyArray<HostPart>, WorkerError | OutOfMemory>
}

export interface MicroBatchContext {
  readonly data: TrainData
  readonly backbone: BackboneShape
  readonly probe: AttentionProbe["Service"]
  readonly calibrator: LossCalibrator["Service"]
  /** Trainable names, the order of the gradients. */
  readonly names: ReadonlyArray<string>
}

/** The loss terms `[4]` (and the term norms `[3]` when asked) and the gradients of the first term. */
export const makeTrainMicroBatch = (ctx: MicroBatchContext) => {
  const { config, target, regularization } = ctx.data
  const { backbone, probe, calibrator, names } = ctx
  const size = backbone.info.imageSize.height
  const latentFactor = size / backbone.info.latentShape.height
  const { height: lh, width: lw, channels: lc } = backbone.info.latentShape
  const B = config.batchSize
  const needMaps = calibrator.config.enabled
  return (
    params: ReadonlyMap<string, tf.Tensor>,
    task: MicroBatchTask
  ): Effect.Effect<{ readonly value: tf.Tensor; readonly grads: Array<tf.Tensor>; readonly norms: tf.Tensor | undefined }, OutOfMemory, TensorRuntime> =>
    runTensors("a training micro-batch", () => {
      const mb = task.index
      const rows = Array.from({ length: B }, (_, i) =>
        makeRow({ seed: config.seed, k: mb * B + i, size, latentFactor, augment: config.augment, target, regularization, augmentTarget: backbone.augmentTarget }))
      const encoded = rows.map((r) => backbone.tokenizer.encode(r.caption))
      const concepts = encoded.map((e) => conceptTokens(backbone.tokenizer, e.ids))
      const timesteps = Array.from({ length: B }, () => 0)
      const steps = stream(config.seed, mb, "timestep")
      for (let i = 0; i < B; i++) timesteps[i] = steps.int(0, backbone.schedule.config.numTrainTimesteps - 1)
      const inputs = tf.tidy(() => {
        const pixels = tf.tensor(concat(rows.map((r) => r.pixels)), [B, size, size, 3])
        const posterior = tf.tensor(stream(config.seed, mb, "posterior").normals(B * lh * lw * lc), [B, lh, lw, lc])
        const x0 = backbone.encodeImage(pixels, posterior)
        const noise = tf.tensor(stream(config.seed, mb, "noise").normals(B * lh * lw * lc), [B, lh, lw, lc])
        return {
          zt: addNoise(backbone.schedule, x0, noise, timesteps),
          target: trainingTarget(backbone.schedule, x0, noise, timesteps),
          mask: tf.tensor(concat(rows.map((r) => r.mask)), [B, lh, lw, 1]),
          ids: tf.tensor2d(encoded.map((e) => [...e.ids]), [B, backbone.tokenizer.maxLength], "int32")
        }
      })
      const anyConcepts = concepts.some((c) => c.length > 0)
      const xs = names.map((n) => params.get(n)!)
      const f = (...trainables: Array<tf.Tensor>) => {
        const w = makeWeights(backbone.parameters.frozen, new Map(names.map((n, i) => [n, trainables[i]!])))
        const context = backbone.encodeText(w, inputs.ids)
        const recording = needMaps && anyConcepts ? probe.record() : undefined
        const prediction = backbone.denoise(w, { latents: inputs.zt, timesteps, context, hook: recording?.hook })
        const terms = calibrator.loss({
          prediction,
          target: inputs.target,
          mask: inputs.mask,
          maps: recording === undefined ? undefined : probe.aggregate(recording.calls()),
          rows: concepts
        })
        const nan = tf.scalar(Number.NaN)
        return tf.stack([tf.div(terms.total, config.gradientAccumulation), terms.base, terms.bind ?? nan, terms.separation ?? nan])
      }
      // differentiate the first component only: the others are reported, not optimised
      const dy = tf.tensor1d([1, 0, 0, 0])
      const { value, grads } = tf.valueAndGrads(f)(xs, dy)
      const norms = task.termNorms
        ? tf.stack([1, 2, 3].map((k) => {
          const one = tf.tensor1d([0, 1, 2, 3].map((j) => (j === k ? 1 : 0)))
          const g = tf.grads(f)(xs, one)
          const n = tf.sqrt(squaredNorm(g))
          tf.dispose([one, ...g])
          return n
        }))
        : undefined
      tf.dispose([dy, inputs.zt, inputs.target, inputs.mask, inputs.ids])
      return { value, grads, norms }
    })
}

const concat = (parts: ReadonlyArray<Float32Array>): Float32Array => {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0))
  let o = 0
  for (const p of parts) {
    out.set(p, o)
    o += p.length
  }
  return out
}

/** A micro-batch's values read to the host and its gradients: kept as tensors here, copied to the host on a worker. */
export const readValues = (r: { readonly value: tf.Tensor; readonly norms: tf.Tensor | undefined }) =>
  Effect.promise(async () => {
    const values = [...(await r.value.data() as Float32Array), ...(r.norms === undefined ? [] : await r.norms.data() as Float32Array)]
    tf.dispose([r.value, ...(r.norms === undefined ? [] : [r.norms])])
    return values
  })
