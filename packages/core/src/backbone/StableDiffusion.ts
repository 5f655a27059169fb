/**
 * Stable Diffusion 1.x from a diffusers folder as a `Backbone`: the CLIP BPE tokenizer with added
 * modifier tokens, CLIPTextModel, AutoencoderKL (latents = scaling_factor x posterior sample, as LDM's
 * `get_first_stage_encoding`) and UNet2DConditionModel, with the DDIM settings of the folder's
 * scheduler config. Trainable: attn2 to_k/to_v (or q/k/v, or all of attn2) and the new token rows.
 */
import { Effect, Layer } from "effect"
import { createHash } from "node:crypto"
import { type DiffusersFolder, noiseScheduleConfig, readDiffusersFolder, samplingOptions } from "../io/DiffusersFolder.js"
import { readSafetensors, readSafetensorsHeader } from "../io/Safetensors.js"
import * as Vae from "../models/AutoencoderKl.js"
import { clipTextForward } from "../models/ClipTextModel.js"
import { clipTextConfig, unetConfig, vaeConfig } from "../models/Configs.js"
import { canonicalName, toTensor } from "../models/Convert.js"
import { clipParameterShapes, parameterCount, unetParameterShapes, vaeParameterShapes } from "../models/Shapes.js"
import { crossAttentionLayers, unetForward } from "../models/Unet2dConditionModel.js"
import { makeWeights } from "../nn/Weights.js"
import { makeNoiseSchedule } from "../schedule/NoiseSchedule.js"
import { OutOfMemory, memoryFix, scopedTensors, TensorRuntime } from "../tensor/TensorRuntime.js"
import { tf } from "../tensor/Tf.js"
import { type ClipTokenizer, makeClipTokenizer, rareTokenInitRows } from "../tokenizer/ClipTokenizer.js"
import { readDiffusersVocabulary } from "../tokenizer/ClipVocabulary.js"
import type { Tokenizer } from "../tokenizer/Tokenizer.js"
import { Backbone, type BackboneShape, isTrainableUnetParam, ModelError, modifierEmbeddingsName, type TrainableSet, trainsModifierRows } from "./Backbone.js"
import { estimateTrainingBytes } from "./Memory.js"

export interface StableDiffusionOptions {
  readonly model: string
  readonly modifiers: ReadonlyArray<string>
  readonly trainable?: TrainableSet | undefined
  /** New token rows start from the method's rare tokens (a.1.3) or from their class word's row. */
  readonly modifierInit?: "rare" | "class" | undefined
  /** The class word after each modifier (for "class" initialisation, and rare rows the official code leaves unset). */
  readonly classWords?: ReadonlyArray<string> | undefined
  /** Training resolution in pixels; default: the VAE config's sample_size. */
  readonly resolution?: number | undefined
  /** Rows per micro-batch the run will use, for the memory preflight. */
  readonly batchSize?: number | undefined
}

/** Gives modifier tokens the ids right after the text model's table, whatever the tokenizer's own size. */
const remapModifiers = (t: ClipTokenizer, base: number): Tokenizer => {
  const from = t.vocabSize - t.modifiers.length
  const map = (id: number) => (id >= from ? base + (id - from) : id)
  return {
    maxLength: t.maxLength,
    tokenize: t.tokenize,
    modifiers: t.modifiers.map((m) => ({ token: m.token, id: map(m.id) })),
    encode: (text) => {
      const e = t.encode(text)
      return { ...e, ids: e.ids.map(map) }
    }
  }
}

/**
 * Identity of the base weights without hashing gigabytes: the configs, every safetensors header
 * (names, dtypes, shapes, offsets) and the first and last 256 bytes of every tensor.
 */
