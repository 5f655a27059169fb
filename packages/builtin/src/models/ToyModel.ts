/**
 * The built-in model: Stable Diffusion's architecture (the same CLIPTextModel and UNet2DConditionModel
 * code) with a small configuration, on the shapes world. Images are 32x32 RGB packed losslessly into
 * 16x16x12 latents by pixel-unshuffle, so the UNet's top level is the 16x16 cross-attention level the
 * method reads. Words are tokens; the table ends with reserved rows for modifier tokens that
 * pretraining never uses (this world's counterpart of the rare tokens SD personalisation starts from).
 */
import { fanInInit, normalInit } from "@disendiff/core/nn/Init.js"
import type { NoiseScheduleConfig } from "@disendiff/core/schedule/NoiseSchedule.js"
import type { SamplingOptions } from "@disendiff/core/schedule/Schedulers.js"
import { tf } from "@disendiff/core/tensor/Tf.js"
import { WORD_ALIASES, type WorldName, worldWords } from "../world/Vocabulary.js"
import type { ClipTextConfig } from "@disendiff/core/models/ClipTextModel.js"
import { clipParameterShapes, type ParameterShape, unetParameterShapes } from "@disendiff/core/models/Shapes.js"
import type { UnetConfig } from "@disendiff/core/models/Unet2dConditionModel.js"

export interface ToyModelConfig {
  readonly words: ReadonlyArray<string>
  readonly aliases: Readonly<Record<string, string>>
  /** Table rows after the words reserved for modifier tokens. */
  readonly reservedModifiers: number
  readonly maxLength: number
  readonly text: ClipTextConfig & { readonly intermediateSize: number }
  readonly unet: UnetConfig
  readonly schedule: NoiseScheduleConfig
  readonly sampling: SamplingOptions
}

/** Token ids 0-2 are padding, start and end (WordTokenizer). */
const specials = 3

export interface ToySize {
  readonly channels: readonly [number, number]
  readonly layersPerBlock: number
  readonly heads: number
  readonly normGroups: number
  readonly textHidden: number
  readonly textLayers: number
  readonly textHeads: number
}

export const defaultToySize: ToySize = {
  channels: [32, 64],
  layersPerBlock: 1,
  heads: 4,
  normGroups: 8,
  textHidden: 64,
  textLayers: 2,
  textHeads: 4
}

/** The diffusion recipe the model is trained and sampled with. */
export interface ToyRecipe {
  readonly predictionType: "epsilon" | "v_prediction" | "sample"
  readonly betaSchedule: "scaled_linear" | "linear" | "squaredcos_cap_v2"
  /** Rescale the schedule to zero terminal SNR (Lin et al. 2024). */
  readonly zeroTerminalSnr: boolean
}

/**
 * v-prediction on SD's schedule rescaled to zero terminal SNR: the prototype's better recipe
 * (docs/reference/builtin-model-prototype.md), with which colours and backgrounds follow the text.
 */
export const defaultToyRecipe: ToyRecipe = { predictionType: "v_prediction", betaSchedule: "scaled_linear", zeroTerminalSnr: true }

export const toyModelConfig = (size: ToySize = defaultToySize, recipe: ToyRecipe = defaultToyRecipe, world: WorldName = "shapes"): ToyModelConfig => {
  const reservedModifiers = 4
  const words = worldWords(world)
  return {
    words,
    aliases: WORD_ALIASES,
    reservedModifiers,
    // three-object captions are 15 words; scale-augmentation prefixes add two
    maxLength: 20,
    text: {
      vocabSize: specials + words.length + reservedModifiers,
      hiddenSize: size.textHidden,
      intermediateSize: 4 * size.textHidden,
      heads: size.textHeads,
      layers: size.textLayers,
      maxPositions: 20,
      act: "quick_gelu",
      layerNormEps: 1e-5,
      eosTokenId: 2
    },
    unet: {
      inChannels: 12,
      outChannels: 12,
      blockOutChannels: size.channels,
      layersPerBlock: size.layersPerBlock,
      downCrossAttention: size.channels.map(() => true),
      upCrossAttention: size.channels.map(() => true),
      heads: size.channels.map(() => size.heads),
      midBlock: true,
      normGroups: size.normGroups,
      normEps: 1e-5,
      useLinearProjection: false,
      freqShift: 0
    },
    schedule: {
      numTrainTimesteps: 1000,
      // SD's betas for scaled_linear; diffusers' defaults for linear (1e-4..0.02)
      betaStart: recipe.betaSchedule === "linear" ? 1e-4 : 0.00085,
      betaEnd: recipe.betaSchedule === "linear" ? 0.02 : 0.012,
      betaSchedule: recipe.betaSchedule,
      predictionType: recipe.predictionType,
      rescaleZeroTerminalSnr: recipe.zeroTerminalSnr
    },
    // trailing spacing starts at the last (pure-noise) timestep; pixels are bounded, so x0 is clipped
    sampling: { spacing: "trailing", stepsOffset: 0, setAlphaToOne: true, clipSample: 1, useClippedModelOutput: true }
  }
}

