/**
 * A conservative estimate of the memory a training step needs, for the preflight that refuses runs
 * which would exhaust the wasm heap. tfjs keeps every intermediate of the forward pass and every
 * intermediate gradient until the backward pass ends, so the estimate counts, per block and sample,
 * the tensors a forward pass creates (in units of the block's activation size, plus the attention
 * matrices) and doubles them for their gradients. The constants were fitted to peaks measured with the
 * wasm allocator on the fixture and built-in configurations (docs/benchmarks.md), rounded up.
 */
import type { UnetConfig } from "../models/Unet2dConditionModel.js"

/**
 * Floats kept per sample, forward and backward together, per activation element of a ResnetBlock2D /
 * Transformer2DModel, and per attention-matrix element. Fitted to wasm peaks of 904 MB (toy UNet
 * 64/128, one layer, batch 8) and 998 MB (32/64, batch 16); these give 0.95 GB and 1.3 GB.
 */
const resnetFactor = 30
const transformerFactor = 90
const attentionFactor = 6

export const estimateTrainingBytes = (cfg: UnetConfig, latent: number, batch: number, tokens = 77): number => {
  let floats = 0
  const levels = cfg.blockOutChannels.length
  const add = (level: number, c: number, transformers: number, resnets: number, heads: number) => {
    const side = Math.ceil(latent / 2 ** level)
    const hw = side * side
    floats += resnets * resnetFactor * c * hw
    floats += transformers * (transformerFactor * c * hw + attentionFactor * heads * hw * (hw + tokens))
  }
  cfg.blockOutChannels.forEach((c, i) => add(i, c, cfg.downCrossAttention[i] ? cfg.layersPerBlock : 0, cfg.layersPerBlock, cfg.heads[i]!))
  if (cfg.midBlock) add(levels - 1, cfg.blockOutChannels[levels - 1]!, 1, 2, cfg.heads[levels - 1]!)
  ;[...cfg.blockOutChannels].reverse().forEach((c, i) =>
    add(levels - 1 - i, c, cfg.upCrossAttention[i] ? cfg.layersPerBlock + 1 : 0, cfg.layersPerBlock + 1, [...cfg.heads].reverse()[i]!)
  )
  // forward intermediates and their gradients, float32
  return 2 * 4 * batch * floats
}
