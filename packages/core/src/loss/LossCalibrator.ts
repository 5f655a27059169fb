/**
 * The DisenDiff objective (CVPR 2024), exactly as the official code computes it
 * (docs/reference/disendiff-method.md a.3, g, i):
 *
 *   L = L_base + weight * mean_rows[ sum_i (1 - IoU(sg(f(G(N(A_ci)))), G(N(A_mi))))        (L_bind)
 *                                 + reduce_{i<j} IoU(f(G(N(A_ci))), f(G(N(A_cj)))) ]       (L_s&s)
 *
 * N = min-max normalisation over the map's cells, G = 3x3 "Gaussian" (reflect padding), f = squaring
 * (suppression, class maps only), IoU(P, Q) = (sum PQ + 1) / (sum P + sum Q - sum PQ + 1), sg = stop
 * gradient (the class map is detached in L_bind only). Rows are the batch rows whose caption holds at
 * least one modifier; the others feed only L_base. Every ablation of the paper is a config switch.
 */
import { Context, Layer, Schema } from "effect"
import type { AggregatedMaps, ProbeSelection } from "../attention/AttentionProbe.js"
import { defaultSelection, tokenMap } from "../attention/AttentionProbe.js"
import { conv2dFrozen, stopGradient } from "../nn/fastOps.js"
import { tf } from "../tensor/Tf.js"

export const CalibrationConfig = Schema.Struct({
  /** false: no attention terms at all (the Custom Diffusion baseline). */
  enabled: Schema.Boolean,
  /** "masked-4ch": Custom Diffusion's sum over latent channels / mask area (4x MSE for SD); "mse": mean. */
  baseLoss: Schema.Literals(["masked-4ch", "mse"]),
  /** IoU_alpha: weight of the attention terms (official 0.01). */
  weight: Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0)),
  bind: Schema.Boolean,
  /** "soft-iou": L_s&s (Eq. 5); "intersection": separate-only (Eq. 4), mean(A_ci A_cj), weight 1; "none". */
  separation: Schema.Literals(["soft-iou", "intersection", "none"]),
  /** How pairwise separation terms combine for 3+ concepts: the official code averages, the paper sums. */
  pairReduction: Schema.Literals(["mean", "sum"]),
  /** Class maps squared once (official), twice, or not at all. */
  suppression: Schema.Literals(["once", "twice", "none"]),
  gaussian: Schema.Boolean,
  gaussianSigma: Schema.Finite.check(Schema.isGreaterThan(0)),
  gaussianKernel: Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 15 })),
  /** Added to the numerator and denominator of every IoU. */
  smooth: Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0)),
  /** Which attention maps: the 256-query (16x16) layers, or all layers resized to one grid (ablation). */
  maps: Schema.Literals(["16x16", "all-resolutions"])
})
export type CalibrationConfig = typeof CalibrationConfig.Type

/** The official configuration (configs/full.yaml of the DisenDiff code). */
export const officialCalibration: CalibrationConfig = {
  enabled: true,
  baseLoss: "masked-4ch",
  weight: 0.01,
  bind: true,
  separation: "soft-iou",
  pairReduction: "mean",
  suppression: "once",
  gaussian: true,
  gaussianSigma: 0.5,
  gaussianKernel: 3,
  smooth: 1,
  maps: "16x16"
}

/**
 * The attention layers the calibration reads, as the probe selects them: the 16x16 (256-query) layers,
 * or every layer resized to one grid for the all-resolutions ablation. Training must record with this
 * selection (`Trainer` checks), else the ablation trains on the official maps.
 */
export const probeSelection = (c: CalibrationConfig): ProbeSelection => (c.maps === "all-resolutions" ? { queries: "all" } : defaultSelection)

/** Named ablations of the paper, as overrides of the official configuration. */
export const ablations: Record<string, Partial<CalibrationConfig>> = {
  "custom-diffusion": { enabled: false },
  "no-bind": { bind: false },
  "no-separation": { separation: "none" },
  "separate-only": { separation: "intersection" },
  "no-suppression": { suppression: "none" },
  "twice-suppression": { suppression: "twice" },
  "no-gaussian": { gaussian: false },
  "all-resolutions": { maps: "all-resolutions" }
}

