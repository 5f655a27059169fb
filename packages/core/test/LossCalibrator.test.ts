import { beforeAll, describe, expect, it } from "vitest"
import type { AggregatedMaps } from "../src/attention/AttentionProbe.js"
import { CpuBackend, tf } from "../src/index.js"
import {
  ablations,
  type CalibrationConfig,
  calibratedLoss,
  type ConceptTokens,
  gaussianWeights,
  officialCalibration,
  reflectPad
} from "../src/loss/LossCalibrator.js"
import { testData, useRuntime } from "./numeric.js"

beforeAll(() => useRuntime(CpuBackend.layer))

// ---------- an independent float64 reference, written with plain loops ----------

type Grid = Array<Array<number>>

const refMinMax = (m: Grid): Grid => {
  const flat = m.flat()
  const lo = Math.min(...flat)
  const hi = Math.max(...flat)
  return m.map((row) => row.map((v) => (v - lo) / (hi - lo + 1e-8)))
}

const refGaussian = (m: Grid, sigma: number): Grid => {
  const w = [-1, 0, 1].map((x) => Math.exp(-((x / (2 * sigma)) ** 2)))
  const s = w[0]! + w[1]! + w[2]!
  const k = w.map((v) => v / s)
  const H = m.length
  const W = m[0]!.length
  const reflect = (i: number, n: number) => (i < 0 ? -i : i >= n ? 2 * n - 2 - i : i)
  return m.map((row, y) =>
    row.map((_, x) => {
      let acc = 0
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) acc += k[dy + 1]! * k[dx + 1]! * m[reflect(y + dy, H)]![reflect(x + dx, W)]!
      }
      return acc
    })
  )
}

const refIoU = (p: Grid, q: Grid, smooth: number) => {
  let i = 0
  let sp = 0
  let sq = 0
  p.forEach((row, y) =>
    row.forEach((v, x) => {
      i += v * q[y]![x]!
      sp += v
      sq += q[y]![x]!
    })
  )
  return (i + smooth) / (sp + sq - i + smooth)
}

const refPrepare = (c: CalibrationConfig, m: Grid, isClass: boolean): Grid => {
  let a = refMinMax(m)
  if (c.gaussian) a = refGaussian(a, c.gaussianSigma)
  if (isClass && c.suppression !== "none") a = a.map((r) => r.map((v) => v * v))
  if (isClass && c.suppression === "twice") a = a.map((r) => r.map((v) => v * v))
  return a
}

/** maps[r][t] is a grid; rows give concept positions. Returns the attention part (bind, sep, total add). */
const refAttention = (c: CalibrationConfig, maps: Array<Array<Grid>>, rows: Array<Array<ConceptTokens>>) => {
  const mean = (r: number, ps: ReadonlyArray<number>): Grid =>
    maps[r]![ps[0]!]!.map((row, y) => row.map((_, x) => ps.reduce((a, p) => a + maps[r]![p]![y]![x]!, 0) / ps.length))
  let bind = 0
  let sep = 0
  let count = 0
  rows.forEach((concepts, r) => {
    if (concepts.length === 0) return
    count++
    const cls = concepts.map((k) => refPrepare(c, mean(r, k.classes), true))
    if (c.bind) {
      concepts.forEach((k, i) => {
        bind += 1 - refIoU(cls[i]!, refPrepare(c, mean(r, k.modifiers), false), c.smooth)
      })
    }
    if (c.separation !== "none" && cls.length > 1) {
      const pairs: Array<number> = []
      for (let i = 0; i < cls.length; i++) {
        for (let j = i + 1; j < cls.length; j++) {
          if (c.separation === "soft-iou") pairs.push(refIoU(cls[j]!, cls[i]!, c.smooth))
          else pairs.push(cls[j]!.flat().reduce((a, v, n) => a + v * cls[i]!.flat()[n]!, 0) / cls[j]!.flat().length)
        }
      }
      const s = pairs.reduce((a, b) => a + b, 0)
      sep += c.pairReduction === "mean" ? s / pairs.length : s
    }
  })
  bind /= count
  sep /= count
  const add = (c.bind ? c.weight * bind : 0) +
    (c.separation === "none" ? 0 : c.separation === "intersection" ? sep : c.weight * sep)
  return { bind, sep, add }
}

// ---------- fixtures ----------

