/** The built-in model's pretraining configuration (stored whole in every pretraining checkpoint). */
import { Schema } from "effect"
import { defaultToyRecipe, defaultToySize } from "../models/ToyModel.js"
import { WORLD_NAMES } from "../world/Vocabulary.js"

const PositiveInt = Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))
const NonNegativeInt = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
const Positive = Schema.Finite.check(Schema.isGreaterThan(0))
const Fraction = Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 1 }))

export const ToySize = Schema.Struct({
  channels: Schema.Tuple([PositiveInt, PositiveInt]),
  layersPerBlock: PositiveInt,
  heads: PositiveInt,
  normGroups: PositiveInt,
  textHidden: PositiveInt,
  textLayers: PositiveInt,
  textHeads: PositiveInt
})

export const ToyRecipe = Schema.Struct({
  predictionType: Schema.Literals(["epsilon", "v_prediction", "sample"]),
  betaSchedule: Schema.Literals(["scaled_linear", "linear", "squaredcos_cap_v2"]),
  zeroTerminalSnr: Schema.Boolean
})

export const PretrainConfig = Schema.Struct({
  world: Schema.Literals(WORLD_NAMES),
  /**
   * The run started from another pretraining checkpoint's EMA weights instead of fresh ones (rows of
   * words the other model did not know start fresh); fresh optimizer state. Absent: from scratch.
   */
  initFrom: Schema.optionalKey(Schema.Struct({ checkpoint: Schema.String, digest: Schema.String, step: NonNegativeInt })),
  size: ToySize,
  /** Prediction type and noise schedule (absent in early checkpoints: the default recipe). */
  recipe: Schema.optionalKey(ToyRecipe),
  /** Data order, noise and timesteps. */
  seed: NonNegativeInt,
  /** Initial weights. */
  initSeed: NonNegativeInt,
  /** Total optimizer steps (the target, also when resuming). */
  steps: PositiveInt,
  batchSize: PositiveInt,
  gradientAccumulation: PositiveInt,
  learningRate: Positive,
  warmupSteps: NonNegativeInt,
  /** After warm-up: constant, or cosine down to `minLearningRate` at `decaySteps`. */
  decay: Schema.Literals(["constant", "cosine"]),
  decaySteps: PositiveInt,
  minLearningRate: Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0)),
  beta2: Fraction,
  weightDecay: Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0)),
  clipGradNorm: Positive,
  emaDecay: Fraction,
  /** Probability of an empty caption (classifier-free guidance needs the unconditional model). */
  captionDropout: Fraction,
  /** Min-SNR-gamma loss weighting (Hang et al. 2023) for v-prediction, with a floor for low-noise steps. */
  minSnrGamma: Positive,
  snrWeightFloor: Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0)),
  checkpointEvery: NonNegativeInt,
  evalEvery: NonNegativeInt,
  evalSamples: PositiveInt,
  evalSteps: PositiveInt,
  evalGuidance: Positive
})
export type PretrainConfig = typeof PretrainConfig.Type

export const defaultPretrainConfig: PretrainConfig = {
  world: "shapes",
  size: defaultToySize,
  recipe: defaultToyRecipe,
  seed: 1,
  initSeed: 0,
  steps: 20000,
  batchSize: 32,
  gradientAccumulation: 2,
  learningRate: 1e-3,
  warmupSteps: 200,
  decay: "constant",
  decaySteps: 20000,
  minLearningRate: 1e-4,
  beta2: 0.99,
  weightDecay: 0.01,
  clipGradNorm: 1,
  emaDecay: 0.999,
  captionDropout: 0.1,
  minSnrGamma: 5,
  snrWeightFloor: 0.1,
  checkpointEvery: 100,
  evalEvery: 1000,
  evalSamples: 24,
  evalSteps: 25,
  evalGuidance: 4
}

export const learningRateAt = (c: PretrainConfig, step: number): number => {
  if (step < c.warmupSteps) return (c.learningRate * (step + 1)) / c.warmupSteps
  if (c.decay === "constant") return c.learningRate
  const p = Math.min(1, (step - c.warmupSteps) / Math.max(1, c.decaySteps - c.warmupSteps))
  return c.minLearningRate + 0.5 * (c.learningRate - c.minLearningRate) * (1 + Math.cos(Math.PI * p))
}
