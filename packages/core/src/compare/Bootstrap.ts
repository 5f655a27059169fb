/**
 * Intervals for the comparison's means: a two-way percentile bootstrap over training seeds and prompts.
 *
 * The data of one method, group and metric is a matrix `x[s][p]`: seed s's score on prompt p (the mean
 * over that prompt's sampled images). One bootstrap replicate draws S seeds and P prompts with
 * replacement (independently) and takes the mean of `x` over the drawn rows and columns; the 95%
 * interval is the 2.5% and 97.5% quantiles of the replicates (linear interpolation between order
 * statistics, R's type 7). Both sources of variation count: another seed retrains the model, another
 * prompt asks for something else. A paired difference takes the same draws for both methods, which is
 * the bootstrap of the cell-wise difference `x_a - x_b` (the methods share seeds and prompts).
 *
 * Draws come from the counter-based generator keyed by (seed, replicate), so an interval is the same on
 * every run and machine.
 */
import { stream } from "../random/Rng.js"

export interface Interval {
  readonly mean: number
  /** 2.5% quantile of the bootstrap replicates. */
  readonly low: number
  /** 97.5% quantile. */
  readonly high: number
}

export interface BootstrapOptions {
  /** Replicates (default 2000). */
  readonly resamples?: number | undefined
  /** Key of the draws (default 0). */
  readonly seed?: number | undefined
  /** Coverage (default 0.95). */
  readonly level?: number | undefined
}

/** The q-quantile of sorted values, linear between order statistics (R type 7, numpy's default). */
export const quantile = (sorted: ArrayLike<number>, q: number): number => {
  const n = sorted.length
  if (n === 0) return Number.NaN
  const h = (n - 1) * q
  const lo = Math.floor(h)
  const hi = Math.min(n - 1, lo + 1)
  return sorted[lo]! + (h - lo) * (sorted[hi]! - sorted[lo]!)
}

const check = (x: ReadonlyArray<ReadonlyArray<number>>) => {
  const P = x[0]?.length ?? 0
  if (x.length === 0 || P === 0) throw new RangeError("the bootstrap needs at least one seed and one prompt")
  if (x.some((row) => row.length !== P)) throw new RangeError("every seed needs a score for every prompt")
  return P
}

/** The mean of a seeds x prompts matrix and its bootstrap interval. */
export const bootstrapMean = (x: ReadonlyArray<ReadonlyArray<number>>, options: BootstrapOptions = {}): Interval => {
  const P = check(x)
  const S = x.length
  const B = options.resamples ?? 2000
  const level = options.level ?? 0.95
  let total = 0
  for (const row of x) for (const v of row) total += v
  const mean = total / (S * P)
  const replicates = new Float64Array(B)
  const seeds = new Int32Array(S)
  const prompts = new Int32Array(P)
  for (let b = 0; b < B; b++) {
    const rnd = stream(options.seed ?? 0, b, "bootstrap")
    for (let i = 0; i < S; i++) seeds[i] = rnd.int(0, S - 1)
    for (let j = 0; j < P; j++) prompts[j] = rnd.int(0, P - 1)
    let sum = 0
    for (let i = 0; i < S; i++) {
      const row = x[seeds[i]!]!
      for (let j = 0; j < P; j++) sum += row[prompts[j]!]!
    }
    replicates[b] = sum / (S * P)
  }
  replicates.sort()
  const tail = (1 - level) / 2
  return { mean, low: quantile(replicates, tail), high: quantile(replicates, 1 - tail) }
}

/** Two decimals, "-" for a missing value, and no minus sign on one that rounds to zero. */
const twoDecimals = (x: number): string => (Number.isFinite(x) ? (Math.abs(x) < 0.005 ? 0 : x).toFixed(2) : "-")

/** `mean [low, high]` to two decimals, as the tables print an interval. */
export const formatInterval = (i: Interval): string => `${twoDecimals(i.mean)} [${twoDecimals(i.low)}, ${twoDecimals(i.high)}]`

/** Method a minus method b on the same seeds and prompts, with the paired bootstrap interval. */
export const pairedDifference = (
  a: ReadonlyArray<ReadonlyArray<number>>,
  b: ReadonlyArray<ReadonlyArray<number>>,
  options: BootstrapOptions = {}
): Interval => {
  if (a.length !== b.length || check(a) !== check(b)) throw new RangeError("a paired difference needs the same seeds and prompts for both methods")
  return bootstrapMean(a.map((row, i) => row.map((v, j) => v - b[i]![j]!)), options)
}
