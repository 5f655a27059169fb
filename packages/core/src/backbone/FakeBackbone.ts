/**
 * A tiny but real differentiable backbone for tests: word tokens, a one-layer text encoder with
 * trainable modifier rows, an exact pixel-shuffle autoencoder (32x32x3 <-> 16x16x12), and a two-level
 * denoiser with cross-attention at 16x16 and 8x8 whose to_k/to_v are trainable. Weights come from a
 * fixed seed, so every run is the same; a training step takes milliseconds on cpu and wasm.
 */
import { Effect, Layer } from "effect"
import * as PixelShuffle from "../autoencoder/PixelShuffle.js"
import { silu } from "../nn/Activation.js"
import { attention } from "../nn/Attention.js"
import { conv2d } from "../nn/Conv2d.js"
import { upsampleNearest2x } from "../nn/fastOps.js"
import { fanInInit, normalInit } from "../nn/Init.js"
import { linear } from "../nn/Linear.js"
import { groupNorm } from "../nn/Norm.js"
import { timestepFeatures } from "../nn/TimestepEmbedding.js"
import type { Weights } from "../nn/Weights.js"
import { makeNoiseSchedule, stableDiffusionSchedule } from "../schedule/NoiseSchedule.js"
import { stableDiffusionSampling } from "../schedule/Schedulers.js"
import { scopedTensors, TensorRuntime } from "../tensor/TensorRuntime.js"
import { tf } from "../tensor/Tf.js"
import { makeWordTokenizer } from "../tokenizer/WordTokenizer.js"
import { Backbone, isTrainableUnetParam, modifierEmbeddingsName, type TrainableSet, trainsModifierRows } from "./Backbone.js"
import { modelIdentity } from "./Identity.js"

export interface FakeBackboneOptions {
  /** Modifier tokens added to the vocabulary, e.g. `["<v1>", "<v2>"]`. */
  readonly modifiers: ReadonlyArray<string>
  readonly trainable?: TrainableSet
  /** Seed of the fixed random weights (the "base model"). */
  readonly weightSeed?: number
}

export const config = {
  textDim: 16,
  channels: 16,
  heads: 2,
  maxLength: 16,
  hashBuckets: 61,
  groups: 4,
  imageSize: 32,
  latentChannels: 12
} as const

const makeParameters = (seed: number, vocabSize: number) => {
  const { textDim: D, channels: C, latentChannels: Z, maxLength: L } = config
  const p = new Map<string, tf.Tensor>()
  const add = (name: string, t: tf.Tensor) => p.set(name, t)
  add("text.token_embedding.weight", normalInit(seed, "tok", [vocabSize, D], 1))
  add("text.position_embedding.weight", normalInit(seed, "pos", [L, D], 0.3))
  add("text.proj.weight", fanInInit(seed, "proj", [D, D]))
  add("text.proj.bias", normalInit(seed, "projb", [D], 0.1))
  add("unet.conv_in.weight", fanInInit(seed, "cin", [3, 3, Z, C]))
  add("unet.conv_in.bias", normalInit(seed, "cinb", [C], 0.1))
  add("unet.time_embedding.weight", fanInInit(seed, "temb", [C, C]))
  add("unet.time_embedding.bias", normalInit(seed, "tembb", [C], 0.1))
  for (const level of ["up", "down"]) {
    add(`unet.${level}.norm.weight`, tf.add(1, normalInit(seed, `${level}gn`, [C], 0.2)))
    add(`unet.${level}.norm.bias`, normalInit(seed, `${level}gnb`, [C], 0.2))
    // q/k scaled up so that attention is clearly non-uniform
    add(`unet.${level}.attn2.to_q.weight`, fanInInit(seed, `${level}q`, [C, C], 3))
    add(`unet.${level}.attn2.to_k.weight`, fanInInit(seed, `${level}k`, [D, C], 3))
    add(`unet.${level}.attn2.to_v.weight`, fanInInit(seed, `${level}v`, [D, C]))
    add(`unet.${level}.attn2.to_out.0.weight`, fanInInit(seed, `${level}o`, [C, C]))
    add(`unet.${level}.attn2.to_out.0.bias`, normalInit(seed, `${level}ob`, [C], 0.1))
  }
  add("unet.conv_down.weight", fanInInit(seed, "cdown", [3, 3, C, C]))
  add("unet.conv_down.bias", normalInit(seed, "cdownb", [C], 0.1))
  add("unet.conv_out.weight", fanInInit(seed, "cout", [3, 3, C, Z], 0.5))
  add("unet.conv_out.bias", tf.zeros([Z]))
  return p
}

