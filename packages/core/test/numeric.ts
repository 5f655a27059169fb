/** Test helpers for numerical checks: deterministic test data and gradient comparisons. */
import { Effect, Layer } from "effect"
import { type TensorRuntime, tf } from "../src/index.js"

/** Builds a runtime layer once (tfjs's backend is process-global) and makes its backend current. */
export const useRuntime = async (layer: Layer.Layer<TensorRuntime>): Promise<void> => {
  await Effect.runPromise(Effect.scoped(Layer.build(layer)))
}

/** Deterministic pseudo-random floats in [-1, 1) (a small LCG; tests need repeatability, not quality). */
export const testData = (n: number, seed: number): Float32Array => {
  const out = new Float32Array(n)
  let s = seed >>> 0 || 1
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    out[i] = s / 2 ** 31 - 1
  }
  return out
}

export const randomTensor = (shape: Array<number>, seed: number, scale = 1): tf.Tensor =>
  tf.tensor(testData(shape.reduce((a, b) => a * b, 1), seed).map((v) => v * scale), shape)

export const maxAbsDiff = (a: tf.Tensor, b: tf.Tensor): number => {
  if (a.shape.join() !== b.shape.join()) throw new Error(`shape mismatch ${a.shape} vs ${b.shape}`)
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!)
}

export const maxAbs = (a: tf.Tensor): number => tf.tidy(() => tf.max(tf.abs(a)).dataSync()[0]!)

/**
 * Central finite difference of `f` along the unit direction of the analytic gradient, compared to
 * the gradient's norm. Returns the relative error.
 */
export const finiteDifferenceError = (
  f: (x: tf.Tensor) => tf.Tensor,
  x: tf.Tensor,
  eps = 1e-2
): number =>
  tf.tidy(() => {
    const g = tf.grad(f)(x)
    const norm = tf.norm(g).dataSync()[0]!
    const dir = tf.div(g, norm)
    const plus = f(tf.add(x, tf.mul(dir, eps))).dataSync()[0]!
    const minus = f(tf.sub(x, tf.mul(dir, eps))).dataSync()[0]!
    const numeric = (plus - minus) / (2 * eps)
    return Math.abs(numeric - norm) / norm
  })
