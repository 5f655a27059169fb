/**
 * The parameter names and shapes (our layouts) of a UNet2DConditionModel and a CLIPTextModel config:
 * what initialisation from scratch, random-weight test models and memory estimates need.
 */
import type { UnetConfig } from "./Unet2dConditionModel.js"

export type ParameterKind = "weight" | "bias" | "norm-weight" | "norm-bias" | "embedding"

export interface ParameterShape {
  readonly name: string
  readonly shape: ReadonlyArray<number>
  readonly kind: ParameterKind
}

const linear = (name: string, cin: number, cout: number, bias: boolean): Array<ParameterShape> => [
  { name: `${name}.weight`, shape: [cin, cout], kind: "weight" },
  ...(bias ? [{ name: `${name}.bias`, shape: [cout], kind: "bias" as const }] : [])
]
const conv = (name: string, k: number, cin: number, cout: number): Array<ParameterShape> => [
  { name: `${name}.weight`, shape: [k, k, cin, cout], kind: "weight" },
  { name: `${name}.bias`, shape: [cout], kind: "bias" }
]
const norm = (name: string, c: number): Array<ParameterShape> => [
  { name: `${name}.weight`, shape: [c], kind: "norm-weight" },
  { name: `${name}.bias`, shape: [c], kind: "norm-bias" }
]

const resnet = (name: string, cin: number, cout: number, temb: number) => [
  ...norm(`${name}.norm1`, cin),
  ...conv(`${name}.conv1`, 3, cin, cout),
  ...linear(`${name}.time_emb_proj`, temb, cout, true),
  ...norm(`${name}.norm2`, cout),
  ...conv(`${name}.conv2`, 3, cout, cout),
  ...(cin === cout ? [] : conv(`${name}.conv_shortcut`, 1, cin, cout))
]

const attention = (name: string, c: number, kv: number, bias: boolean) => [
  ...linear(`${name}.to_q`, c, c, bias),
  ...linear(`${name}.to_k`, kv, c, bias),
  ...linear(`${name}.to_v`, kv, c, bias),
  ...linear(`${name}.to_out.0`, c, c, true)
]

const transformer = (name: string, c: number, context: number, linearProjection: boolean) => {
  const b = `${name}.transformer_blocks.0`
  const proj = (n: string) => (linearProjection ? linear(n, c, c, true) : conv(n, 1, c, c))
  return [
    ...norm(`${name}.norm`, c),
    ...proj(`${name}.proj_in`),
    ...norm(`${b}.norm1`, c),
    ...attention(`${b}.attn1`, c, c, false),
    ...norm(`${b}.norm2`, c),
    ...attention(`${b}.attn2`, c, context, false),
    ...norm(`${b}.norm3`, c),
    ...linear(`${b}.ff.net.0.proj`, c, 8 * c, true),
    ...linear(`${b}.ff.net.2`, 4 * c, c, true),
    ...proj(`${name}.proj_out`)
  ]
}

export const unetParameterShapes = (cfg: UnetConfig, contextDim: number): Array<ParameterShape> => {
  const ch = cfg.blockOutChannels
  const temb = 4 * ch[0]!
  const out: Array<ParameterShape> = [
    ...linear("time_embedding.linear_1", ch[0]!, temb, true),
    ...linear("time_embedding.linear_2", temb, temb, true),
    ...conv("conv_in", 3, cfg.inChannels, ch[0]!)
  ]
  const skips: Array<number> = [ch[0]!]
  let cur = ch[0]!
  ch.forEach((c, i) => {
    for (let j = 0; j < cfg.layersPerBlock; j++) {
      out.push(...resnet(`down_blocks.${i}.resnets.${j}`, cur, c, temb))
      cur = c
      if (cfg.downCrossAttention[i]) out.push(...transformer(`down_blocks.${i}.attentions.${j}`, c, contextDim, cfg.useLinearProjection))
      skips.push(c)
    }
    if (i < ch.length - 1) {
      out.push(...conv(`down_blocks.${i}.downsamplers.0.conv`, 3, c, c))
      skips.push(c)
    }
  })
  if (cfg.midBlock) {
    out.push(...resnet("mid_block.resnets.0", cur, cur, temb))
    out.push(...transformer("mid_block.attentions.0", cur, contextDim, cfg.useLinearProjection))
    out.push(...resnet("mid_block.resnets.1", cur, cur, temb))
  }
  const reversed = [...ch].reverse()
  reversed.forEach((c, i) => {
    for (let j = 0; j <= cfg.layersPerBlock; j++) {
      out.push(...resnet(`up_blocks.${i}.resnets.${j}`, cur + skips.pop()!, c, temb))
      cur = c
      if (cfg.upCrossAttention[i]) out.push(...transformer(`up_blocks.${i}.attentions.${j}`, c, contextDim, cfg.useLinearProjection))
    }
    if (i < ch.length - 1) out.push(...conv(`up_blocks.${i}.upsamplers.0.conv`, 3, c, c))
  })
  out.push(...norm("conv_norm_out", ch[0]!), ...conv("conv_out", 3, ch[0]!, cfg.outChannels))
  return out
}

