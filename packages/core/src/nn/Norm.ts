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
 * Backends may register these kernels to do a normalisation in one pass (the wasm backend does):
 * `DisendiffNormalize({x [B,N,G,C], gamma [G*C], beta}, {eps})` -> [y, xhat, rstd [B,G]] with
 * statistics over N and C per (B, G), and `DisendiffNormalizeGrad({dy, xhat, rstd, gamma})` ->
 * [dx, dgamma, dbeta]. Elsewhere the same maths runs as tfjs ops.
 */
export const normalizeKernel = "DisendiffNormalize"
export const normalizeGradKernel = "DisendiffNormalizeGrad"

const hasKernel = (name: string) => tf.getKernel(name, tf.getBackend()) !== undefined

/**
 * Normalises `x4 [B,N,G,C]` over N and C per (B, G), then `y = xhat * gamma + beta` (gamma, beta
 * `[G*C]`). The backward of the normalisation is `dx = rstd (g - mean(g) - xhat mean(g xhat))`,
 * g = dy * gamma, means over N and C.
 */
const normalize4 = (x4: T, gamma: T, beta: T, eps: number) =>
  customGrad<(x: T, gamma: T, beta: T) => T>((x: T, gamma: T, beta: T, save: tf.GradSaveFunc) => {
    const [B, , G, C] = x.shape as [number, number, number, number]
    const gshape = [1, 1, G, C]
    let y: T
    let xhat: T
    let rstd: T
    if (hasKernel(normalizeKernel)) {
      ;[y, xhat, rstd] = tf.engine().runKernel(normalizeKernel, { x, gamma, beta }, { eps }) as Array<T>
    } else {
      ;({ y, xhat, rstd } = tf.tidy(() => {
        const { mean, variance } = tf.moments(x, [1, 3], true)
        const rstd = tf.rsqrt(tf.add(variance, eps))
        const xhat = tf.mul(tf.sub(x, mean), rstd)
        return { y: tf.add(tf.mul(xhat, tf.reshape(gamma, gshape)), tf.reshape(beta, gshape)), xhat, rstd: tf.reshape(rstd, [B, G]) }
      }))
    }
    save([xhat!, rstd!, gamma])
    return {
      value: y!,
      gradFunc: (dy: T, [xhat, rstd, gamma]: Array<T>) => {
        if (hasKernel(normalizeGradKernel)) return tf.engine().runKernel(normalizeGradKernel, { dy, xhat: xhat!, rstd: rstd!, gamma: gamma! }, {}) as Array<T>
        const r = tf.reshape(rstd!, [B, 1, G, 1])
        const g = tf.mul(dy, tf.reshape(gamma!, gshape))
        const dx = tf.mul(r, tf.sub(tf.sub(g, tf.mean(g, [1, 3], true)), tf.mul(xhat!, tf.mean(tf.mul(g, xhat!), [1, 3], true))))
        const dgamma = tf.reshape(tf.sum(tf.mul(dy, xhat!), [0, 1]), gamma!.shape)
        const dbeta = tf.reshape(tf.sum(dy, [0, 1]), gamma!.shape)
        return [dx, dgamma, dbeta]
      }
    }
  })(x4, gamma, beta)

/** GroupNorm over NHWC `[B,H,W,C]` (or `[B,N,C]`), statistics per sample and group of C/groups channels. */
export const groupNorm = (w: Weights, x: T, groups: number, eps: number): T => {
  const shape = x.shape
  const B = shape[0]!
  const C = shape[shape.length - 1]!
  const y = normalize4(tf.reshape(x, [B, -1, groups, C / groups]), w.get("weight"), w.get("bias"), eps)
  return tf.reshape(y, shape)
}

/** LayerNorm over the last axis: each row is one group of all channels. */
export const layerNorm = (w: Weights, x: T, eps: number): T => {
  const C = x.shape[x.shape.length - 1]!
  const y = normalize4(tf.reshape(x, [-1, 1, 1, C]), w.get("weight"), w.get("bias"), eps)
  return tf.reshape(y, x.shape)
}
