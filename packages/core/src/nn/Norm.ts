/** Normalisation layers. Epsilons differ per model and are passed explicitly (SD: see the fixtures README). */
import { tf } from "../tensor/Tf.js"
import type { Weights } from "./Weights.js"

/** GroupNorm over NHWC `[B,H,W,C]` (or `[B,N,C]`), statistics per sample and group of C/groups channels. */
export const groupNorm = (w: Weights, x: tf.Tensor, groups: number, eps: number): tf.Tensor => {
  const shape = x.shape
  const B = shape[0]!
  const C = shape[shape.length - 1]!
  const xg = tf.reshape(x, [B, -1, groups, C / groups])
  const { mean, variance } = tf.moments(xg, [1, 3], true)
  const normed = tf.mul(tf.sub(xg, mean), tf.rsqrt(tf.add(variance, eps)))
  return tf.add(tf.mul(tf.reshape(normed, shape), w.get("weight")), w.get("bias"))
}

/** LayerNorm over the last axis. */
export const layerNorm = (w: Weights, x: tf.Tensor, eps: number): tf.Tensor => {
  const { mean, variance } = tf.moments(x, -1, true)
  const normed = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps)))
  return tf.add(tf.mul(normed, w.get("weight")), w.get("bias"))
}