const folderIdentity = (folder: DiffusersFolder) =>
  Effect.gen(function*() {
    const h = createHash("sha256")
    h.update(JSON.stringify([folder.unet.config, folder.vae.config, folder.textEncoder.config]))
    for (const file of [folder.unet.weights, folder.vae.weights, folder.textEncoder.weights]) {
      const header = yield* readSafetensorsHeader(file)
      const fs = yield* Effect.promise(() => import("node:fs/promises"))
      const handle = yield* Effect.promise(() => fs.open(file, "r"))
      for (const e of header.entries) {
        h.update(`${e.name}:${e.dtype}:${e.shape.join("x")}:${e.begin}-${e.end};`)
        const n = Math.min(256, e.end - e.begin)
        const buf = Buffer.alloc(2 * n)
        yield* Effect.promise(() => handle.read(buf, 0, n, e.begin))
        yield* Effect.promise(() => handle.read(buf, n, n, e.end - n))
        h.update(buf)
      }
      yield* Effect.promise(() => handle.close())
    }
    return h.digest("hex")
  })

export const make = (o: StableDiffusionOptions) =>
  Effect.gen(function*() {
    const runtime = yield* TensorRuntime
    const folder = yield* readDiffusersFolder(o.model)
    const ucfg = unetConfig(folder.unet.config)
    const vcfg = vaeConfig(folder.vae.config)
    const tcfg = clipTextConfig(folder.textEncoder.config)
    const sampleSize = folder.vae.config.sample_size
    const resolution: number = o.resolution ?? (typeof sampleSize === "number" ? sampleSize : sampleSize[0]!)
    const factor = 2 ** (vcfg.blockOutChannels.length - 1)
    if (resolution % (factor * 2 ** (ucfg.blockOutChannels.length - 1)) !== 0) {
      return yield* new ModelError({ path: o.model, reason: `resolution ${resolution} is not a multiple of the model's total downsampling`, fix: `use a multiple of ${factor * 2 ** (ucfg.blockOutChannels.length - 1)} pixels` })
    }
    // preflight: refuse what would not fit before loading a byte of weights (counts from the configs)
    const tc = folder.textEncoder.config
    const weightBytes = 4 * (
      parameterCount(unetParameterShapes(ucfg, tcfg.hiddenSize)) +
      parameterCount(vaeParameterShapes(vcfg)) +
      parameterCount(clipParameterShapes({ vocabSize: tc.vocab_size, hiddenSize: tc.hidden_size, intermediateSize: tc.intermediate_size, layers: tc.num_hidden_layers, maxPositions: tc.max_position_embeddings }))
    )
    const need = estimateTrainingBytes(ucfg, resolution / factor, o.batchSize ?? 2, tcfg.maxPositions) + weightBytes
    const mem = runtime.memory()
    if (mem.liveBytes + need > mem.limitBytes) {
      return yield* new OutOfMemory({
        backend: runtime.backend,
        what: `${o.model} at ${resolution}px, batch ${o.batchSize ?? 2} (float32 weights ${(weightBytes / 2 ** 30).toFixed(2)} GiB)`,
        requestedBytes: need,
        liveBytes: mem.liveBytes,
        limitBytes: mem.limitBytes,
        fix: memoryFix(runtime.backend)
      })
    }
    if (folder.tokenizer === null) {
      return yield* new ModelError({ path: o.model, reason: "no tokenizer/vocab.json and tokenizer/merges.txt", fix: "use the complete diffusers folder (it ships the CLIP tokenizer files)" })
    }
    const vocabulary = yield* readDiffusersVocabulary(o.model)
    const clip = makeClipTokenizer({ vocabulary, modifiers: o.modifiers, maxLength: tcfg.maxPositions })
    if (clip.vocabSize - o.modifiers.length > tcfg.vocabSize) {
      return yield* new ModelError({ path: o.model, reason: `the tokenizer has ${clip.vocabSize - o.modifiers.length} tokens, the text encoder ${tcfg.vocabSize}`, fix: "use the tokenizer that belongs to the text encoder" })
    }
    const tokenizer = remapModifiers(clip, tcfg.vocabSize)

    const weights = yield* Effect.acquireRelease(
      Effect.gen(function*() {
        const all = new Map<string, tf.Tensor>()
        for (const [prefix, file] of [["unet", folder.unet.weights], ["vae", folder.vae.weights], ["text", folder.textEncoder.weights]] as const) {
          const stored = yield* readSafetensors(file)
          for (const [name, t] of stored) {
            const c = canonicalName(name)
            all.set(`${prefix}.${c}`, toTensor(c, { shape: t.shape, data: t.data instanceof Float32Array ? t.data : Float32Array.from(t.data) }))
            stored.delete(name) // let the host copy go as soon as the tensor exists
          }
        }
        return all
      }),
      (all) => Effect.sync(() => tf.dispose([...all.values()]))
    )

    // the new token rows: copies of the rare tokens' rows (or the class word's)
    const table = weights.get("text.text_model.embeddings.token_embedding.weight")!
    const rare = rareTokenInitRows(Math.max(1, o.modifiers.length))
    const rows: Array<number> = []
    for (let i = 0; i < o.modifiers.length; i++) {
      const classRow = () => {
        const word = o.classWords?.[i]
        const ids = word === undefined ? [] : clip.encode(word).ids.slice(1, clip.encode(word).length - 1)
        return ids.length === 1 ? ids[0]! : undefined
      }
      const row = o.modifierInit === "class" ? classRow() : (rare[i] ?? classRow())
      if (row === undefined || row >= tcfg.vocabSize) {
        return yield* new ModelError({
          path: o.model,
          reason: `no initial row for ${o.modifiers[i]} (${o.modifierInit === "class" ? "its class word is not one token" : `rare token ${row} is outside the ${tcfg.vocabSize}-token table`})`,
          fix: o.modifierInit === "class" ? "give a one-token class word after each modifier" : "use --modifier-init class"
        })
      }
      rows.push(row)
    }
    const frozen = new Map<string, tf.Tensor>()
    const trainable = new Map<string, tf.Tensor>()
    const set = o.trainable ?? "kv"
    for (const [name, t] of weights) {
      if (name.startsWith("unet.") && isTrainableUnetParam(set, name.slice(5))) trainable.set(name, t)
      else frozen.set(name, t)
    }
    const rowsGo = trainsModifierRows(set) ? trainable : frozen
    if (rows.length > 0) rowsGo.set(modifierEmbeddingsName, yield* scopedTensors(() => tf.gather(table, rows), (t) => [t]))

    const sc = folder.scheduler.config
    const sampling = samplingOptions(sc)
    const latent = resolution / factor
    const frozenWeights = makeWeights(frozen)
    const backbone: BackboneShape = {
      info: {
        kind: "stable-diffusion",
        name: o.model,
        identity: yield* folderIdentity(folder),
        imageSize: { height: resolution, width: resolution },
        latentShape: { height: latent, width: latent, channels: vcfg.latentChannels },
        crossAttentionLayers: crossAttentionLayers(ucfg, latent, latent)
      },
      tokenizer,
      schedule: makeNoiseSchedule(noiseScheduleConfig(sc)),
      sampling,
      parameters: { frozen, trainable },
      encodeText: (w, ids) =>
        clipTextForward(tcfg, w.scope("text"), ids, w.has(modifierEmbeddingsName) ? w.get(modifierEmbeddingsName) : undefined).lastHiddenState,
      encodeImage: (pixels, noise) => {
        const p = Vae.encode(vcfg, frozenWeights.scope("vae"), pixels)
        const z = noise === undefined ? p.mean : tf.add(p.mean, tf.mul(p.std, noise))
        return tf.mul(z, vcfg.scalingFactor)
      },
      decodeLatents: (latents) => Vae.decode(vcfg, frozenWeights.scope("vae"), tf.div(latents, vcfg.scalingFactor)),
      denoise: (w, input) =>
        unetForward(ucfg, w.scope("unet"), { latents: input.latents, timesteps: input.timesteps, context: input.context, hook: input.hook, detachFirstToken: true })
    }
    return Backbone.of(backbone)
  })

export const layer = (o: StableDiffusionOptions): Layer.Layer<Backbone, ModelError | OutOfMemory, TensorRuntime> => Layer.effect(Backbone, make(o))
