import { beforeAll, describe, expect, it } from "vitest"
import { CpuBackend, nn, tf } from "../src/index.js"
import { finiteDifferenceError, maxAbs, maxAbsDiff, randomTensor, useRuntime } from "./numeric.js"

const { ops } = nn

beforeAll(() => useRuntime(CpuBackend.layer))

/** A fixed random linear functional, so that gradients of a tensor-valued op can be compared. */
const probe = (y: tf.Tensor, seed = 99) => tf.sum(tf.mul(y, randomTensor(y.shape, seed)))

describe("fastOps", () => {
  it("matMul gives tfjs's own gradients", () => {
    const a = randomTensor([5, 7], 1)
    const b = randomTensor([7, 3], 2)
    const fast = tf.grads((a: tf.Tensor, b: tf.Tensor) => probe(ops.matMul(a, b)))([a, b])
    const ref = tf.grads((a: tf.Tensor, b: tf.Tensor) => probe(tf.matMul(a, b)))([a, b])
    expect(maxAbsDiff(fast[0]!, ref[0]!)).toBeLessThan(1e-6)
    expect(maxAbsDiff(fast[1]!, ref[1]!)).toBeLessThan(1e-6)
    const frozen = tf.grad((a: tf.Tensor) => probe(ops.matMulFrozen(a, b)))(a)
    expect(maxAbsDiff(frozen, ref[0]!)).toBe(0)
  })

  it("batchMatMul gives tfjs's own gradients", () => {
    for (const g of [1, 3]) {
      const a = randomTensor([g, 4, 6], 3)
      const b = randomTensor([g, 6, 5], 4)
      const fast = tf.grads((a: tf.Tensor, b: tf.Tensor) => probe(ops.batchMatMul(a, b)))([a, b])
      const ref = tf.grads((a: tf.Tensor, b: tf.Tensor) => probe(tf.matMul(a, b)))([a, b])
      expect(maxAbsDiff(fast[0]!, ref[0]!)).toBeLessThan(1e-6)
      expect(maxAbsDiff(fast[1]!, ref[1]!)).toBeLessThan(1e-6)
    }
  })

  const convCases = [
    { k: 3, stride: 1, padding: 1, H: 8, W: 6 },
    { k: 3, stride: 1, padding: 1, H: 7, W: 9 },
    { k: 3, stride: 2, padding: 1, H: 8, W: 8 },
    { k: 3, stride: 2, padding: 1, H: 9, W: 7 },
    { k: 3, stride: 1, padding: 0, H: 6, W: 6 },
    { k: 3, stride: 2, padding: 0, H: 9, W: 8 },
    { k: 1, stride: 1, padding: 0, H: 5, W: 4 }
  ] as const

  for (const c of convCases) {
    it(`conv2d k${c.k} s${c.stride} p${c.padding} ${c.H}x${c.W}: input and filter gradients match tfjs`, () => {
      const x = randomTensor([2, c.H, c.W, 3], 5)
      const w = randomTensor([c.k, c.k, 3, 4], 6, 0.5)
      const o = { stride: c.stride, padding: c.padding } as const
      const pad = c.padding === 0 ? "valid" as const : [[0, 0], [c.padding, c.padding], [c.padding, c.padding], [0, 0]] as [[number, number], [number, number], [number, number], [number, number]]
      const ref = (x: tf.Tensor, w: tf.Tensor) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, c.stride, pad)
      expect(maxAbsDiff(ops.conv2d(x, w, o), ref(x, w))).toBe(0)
      const fast = tf.grads((x: tf.Tensor, w: tf.Tensor) => probe(ops.conv2d(x, w, o)))([x, w])
      const want = tf.grads((x: tf.Tensor, w: tf.Tensor) => probe(ref(x, w)))([x, w])
      expect(maxAbsDiff(fast[0]!, want[0]!)).toBeLessThan(1e-5 * Math.max(1, maxAbs(want[0]!)))
      expect(maxAbsDiff(fast[1]!, want[1]!)).toBeLessThan(1e-5 * Math.max(1, maxAbs(want[1]!)))
      const frozen = tf.grad((x: tf.Tensor) => probe(ops.conv2dFrozen(x, w, o)))(x)
      expect(maxAbsDiff(frozen, fast[0]!)).toBe(0)
    })
  }

  it("conv2d filter gradient agrees with finite differences", () => {
    const x = randomTensor([1, 6, 6, 2], 7)
    const err = finiteDifferenceError((w) => probe(ops.conv2d(x, w, { stride: 2, padding: 1 })), randomTensor([3, 3, 2, 3], 8))
    expect(err).toBeLessThan(1e-3)
  })

  it("upsampleNearest2x repeats pixels and sums 2x2 blocks backwards (also at batch > 1)", () => {
    const x = randomTensor([2, 3, 2, 2], 9)
    const y = ops.upsampleNearest2x(x)
    const yv = y.arraySync() as Array<Array<Array<Array<number>>>>
    const xv = x.arraySync() as Array<Array<Array<Array<number>>>>
    for (let b = 0; b < 2; b++) {
      for (let i = 0; i < 6; i++) for (let j = 0; j < 4; j++) expect(yv[b]![i]![j]).toEqual(xv[b]![i >> 1]![j >> 1])
    }
    const r = randomTensor([2, 6, 4, 2], 10)
    const g = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(ops.upsampleNearest2x(x), r)))(x)
    const blockSums = tf.sum(tf.reshape(r, [2, 3, 2, 2, 2, 2]), [2, 4])
    expect(maxAbsDiff(g, blockSums)).toBeLessThan(1e-6)
  })

  it("stopGradient and detachLeadingTokens block exactly what they say", () => {
    const x = randomTensor([2, 4, 3], 11)
    expect(maxAbs(tf.grad((x: tf.Tensor) => probe(ops.stopGradient(x)))(x))).toBe(0)
    const g = tf.grad((x: tf.Tensor) => probe(ops.detachLeadingTokens(x, 1)))(x)
    const want = tf.grad((x: tf.Tensor) => probe(x))(x)
    expect(maxAbs(tf.slice(g, [0, 0, 0], [2, 1, 3]))).toBe(0)
    expect(maxAbsDiff(tf.slice(g, [0, 1, 0], [2, 3, 3]), tf.slice(want, [0, 1, 0], [2, 3, 3]))).toBe(0)
    expect(maxAbsDiff(ops.detachLeadingTokens(x, 1), x)).toBe(0)
  })
})
