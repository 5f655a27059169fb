/**
 * The forward noising process of DDPM (Ho et al. 2020): `x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`,
 * with the beta schedules diffusers offers, computed in float64.
 */
import { tf } from "../tensor/Tf.js"

export type BetaSchedule = "scaled_linear" | "linear" | "squaredcos_cap_v2"
export type PredictionType = "epsilon" | "v_prediction" | "sample"

export interface NoiseScheduleConfig {
  readonly numTrainTimesteps: number
  readonly betaStart: number
  readonly betaEnd: number
  readonly betaSchedule: BetaSchedule
  readonly predictionType: PredictionType
  /** Rescale to zero terminal SNR (Lin et al. 2024, "Common diffusion noise schedules are flawed"). */
  readonly rescaleZeroTerminalSnr: boolean
}

/** SD 1.x: DDPM 1000 steps, scaled_linear 0.00085..0.012, epsilon prediction (method doc a.1.1). */
export const stableDiffusionSchedule: NoiseScheduleConfig = {
  numTrainTimesteps: 1000,
  betaStart: 0.00085,
  betaEnd: 0.012,
  betaSchedule: "scaled_linear",
  predictionType: "epsilon",
  rescaleZeroTerminalSnr: false
}

export interface NoiseSchedule {
  readonly config: NoiseScheduleConfig
  readonly betas: Float64Array
  readonly alphasCumprod: Float64Array
}

const linspace = (a: number, b: number, n: number) => Float64Array.from({ length: n }, (_, i) => a + ((b - a) * i) / (n - 1))

export const makeNoiseSchedule = (config: NoiseScheduleConfig): NoiseSchedule => {
  const n = config.numTrainTimesteps
  let betas: Float64Array
  switch (config.betaSchedule) {
    case "linear":
      betas = linspace(config.betaStart, config.betaEnd, n)
      break
    case "scaled_linear":
      betas = linspace(Math.sqrt(config.betaStart), Math.sqrt(config.betaEnd), n).map((b) => b * b)
      break
    case "squaredcos_cap_v2": {
      // Nichol & Dhariwal 2021, with diffusers' max_beta 0.999
      const f = (t: number) => Math.cos(((t + 0.008) / 1.008) * Math.PI / 2) ** 2
      betas = Float64Array.from({ length: n }, (_, i) => Math.min(1 - f((i + 1) / n) / f(i / n), 0.999))
      break
    }
  }
  if (config.rescaleZeroTerminalSnr) betas = rescaleZeroTerminalSnr(betas)
  const alphasCumprod = new Float64Array(n)
  let prod = 1
  for (let i = 0; i < n; i++) {
    prod *= 1 - betas[i]!
    alphasCumprod[i] = prod
  }
  return { config, betas, alphasCumprod }
}

/** Shifts and scales sqrt(abar) so that it ends at exactly 0 while keeping its first value. */
const rescaleZeroTerminalSnr = (betas: Float64Array): Float64Array => {
  const n = betas.length
  const sqrtAbar = new Float64Array(n)
  let prod = 1
  for (let i = 0; i < n; i++) {
    prod *= 1 - betas[i]!
    sqrtAbar[i] = Math.sqrt(prod)
  }
  const first = sqrtAbar[0]!
  const last = sqrtAbar[n - 1]!
  const abar = sqrtAbar.map((s) => (((s - last) * first) / (first - last)) ** 2)
  const out = new Float64Array(n)
  out[0] = 1 - abar[0]!
  for (let i = 1; i < n; i++) out[i] = 1 - abar[i]! / abar[i - 1]!
  return out
}

/** Per-row `sqrt(abar_t)` and `sqrt(1 - abar_t)` as `[B,1,1,1]` tensors. */
export const noiseCoefficients = (s: NoiseSchedule, timesteps: ReadonlyArray<number>) => {
  const a = timesteps.map((t) => Math.sqrt(s.alphasCumprod[t]!))
  const b = timesteps.map((t) => Math.sqrt(1 - s.alphasCumprod[t]!))
  return { signal: tf.tensor(a, [a.length, 1, 1, 1]), noise: tf.tensor(b, [b.length, 1, 1, 1]) }
}

/** `x_t` from `x_0` and noise. */
export const addNoise = (s: NoiseSchedule, x0: tf.Tensor, noise: tf.Tensor, timesteps: ReadonlyArray<number>) => {
  const c = noiseCoefficients(s, timesteps)
  return tf.add(tf.mul(c.signal, x0), tf.mul(c.noise, noise))
}

/** What the denoiser is trained to output for the schedule's prediction type. */
export const trainingTarget = (
  s: NoiseSchedule,
  x0: tf.Tensor,
  noise: tf.Tensor,
  timesteps: ReadonlyArray<number>
): tf.Tensor => {
  switch (s.config.predictionType) {
    case "epsilon":
      return noise
    case "sample":
      return x0
    case "v_prediction": {
      const c = noiseCoefficients(s, timesteps)
      return tf.sub(tf.mul(c.signal, noise), tf.mul(c.noise, x0))
    }
  }
}
