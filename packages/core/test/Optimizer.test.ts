import { beforeAll, describe, expect, it } from "vitest"
import { CpuBackend, Optimizer, tf, torchAdamW } from "../src/index.js"
import { testData, useRuntime } from "./numeric.js"

beforeAll(() => useRuntime(CpuBackend.layer))

/** torch.optim.AdamW's update, written out in float64 (torch/optim/adamw.py, single-tensor path). */
const reference = (
  p: Array<number>,
  grads: Array<Array<number>>,
  o: { lr: number; b1: number; b2: number; eps: number; wd: number; clip: number | null }
) => {
  const m = p.map(() => 0)
  const v = p.map(() => 0)
  grads.forEach((g0, i) => {
    const t = i + 1
    const norm = Math.sqrt(g0.reduce((a, x) => a + x * x, 0))
    const g = o.clip === null ? g0 : g0.map((x) => x * Math.min(1, o.clip! / (norm + 1e-6)))
    for (let j = 0; j < p.length; j++) {
      p[j] = p[j]! * (1 - o.lr * o.wd)
      m[j] = o.b1 * m[j]! + (1 - o.b1) * g[j]!
      v[j] = o.b2 * v[j]! + (1 - o.b2) * g[j]! * g[j]!
      const bc1 = 1 - o.b1 ** t
      const bc2 = 1 - o.b2 ** t
      p[j] = p[j]! - (o.lr / bc1) * (m[j]! / (Math.sqrt(v[j]!) / Math.sqrt(bc2) + o.eps))
    }
  })
  return { p, m, v }
}

describe("AdamW", () => {
  for (const clip of [null, 0.5]) {
    it(`matches torch's update over 5 steps (clip ${clip})`, () => {
      const opt = Optimizer.make({ ...torchAdamW, weightDecay: 0.1, clipGradNorm: clip })
      const p0 = Array.from(testData(6, 1))
      const grads = Array.from({ length: 5 }, (_, i) => Array.from(testData(6, 10 + i)).map((x) => x * (i + 1)))
      let params = new Map([["w", tf.tensor(p0, [2, 3])]])
      let state = opt.init(params)
      for (const g of grads) {
        const gt = tf.tensor(g, [2, 3])
        const r = opt.step(params, new Map([["w", gt]]), state, 0.01)
        gt.dispose()
        r.gradNorm.dispose()
        params = r.params
        state = r.state
      }
      const ref = reference([...p0], grads, { lr: 0.01, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.1, clip })
      const got = params.get("w")!.dataSync()
      ref.p.forEach((v, i) => expect(got[i]).toBeCloseTo(v, 5))
      const gm = state.m.get("w")!.dataSync()
      ref.m.forEach((v, i) => expect(gm[i]).toBeCloseTo(v, 6))
      expect(state.step).toBe(5)
    })
  }

  it("consumes its inputs: no tensors leak across steps", () => {
    const opt = Optimizer.make()
    let params = new Map([["a", tf.ones([3])], ["b", tf.ones([2, 2])]])
    let state = opt.init(params)
    const grads = new Map([["a", tf.ones([3])], ["b", tf.ones([2, 2])]])
    const before = tf.memory().numTensors
    for (let i = 0; i < 3; i++) {
      const r = opt.step(params, grads, state, 1e-3)
      r.gradNorm.dispose()
      params = r.params
      state = r.state
    }
    expect(tf.memory().numTensors).toBe(before)
  })
})
