/**
 * GroupNorm and LayerNorm as single custom-gradient ops (the forward keeps only the normalised input
 * and the inverse standard deviations). Epsilons differ per model and are passed explicitly
 * (SD: see the fixtures README).
 */
import { tf } from "../tensor/Tf.js"
import { customGrad } from "./fastOps.js"
import type { Weights } from "./Weights.js"

type T = tf.Tensor

/**
 * Normalises `x` over `axes` (keeping dims), then `y = xhat * gamma + beta`. The backward of the
 * normalisation is `dx = rstd (g - mean(g) - xhat mean(g xhat))`, g = dy * gamma, means over `axes`.
 */
const normalize = (x: T, gamma: T, beta: T, axes: Array<number>, eps: number, gammaShape: Array<number>) =>
  customGrad<(x: T, gamma: T, beta: T) => T>((x: T, gamma: T, beta: T, save: tf.GradSaveFunc) => {
    const { xhat, rstd } = tf.tidy(() => {
      const { mean, variance } = tf.moments(x, axes, true)
      const rstd = tf.rsqrt(tf.add(variance, eps))
      return { xhat: tf.mul(tf.sub(x, mean), rstd), rstd }
    })
    save([xhat, rstd, gamma])
    const value = tf.tidy(() => tf.add(tf.mul(xhat, tf.reshape(gamma, gammaShape)), tf.reshape(beta, gammaShape)))
    return {
      value,
      gradFunc: (dy: T, [xhat, rstd, gamma]: Array<T>) => {
        const g = tf.mul(dy, tf.reshape(gamma!, gammaShape))
        const dx = tf.mul(rstd!, tf.sub(tf.sub(g, tf.mean(g, axes, true)), tf.mul(xhat!, tf.mean(tf.mul(g, xhat!), axes, true))))
        const channelAxes = dy.shape.map((_, i) => i).filter((i) => gammaShape[i] === 1)
        const dgamma = tf.reshape(tf.sum(tf.mul(dy, xhat!), channelAxes), gamma!.shape)
        const dbeta = tf.reshape(tf.sum(dy, channelAxes), gamma!.shape)
        return [dx, dgamma, dbeta]
      }
    }
  })(x, gamma, beta)

/** GroupNorm over NHWC `[B,H,W,C]` (or `[B,N,C]`), statistics per sample and group of C/groups channels. */
export const groupNorm = (w: Weights, x: T, groups: number, eps: number): T => {
  const shape = x.shape
  const B = shape[0]!
  const C = shape[shape.length - 1]!
  const xg = tf.reshape(x, [B, -1, groups, C / groups])
  const y = normalize(xg, w.get("weight"), w.get("bias"), [1, 3], eps, [1, 1, groups, C / groups])
  return tf.reshape(y, shape)
}

/** LayerNorm over the last axis. */
export const layerNorm = (w: Weights, x: T, eps: number): T => {
  const r = x.shape.length
  const gammaShape = x.shape.map((d, i) => (i === r - 1 ? d : 1))
  return normalize(x, w.get("weight"), w.get("bias"), [r - 1], eps, gammaShape)
}
