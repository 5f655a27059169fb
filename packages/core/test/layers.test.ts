import { beforeAll, describe, expect, it } from "vitest"
import { CpuBackend, nn, tf } from "../src/index.js"
import { finiteDifferenceError, maxAbsDiff, randomTensor, useRuntime } from "./numeric.js"

beforeAll(() => useRuntime(CpuBackend.layer))

const weights = (entries: Record<string, tf.Tensor>, trainable: Array<string> = []) =>
  nn.makeWeights(
    new Map(Object.entries(entries).filter(([k]) => !trainable.includes(k))),
    new Map(Object.entries(entries).filter(([k]) => trainable.includes(k)))
  )

describe("activations", () => {
  it("match their closed forms at known points", () => {
    const x = tf.tensor([-2, -0.5, 0, 1, 3])
    const xs = [-2, -0.5, 0, 1, 3]
    // erf(x / sqrt 2) by its Taylor series, converged to double precision for these arguments
    const erfHalf = xs.map((v) => {
      const z = v / Math.SQRT2
      let [sum, term] = [0, z]
      for (let n = 0; n < 60; n++) {
        sum += term / (2 * n + 1)
        term *= (-z * z) / (n + 1)
      }
      return (2 / Math.sqrt(Math.PI)) * sum
    })
    const gelu = nn.geluErf(x).dataSync()
    xs.forEach((v, i) => expect(gelu[i]).toBeCloseTo(0.5 * v * (1 + erfHalf[i]!), 5))
    const tanh = nn.geluTanh(x).dataSync()
    xs.forEach((v, i) =>
      expect(tanh[i]).toBeCloseTo(0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))), 5)
    )
    const quick = nn.quickGelu(x).dataSync()
    xs.forEach((v, i) => expect(quick[i]).toBeCloseTo(v / (1 + Math.exp(-1.702 * v)), 5))
    const silu = nn.silu(x).dataSync()
    xs.forEach((v, i) => expect(silu[i]).toBeCloseTo(v / (1 + Math.exp(-v)), 5))
  })
})

describe("norms", () => {
  it("groupNorm normalises each sample's channel groups, then applies the affine", () => {
    const x = randomTensor([2, 3, 3, 4], 1, 3)
    const gamma = tf.tensor([1, 2, 3, 4])
    const beta = tf.tensor([0, 0.5, -1, 2])
    const y = nn.groupNorm(weights({ weight: gamma, bias: beta }), x, 2, 1e-5)
    const xv = x.dataSync()
    const yv = y.dataSync()
    for (let b = 0; b < 2; b++) {
      for (let g = 0; g < 2; g++) {
        const idx: Array<number> = []
        for (let p = 0; p < 9; p++) for (let c = 2 * g; c < 2 * g + 2; c++) idx.push(b * 36 + p * 4 + c)
        const vals = idx.map((i) => xv[i]!)
        const mean = vals.reduce((a, v) => a + v, 0) / vals.length
        const variance = vals.reduce((a, v) => a + (v - mean) ** 2, 0) / vals.length
        for (const i of idx) {
          const c = i % 4
          const want = ((xv[i]! - mean) / Math.sqrt(variance + 1e-5)) * [1, 2, 3, 4][c]! + [0, 0.5, -1, 2][c]!
          expect(yv[i]).toBeCloseTo(want, 4)
        }
      }
    }
  })

  it("layerNorm normalises the last axis", () => {
    const x = tf.tensor([[1, 2, 3, 6]])
    const y = nn.layerNorm(weights({ weight: tf.ones([4]), bias: tf.zeros([4]) }), x, 1e-5).dataSync()
    const mean = 3
    const sd = Math.sqrt((4 + 1 + 0 + 9) / 4 + 1e-5)
    ;[1, 2, 3, 6].forEach((v, i) => expect(y[i]).toBeCloseTo((v - mean) / sd, 5))
  })

  it("groupNorm and layerNorm have correct gradients (finite differences)", () => {
    const w = weights({ weight: randomTensor([4], 2), bias: randomTensor([4], 3) })
    const r = randomTensor([2, 3, 3, 4], 4)
    expect(finiteDifferenceError((x) => tf.sum(tf.mul(nn.groupNorm(w, x, 2, 1e-5), r)), randomTensor([2, 3, 3, 4], 5, 2))).toBeLessThan(2e-3)
    const r2 = randomTensor([3, 4], 6)
    expect(finiteDifferenceError((x) => tf.sum(tf.mul(nn.layerNorm(w, x, 1e-5), r2)), randomTensor([3, 4], 7, 2))).toBeLessThan(2e-3)
  })
})

