/**
 * The built-in model as a `Backbone`: the toy configuration of SD's text encoder and UNet, an exact
 * pixel-shuffle autoencoder, word tokens over the shapes world, and weights from the committed file
 * (or any tensors, e.g. an EMA during pretraining). It learns only from its world: captions in the
 * world's grammar and 32x32 images, and at most as many modifier tokens as its table reserves.
 */
import { Effect, Layer, Result } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as PixelShuffle from "@disendiff/core/autoencoder/PixelShuffle.js"
import { readSafetensors, readSafetensorsHeader } from "@disendiff/core/io/Safetensors.js"
import { clipTextForward } from "@disendiff/core/models/ClipTextModel.js"
import { crossAttentionLayers, unetForward } from "@disendiff/core/models/Unet2dConditionModel.js"
import { reservedModifierRow, type ToyModelConfig, toyModelConfig, toyParameterShapes } from "../models/ToyModel.js"
import type { Weights } from "@disendiff/core/nn/Weights.js"
import { makeNoiseSchedule } from "@disendiff/core/schedule/NoiseSchedule.js"
import { scopedTensors, TensorRuntime } from "@disendiff/core/tensor/TensorRuntime.js"
import { tf } from "@disendiff/core/tensor/Tf.js"
import { ImageError, type RgbImage } from "@disendiff/core/image/Image.js"
import { PromptError } from "@disendiff/core/tokenizer/Tokenizer.js"
import { makeWordTokenizer } from "@disendiff/core/tokenizer/WordTokenizer.js"
import { augmentWorldImage, decompose, type Layers } from "../world/Augment.js"
import { parseCaption } from "../world/Caption.js"
import { WORLD_SIZE } from "../world/Scene.js"
import { SIZES, type WorldName } from "../world/Vocabulary.js"
import { Backbone, type BackboneShape, isTrainableUnetParam, ModelError, modifierEmbeddingsName, type TrainableSet, trainsModifierRows } from "@disendiff/core/backbone/Backbone.js"
import { modelIdentity } from "@disendiff/core/backbone/Identity.js"

export interface ToyBackboneOptions {
  readonly modifiers: ReadonlyArray<string>
  readonly trainable?: TrainableSet | undefined
  /** Modifier rows start from the reserved rows ("rare") or from their class word's row. */
  readonly modifierInit?: "rare" | "class" | undefined
  /** The class word after each modifier (for "class" initialisation). */
  readonly classWords?: ReadonlyArray<string> | undefined
  /** Weights file; default: the committed built-in model. */
  readonly weights?: string | undefined
}

/** The decomposition of each training image, made once (the target image object lives for the whole run). */
const layersOf = new WeakMap<RgbImage, Layers>()

/** The committed built-in weights (float16 safetensors) and their description. */
export const builtinWeightsPath = fileURLToPath(new URL("../../assets/builtin/shapes.safetensors", import.meta.url))
export const builtinModelName = "builtin-shapes"

/** The world's grammar and words (`world/Caption.ts` says what is wrong and lists the vocabulary). */
const checkCaption = (words: ReadonlyArray<string>) => (caption: string): PromptError | undefined => {
  const parsed = parseCaption(caption)
  if (Result.isFailure(parsed)) {
    return new PromptError({ prompt: caption, reason: `the built-in model cannot read it: ${parsed.failure.reason}`, fix: parsed.failure.fix })
  }
  // the grammar is world v2's; a v1 model does not know the size words
  const size = parsed.success.objects.find((o) => (o.size ?? null) !== null && !words.includes(o.size!))?.size
  return size === undefined || size === null ? undefined : new PromptError({
    prompt: caption,
    reason: `this built-in model (world v1) does not know the size word "${size}"`,
    fix: "leave the size word out, or use a world v2 model (`disendiff pretrain --world shapes-v2`)"
  })
}