/** One concept's token positions in one row: its modifier occurrences and the class word after each. */
export interface ConceptTokens {
  readonly concept: number
  readonly modifiers: ReadonlyArray<number>
  readonly classes: ReadonlyArray<number>
}

export interface LossInput {
  /** Denoiser output and its target, `[B, h, w, c]`. */
  readonly prediction: tf.Tensor
  readonly target: tf.Tensor
  /** Where the loss counts, `[B, h, w, 1]` (scale augmentation leaves out the padding). */
  readonly mask: tf.Tensor
  /** Aggregated cross-attention maps, required when any row has concepts and calibration is on. */
  readonly maps?: AggregatedMaps | undefined
  /** Per row, the concepts its caption holds (empty for regularisation rows). */
  readonly rows: ReadonlyArray<ReadonlyArray<ConceptTokens>>
}

export interface LossTerms {
  readonly total: tf.Scalar
  readonly base: tf.Scalar
  /** Row-averaged, unweighted; undefined when no row holds a concept or the term is off. */
  readonly bind?: tf.Scalar | undefined
  readonly separation?: tf.Scalar | undefined
}

/** 1-D factor of the official kernel: exp(-((x - mu) / (2 sigma))^2), normalised (note 2 sigma inside). */
export const gaussianWeights = (size: number, sigma: number): Array<number> => {
  const mu = (size - 1) / 2
  const w = Array.from({ length: size }, (_, x) => Math.exp(-(((x - mu) / (2 * sigma)) ** 2)))
  const sum = w.reduce((a, b) => a + b, 0)
  return w.map((v) => v / sum)
}

/** Reflect padding by `p` cells on both axes of `[H, W]`, built from slices (tfjs's MirrorPad gradient is wrong). */
export const reflectPad = (m: tf.Tensor, p: number): tf.Tensor => {
  if (p === 0) return m
  const [H, W] = m.shape as [number, number]
  if (p >= H || p >= W) throw new Error(`reflect padding ${p} needs maps larger than ${H}x${W}`)
  const rowsAbove = Array.from({ length: p }, (_, i) => tf.slice(m, [p - i, 0], [1, W]))
  const rowsBelow = Array.from({ length: p }, (_, i) => tf.slice(m, [H - 2 - i, 0], [1, W]))
  const tall = tf.concat([...rowsAbove, m, ...rowsBelow], 0)
  const Hp = H + 2 * p
  const left = Array.from({ length: p }, (_, i) => tf.slice(tall, [0, p - i], [Hp, 1]))
  const right = Array.from({ length: p }, (_, i) => tf.slice(tall, [0, W - 2 - i], [Hp, 1]))
  return tf.concat([...left, tall, ...right], 1)
}

export const minMaxNormalise = (m: tf.Tensor): tf.Tensor => {
  const lo = tf.min(m)
  return tf.div(tf.sub(m, lo), tf.add(tf.sub(tf.max(m), lo), 1e-8))
}

export const gaussianSmooth = (m: tf.Tensor, size: number, sigma: number): tf.Tensor => {
  const w1 = gaussianWeights(size, sigma)
  const kernel = tf.tensor(w1.flatMap((a) => w1.map((b) => a * b)), [size, size, 1, 1])
  const [H, W] = m.shape as [number, number]
  const p = (size - 1) / 2
  const padded = tf.reshape(reflectPad(m, p), [1, H + 2 * p, W + 2 * p, 1])
  return tf.reshape(conv2dFrozen(padded, kernel, { stride: 1, padding: 0 }), [H, W])
}

export const softIoU = (p: tf.Tensor, q: tf.Tensor, smooth: number): tf.Scalar => {
  const inter = tf.sum(tf.mul(p, q))
  const union = tf.sub(tf.add(tf.sum(p), tf.sum(q)), inter)
  return tf.div(tf.add(inter, smooth), tf.add(union, smooth)) as tf.Scalar
}