/** Reserved table row of the i-th modifier token. */
export const reservedModifierRow = (cfg: ToyModelConfig, i: number) => specials + cfg.words.length + (i % cfg.reservedModifiers)

export const toyParameterShapes = (cfg: ToyModelConfig): Array<ParameterShape> => [
  ...clipParameterShapes(cfg.text).map((p) => ({ ...p, name: `text.${p.name}` })),
  ...unetParameterShapes(cfg.unet, cfg.text.hiddenSize).map((p) => ({ ...p, name: `unet.${p.name}` }))
]

/**
 * Fresh weights: fan-in normal for weights, zero biases, unit norms, N(0, 0.02) embeddings; the last
 * layer of every residual branch (resnet conv2, transformer proj_out) and the output conv start at
 * zero, so the initial network is close to the identity on its skip paths (as in guided diffusion).
 */
export const initToyParameters = (cfg: ToyModelConfig, seed: number): Record<string, tf.Tensor> =>
  tf.tidy(() => {
    const out: Record<string, tf.Tensor> = {}
    for (const p of toyParameterShapes(cfg)) {
      const shape = [...p.shape]
      const zeroBranch = /(\.conv2|\.proj_out|^unet\.conv_out)\.weight$/.test(p.name)
      out[p.name] = p.kind === "weight"
        ? (zeroBranch ? tf.zeros(shape) : fanInInit(seed, p.name, shape))
        : p.kind === "embedding"
        ? normalInit(seed, p.name, shape, 0.02)
        : p.kind === "norm-weight"
        ? tf.ones(shape)
        : tf.zeros(shape)
    }
    return out
  })

export const tokenEmbeddingName = "text.text_model.embeddings.token_embedding.weight"

/**
 * Weights for `cfg` seeded from another model of the same size: every tensor is copied, except the token
 * table, whose rows follow the words (a word both vocabularies know keeps its row; new words start from
 * fresh rows, drawn as `initToyParameters` draws them) and whose reserved modifier rows keep their order.
 */
export const seededParameters = (
  cfg: ToyModelConfig,
  seed: number,
  weights: ReadonlyMap<string, { readonly shape: ReadonlyArray<number>; readonly data: Float32Array | Uint16Array }>,
  words: ReadonlyArray<string>
): Map<string, tf.Tensor> => {
  const fresh = initToyParameters(cfg, seed)
  const out = new Map<string, tf.Tensor>()
  for (const p of toyParameterShapes(cfg)) {
    const w = weights.get(p.name)
    const data = w === undefined ? undefined : Float32Array.from(w.data)
    if (p.name === tokenEmbeddingName && data !== undefined) {
      const hidden = p.shape[1]!
      const rows = fresh[p.name]!.dataSync().slice() as Float32Array
      const oldRows = w!.shape[0]!
      const oldReserved = oldRows - specials - words.length
      const copy = (from: number, to: number) => rows.set(data.subarray(from * hidden, (from + 1) * hidden), to * hidden)
      for (let r = 0; r < specials; r++) copy(r, r)
      cfg.words.forEach((word, i) => {
        const j = words.indexOf(word)
        if (j >= 0) copy(specials + j, specials + i)
      })
      for (let r = 0; r < Math.min(oldReserved, cfg.reservedModifiers); r++) copy(specials + words.length + r, specials + cfg.words.length + r)
      out.set(p.name, tf.tensor(rows, [...p.shape]))
    } else if (data === undefined || w!.shape.join() !== p.shape.join()) {
      tf.dispose([...out.values(), ...Object.values(fresh)])
      throw new RangeError(`cannot seed ${p.name}: the other model's tensor is ${w === undefined ? "missing" : `[${w.shape.join(", ")}]`}, this one is [${p.shape.join(", ")}] (same model size needed)`)
    } else out.set(p.name, tf.tensor(data, [...p.shape]))
  }
  tf.dispose(Object.values(fresh))
  return out
}