const H = 4
const W = 5
const T = 8

/** Random positive "attention" maps [B, H*W, T] and their grid form maps[r][t][y][x]. */
const makeMaps = (B: number, seed: number) => {
  const data = testData(B * H * W * T, seed).map((v) => (v + 1) / 2)
  const grids = Array.from({ length: B }, (_, r) =>
    Array.from({ length: T }, (_, t) =>
      Array.from({ length: H }, (_, y) => Array.from({ length: W }, (_, x) => data[(r * H * W + y * W + x) * T + t]!))
    )
  )
  return { data, grids }
}

const aggregated = (maps: tf.Tensor): AggregatedMaps => ({ maps, height: H, width: W, layers: ["l"] })

const twoConcepts: Array<ConceptTokens> = [
  { concept: 0, modifiers: [1], classes: [2] },
  { concept: 1, modifiers: [4], classes: [5] }
]

const zeroBase = (B: number) => ({
  prediction: tf.zeros([B, 2, 2, 4]),
  target: tf.zeros([B, 2, 2, 4]),
  mask: tf.ones([B, 2, 2, 1])
})

const config = (over: Partial<CalibrationConfig> = {}): CalibrationConfig => ({ ...officialCalibration, ...over })

describe("LossCalibrator pieces", () => {
  it("the Gaussian kernel has the official weights (2 sigma inside the square)", () => {
    const w = gaussianWeights(3, 0.5)
    expect(w[0]).toBeCloseTo(0.211942, 6)
    expect(w[1]).toBeCloseTo(0.576117, 6)
    expect(w[0]! * w[0]!).toBeCloseTo(0.0449192, 7)
    expect(w[0]! * w[1]!).toBeCloseTo(0.1221031, 7)
    expect(w[1]! * w[1]!).toBeCloseTo(0.3319107, 7)
  })

  it("reflectPad mirrors without repeating the edge, and back-propagates into the mirrored cells", () => {
    const m = tf.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    expect(reflectPad(m, 1).arraySync()).toEqual([
      [5, 4, 5, 6, 5],
      [2, 1, 2, 3, 2],
      [5, 4, 5, 6, 5],
      [8, 7, 8, 9, 8],
      [5, 4, 5, 6, 5]
    ])
    // d/dm of sum(pad(m)): how many times each cell appears in the padded grid (rows 1,0,1,2,1 x cols alike)
    const g = tf.grad((x: tf.Tensor) => tf.sum(reflectPad(x, 1)))(m)
    expect(g.arraySync()).toEqual([[1, 3, 1], [3, 9, 3], [1, 3, 1]])
  })
})

describe("LossCalibrator base loss", () => {
  it("masked-4ch sums channels over the mask area; mse averages", () => {
    // prediction - target = 0.5 everywhere; 3 of 4 cells masked in row 0, all in row 1
    const prediction = tf.fill([2, 2, 2, 4], 0.5)
    const target = tf.zeros([2, 2, 2, 4])
    const mask = tf.tensor([1, 1, 1, 0, 1, 1, 1, 1], [2, 2, 2, 1])
    const rows = [[], []]
    const ch4 = calibratedLoss(config(), { prediction, target, mask, rows })
    // per row: (cells * 4 channels * 0.25) / cells = 1, mean over rows = 1
    expect(ch4.base.dataSync()[0]).toBeCloseTo(1, 6)
    const mse = calibratedLoss(config({ baseLoss: "mse" }), { prediction, target, mask, rows })
    expect(mse.base.dataSync()[0]).toBeCloseTo(0.25, 6)
    // masked-out errors do not count
    const p2 = tf.tensor(Array.from({ length: 32 }, (_, i) => (i >= 12 && i < 16 ? 100 : 0.5)), [2, 2, 2, 4])
    expect(calibratedLoss(config(), { prediction: p2, target, mask, rows }).base.dataSync()[0]).toBeCloseTo(1, 6)
  })

  it("rows without modifiers feed only the base loss", () => {
    const { data } = makeMaps(2, 1)
    const out = calibratedLoss(config(), { ...zeroBase(2), maps: aggregated(tf.tensor(data, [2, H * W, T])), rows: [[], []] })
    expect(out.bind).toBeUndefined()
    expect(out.separation).toBeUndefined()
    expect(out.total.dataSync()[0]).toBe(0)
  })
})