describe("fused custom gradients", () => {
  it("activations' gradients agree with finite differences", () => {
    const x = randomTensor([4, 6], 21, 3)
    const r = randomTensor([4, 6], 22)
    for (const f of [nn.silu, nn.geluErf, nn.geluTanh, nn.quickGelu]) {
      expect(finiteDifferenceError((v) => tf.sum(tf.mul(f(v), r)), x, 1e-2)).toBeLessThan(2e-3)
    }
  })

  it("norms' gamma and beta gradients agree with finite differences", () => {
    const x = randomTensor([2, 3, 3, 4], 23, 2)
    const r = randomTensor([2, 3, 3, 4], 24)
    const gamma = randomTensor([4], 25)
    const beta = randomTensor([4], 26)
    const gn = (g: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(nn.groupNorm(weights({ weight: g, bias: b }), x, 2, 1e-5), r))
    expect(finiteDifferenceError((g) => gn(g, beta), gamma)).toBeLessThan(2e-3)
    expect(finiteDifferenceError((b) => gn(gamma, b), beta)).toBeLessThan(2e-3)
    const ln = (g: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(nn.layerNorm(weights({ weight: g, bias: b }), x, 1e-5), r))
    expect(finiteDifferenceError((g) => ln(g, beta), gamma)).toBeLessThan(2e-3)
    expect(finiteDifferenceError((b) => ln(gamma, b), beta)).toBeLessThan(2e-3)
  })
})

describe("attention", () => {
  const D = 8
  const heads = 2
  const entries = {
    "to_q.weight": randomTensor([D, D], 10, 0.6),
    "to_k.weight": randomTensor([6, D], 11, 0.6),
    "to_v.weight": randomTensor([6, D], 12, 0.6),
    "to_out.0.weight": randomTensor([D, D], 13, 0.6),
    "to_out.0.bias": randomTensor([D], 14, 0.1)
  }

  /** Naive per-(batch, head) loops, written independently of the implementation. */
  const naive = (x: tf.Tensor, ctx: tf.Tensor) => {
    const q = tf.matMul(tf.reshape(x, [-1, D]), entries["to_q.weight"])
    const k = tf.matMul(tf.reshape(ctx, [-1, 6]), entries["to_k.weight"])
    const v = tf.matMul(tf.reshape(ctx, [-1, 6]), entries["to_v.weight"])
    const [B, N] = x.shape as [number, number]
    const T = ctx.shape[1]!
    const d = D / heads
    const rows: Array<tf.Tensor> = []
    const probs: Array<tf.Tensor> = []
    for (let b = 0; b < B; b++) {
      const heads_: Array<tf.Tensor> = []
      for (let h = 0; h < heads; h++) {
        const qh = tf.slice(q, [b * N, h * d], [N, d])
        const kh = tf.slice(k, [b * T, h * d], [T, d])
        const vh = tf.slice(v, [b * T, h * d], [T, d])
        const p = tf.softmax(tf.div(tf.matMul(qh, tf.transpose(kh)), Math.sqrt(d)))
        probs.push(p)
        heads_.push(tf.matMul(p, vh))
      }
      rows.push(tf.concat(heads_, 1))
    }
    const out = tf.add(tf.matMul(tf.concat(rows, 0), entries["to_out.0.weight"]), entries["to_out.0.bias"])
    return { out: tf.reshape(out, [B, N, D]), probs: tf.stack(probs) }
  }

  it("cross-attention matches a naive per-head computation and reports its probabilities", () => {
    const x = randomTensor([2, 6, D], 15)
    const ctx = randomTensor([2, 5, 6], 16)
    const calls: Array<nn.AttentionCall> = []
    const out = nn.attention(weights(entries), x, ctx, {
      heads,
      layer: "blk.attn2",
      height: 2,
      width: 3,
      hook: (c) => calls.push(c)
    })
    const ref = naive(x, ctx)
    expect(maxAbsDiff(out, ref.out)).toBeLessThan(1e-5)
    expect(calls).toHaveLength(1)
    expect(calls[0]!.probs.shape).toEqual([4, 6, 5])
    expect(maxAbsDiff(calls[0]!.probs, ref.probs)).toBeLessThan(1e-6)
    expect([calls[0]!.kind, calls[0]!.layer, calls[0]!.height, calls[0]!.width]).toEqual(["cross", "blk.attn2", 2, 3])
  })

  it("detachFirstToken keeps values, and blocks the start token's key/value gradient only", () => {
    const x = randomTensor([1, 4, D], 17)
    const ctx = randomTensor([1, 5, 6], 18)
    const run = (detach: boolean) =>
      tf.grads((k: tf.Tensor, c: tf.Tensor) => {
        const w = nn.makeWeights(new Map(Object.entries(entries)), new Map([["to_k.weight", k]]))
        return tf.sum(nn.attention(w, x, c, { heads, layer: "a", height: 2, width: 2, detachFirstToken: detach }))
      })([entries["to_k.weight"], ctx])
    const [gk, gc] = run(true)
    const [gkFree, gcFree] = run(false)
    // context row 0 gets no gradient at all (it only feeds k and v); the others are unchanged
    expect(tf.max(tf.abs(tf.slice(gc!, [0, 0, 0], [1, 1, 6]))).dataSync()[0]).toBe(0)
    expect(maxAbsDiff(tf.slice(gc!, [0, 1, 0], [1, 4, 6]), tf.slice(gcFree!, [0, 1, 0], [1, 4, 6]))).toBeLessThan(1e-7)
    // the key weight's gradient loses exactly the start token's contribution
    expect(maxAbsDiff(gk!, gkFree!)).toBeGreaterThan(1e-6)
  })
})
