/**
 * Per-token cross-attention maps of a given image and caption, as host data: the image is encoded,
 * noised to each of the given timesteps (noise keyed by (seed, k) for the k-th timestep), denoised
 * once with the caption in one batch, and the probe's maps are averaged over the timesteps. This is
 * what the method's attention looks like on its training image.
 */
import { Effect } from "effect"
import type { BackboneShape } from "../backbone/Backbone.js"
import type { RgbImage } from "../image/Image.js"
import type { Weights } from "../nn/Weights.js"
import { stream } from "../random/Rng.js"
import { addNoise } from "../schedule/NoiseSchedule.js"
import { type OutOfMemory, runTensors, type TensorRuntime } from "../tensor/TensorRuntime.js"
import { tf } from "../tensor/Tf.js"
import { aggregate, type ProbeSelection, record } from "./AttentionProbe.js"

/** Maps of every token position on a `height x width` grid. */
export interface TokenMaps {
  /** `height * width * tokens` values: cell-major, as `AggregatedMaps` holds one row. */
  readonly data: Float32Array
  readonly height: number
  readonly width: number
  readonly tokens: number
  readonly layers: ReadonlyArray<string>
}

/** The `height * width` map of token position `p`. */
export const mapOf = (m: TokenMaps, p: number): Float32Array =>
  Float32Array.from({ length: m.height * m.width }, (_, n) => m.data[n * m.tokens + p]!)

export interface ImageAttentionOptions {
  /** The image at the model's resolution. */
  readonly image: RgbImage
  readonly caption: string
  readonly timesteps: ReadonlyArray<number>
  readonly seed: number
  readonly selection: ProbeSelection
}

export const imageAttention = (
  backbone: BackboneShape,
  weights: Weights,
  o: ImageAttentionOptions
): Effect.Effect<TokenMaps, OutOfMemory, TensorRuntime> =>
  Effect.gen(function*() {
    const { height: H, width: W } = backbone.info.imageSize
    const K = o.timesteps.length
    const encoded = backbone.tokenizer.encode(o.caption)
    let meta = { height: 0, width: 0, layers: [] as ReadonlyArray<string> }
    const maps = yield* runTensors("reading attention", () =>
      tf.tidy(() => {
        const pixels = tf.tensor(o.image.data.map((v) => v * 2 - 1), [1, H, W, 3])
        const z0 = tf.tile(backbone.encodeImage(pixels), [K, 1, 1, 1])
        const per = z0.size / K
        const noise = tf.tensor(
          o.timesteps.flatMap((_, k) => Array.from(stream(o.seed, k, "noise").normals(per))),
          z0.shape
        )
        const zt = addNoise(backbone.schedule, z0, noise, o.timesteps)
        const ids = tf.tensor2d(o.timesteps.map(() => [...encoded.ids]), [K, encoded.ids.length], "int32")
        const rec = record(o.selection)
        backbone.denoise(weights, { latents: zt, timesteps: o.timesteps, context: backbone.encodeText(weights, ids), hook: rec.hook })
        const a = aggregate(rec.calls(), o.selection)
        meta = { height: a.height, width: a.width, layers: a.layers }
        return tf.mean(a.maps, 0)
      }))
    const data = (yield* Effect.promise(() => maps.data())) as Float32Array
    maps.dispose()
    return { data, tokens: encoded.ids.length, ...meta }
  })
