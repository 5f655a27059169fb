/**
 * Activation functions, in the exact forms the reference models use, each as one custom-gradient op:
 * the forward's temporaries are freed at once (only the input is kept for the backward), which cuts
 * both the number of kernels and the memory the gradient tape holds.
 */
import { tf } from "../tensor/Tf.js"
import { customGrad } from "./fastOps.js"

type T = tf.Tensor

/** An elementwise op `f` with derivative `df`, both written with tfjs ops. */
const elementwise = (f: (x: T) => T, df: (x: T) => T) =>
  customGrad<(x: T) => T>((x: T, save: tf.GradSaveFunc) => {
    save([x])
    return {
      value: tf.tidy(() => f(x)),
      gradFunc: (dy: T, [x]: Array<T>) => tf.mul(dy, df(x!))
    }
  })

const sigmoidDerivativeTerm = (x: T, k: number) => {
  // d/dx [x sigmoid(kx)] = s + k x s (1 - s), s = sigmoid(kx)
  const s = tf.sigmoid(k === 1 ? x : tf.mul(x, k))
  return tf.add(s, tf.mul(tf.mul(tf.mul(x, k), s), tf.sub(1, s)))
}

export const silu = elementwise((x) => tf.mul(x, tf.sigmoid(x)), (x) => sigmoidDerivativeTerm(x, 1))

/** CLIP's `quick_gelu`: x * sigmoid(1.702 x). */
export const quickGelu = elementwise((x) => tf.mul(x, tf.sigmoid(tf.mul(x, 1.702))), (x) => sigmoidDerivativeTerm(x, 1.702))

/** GELU with the exact erf form (PyTorch's default; SD's GEGLU feed-forward uses it). */
export const geluErf = elementwise(
  (x) => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2)))),
  // Phi(x) + x phi(x)
  (x) => tf.add(tf.mul(tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))), 0.5), tf.mul(x, tf.mul(tf.exp(tf.mul(tf.square(x), -0.5)), 1 / Math.sqrt(2 * Math.PI))))
)

const tanhGeluInner = (x: T) => tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.pow(x, 3))))

/** GELU with the tanh approximation (PyTorch's `approximate="tanh"`). */
export const geluTanh = elementwise(
  (x) => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(tanhGeluInner(x)))),
  (x) => {
    const t = tf.tanh(tanhGeluInner(x))
    const dInner = tf.mul(Math.sqrt(2 / Math.PI), tf.add(1, tf.mul(3 * 0.044715, tf.square(x))))
    return tf.add(tf.mul(0.5, tf.add(1, t)), tf.mul(tf.mul(tf.mul(0.5, x), tf.sub(1, tf.square(t))), dInner))
  }
)

export type ActivationName = "gelu" | "gelu_tanh" | "quick_gelu" | "silu"

export const activation = (name: ActivationName): ((x: T) => T) => {
  switch (name) {
    case "gelu":
      return geluErf
    case "gelu_tanh":
      return geluTanh
    case "quick_gelu":
      return quickGelu
    case "silu":
      return silu
  }
}
