/**
 * The model being personalised: a text encoder with added modifier tokens, an image autoencoder, a
 * denoiser with cross-attention hooks, its noise schedule, and an explicit trainable parameter set.
 *
 * Layers: `FakeBackbone` (a tiny deterministic test double), `StableDiffusion` (a diffusers folder),
 * `ToyBackbone` (the built-in model). All tensor functions are synchronous tfjs code that runs inside
 * a gradient tape; they read parameters through a `Weights` view, so the caller decides which tensors
 * are the trainable ones being differentiated.
 */
import { Context, Schema } from "effect"
import type { ImageError, RgbImage } from "../image/Image.js"
import type { AttentionHook } from "../nn/Attention.js"
import type { RandomStream } from "../random/Rng.js"
import type { Weights } from "../nn/Weights.js"
import type { NoiseSchedule } from "../schedule/NoiseSchedule.js"
import type { SamplingOptions } from "../schedule/Schedulers.js"
import type { tf } from "../tensor/Tf.js"
import type { PromptError, Tokenizer } from "../tokenizer/Tokenizer.js"

export interface BackboneInfo {
  readonly kind: "fake" | "stable-diffusion" | "toy"
  /** Human-readable name of the base model (folder, or built-in name). */
  readonly name: string
  /** SHA-256 over the base model's config and frozen weights: checkpoints refuse other models. */
  readonly identity: string
  /** Training resolution in pixels, and the latent grid the denoiser works on. */
  readonly imageSize: { readonly height: number; readonly width: number }
  readonly latentShape: { readonly height: number; readonly width: number; readonly channels: number }
  /** Cross-attention layer names with their query grids at the training resolution. */
  readonly crossAttentionLayers: ReadonlyArray<{ readonly name: string; readonly height: number; readonly width: number }>
}

export interface Parameters {
  /** Everything that stays fixed, by name. */
  readonly frozen: ReadonlyMap<string, tf.Tensor>
  /** Initial values of the trainable set, by name (these names are what checkpoints hold). */
  readonly trainable: ReadonlyMap<string, tf.Tensor>
}

export interface DenoiseInput {
  /** Noisy latents `[B, h, w, c]` (NHWC). */
  readonly latents: tf.Tensor
  /** One timestep per row. */
  readonly timesteps: ReadonlyArray<number>
  /** Conditioning from `encodeText`, `[B, L, D]`. */
  readonly context: tf.Tensor
  readonly hook?: AttentionHook | undefined
}

export interface BackboneShape {
  readonly info: BackboneInfo
  readonly tokenizer: Tokenizer
  readonly schedule: NoiseSchedule
  /** How this model is sampled by default (spacing, offsets, x0 clipping). */
  readonly sampling: SamplingOptions
  readonly parameters: Parameters
  /** Token ids `[B, L]` (int32) to conditioning `[B, L, D]`. */
  readonly encodeText: (w: Weights, ids: tf.Tensor) => tf.Tensor
  /**
   * Pixels `[B, H, W, 3]` in [-1, 1] to scaled latents. `noise` (standard normal, latent-shaped) draws
   * from a stochastic posterior (SD's VAE samples, as LDM's `get_first_stage_encoding` does); exact
   * autoencoders ignore it.
   */
  readonly encodeImage: (pixels: tf.Tensor, noise?: tf.Tensor) => tf.Tensor
  /** Scaled latents to pixels in about [-1, 1]. */
  readonly decodeLatents: (latents: tf.Tensor) => tf.Tensor
  /** The denoiser's output (noise, velocity or sample, per `schedule.config.predictionType`). */
  readonly denoise: (w: Weights, input: DenoiseInput) => tf.Tensor
  /** Refuses a caption the model cannot learn from or draw (the built-in model: text outside its world). */
  readonly checkCaption?: ((caption: string) => PromptError | undefined) | undefined
  /**
   * Draws another version of a training image and its caption that is still true of each other (the
   * built-in model: `@disendiff/builtin`'s `world/Augment.ts`); used when the config's `augment.world` is set.
   */
  readonly augmentTarget?: ((image: RgbImage, caption: string, rnd: RandomStream, options: TargetAugmentOptions) => { readonly image: RgbImage; readonly caption: string }) | undefined
  /** Refuses a training image the model cannot learn from as it is (the built-in model: not a world-sized image). */
  readonly checkImage?: ((file: string, image: RgbImage) => ImageError | undefined) | undefined
}

/** What a backbone that knows its world may change in a training image (`TrainConfig.augment.world`). */
export interface TargetAugmentOptions {
  /** Another background, the caption's background word to match. */
  readonly background: boolean
  /** Smaller or larger objects, with size words. */
  readonly resize: boolean
  /** A shift that keeps the objects in the picture. */
  readonly translate: boolean
  /** A mirror image, the caption naming objects in the new left-to-right order. */
  readonly flip: boolean
}

export class Backbone extends Context.Service<Backbone, BackboneShape>()("@disendiff/core/Backbone") {}

/** A model folder or weights file that cannot be used as it is. */
export class ModelError extends Schema.TaggedError<ModelError>()("ModelError", {
  path: Schema.String,
  reason: Schema.String,
  fix: Schema.String
}) {
  override get message() {
    return `${this.path}: ${this.reason}. Fix: ${this.fix}`
  }
}

/**
 * Which parameters personalisation trains: the cross-attention sets train the modifier token rows too
 * (method doc a.1.4, (i)); "tokens" trains only the modifier rows (Textual Inversion); "unet" trains every
 * UNet parameter with the modifier rows fixed at their initialisation (DreamBooth's identifier).
 */
export type TrainableSet = "kv" | "qkv" | "attn2" | "tokens" | "unet"
export const trainableSets: ReadonlyArray<TrainableSet> = ["kv", "qkv", "attn2", "tokens", "unet"]

/** Do the modifier token rows train under the set (all but DreamBooth's whole-UNet set)? */
export const trainsModifierRows = (set: TrainableSet): boolean => set !== "unet"

/** Does the UNet parameter `name` belong to the trainable set? */
export const isTrainableUnetParam = (set: TrainableSet, name: string): boolean => {
  if (set === "unet") return true
  if (set === "tokens") return false
  if (!name.includes(".attn2.")) return false
  switch (set) {
    case "kv":
      return /\.attn2\.to_[kv]\.weight$/.test(name)
    case "qkv":
      return /\.attn2\.to_[qkv]\.weight$/.test(name)
    case "attn2":
      return true
  }
}

/** Trainable name of the modifier token embedding rows `[modifiers, D]`. */
export const modifierEmbeddingsName = "text.modifier_embeddings"