/** Mean of the maps at the given positions (a modifier occurring twice contributes both maps). */
const meanMap = (maps: AggregatedMaps, row: number, positions: ReadonlyArray<number>) => {
  const ms = positions.map((p) => tokenMap(maps, row, p))
  return ms.length === 1 ? ms[0]! : tf.div(tf.addN(ms), ms.length)
}

export const prepare = (c: CalibrationConfig, m: tf.Tensor, isClass: boolean): tf.Tensor => {
  let a = minMaxNormalise(m)
  if (c.gaussian) a = gaussianSmooth(a, c.gaussianKernel, c.gaussianSigma)
  if (isClass && c.suppression !== "none") a = tf.square(a)
  if (isClass && c.suppression === "twice") a = tf.square(a)
  return a
}

const baseLoss = (c: CalibrationConfig, input: LossInput): tf.Scalar => {
  const se = tf.mul(tf.square(tf.sub(input.prediction, input.target)), input.mask)
  const channels = input.prediction.shape[3]!
  const perRow = tf.div(tf.sum(se, [1, 2, 3]), tf.sum(input.mask, [1, 2, 3]))
  const rowMean = tf.mean(perRow)
  return (c.baseLoss === "mse" ? tf.div(rowMean, channels) : rowMean) as tf.Scalar
}

export const calibratedLoss = (c: CalibrationConfig, input: LossInput): LossTerms => {
  const base = baseLoss(c, input)
  const rows = input.rows.map((concepts, r) => ({ r, concepts })).filter((x) => x.concepts.length > 0)
  if (!c.enabled || rows.length === 0) return { total: base, base }
  if (input.maps === undefined) throw new Error("calibration needs attention maps for rows with concepts")
  const maps = input.maps
  const bindTerms: Array<tf.Scalar> = []
  const sepTerms: Array<tf.Scalar> = []
  for (const { r, concepts } of rows) {
    const cls = concepts.map((k) => prepare(c, meanMap(maps, r, k.classes), true))
    if (c.bind) {
      const binds = concepts.map((k, i) => {
        const mod = prepare(c, meanMap(maps, r, k.modifiers), false)
        return tf.sub(1, softIoU(stopGradient(cls[i]!), mod, c.smooth))
      })
      bindTerms.push(tf.addN(binds) as tf.Scalar)
    }
    if (c.separation !== "none" && concepts.length > 1) {
      const pairs: Array<tf.Scalar> = []
      for (let i = 0; i < cls.length; i++) {
        for (let j = i + 1; j < cls.length; j++) {
          pairs.push(
            c.separation === "soft-iou"
              ? softIoU(cls[j]!, cls[i]!, c.smooth)
              : (tf.mean(tf.mul(cls[j]!, cls[i]!)) as tf.Scalar)
          )
        }
      }
      const sum = tf.addN(pairs)
      sepTerms.push((c.pairReduction === "mean" ? tf.div(sum, pairs.length) : sum) as tf.Scalar)
    }
  }
  // both terms are summed per row, then averaged over the rows that hold concepts
  const count = rows.length
  const bind = bindTerms.length > 0 ? (tf.div(tf.addN(bindTerms), count) as tf.Scalar) : undefined
  const separation = sepTerms.length > 0 ? (tf.div(tf.addN(sepTerms), count) as tf.Scalar) : undefined
  let total: tf.Tensor = base
  if (bind !== undefined) total = tf.add(total, tf.mul(bind, c.weight))
  if (separation !== undefined) {
    // the separate-only variant is added with weight 1, not IoU_alpha (method doc, i)
    total = tf.add(total, c.separation === "intersection" ? separation : tf.mul(separation, c.weight))
  }
  return { total: total as tf.Scalar, base, bind, separation }
}

export class LossCalibrator extends Context.Service<LossCalibrator, {
  readonly config: CalibrationConfig
  readonly loss: (input: LossInput) => LossTerms
}>()("@disendiff/core/LossCalibrator") {
  static readonly make = (config: CalibrationConfig = officialCalibration) =>
    LossCalibrator.of({ config, loss: (input) => calibratedLoss(config, input) })

  static readonly layer = (config: CalibrationConfig = officialCalibration): Layer.Layer<LossCalibrator> =>
    Layer.succeed(LossCalibrator, LossCalibrator.make(config))
}