/** Start-of-text, then modifier rows taken from trainable parameters, mask-injected (no gather gradient). */
const embed = (w: Weights, ids: tf.Tensor, modifierIds: ReadonlyArray<number>): tf.Tensor => {
  const table = w.get("token_embedding.weight")
  let h = tf.gather(table, ids)
  if (modifierIds.length > 0 && w.has("modifier_embeddings")) {
    // one-hot over the modifiers at each position: [B, L, n] @ [n, D] puts each trainable row in place
    const hot = tf.stack(modifierIds.map((id) => tf.cast(tf.equal(ids, id), "float32")), 2)
    const isModifier = tf.sum(hot, 2, true)
    const [B, L] = ids.shape as [number, number]
    const rows = tf.reshape(
      tf.matMul(tf.reshape(hot, [B * L, modifierIds.length]), w.get("modifier_embeddings")),
      [B, L, -1]
    )
    h = tf.add(tf.mul(h, tf.sub(1, isModifier)), rows)
  }
  return h
}

export { embed as embedTokens }

export const make = (options: FakeBackboneOptions) =>
  Effect.gen(function*() {
    yield* TensorRuntime
    const tokenizer = makeWordTokenizer({
      words: [],
      hashBuckets: config.hashBuckets,
      modifiers: options.modifiers,
      maxLength: config.maxLength
    })
    const seed = options.weightSeed ?? 0
    const all = yield* scopedTensors(
      () => new Map(Object.entries(tf.tidy(() => Object.fromEntries(makeParameters(seed, tokenizer.vocabSize))))),
      (m) => m.values()
    )
    const trainableSet = options.trainable ?? "kv"
    const frozen = new Map<string, tf.Tensor>()
    const trainable = new Map<string, tf.Tensor>()
    for (const [name, t] of all) {
      if (name.startsWith("unet.") && isTrainableUnetParam(trainableSet, name)) trainable.set(name, t)
      else frozen.set(name, t)
    }
    const modifierIds = tokenizer.modifiers.map((m) => m.id)
    if (modifierIds.length > 0) {
      // modifier rows start as copies of their own (random) rows of the table
      const rows = yield* scopedTensors(() => tf.gather(all.get("text.token_embedding.weight")!, modifierIds), (t) => [t])
      const rowsGo = trainsModifierRows(trainableSet) ? trainable : frozen
      rowsGo.set(modifierEmbeddingsName, rows)
    }
    const identity = yield* modelIdentity({ kind: "fake", config, seed }, frozen)
    const C = config.channels
    const heads = config.heads

    const encodeText = (w: Weights, ids: tf.Tensor) =>
      tf.tidy(() => {
        const t = w.scope("text")
        const h = tf.add(embed(t, ids, modifierIds), t.get("position_embedding.weight"))
        return tf.add(h, tf.tanh(linear(t.scope("proj"), h)))
      })

    const block = (w: Weights, level: string, h: tf.Tensor, context: tf.Tensor, hook: Parameters<typeof attention>[3]["hook"]) => {
      const [B, H, W] = h.shape as [number, number, number, number]
      const n = groupNorm(w.scope(`${level}.norm`), h, config.groups, 1e-6)
      const a = attention(w.scope(`${level}.attn2`), tf.reshape(n, [B, H * W, C]), context, {
        heads,
        layer: `${level}.attn2`,
        height: H,
        width: W,
        hook,
        detachFirstToken: true
      })
      return tf.add(h, tf.reshape(a, [B, H, W, C]))
    }

    const denoise: Backbone["Service"]["denoise"] = (w, input) => {
      const u = w.scope("unet")
      const temb = silu(linear(u.scope("time_embedding"), timestepFeatures(input.timesteps, C)))
      const [B] = input.latents.shape as [number]
      let h = tf.add(conv2d(u.scope("conv_in"), input.latents), tf.reshape(temb, [B, 1, 1, C]))
      h = block(u, "up", h, input.context, input.hook)
      let d = conv2d(u.scope("conv_down"), silu(h), { stride: 2, padding: 1 })
      d = block(u, "down", d, input.context, input.hook)
      return conv2d(u.scope("conv_out"), silu(tf.add(h, upsampleNearest2x(d))))
    }

    return Backbone.of({
      info: {
        kind: "fake",
        name: `fake(seed ${seed})`,
        identity,
        imageSize: { height: config.imageSize, width: config.imageSize },
        latentShape: { height: 16, width: 16, channels: config.latentChannels },
        crossAttentionLayers: [
          { name: "up.attn2", height: 16, width: 16 },
          { name: "down.attn2", height: 8, width: 8 }
        ]
      },
      tokenizer,
      schedule: makeNoiseSchedule(stableDiffusionSchedule),
      sampling: stableDiffusionSampling,
      parameters: { frozen, trainable },
      encodeText,
      encodeImage: (pixels) => PixelShuffle.unshuffle(pixels),
      decodeLatents: (latents) => PixelShuffle.shuffle(latents),
      denoise
    })
  })

export const layer = (options: FakeBackboneOptions): Layer.Layer<Backbone, never, TensorRuntime> =>
  Layer.effect(Backbone, make(options))