describe("LossCalibrator attention terms", () => {
  it("closed form: with no Gaussian and no suppression, indicator maps give counting IoUs", () => {
    // token 1 (modifier) covers cells {0,1,2}; token 2 (class) covers {1,2,3}; concept 2: mod {10,11}, class {12}
    const cells = (on: Array<number>) => Array.from({ length: H * W }, (_, i) => (on.includes(i) ? 1 : 0))
    const cols: Record<number, Array<number>> = { 1: cells([0, 1, 2]), 2: cells([1, 2, 3]), 4: cells([10, 11]), 5: cells([12, 2]) }
    const data = new Float32Array(H * W * T)
    for (let n = 0; n < H * W; n++) for (const t of [1, 2, 4, 5]) data[n * T + t] = cols[t]![n]!
    const c = config({ gaussian: false, suppression: "none" })
    const out = calibratedLoss(c, { ...zeroBase(1), maps: aggregated(tf.tensor(data, [1, H * W, T])), rows: [twoConcepts] })
    // bind 1: share {1,2}, union 4 -> 1 - 3/5; bind 2: share nothing, union 4 -> 1 - 1/5;
    // s&s: the classes share {2}, union 4 -> (1+1)/(4+1)
    const bind = 1 - 3 / 5 + (1 - 1 / 5)
    const sep = 2 / 5
    expect(out.bind!.dataSync()[0]).toBeCloseTo(bind, 6)
    expect(out.separation!.dataSync()[0]).toBeCloseTo(sep, 6)
    expect(out.total.dataSync()[0]).toBeCloseTo(0.01 * (bind + sep), 7)
  })

  it("closed form: constant maps normalise to zero, so bind = 0 and s&s = 1 (the +1 smoothing)", () => {
    const data = new Float32Array(H * W * T).fill(0.3)
    const out = calibratedLoss(config(), { ...zeroBase(1), maps: aggregated(tf.tensor(data, [1, H * W, T])), rows: [twoConcepts] })
    expect(out.bind!.dataSync()[0]).toBeCloseTo(0, 6)
    expect(out.separation!.dataSync()[0]).toBeCloseTo(1, 6)
  })

  const variants: Record<string, Partial<CalibrationConfig>> = {
    official: {},
    ...Object.fromEntries(Object.entries(ablations).filter(([k]) => k !== "custom-diffusion" && k !== "all-resolutions")),
    "sigma 1": { gaussianSigma: 1 },
    "no smoothing": { smooth: 0 },
    "weight 0.5": { weight: 0.5 }
  }

  for (const [name, over] of Object.entries(variants)) {
    it(`matches the float64 reference: ${name}`, () => {
      const c = config(over)
      const { data, grids } = makeMaps(3, 7)
      // row 0: two concepts; row 1: regularisation; row 2: a modifier used twice, and a lone concept
      const rows: Array<Array<ConceptTokens>> = [
        twoConcepts,
        [],
        [{ concept: 0, modifiers: [1, 6], classes: [2, 7] }, { concept: 1, modifiers: [4], classes: [5] }]
      ]
      const out = calibratedLoss(c, { ...zeroBase(3), maps: aggregated(tf.tensor(data, [3, H * W, T])), rows })
      const ref = refAttention(c, grids, rows)
      if (c.bind) expect(out.bind!.dataSync()[0]).toBeCloseTo(ref.bind, 5)
      else expect(out.bind).toBeUndefined()
      if (c.separation !== "none") expect(out.separation!.dataSync()[0]).toBeCloseTo(ref.sep, 5)
      else expect(out.separation).toBeUndefined()
      expect(out.total.dataSync()[0]).toBeCloseTo(ref.add, 5)
    })
  }

  it("three concepts: s&s over all pairs, averaged (official) or summed (paper)", () => {
    const { data, grids } = makeMaps(1, 11)
    const rows: Array<Array<ConceptTokens>> = [[
      { concept: 0, modifiers: [0], classes: [1] },
      { concept: 1, modifiers: [2], classes: [3] },
      { concept: 2, modifiers: [5], classes: [6] }
    ]]
    for (const pairReduction of ["mean", "sum"] as const) {
      const c = config({ pairReduction })
      const out = calibratedLoss(c, { ...zeroBase(1), maps: aggregated(tf.tensor(data, [1, H * W, T])), rows })
      const ref = refAttention(c, grids, rows)
      expect(out.separation!.dataSync()[0]).toBeCloseTo(ref.sep, 5)
      expect(out.bind!.dataSync()[0]).toBeCloseTo(ref.bind, 5)
    }
  })

  it("calibration off (Custom Diffusion baseline) leaves only the base loss", () => {
    const { data } = makeMaps(1, 3)
    const out = calibratedLoss(config({ enabled: false }), {
      ...zeroBase(1),
      maps: aggregated(tf.tensor(data, [1, H * W, T])),
      rows: [twoConcepts]
    })
    expect(out.bind).toBeUndefined()
    expect(out.total.dataSync()[0]).toBe(0)
  })
})

