/** Fully connected layer over the last axis: weight `[in, out]`, optional bias `[out]`. */
import type { tf } from "../tensor/Tf.js"
import { linear as linearOp } from "./fastOps.js"
import type { Weights } from "./Weights.js"

export const linear = (w: Weights, x: tf.Tensor): tf.Tensor =>
  linearOp(x, w.get("weight"), w.has("bias") ? w.get("bias") : undefined, w.trains("weight"))
