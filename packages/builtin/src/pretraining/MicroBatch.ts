/**
 * One pretraining micro-batch: render its scenes, drop captions, draw timesteps and noise (all keyed by
 * the micro-batch index, so any process computes the same numbers), and take the min-SNR-weighted
 * regression loss and its gradients. Shared by the in-process loop and the gradient workers, which is
 * what makes a run with workers bit-identical to one without.
 */
import type { Effect } from "effect"
import type { WorkerError } from "@disendiff/core/training/WorkerError.js"
import type { HostTensor } from "@disendiff/core/checkpoint/Snapshot.js"
import * as PixelShuffle from "@disendiff/core/autoencoder/PixelShuffle.js"
import { clipTextForward } from "@disendiff/core/models/ClipTextModel.js"
import { toyModelConfig } from "../models/ToyModel.js"
import { unetForward } from "@disendiff/core/models/Unet2dConditionModel.js"
import { makeWeights } from "@disendiff/core/nn/Weights.js"
import { stream } from "@disendiff/core/random/Rng.js"
import { addNoise, makeNoiseSchedule, trainingTarget } from "@disendiff/core/schedule/NoiseSchedule.js"
import { type OutOfMemory, runTensors, type TensorRuntime } from "@disendiff/core/tensor/TensorRuntime.js"
import { tf } from "@disendiff/core/tensor/Tf.js"
import { makeWordTokenizer } from "@disendiff/core/tokenizer/WordTokenizer.js"
import { captionOf } from "../world/Caption.js"
import { renderScene } from "../world/Render.js"
import { trainingScene } from "./Dataset.js"
import type { PretrainConfig } from "./PretrainConfig.js"

/**
 * Per-row min-SNR-gamma weights (Hang et al. 2023), floored: min(SNR, gamma) / (SNR + 1) for
 * v-prediction, min(SNR, gamma) / SNR for epsilon, min(SNR, gamma) for x0.
 */
export const snrWeights = (
  abar: Float64Array,
  timesteps: ReadonlyArray<number>,
  gamma: number,
  floor: number,
  prediction: "epsilon" | "v_prediction" | "sample" = "v_prediction"
) =>
  timesteps.map((t) => {
    const snr = abar[t]! / (1 - abar[t]!)
    const clipped = Math.min(snr, gamma)
    const w = prediction === "v_prediction" ? clipped / (snr + 1) : prediction === "epsilon" ? (snr === 0 ? 1 : clipped / snr) : clipped
    return Math.max(w, floor)
  })

export const makeMicroBatch = (c: PretrainConfig, names: ReadonlyArray<string>) => {
  const cfg = toyModelConfig(c.size, c.recipe, c.world)
  const schedule = makeNoiseSchedule(cfg.schedule)
  const tokenizer = makeWordTokenizer({ words: cfg.words, aliases: cfg.aliases, modifiers: [], maxLength: cfg.maxLength })
  const B = c.batchSize
  /** Loss (already divided by the accumulation count) and gradients in the order of `names`. */
  return (params: ReadonlyMap<string, tf.Tensor>, mb: number): Effect.Effect<{ readonly value: tf.Scalar; readonly grads: Array<tf.Tensor> }, OutOfMemory, TensorRuntime> =>
    runTensors("a pretraining micro-batch", () => {
      const scenes = Array.from({ length: B }, (_, i) => trainingScene(c.seed, mb * B + i, c.world))
      const captions = scenes.map((s, i) => (stream(c.seed, mb * B + i, "caption-dropout").uniform() < c.captionDropout ? "" : captionOf(s)))
      const timesteps = Array.from({ length: B }, () => 0)
      const tr = stream(c.seed, mb, "timestep")
      for (let i = 0; i < B; i++) timesteps[i] = tr.int(0, schedule.config.numTrainTimesteps - 1)
      const weights = snrWeights(schedule.alphasCumprod, timesteps, c.minSnrGamma, c.snrWeightFloor, schedule.config.predictionType)
      const inputs = tf.tidy(() => {
        const pixels = new Float32Array(B * 32 * 32 * 3)
        scenes.forEach((s, i) => {
          const img = renderScene(s).data
          for (let k = 0; k < img.length; k++) pixels[i * img.length + k] = img[k]! * 2 - 1
        })
        const x0 = PixelShuffle.unshuffle(tf.tensor(pixels, [B, 32, 32, 3]))
        const noise = tf.tensor(stream(c.seed, mb, "noise").normals(x0.size), x0.shape)
        return {
          zt: addNoise(schedule, x0, noise, timesteps),
          target: trainingTarget(schedule, x0, noise, timesteps),
          ids: tf.tensor2d(captions.map((t) => [...tokenizer.encode(t).ids]), [B, cfg.maxLength], "int32"),
          w: tf.tensor(weights, [B, 1, 1, 1])
        }
      })
      const f = (...xs: Array<tf.Tensor>) => {
        const w = makeWeights(new Map(), new Map(names.map((n, i) => [n, xs[i]!])))
        const context = clipTextForward(cfg.text, w.scope("text"), inputs.ids).lastHiddenState
        const pred = unetForward(cfg.unet, w.scope("unet"), { latents: inputs.zt, timesteps, context })
        const perRow = tf.mean(tf.square(tf.sub(pred, inputs.target)), [1, 2, 3], true)
        return tf.div(tf.mean(tf.mul(perRow, inputs.w)), c.gradientAccumulation) as tf.Scalar
      }
      const r = tf.valueAndGrads(f)(names.map((n) => params.get(n)!))
      tf.dispose(inputs)
      return r
    })
}

/** A micro-batch's result computed elsewhere: the loss and the gradients in the order of the names. */
export interface HostGradients {
  readonly loss: number
  readonly grads: ReadonlyArray<Float32Array>
}

// the one worker error (core's), under its earlier name
export { WorkerError as GradientWorkerError } from "@disendiff/core/training/WorkerError.js"

/**
 * Micro-batches computed in parallel (threads with their own tensor backend). `compute` returns one
 * result per index, in the order given; the caller sums them in that order, as the in-process loop does.
 */
export interface GradientWorkers {
  readonly count: number
  readonly compute: (params: ReadonlyMap<string, HostTensor>, microBatches: ReadonlyArray<number>) => Effect.Effect<ReadonlyArray<HostGradients>, WorkerError | OutOfMemory>
}
