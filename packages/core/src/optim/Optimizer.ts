/**
 * AdamW (Loshchilov & Hutter 2019) over an explicit trainable set, with PyTorch's defaults and its exact
 * update order (decoupled decay first, then `p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)`).
 *
 * Only the tensors handed in are ever touched: frozen parameters and the frozen rows of the embedding
 * table are outside the set, so weight decay cannot shrink them (the official code decays the whole
 * table, method doc a.1.4).
 */
import { Context, Layer, Schema } from "effect"
import { tf } from "../tensor/Tf.js"

export const AdamWConfig = Schema.Struct({
  beta1: Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 1, exclusiveMaximum: true })),
  beta2: Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 1, exclusiveMaximum: true })),
  eps: Schema.Finite.check(Schema.isGreaterThan(0)),
  weightDecay: Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0)),
  /** Clip the global gradient norm to this value (PyTorch's clip_grad_norm_), or no clipping. */
  clipGradNorm: Schema.NullOr(Schema.Finite.check(Schema.isGreaterThan(0)))
})
export type AdamWConfig = typeof AdamWConfig.Type

/** torch.optim.AdamW defaults, as the official code uses them (method doc b). */
export const torchAdamW: AdamWConfig = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, clipGradNorm: null }

export interface OptimizerState {
  /** Number of updates taken. */
  readonly step: number
  readonly m: ReadonlyMap<string, tf.Tensor>
  readonly v: ReadonlyMap<string, tf.Tensor>
}

/**
 * The sum of squares of every element of `tensors` (the squared global gradient norm). The partial
 * sums are stacked and reduced once rather than passed to `tf.addN`: WebGPU's AddN binds every input
 * as its own storage buffer, and a shader stage may bind only 8 (the WebGPU default limit), so AddN of
 * hundreds of gradients fails validation and reads back zeros; concat (inside stack) splits by the limit.
 */
export const squaredNorm = (tensors: ReadonlyArray<tf.Tensor>): tf.Scalar =>
  tf.tidy(() => tf.sum(tf.stack(tensors.map((g) => tf.sum(tf.square(g))))))

export interface StepResult {
  readonly params: Map<string, tf.Tensor>
  readonly state: OptimizerState
  /** Global gradient norm before clipping. */
  readonly gradNorm: tf.Scalar
}

export const init = (params: ReadonlyMap<string, tf.Tensor>): OptimizerState => ({
  step: 0,
  m: new Map([...params].map(([k, p]) => [k, tf.zerosLike(p)])),
  v: new Map([...params].map(([k, p]) => [k, tf.zerosLike(p)]))
})

/**
 * One update. Consumes `params` and `state` (their tensors are disposed) and returns new ones;
 * `grads` stay the caller's.
 */
export const step = (
  config: AdamWConfig,
  params: ReadonlyMap<string, tf.Tensor>,
  grads: ReadonlyMap<string, tf.Tensor>,
  state: OptimizerState,
  lr: number
): StepResult => {
  const t = state.step + 1
  const bc1 = 1 - config.beta1 ** t
  const bc2Sqrt = Math.sqrt(1 - config.beta2 ** t)
  const out = tf.tidy(() => {
    const names = [...params.keys()]
    const gradNorm = tf.sqrt(squaredNorm(names.map((k) => grads.get(k)!))) as tf.Scalar
    const scale = config.clipGradNorm === null
      ? undefined
      : tf.minimum(1, tf.div(config.clipGradNorm, tf.add(gradNorm, 1e-6)))
    const result: Record<string, tf.Tensor> = { gradNorm }
    for (const k of names) {
      const g0 = grads.get(k)
      if (g0 === undefined) throw new Error(`no gradient for trainable '${k}'`)
      const g = scale === undefined ? g0 : tf.mul(g0, scale)
      const p0 = params.get(k)!
      const p = config.weightDecay === 0 ? p0 : tf.mul(p0, 1 - lr * config.weightDecay)
      const m = tf.add(tf.mul(state.m.get(k)!, config.beta1), tf.mul(g, 1 - config.beta1))
      const v = tf.add(tf.mul(state.v.get(k)!, config.beta2), tf.mul(tf.square(g), 1 - config.beta2))
      const denom = tf.add(tf.div(tf.sqrt(v), bc2Sqrt), config.eps)
      result[`p:${k}`] = tf.sub(p, tf.mul(tf.div(m, denom), lr / bc1))
      result[`m:${k}`] = m
      result[`v:${k}`] = v
    }
    return result
  })
  for (const x of [...params.values(), ...state.m.values(), ...state.v.values()]) x.dispose()
  const pick = (prefix: string) =>
    new Map([...params.keys()].map((k) => [k, out[`${prefix}:${k}`]!]))
  return { params: pick("p"), state: { step: t, m: pick("m"), v: pick("v") }, gradNorm: out.gradNorm as tf.Scalar }
}

export class Optimizer extends Context.Service<Optimizer, {
  readonly config: AdamWConfig
  readonly init: (params: ReadonlyMap<string, tf.Tensor>) => OptimizerState
  readonly step: (
    params: ReadonlyMap<string, tf.Tensor>,
    grads: ReadonlyMap<string, tf.Tensor>,
    state: OptimizerState,
    lr: number
  ) => StepResult
}>()("@disendiff/core/Optimizer") {
  static readonly make = (config: AdamWConfig = torchAdamW) =>
    Optimizer.of({ config, init, step: (p, g, s, lr) => step(config, p, g, s, lr) })

  static readonly layer = (config: AdamWConfig = torchAdamW): Layer.Layer<Optimizer> =>
    Layer.succeed(Optimizer, Optimizer.make(config))
}
