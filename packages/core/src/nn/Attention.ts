/**
 * Multi-head attention as in diffusers' `Attention` (to_q, to_k, to_v without bias, to_out.0 with
 * bias), self or cross. Cross-attention calls report their probabilities to an `AttentionHook`, which
 * is how `AttentionProbe` records maps without patching the model.
 */
import { tf } from "../tensor/Tf.js"
import { batchMatMul, detachLeadingTokens } from "./fastOps.js"
import { linear } from "./Linear.js"
import type { Weights } from "./Weights.js"

export interface AttentionCall {
  /** The layer's parameter name, e.g. `down_blocks.1.attentions.0.transformer_blocks.0.attn2`. */
  readonly layer: string
  readonly kind: "self" | "cross"
  /** The query grid: queries are `y * width + x`. */
  readonly height: number
  readonly width: number
  readonly heads: number
  /** Softmax probabilities `[B * heads, height * width, tokens]`, row `b * heads + h`, still on the tape. */
  readonly probs: tf.Tensor
}

export type AttentionHook = (call: AttentionCall) => void

export interface AttentionOptions {
  readonly heads: number
  readonly layer: string
  readonly height: number
  readonly width: number
  readonly hook?: AttentionHook | undefined
  /**
   * Cross-attention only: block the gradient through the key and value of the first (start-of-text)
   * token, as Custom Diffusion and DisenDiff do (method doc a.1.5).
   */
  readonly detachFirstToken?: boolean | undefined
}

/** `[B, N, heads*d]` -> `[B*heads, N, d]` */
const splitHeads = (x: tf.Tensor, heads: number): tf.Tensor => {
  const [B, N, C] = x.shape as [number, number, number]
  return tf.reshape(tf.transpose(tf.reshape(x, [B, N, heads, C / heads]), [0, 2, 1, 3]), [B * heads, N, C / heads])
}

/** `[B*heads, N, d]` -> `[B, N, heads*d]` */
const mergeHeads = (x: tf.Tensor, heads: number): tf.Tensor => {
  const [BH, N, d] = x.shape as [number, number, number]
  return tf.reshape(tf.transpose(tf.reshape(x, [BH / heads, heads, N, d]), [0, 2, 1, 3]), [BH / heads, N, heads * d])
}

export const attention = (
  w: Weights,
  x: tf.Tensor,
  context: tf.Tensor | undefined,
  o: AttentionOptions
): tf.Tensor => {
  const kind = context === undefined ? "self" : "cross"
  const source = context ?? x
  const C = w.get("to_q.weight").shape[1]!
  const scale = 1 / Math.sqrt(C / o.heads)
  let k = linear(w.scope("to_k"), source)
  let v = linear(w.scope("to_v"), source)
  if (kind === "cross" && o.detachFirstToken) {
    k = detachLeadingTokens(k, 1)
    v = detachLeadingTokens(v, 1)
  }
  // scaling q (N x d) rather than the scores (N x T) keeps one fewer score-sized tensor on the tape
  const q = splitHeads(tf.mul(linear(w.scope("to_q"), x), scale), o.heads)
  const kT = tf.transpose(splitHeads(k, o.heads), [0, 2, 1])
  const probs = tf.softmax(batchMatMul(q, kT))
  if (o.hook !== undefined && kind === "cross") {
    o.hook({ layer: o.layer, kind, height: o.height, width: o.width, heads: o.heads, probs })
  }
  const out = mergeHeads(batchMatMul(probs, splitHeads(v, o.heads)), o.heads)
  return linear(w.scope("to_out.0"), out)
}