/** Only world-sized images: cropping or resizing anything else would not give an image of the world. */
const checkImage = (file: string, image: RgbImage): ImageError | undefined =>
  image.width === WORLD_SIZE && image.height === WORLD_SIZE ? undefined : new ImageError({
    path: file,
    reason: `it is ${image.width}x${image.height} pixels, but the built-in model learns from ${WORLD_SIZE}x${WORLD_SIZE} images of its shapes world`,
    fix: `give a ${WORLD_SIZE}x${WORLD_SIZE} PNG of shapes on a plain background (\`disendiff demo\` writes one, training-image.png), or personalise a Stable Diffusion model (--backbone sd) for other images`
  })

/** A toy backbone over given tensors (named `text.*` and `unet.*`, our layouts). */
export const makeToyBackbone = (
  cfg: ToyModelConfig,
  params: ReadonlyMap<string, tf.Tensor>,
  options: ToyBackboneOptions & { readonly name: string; readonly identity: string }
): BackboneShape => {
  const tokenizer = makeWordTokenizer({
    words: cfg.words,
    aliases: cfg.aliases,
    modifiers: options.modifiers,
    maxLength: cfg.maxLength,
    modifierBase: cfg.text.vocabSize
  })
  const knowsSizes = SIZES.every((s) => cfg.words.includes(s))
  const frozen = new Map<string, tf.Tensor>()
  const trainable = new Map<string, tf.Tensor>()
  const set = options.trainable ?? "kv"
  for (const [name, t] of params) {
    if (name.startsWith("unet.") && isTrainableUnetParam(set, name)) trainable.set(name, t)
    else frozen.set(name, t)
  }
  if (options.modifiers.length > 0) {
    const table = params.get("text.text_model.embeddings.token_embedding.weight")!
    const rows = options.modifiers.map((_, i) => {
      if (options.modifierInit === "class") {
        const word = options.classWords?.[i]
        const index = word === undefined ? -1 : cfg.words.indexOf(word)
        if (index >= 0) return 3 + index
      }
      return reservedModifierRow(cfg, i)
    })
    const rowsGo = trainsModifierRows(set) ? trainable : frozen
    rowsGo.set(modifierEmbeddingsName, tf.gather(table, rows))
  }
  const { height: hh, width: ww } = { height: 16, width: 16 }
  return {
    info: {
      kind: "toy",
      name: options.name,
      identity: options.identity,
      imageSize: { height: 2 * hh, width: 2 * ww },
      latentShape: { height: hh, width: ww, channels: cfg.unet.inChannels },
      crossAttentionLayers: crossAttentionLayers(cfg.unet, hh, ww)
    },
    tokenizer,
    schedule: makeNoiseSchedule(cfg.schedule),
    sampling: cfg.sampling,
    parameters: { frozen, trainable },
    encodeText: (w: Weights, ids: tf.Tensor) =>
      clipTextForward(cfg.text, w.scope("text"), ids, w.has(modifierEmbeddingsName) ? w.get(modifierEmbeddingsName) : undefined)
        .lastHiddenState,
    encodeImage: (pixels) => PixelShuffle.unshuffle(pixels),
    decodeLatents: (latents) => PixelShuffle.shuffle(latents),
    denoise: (w, input) =>
      unetForward(cfg.unet, w.scope("unet"), {
        latents: input.latents,
        timesteps: input.timesteps,
        context: input.context,
        hook: input.hook,
        detachFirstToken: true
      }),
    checkCaption: checkCaption(cfg.words),
    checkImage,
    augmentTarget: (image, caption, rnd, o) => {
      let l = layersOf.get(image)
      if (l === undefined) layersOf.set(image, l = decompose(image))
      // resizing says "small"/"large", which only a world v2 model knows
      return augmentWorldImage(image, l, caption, rnd, knowsSizes ? o : { ...o, resize: false })
    }
  }
}

