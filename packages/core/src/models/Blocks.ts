/**
 * The building blocks diffusers' UNet2DConditionModel and AutoencoderKL share, with diffusers'
 * parameter names: ResnetBlock2D, Transformer2DModel (BasicTransformerBlock with GEGLU feed-forward),
 * the VAE's spatial self-attention, Downsample2D and Upsample2D. Activations are NHWC.
 */
import { geluErf, silu } from "../nn/Activation.js"
import { attention, type AttentionHook } from "../nn/Attention.js"
import { conv2d } from "../nn/Conv2d.js"
import * as ops from "../nn/fastOps.js"
import { upsampleNearest2x } from "../nn/fastOps.js"
import { linear } from "../nn/Linear.js"
import { groupNorm, layerNorm } from "../nn/Norm.js"
import type { Weights } from "../nn/Weights.js"
import { tf } from "../tensor/Tf.js"

/** Records named intermediate tensors (parity tests, debugging). */
export type Trace = (name: string, t: tf.Tensor) => void

export interface ResnetOptions {
  readonly groups: number
  readonly eps: number
  /** Time embedding after SiLU, `[B, temb]`; absent in the VAE. */
  readonly temb?: tf.Tensor | undefined
}

/** ResnetBlock2D: GN, SiLU, conv, + time projection, GN, SiLU, conv, + (1x1-projected) input. */
export const resnet = (w: Weights, x: tf.Tensor, o: ResnetOptions): tf.Tensor => {
  let h = conv2d(w.scope("conv1"), silu(groupNorm(w.scope("norm1"), x, o.groups, o.eps)))
  if (o.temb !== undefined) {
    const t = linear(w.scope("time_emb_proj"), o.temb)
    h = tf.add(h, tf.reshape(t, [t.shape[0]!, 1, 1, t.shape[1]!]))
  }
  h = conv2d(w.scope("conv2"), silu(groupNorm(w.scope("norm2"), h, o.groups, o.eps)))
  const skip = w.has("conv_shortcut.weight") ? conv2d(w.scope("conv_shortcut"), x, { stride: 1, padding: 0 }) : x
  return tf.add(skip, h)
}

export interface TransformerOptions {
  readonly heads: number
  readonly groups: number
  readonly useLinearProjection: boolean
  /** This block's parameter name, for attention hooks (`.transformer_blocks.0.attn2` is appended). */
  readonly name: string
  readonly context: tf.Tensor
  readonly hook?: AttentionHook | undefined
  readonly detachFirstToken?: boolean | undefined
}

/**
 * GEGLU feed-forward: proj to 2 x 4C, `hidden * gelu(gate)`, back to C. The projection runs as two
 * products with the halves of its weight, which is cheaper than splitting the activation.
 */
const feedForward = (w: Weights, x: tf.Tensor): tf.Tensor => {
  const W = w.get("net.0.proj.weight")
  const b = w.get("net.0.proj.bias")
  const [cin, c2] = W.shape as [number, number]
  const half = (i: number) =>
    ops.linear(x, tf.slice(W, [0, i * (c2 / 2)], [cin, c2 / 2]), tf.slice(b, [i * (c2 / 2)], [c2 / 2]), w.trains("net.0.proj.weight"))
  return linear(w.scope("net.2"), tf.mul(half(0), geluErf(half(1))))
}

/** Transformer2DModel with one BasicTransformerBlock: self-attention, cross-attention, GEGLU. */
export const transformer2d = (w: Weights, x: tf.Tensor, o: TransformerOptions): tf.Tensor => {
  const [B, H, W, C] = x.shape as [number, number, number, number]
  // Transformer2DModel's GroupNorm uses eps 1e-6 (the fixtures README lists this trap)
  const n = groupNorm(w.scope("norm"), x, o.groups, 1e-6)
  let h = o.useLinearProjection
    ? linear(w.scope("proj_in"), tf.reshape(n, [B, H * W, C]))
    : tf.reshape(conv2d(w.scope("proj_in"), n, { stride: 1, padding: 0 }), [B, H * W, -1])
  for (let k = 0; w.has(`transformer_blocks.${k}.norm1.weight`); k++) {
    const b = w.scope(`transformer_blocks.${k}`)
    const base = `${o.name}.transformer_blocks.${k}`
    const att = { heads: o.heads, height: H, width: W }
    h = tf.add(h, attention(b.scope("attn1"), layerNorm(b.scope("norm1"), h, 1e-5), undefined, { ...att, layer: `${base}.attn1` }))
    h = tf.add(h, attention(b.scope("attn2"), layerNorm(b.scope("norm2"), h, 1e-5), o.context, {
      ...att,
      layer: `${base}.attn2`,
      hook: o.hook,
      detachFirstToken: o.detachFirstToken
    }))
    h = tf.add(h, feedForward(b.scope("ff"), layerNorm(b.scope("norm3"), h, 1e-5)))
  }
  const out = o.useLinearProjection
    ? tf.reshape(linear(w.scope("proj_out"), h), [B, H, W, C])
    : conv2d(w.scope("proj_out"), tf.reshape(h, [B, H, W, -1]), { stride: 1, padding: 0 })
  return tf.add(out, x)
}

/** The VAE mid-block attention: GroupNorm, single-head self-attention over the pixels, residual. */
export const spatialAttention = (w: Weights, x: tf.Tensor, groups: number, eps: number): tf.Tensor => {
  const [B, H, W, C] = x.shape as [number, number, number, number]
  const n = tf.reshape(groupNorm(w.scope("group_norm"), x, groups, eps), [B, H * W, C])
  const a = attention(w, n, undefined, { heads: 1, layer: "vae", height: H, width: W })
  return tf.add(tf.reshape(a, [B, H, W, C]), x)
}

/** Downsample2D: a stride-2 3x3 conv; `padding` 0 means diffusers' asymmetric (0, 1, 0, 1) pad (VAE). */
export const downsample = (w: Weights, x: tf.Tensor, padding: number): tf.Tensor =>
  padding === 0
    ? conv2d(w, tf.pad(x, [[0, 0], [0, 1], [0, 1], [0, 0]]), { stride: 2, padding: 0 })
    : conv2d(w, x, { stride: 2, padding: 1 })

/** Upsample2D: nearest 2x (cropped to the skip's size when that is odd), then a 3x3 conv. */
export const upsample = (w: Weights, x: tf.Tensor, size?: readonly [number, number]): tf.Tensor => {
  let u = upsampleNearest2x(x)
  if (size !== undefined && (size[0] !== u.shape[1] || size[1] !== u.shape[2])) {
    u = tf.slice(u, [0, 0, 0, 0], [u.shape[0]!, size[0], size[1], u.shape[3]!])
  }
  return conv2d(w.scope("conv"), u)
}
