/**
 * Named parameter tensors, as the models read them.
 *
 * Layouts are tfjs's, not PyTorch's: Linear weights are `[in, out]`, Conv2d weights
 * `[kh, kw, in, out]` (HWIO), activations NHWC. Loaders convert diffusers/transformers tensors once.
 *
 * A `Weights` view also says which names are being trained, so that layers can skip gradients nobody
 * asked for (a custom gradient computes every input's gradient; for a frozen weight that is wasted work
 * as large as the forward pass).
 */
import type { tf } from "../tensor/Tf.js"

export interface Weights {
  readonly get: (name: string) => tf.Tensor
  readonly has: (name: string) => boolean
  readonly trains: (name: string) => boolean
  readonly scope: (prefix: string) => Weights
}

export class MissingWeight extends Error {
  constructor(readonly weightName: string) {
    super(`missing weight '${weightName}'`)
  }
}

/**
 * A view over frozen tensors, with some names replaced by trainable tensors (the ones being
 * differentiated).
 */
export const makeWeights = (
  frozen: ReadonlyMap<string, tf.Tensor>,
  trainable: ReadonlyMap<string, tf.Tensor> = new Map()
): Weights => {
  const view = (prefix: string): Weights => {
    const full = (name: string) => (prefix === "" ? name : `${prefix}.${name}`)
    return {
      get: (name) => {
        const key = full(name)
        const t = trainable.get(key) ?? frozen.get(key)
        if (t === undefined) throw new MissingWeight(key)
        return t
      },
      has: (name) => trainable.has(full(name)) || frozen.has(full(name)),
      trains: (name) => trainable.has(full(name)),
      scope: (sub) => view(full(sub))
    }
  }
  return view("")
}