/** The world (so the vocabulary) is in the pretraining configuration; files without one are v1's. */
const worldOfMetadata = (metadata: Readonly<Record<string, string>>): WorldName => {
  if (metadata.pretrain_config === undefined) return "shapes"
  try {
    return (JSON.parse(metadata.pretrain_config) as { world?: unknown }).world === "shapes-v2" ? "shapes-v2" : "shapes"
  } catch {
    return "shapes"
  }
}

/** The world a weights file was pretrained on. */
export const worldOfWeights = Effect.fn("ToyBackbone.worldOfWeights")(function*(file: string) {
  return worldOfMetadata((yield* readSafetensorsHeader(file)).metadata)
})

/** Reads a toy weights file (its metadata holds the model size) into our tensors. */
export const readToyWeights = Effect.fn("ToyBackbone.readWeights")(function*(file: string) {
  const stored = yield* readSafetensors(file)
  const header = yield* readSafetensorsHeader(file)
  const field = (key: "size" | "recipe") =>
    Effect.try({
      try: () => (header.metadata[key] === undefined ? undefined : JSON.parse(header.metadata[key]!)),
      catch: () =>
        new ModelError({ path: file, reason: `its metadata field "${key}" is not JSON`, fix: "use a weights file written by `disendiff export-builtin`" })
    })
  const size = yield* field("size")
  const recipe = yield* field("recipe")
  const cfg = toyModelConfig(size, recipe, worldOfMetadata(header.metadata))
  const params = new Map<string, tf.Tensor>()
  for (const [name, t] of stored) params.set(name, tf.tensor(Float32Array.from(t.data), [...t.shape]))
  for (const p of toyParameterShapes(cfg)) {
    const t = params.get(p.name)
    if (t === undefined || t.shape.join() !== p.shape.join()) {
      tf.dispose([...params.values()])
      return yield* new ModelError({ path: file, reason: `tensor ${p.name} is missing or misshapen`, fix: "use a weights file written by `disendiff pretrain`" })
    }
  }
  return { cfg, params }
})

/** How to get a weights file that is not there: the built-in one is made by pretraining. */
export const missingWeights = (file: string): ModelError =>
  new ModelError({
    path: file,
    reason: file === builtinWeightsPath ? "the built-in model's weights are not in this installation" : "no such weights file",
    fix: file === builtinWeightsPath
      ? `train them with \`disendiff pretrain --out P\` and write them here with \`disendiff export-builtin --checkpoint P/checkpoint.msgpack --out ${file}\`, or give the path of another weights file written by export-builtin`
      : "check the path, or write a weights file with `disendiff export-builtin`"
  })

export const make = (options: ToyBackboneOptions) =>
  Effect.gen(function*() {
    yield* TensorRuntime
    const file = options.weights ?? builtinWeightsPath
    yield* Effect.tryPromise({ try: () => fs.access(file), catch: () => missingWeights(file) })
    const { cfg, params } = yield* Effect.acquireRelease(readToyWeights(file), ({ params }) => Effect.sync(() => tf.dispose([...params.values()])))
    if (options.modifiers.length > cfg.reservedModifiers) {
      return yield* new ModelError({
        path: file,
        reason: `the built-in model reserves ${cfg.reservedModifiers} modifier tokens, but ${options.modifiers.length} were asked for (${options.modifiers.join(" ")})`,
        fix: `personalise at most ${cfg.reservedModifiers} concepts at a time (a world image holds at most 3 objects)`
      })
    }
    const identity = yield* modelIdentity({ kind: "toy", config: cfg }, params)
    const backbone = makeToyBackbone(cfg, params, { ...options, name: options.weights === undefined ? builtinModelName : path.basename(file), identity })
    yield* scopedTensors(() => backbone.parameters.trainable.get(modifierEmbeddingsName) ?? backbone.parameters.frozen.get(modifierEmbeddingsName), (t) => (t === undefined ? [] : [t]))
    return Backbone.of(backbone)
  })

export const layer = (options: ToyBackboneOptions): Layer.Layer<Backbone, ModelError, TensorRuntime> => Layer.effect(Backbone, make(options))
