/** 2-D convolution layer: weight `[kh, kw, in, out]`, bias `[out]`, NHWC activations. */
import { tf } from "../tensor/Tf.js"
import { conv2d as convOp, conv2dFrozen, type ConvOptions, linear as linearOp } from "./fastOps.js"
import type { Weights } from "./Weights.js"

export const conv2d = (w: Weights, x: tf.Tensor, o: ConvOptions = { stride: 1, padding: 1 }): tf.Tensor => {
  const weight = w.get("weight")
  const bias = w.has("bias") ? w.get("bias") : undefined
  if (weight.shape[0] === 1 && weight.shape[1] === 1 && o.stride === 1 && o.padding === 0) {
    // A 1x1 convolution is a matMul over the channel axis, which is faster on every backend.
    const [ci, co] = [weight.shape[2]!, weight.shape[3]!]
    return linearOp(x, tf.reshape(weight, [ci, co]), bias, w.trains("weight"))
  }
  const y = w.trains("weight") ? convOp(x, weight, o) : conv2dFrozen(x, weight, o)
  return bias === undefined ? y : tf.add(y, bias)
}
