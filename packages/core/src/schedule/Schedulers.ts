/**
 * Reverse-process steps as diffusers' DDIMScheduler and DDPMScheduler compute them (Song et al. 2021,
 * Ho et al. 2020): timestep spacings, the x0 / epsilon conversion per prediction type, optional x0
 * clipping, and one update from x_t to x_prev. Scalars are float64 on the host; tensors are the
 * latents. The fixtures in fixtures/sd-tiny (scheduler tables, the DDIM trajectory) pin it.
 */
import { tf } from "../tensor/Tf.js"
import type { NoiseSchedule } from "./NoiseSchedule.js"

export type TimestepSpacing = "leading" | "trailing" | "linspace"

export interface SamplingOptions {
  readonly spacing: TimestepSpacing
  /** Added to "leading" timesteps (SD 1.x: 1, so 10 steps run 901, 801, ..., 1). */
  readonly stepsOffset: number
  /** Whether the step past t = 0 uses abar = 1 (else abar_0; SD 1.x: false). */
  readonly setAlphaToOne: boolean
  /** Clamp the predicted x0 to [-clipRange, clipRange] (diffusers' clip_sample), or not. */
  readonly clipSample: number | null
  /** After clipping, recompute the noise estimate from the clipped x0 (diffusers' use_clipped_model_output). */
  readonly useClippedModelOutput: boolean
}

/** SD 1.x's scheduler_config.json. */
export const stableDiffusionSampling: SamplingOptions = {
  spacing: "leading",
  stepsOffset: 1,
  setAlphaToOne: false,
  clipSample: null,
  useClippedModelOutput: false
}

/** numpy's `round`: half to even. */
const roundHalfEven = (x: number) => {
  const r = Math.round(x)
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r
}

/** The timesteps of an `n`-step sampler, from noisiest to cleanest (diffusers' `set_timesteps`). */
export const timesteps = (T: number, n: number, o: Pick<SamplingOptions, "spacing" | "stepsOffset">): Array<number> => {
  if (n < 1 || n > T) throw new RangeError(`steps must be in [1, ${T}], got ${n}`)
  switch (o.spacing) {
    case "leading": {
      const ratio = Math.floor(T / n)
      return Array.from({ length: n }, (_, i) => (n - 1 - i) * ratio + o.stepsOffset)
    }
    case "trailing": {
      const ratio = T / n
      return Array.from({ length: n }, (_, i) => roundHalfEven(T - i * ratio) - 1)
    }
    case "linspace":
      return Array.from({ length: n }, (_, i) => roundHalfEven(((T - 1) * (n - 1 - i)) / (n - 1 || 1)))
  }
}

/** The timestep after `t` (negative past the end): diffusers uses `t - T // n` whatever the spacing. */
export const previousTimestep = (T: number, n: number, t: number) => t - Math.floor(T / n)

interface Estimates {
  readonly x0: tf.Tensor
  readonly eps: tf.Tensor
}

/** x0 and epsilon estimates from the model output at timestep t. */
export const estimates = (s: NoiseSchedule, output: tf.Tensor, sample: tf.Tensor, t: number, o: SamplingOptions): Estimates => {
  const a = s.alphasCumprod[t]!
  const [sa, sb] = [Math.sqrt(a), Math.sqrt(1 - a)]
  let x0: tf.Tensor
  let eps: tf.Tensor
  switch (s.config.predictionType) {
    case "epsilon":
      eps = output
      x0 = tf.div(tf.sub(sample, tf.mul(output, sb)), sa)
      break
    case "v_prediction":
      x0 = tf.sub(tf.mul(sample, sa), tf.mul(output, sb))
      eps = tf.add(tf.mul(output, sa), tf.mul(sample, sb))
      break
    case "sample":
      x0 = output
      // at zero terminal SNR (a = 0 at t = T-1) the sample is pure noise: eps = sample
      eps = sb === 0 ? sample : tf.div(tf.sub(sample, tf.mul(output, sa)), sb)
      break
  }
  if (o.clipSample !== null) {
    x0 = tf.clipByValue(x0, -o.clipSample, o.clipSample)
    if (o.useClippedModelOutput && sb > 0) eps = tf.div(tf.sub(sample, tf.mul(x0, sa)), sb)
  }
  return { x0, eps }
}

export interface StepResult {
  readonly prevSample: tf.Tensor
  readonly predOriginalSample: tf.Tensor
}

/**
 * DDIM: x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps + sigma z, with
 * sigma = eta sqrt((1 - a_prev)/(1 - a_t)) sqrt(1 - a_t/a_prev). `noise` is needed when eta > 0.
 */
export const ddimStep = (
  s: NoiseSchedule,
  o: SamplingOptions,
  output: tf.Tensor,
  t: number,
  prevT: number,
  sample: tf.Tensor,
  eta: number,
  noise?: tf.Tensor
): StepResult => {
  const a = s.alphasCumprod[t]!
  const aPrev = prevT >= 0 ? s.alphasCumprod[prevT]! : o.setAlphaToOne ? 1 : s.alphasCumprod[0]!
  const { x0, eps } = estimates(s, output, sample, t, o)
  const variance = ((1 - aPrev) / (1 - a)) * (1 - a / aPrev)
  const std = eta * Math.sqrt(Math.max(variance, 0))
  let prev = tf.add(tf.mul(x0, Math.sqrt(aPrev)), tf.mul(eps, Math.sqrt(Math.max(1 - aPrev - std * std, 0))))
  if (eta > 0) {
    if (noise === undefined) throw new Error("DDIM with eta > 0 needs noise")
    prev = tf.add(prev, tf.mul(noise, std))
  }
  return { prevSample: prev, predOriginalSample: x0 }
}

/** DDPM ("fixed_small" variance): the posterior mean plus sigma z, no noise at t = 0. */
export const ddpmStep = (
  s: NoiseSchedule,
  o: SamplingOptions,
  output: tf.Tensor,
  t: number,
  prevT: number,
  sample: tf.Tensor,
  noise?: tf.Tensor
): StepResult => {
  const a = s.alphasCumprod[t]!
  const aPrev = prevT >= 0 ? s.alphasCumprod[prevT]! : 1
  const alphaT = a / aPrev
  const betaT = 1 - alphaT
  const { x0 } = estimates(s, output, sample, t, o)
  const x0Coeff = (Math.sqrt(aPrev) * betaT) / (1 - a)
  const sampleCoeff = (Math.sqrt(alphaT) * (1 - aPrev)) / (1 - a)
  let prev = tf.add(tf.mul(x0, x0Coeff), tf.mul(sample, sampleCoeff))
  if (t > 0) {
    if (noise === undefined) throw new Error("DDPM needs noise before t = 0")
    const variance = Math.max(((1 - aPrev) / (1 - a)) * betaT, 1e-20)
    prev = tf.add(prev, tf.mul(noise, Math.sqrt(variance)))
  }
  return { prevSample: prev, predOriginalSample: x0 }
}