describe("LossCalibrator gradients", () => {
  const { data } = makeMaps(1, 5)
  const columnGrad = (g: tf.Tensor, t: number) => tf.slice(g, [0, 0, t], [1, H * W, 1]).dataSync()
  const gradOf = (c: CalibrationConfig) =>
    tf.grad((m: tf.Tensor) => calibratedLoss(c, { ...zeroBase(1), maps: aggregated(m), rows: [twoConcepts] }).total)(
      tf.tensor(data, [1, H * W, T])
    )
  const norm = (a: Float32Array | Int32Array | Uint8Array) => Math.sqrt(Array.from(a).reduce((s, v) => s + v * v, 0))

  it("L_bind is detached on the class map: no gradient reaches class tokens through it", () => {
    const g = gradOf(config({ separation: "none" }))
    expect(norm(columnGrad(g, 2))).toBe(0)
    expect(norm(columnGrad(g, 5))).toBe(0)
    expect(norm(columnGrad(g, 1))).toBeGreaterThan(1e-6)
    expect(norm(columnGrad(g, 4))).toBeGreaterThan(1e-6)
    // unused tokens get nothing
    expect(norm(columnGrad(g, 0))).toBe(0)
    expect(norm(columnGrad(g, 3))).toBe(0)
  })

  it("L_s&s is not detached: both class maps get gradient, and the modifiers none", () => {
    const g = gradOf(config({ bind: false }))
    expect(norm(columnGrad(g, 2))).toBeGreaterThan(1e-6)
    expect(norm(columnGrad(g, 5))).toBeGreaterThan(1e-6)
    expect(norm(columnGrad(g, 1))).toBe(0)
    expect(norm(columnGrad(g, 4))).toBe(0)
  })

  it("with both terms, the class-map gradient is exactly that of L_s&s alone", () => {
    const both = gradOf(config())
    const sepOnly = gradOf(config({ bind: false }))
    expect(Array.from(columnGrad(both, 2))).toEqual(Array.from(columnGrad(sepOnly, 2)))
    expect(Array.from(columnGrad(both, 5))).toEqual(Array.from(columnGrad(sepOnly, 5)))
  })

  it("the analytic gradient agrees with finite differences (float64 reference)", () => {
    // Finite differences see the whole dependence; the detached class map in L_bind is invisible to the
    // analytic gradient by design, so class cells are checked with L_s&s alone.
    const { grids } = makeMaps(1, 5)
    const rows = [twoConcepts]
    const cases = [
      { c: config(), t: 1 },
      { c: config(), t: 4 },
      { c: config({ bind: false }), t: 2 },
      { c: config({ bind: false }), t: 5 }
    ]
    for (const { c, t } of cases) {
      // the cell where this token's gradient is largest
      const column = Array.from(columnGrad(gradOf(c), t))
      const n = column.reduce((best, v, i) => (Math.abs(v) > Math.abs(column[best]!) ? i : best), 0)
      const [y, x] = [Math.floor(n / W), n % W]
      const analytic = column[n]!
      const eps = 1e-4
      const plus = structuredClone(grids)
      const minus = structuredClone(grids)
      plus[0]![t]![y]![x]! += eps
      minus[0]![t]![y]![x]! -= eps
      const numeric = (refAttention(c, plus, rows).add - refAttention(c, minus, rows).add) / (2 * eps)
      expect(Math.abs(numeric)).toBeGreaterThan(1e-6)
      expect(Math.abs(analytic - numeric)).toBeLessThan(2e-3 * Math.abs(numeric))
    }
  })

})
