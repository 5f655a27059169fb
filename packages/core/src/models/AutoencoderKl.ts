/**
 * diffusers' AutoencoderKL: the encoder to a diagonal Gaussian over latents (mean, logvar clamped to
 * [-30, 20]) and the decoder back to pixels. Every norm uses eps 1e-6 (the fixtures README's trap).
 * `scaling_factor` is applied by the caller (the backbone), not here, as in diffusers.
 */
import { silu } from "../nn/Activation.js"
import { conv2d } from "../nn/Conv2d.js"
import { groupNorm } from "../nn/Norm.js"
import type { Weights } from "../nn/Weights.js"
import { tf } from "../tensor/Tf.js"
import { downsample, resnet, spatialAttention, type Trace, upsample } from "./Blocks.js"

export interface VaeConfig {
  readonly blockOutChannels: ReadonlyArray<number>
  readonly layersPerBlock: number
  readonly latentChannels: number
  readonly normGroups: number
  readonly scalingFactor: number
}

const eps = 1e-6

const midBlock = (cfg: VaeConfig, w: Weights, h: tf.Tensor) => {
  const o = { groups: cfg.normGroups, eps }
  h = resnet(w.scope("resnets.0"), h, o)
  h = spatialAttention(w.scope("attentions.0"), h, cfg.normGroups, eps)
  return resnet(w.scope("resnets.1"), h, o)
}

export interface Posterior {
  readonly mean: tf.Tensor
  readonly logvar: tf.Tensor
  readonly std: tf.Tensor
}

export const encode = (cfg: VaeConfig, w: Weights, pixels: tf.Tensor, trace?: Trace): Posterior => {
  const e = w.scope("encoder")
  const o = { groups: cfg.normGroups, eps }
  let h = conv2d(e.scope("conv_in"), pixels)
  trace?.("encoder.conv_in", h)
  const levels = cfg.blockOutChannels.length
  for (let i = 0; i < levels; i++) {
    for (let j = 0; j < cfg.layersPerBlock; j++) h = resnet(e.scope(`down_blocks.${i}.resnets.${j}`), h, o)
    if (i < levels - 1) h = downsample(e.scope(`down_blocks.${i}.downsamplers.0.conv`), h, 0)
    trace?.(`encoder.down_blocks.${i}`, h)
  }
  h = midBlock(cfg, e.scope("mid_block"), h)
  trace?.("encoder.mid_block", h)
  h = conv2d(e.scope("conv_out"), silu(groupNorm(e.scope("conv_norm_out"), h, cfg.normGroups, eps)))
  trace?.("encoder", h)
  const moments = conv2d(w.scope("quant_conv"), h, { stride: 1, padding: 0 })
  trace?.("quant_conv", moments)
  const [mean, rawLogvar] = tf.split(moments, 2, 3)
  const logvar = tf.clipByValue(rawLogvar!, -30, 20)
  return { mean: mean!, logvar, std: tf.exp(tf.mul(logvar, 0.5)) }
}

export const decode = (cfg: VaeConfig, w: Weights, z: tf.Tensor, trace?: Trace): tf.Tensor => {
  const d = w.scope("decoder")
  const o = { groups: cfg.normGroups, eps }
  let h = conv2d(w.scope("post_quant_conv"), z, { stride: 1, padding: 0 })
  trace?.("post_quant_conv", h)
  h = conv2d(d.scope("conv_in"), h)
  trace?.("decoder.conv_in", h)
  h = midBlock(cfg, d.scope("mid_block"), h)
  trace?.("decoder.mid_block", h)
  const levels = cfg.blockOutChannels.length
  for (let i = 0; i < levels; i++) {
    for (let j = 0; j <= cfg.layersPerBlock; j++) h = resnet(d.scope(`up_blocks.${i}.resnets.${j}`), h, o)
    if (i < levels - 1) h = upsample(d.scope(`up_blocks.${i}.upsamplers.0`), h)
    trace?.(`decoder.up_blocks.${i}`, h)
  }
  return conv2d(d.scope("conv_out"), silu(groupNorm(d.scope("conv_norm_out"), h, cfg.normGroups, eps)))
}
