/**
 * diffusers' UNet2DConditionModel for Stable Diffusion 1.x-style configurations: any number of levels,
 * cross-attention or plain blocks, non-square latents. Parameter names are diffusers' own; every
 * cross-attention layer reports its probabilities to the hook under its parameter name.
 */
import { silu } from "../nn/Activation.js"
import type { AttentionHook } from "../nn/Attention.js"
import { conv2d } from "../nn/Conv2d.js"
import { linear } from "../nn/Linear.js"
import { groupNorm } from "../nn/Norm.js"
import { timestepFeatures } from "../nn/TimestepEmbedding.js"
import type { Weights } from "../nn/Weights.js"
import { tf } from "../tensor/Tf.js"
import { downsample, resnet, type Trace, transformer2d, upsample } from "./Blocks.js"

export interface UnetConfig {
  readonly inChannels: number
  readonly outChannels: number
  readonly blockOutChannels: ReadonlyArray<number>
  readonly layersPerBlock: number
  /** Per down block: does it have cross-attention transformers? (up blocks mirror the config's own list) */
  readonly downCrossAttention: ReadonlyArray<boolean>
  readonly upCrossAttention: ReadonlyArray<boolean>
  /** Attention heads per down block (diffusers' SD 1.x `attention_head_dim` is this number). */
  readonly heads: ReadonlyArray<number>
  readonly midBlock: boolean
  readonly normGroups: number
  readonly normEps: number
  readonly useLinearProjection: boolean
  readonly freqShift: number
}

export interface UnetInput {
  readonly latents: tf.Tensor
  readonly timesteps: ReadonlyArray<number>
  readonly context: tf.Tensor
  readonly hook?: AttentionHook | undefined
  readonly trace?: Trace | undefined
  /** Block the start token's key/value gradient in every cross-attention (Custom Diffusion's patch). */
  readonly detachFirstToken?: boolean | undefined
}

export const unetForward = (cfg: UnetConfig, w: Weights, input: UnetInput): tf.Tensor => {
  const trace = input.trace ?? (() => {})
  const ch0 = cfg.blockOutChannels[0]!
  const tproj = timestepFeatures(input.timesteps, ch0, cfg.freqShift)
  trace("time_proj", tproj)
  const temb = linear(w.scope("time_embedding.linear_2"), silu(linear(w.scope("time_embedding.linear_1"), tproj)))
  trace("time_embedding", temb)
  const tembAct = silu(temb) // every resnet applies SiLU to the time embedding before its projection
  const res = { groups: cfg.normGroups, eps: cfg.normEps, temb: tembAct }
  const attn = (name: string, heads: number, x: tf.Tensor) =>
    transformer2d(w.scope(name), x, {
      heads,
      groups: cfg.normGroups,
      useLinearProjection: cfg.useLinearProjection,
      name,
      context: input.context,
      hook: input.hook,
      detachFirstToken: input.detachFirstToken
    })

  let h = conv2d(w.scope("conv_in"), input.latents)
  trace("conv_in", h)
  const skips: Array<tf.Tensor> = [h]
  const levels = cfg.blockOutChannels.length
  for (let i = 0; i < levels; i++) {
    const b = `down_blocks.${i}`
    for (let j = 0; j < cfg.layersPerBlock; j++) {
      h = resnet(w.scope(`${b}.resnets.${j}`), h, res)
      if (cfg.downCrossAttention[i]) h = attn(`${b}.attentions.${j}`, cfg.heads[i]!, h)
      skips.push(h)
    }
    if (i < levels - 1) {
      h = downsample(w.scope(`${b}.downsamplers.0.conv`), h, 1)
      skips.push(h)
    }
    trace(b, h)
  }
  if (cfg.midBlock) {
    h = resnet(w.scope("mid_block.resnets.0"), h, res)
    h = attn("mid_block.attentions.0", cfg.heads[levels - 1]!, h)
    h = resnet(w.scope("mid_block.resnets.1"), h, res)
    trace("mid_block", h)
  }
  const upHeads = [...cfg.heads].reverse()
  for (let i = 0; i < levels; i++) {
    const b = `up_blocks.${i}`
    for (let j = 0; j <= cfg.layersPerBlock; j++) {
      h = tf.concat([h, skips.pop()!], 3)
      h = resnet(w.scope(`${b}.resnets.${j}`), h, res)
      if (cfg.upCrossAttention[i]) h = attn(`${b}.attentions.${j}`, upHeads[i]!, h)
    }
    if (i < levels - 1) {
      const next = skips[skips.length - 1]!
      h = upsample(w.scope(`${b}.upsamplers.0`), h, [next.shape[1]!, next.shape[2]!])
    }
    trace(b, h)
  }
  h = groupNorm(w.scope("conv_norm_out"), h, cfg.normGroups, cfg.normEps)
  trace("conv_norm_out", h)
  h = conv2d(w.scope("conv_out"), silu(h))
  trace("conv_out", h)
  return h
}

/** Query grids of every cross-attention layer for a latent of `height x width`. */
export const crossAttentionLayers = (cfg: UnetConfig, height: number, width: number) => {
  const out: Array<{ name: string; height: number; width: number }> = []
  const levels = cfg.blockOutChannels.length
  const size = (level: number) => {
    let [hh, ww] = [height, width]
    for (let k = 0; k < level; k++) [hh, ww] = [Math.ceil(hh / 2), Math.ceil(ww / 2)]
    return [hh, ww] as const
  }
  for (let i = 0; i < levels; i++) {
    if (!cfg.downCrossAttention[i]) continue
    const [hh, ww] = size(i)
    for (let j = 0; j < cfg.layersPerBlock; j++) out.push({ name: `down_blocks.${i}.attentions.${j}.transformer_blocks.0.attn2`, height: hh, width: ww })
  }
  if (cfg.midBlock) {
    const [hh, ww] = size(levels - 1)
    out.push({ name: "mid_block.attentions.0.transformer_blocks.0.attn2", height: hh, width: ww })
  }
  for (let i = 0; i < levels; i++) {
    if (!cfg.upCrossAttention[i]) continue
    const [hh, ww] = size(levels - 1 - i)
    for (let j = 0; j <= cfg.layersPerBlock; j++) out.push({ name: `up_blocks.${i}.attentions.${j}.transformer_blocks.0.attn2`, height: hh, width: ww })
  }
  return out
}
