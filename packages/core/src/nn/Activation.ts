/** Activation functions, in the exact forms the reference models use. */
import { tf } from "../tensor/Tf.js"

export const silu = (x: tf.Tensor): tf.Tensor => tf.mul(x, tf.sigmoid(x))

/** GELU with the exact erf form (PyTorch's default; SD's GEGLU feed-forward uses it). */
export const geluErf = (x: tf.Tensor): tf.Tensor => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))))

/** GELU with the tanh approximation (PyTorch's `approximate="tanh"`). */
export const geluTanh = (x: tf.Tensor): tf.Tensor => {
  const inner = tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.pow(x, 3))))
  return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(inner)))
}

/** CLIP's `quick_gelu`: x * sigmoid(1.702 x). */
export const quickGelu = (x: tf.Tensor): tf.Tensor => tf.mul(x, tf.sigmoid(tf.mul(x, 1.702)))

export type ActivationName = "gelu" | "gelu_tanh" | "quick_gelu" | "silu"

export const activation = (name: ActivationName): ((x: tf.Tensor) => tf.Tensor) => {
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