export interface ClipShapeConfig {
  readonly vocabSize: number
  readonly hiddenSize: number
  readonly intermediateSize: number
  readonly layers: number
  readonly maxPositions: number
}

export const clipParameterShapes = (cfg: ClipShapeConfig): Array<ParameterShape> => {
  const D = cfg.hiddenSize
  const out: Array<ParameterShape> = [
    { name: "text_model.embeddings.token_embedding.weight", shape: [cfg.vocabSize, D], kind: "embedding" },
    { name: "text_model.embeddings.position_embedding.weight", shape: [cfg.maxPositions, D], kind: "embedding" }
  ]
  for (let i = 0; i < cfg.layers; i++) {
    const l = `text_model.encoder.layers.${i}`
    out.push(
      ...norm(`${l}.layer_norm1`, D),
      ...["q_proj", "k_proj", "v_proj", "out_proj"].flatMap((p) => linear(`${l}.self_attn.${p}`, D, D, true)),
      ...norm(`${l}.layer_norm2`, D),
      ...linear(`${l}.mlp.fc1`, D, cfg.intermediateSize, true),
      ...linear(`${l}.mlp.fc2`, cfg.intermediateSize, D, true)
    )
  }
  out.push(...norm("text_model.final_layer_norm", D))
  return out
}

export const parameterCount = (shapes: ReadonlyArray<ParameterShape>) =>
  shapes.reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1), 0)

export interface VaeShapeConfig {
  readonly blockOutChannels: ReadonlyArray<number>
  readonly layersPerBlock: number
  readonly latentChannels: number
}

/** AutoencoderKL's parameters (diffusers names, our layouts). */
export const vaeParameterShapes = (cfg: VaeShapeConfig, imageChannels = 3): Array<ParameterShape> => {
  const ch = cfg.blockOutChannels
  const last = ch[ch.length - 1]!
  const plainResnet = (name: string, cin: number, cout: number) =>
    resnet(name, cin, cout, 0).filter((p) => !p.name.includes("time_emb_proj"))
  const mid = (prefix: string) => [
    ...plainResnet(`${prefix}.mid_block.resnets.0`, last, last),
    ...norm(`${prefix}.mid_block.attentions.0.group_norm`, last),
    ...attention(`${prefix}.mid_block.attentions.0`, last, last, true),
    ...plainResnet(`${prefix}.mid_block.resnets.1`, last, last)
  ]
  const out: Array<ParameterShape> = [...conv("encoder.conv_in", 3, imageChannels, ch[0]!)]
  let cur = ch[0]!
  ch.forEach((c, i) => {
    for (let j = 0; j < cfg.layersPerBlock; j++) {
      out.push(...plainResnet(`encoder.down_blocks.${i}.resnets.${j}`, cur, c))
      cur = c
    }
    if (i < ch.length - 1) out.push(...conv(`encoder.down_blocks.${i}.downsamplers.0.conv`, 3, c, c))
  })
  out.push(...mid("encoder"), ...norm("encoder.conv_norm_out", last), ...conv("encoder.conv_out", 3, last, 2 * cfg.latentChannels))
  out.push(...conv("quant_conv", 1, 2 * cfg.latentChannels, 2 * cfg.latentChannels), ...conv("post_quant_conv", 1, cfg.latentChannels, cfg.latentChannels))
  out.push(...conv("decoder.conv_in", 3, cfg.latentChannels, last), ...mid("decoder"))
  cur = last
  ;[...ch].reverse().forEach((c, i) => {
    for (let j = 0; j <= cfg.layersPerBlock; j++) {
      out.push(...plainResnet(`decoder.up_blocks.${i}.resnets.${j}`, cur, c))
      cur = c
    }
    if (i < ch.length - 1) out.push(...conv(`decoder.up_blocks.${i}.upsamplers.0.conv`, 3, c, c))
  })
  out.push(...norm("decoder.conv_norm_out", ch[0]!), ...conv("decoder.conv_out", 3, ch[0]!, imageChannels))
  return out
}
