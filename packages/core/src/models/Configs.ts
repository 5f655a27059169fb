/**
 * The loader's validated diffusers / transformers configs to this project's model configs.
 * (`attention_head_dim` of an SD 1.x UNet config is the number of heads when `num_attention_heads` is
 * null: `unetAttentionHeads` resolves that diffusers naming quirk.)
 */
import {
  type ClipTextConfig as ClipJson,
  type UNetConfig as UnetJson,
  unetAttentionHeads,
  type VaeConfig as VaeJson
} from "../io/DiffusersFolder.js"
import type { ActivationName } from "../nn/Activation.js"
import type { VaeConfig } from "./AutoencoderKl.js"
import type { ClipTextConfig } from "./ClipTextModel.js"
import type { UnetConfig } from "./Unet2dConditionModel.js"

export const unetConfig = (c: UnetJson): UnetConfig => ({
  inChannels: c.in_channels,
  outChannels: c.out_channels,
  blockOutChannels: c.block_out_channels,
  layersPerBlock: Array.isArray(c.layers_per_block) ? c.layers_per_block[0]! : (c.layers_per_block as number),
  downCrossAttention: c.down_block_types.map((t) => t.startsWith("CrossAttn")),
  upCrossAttention: c.up_block_types.map((t) => t.startsWith("CrossAttn")),
  heads: unetAttentionHeads(c),
  midBlock: c.mid_block_type !== null,
  normGroups: c.norm_num_groups ?? 32,
  normEps: c.norm_eps,
  useLinearProjection: c.use_linear_projection,
  freqShift: c.freq_shift
})

export const vaeConfig = (c: VaeJson): VaeConfig => ({
  blockOutChannels: c.block_out_channels,
  layersPerBlock: c.layers_per_block,
  latentChannels: c.latent_channels,
  normGroups: c.norm_num_groups,
  scalingFactor: c.scaling_factor
})

export const clipTextConfig = (c: ClipJson): ClipTextConfig => ({
  vocabSize: c.vocab_size,
  hiddenSize: c.hidden_size,
  heads: c.num_attention_heads,
  layers: c.num_hidden_layers,
  maxPositions: c.max_position_embeddings,
  act: c.hidden_act as ActivationName,
  layerNormEps: c.layer_norm_eps,
  eosTokenId: c.eos_token_id
})
