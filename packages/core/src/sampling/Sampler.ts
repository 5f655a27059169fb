/**
 * Text-to-image sampling: DDIM or DDPM over the backbone's denoiser with classifier-free guidance
 * (`out = out_uncond + g (out_cond - out_uncond)`, batches ordered [uncond, cond] as in diffusers),
 * seeded per image with the counter-based generator, and inpainting by masked latent blending (the
 * paper's section 4.4: outside the mask the latents are replaced, at every step, by the source image's
 * latents noised to the current timestep).
 */
import { Context, Effect, Layer } from "effect"
import { Backbone, type BackboneShape } from "../backbone/Backbone.js"
import type { RgbImage } from "../image/Image.js"
import { type AggregatedMaps, aggregate, type ProbeSelection, record } from "../attention/AttentionProbe.js"
import { makeWeights } from "../nn/Weights.js"
import { stream } from "../random/Rng.js"
import { addNoise } from "../schedule/NoiseSchedule.js"
import { ddimStep, ddpmStep, previousTimestep, type SamplingOptions, timesteps } from "../schedule/Schedulers.js"
import { type OutOfMemory, runTensors, TensorRuntime } from "../tensor/TensorRuntime.js"
import { tf } from "../tensor/Tf.js"
import { encodePrompt, type PromptError } from "../tokenizer/Tokenizer.js"

/** Images per denoiser call when a request does not say. */
export const defaultSampleBatch = 4

export interface InpaintSource {
  /** The source image at the model's resolution. */
  readonly image: RgbImage
  /** `height * width` values at image resolution: 1 where new content is generated, 0 where the image is kept. */
  readonly mask: Float32Array
}

export interface SampleRequest {
  /** One image per entry. */
  readonly prompts: ReadonlyArray<string>
  /** One seed per image: its initial latents and sampling noise depend on nothing else. */
  readonly seeds: ReadonlyArray<number>
  readonly negativePrompt?: string | undefined
  readonly steps: number
  readonly guidance: number
  readonly eta: number
  readonly scheduler?: "ddim" | "ddpm" | undefined
  /** Trained tensors over the base model's (from a checkpoint); none samples the base model. */
  readonly trained?: ReadonlyMap<string, tf.Tensor> | undefined
  /** Images per denoiser call (classifier-free guidance doubles the rows); default `defaultSampleBatch`. */
  readonly batchSize?: number | undefined
  readonly inpaint?: InpaintSource | undefined
  /** Overrides the backbone's own sampling options. */
  readonly sampling?: SamplingOptions | undefined
  /** Called with (step, steps, index of the chunk's first image) after each step of each chunk. */
  readonly onStep?: ((done: number, total: number, first: number) => Effect.Effect<void>) | undefined
  /**
   * Cross-attention maps of the conditional rows at the given step indices (0 = noisiest; default
   * all): `onMaps` gets the probe's aggregate `[images of the chunk, H*W, tokens]` and the index of
   * the chunk's first image while it is alive (inside the step's tidy; keep what outlives it with
   * `tf.keep`).
   */
  readonly attention?: {
    readonly selection: ProbeSelection
    readonly steps?: ReadonlyArray<number> | undefined
    readonly onMaps: (step: number, maps: AggregatedMaps, first: number) => void
  } | undefined
}

export interface SampleResult {
  readonly images: ReadonlyArray<RgbImage>
}

const toImage = (pixels: Float32Array, H: number, W: number, i: number): RgbImage => {
  const n = H * W * 3
  const data = new Float32Array(n)
  for (let k = 0; k < n; k++) data[k] = Math.min(1, Math.max(0, (pixels[i * n + k]! + 1) / 2))
  return { width: W, height: H, data }
}

/** Nearest-neighbour average of an image-resolution mask down to the latent grid. */
const latentMask = (mask: Float32Array, H: number, W: number, h: number, w: number): Float32Array => {
  const [fy, fx] = [H / h, W / w]
  const out = new Float32Array(h * w)
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let s = 0
      for (let dy = 0; dy < fy; dy++) for (let dx = 0; dx < fx; dx++) s += mask[(y * fy + dy) * W + x * fx + dx]!
      out[y * w + x] = s / (fy * fx) > 0.5 ? 1 : 0
    }
  }
  return out
}

export const sample = (backbone: BackboneShape, req: SampleRequest): Effect.Effect<SampleResult, OutOfMemory | PromptError, TensorRuntime> =>
  Effect.gen(function*() {
    if (req.seeds.length !== req.prompts.length) throw new Error("one seed per prompt")
    const o = req.sampling ?? backbone.sampling
    const T = backbone.schedule.config.numTrainTimesteps
    const ts = timesteps(T, req.steps, o)
    const { height: h, width: w, channels: c } = backbone.info.latentShape
    const { height: H, width: W } = backbone.info.imageSize
    const weights = makeWeights(backbone.parameters.frozen, req.trained ?? backbone.parameters.trainable)
    // every prompt is checked before any compute (an unknown word is a typed error, not a crash)
    yield* Effect.forEach(new Set([...req.prompts, req.negativePrompt ?? ""]), (p) => encodePrompt(backbone.tokenizer, p))
    const chunk = req.batchSize ?? defaultSampleBatch
    const guided = req.guidance !== 1
    const images: Array<RgbImage> = []
    for (let start = 0; start < req.prompts.length; start += chunk) {
      const prompts = req.prompts.slice(start, start + chunk)
      const seeds = req.seeds.slice(start, start + chunk)
      const b = prompts.length
      const { context, source, mask } = yield* runTensors("encoding prompts", () =>
        tf.tidy(() => {
          const ids = (texts: ReadonlyArray<string>) =>
            tf.tensor2d(texts.map((p) => [...backbone.tokenizer.encode(p).ids]), [texts.length, backbone.tokenizer.maxLength], "int32")
          const cond = backbone.encodeText(weights, ids(prompts))
          const context = guided
            ? tf.concat([backbone.encodeText(weights, ids(prompts.map(() => req.negativePrompt ?? ""))), cond], 0)
            : cond
          if (req.inpaint === undefined) return { context, source: undefined, mask: undefined }
          const pixels = tf.tensor(req.inpaint.image.data.map((v) => v * 2 - 1), [1, H, W, 3])
          const z0 = backbone.encodeImage(tf.tile(pixels, [b, 1, 1, 1]))
          const m = tf.tensor(latentMask(req.inpaint.mask, H, W, h, w), [1, h, w, 1])
          return { context, source: z0, mask: m }
        }))
      const perImage = (purpose: string, step: number) =>
        tf.tensor(
          seeds.flatMap((seed) => Array.from(stream(seed, step, purpose).normals(h * w * c))),
          [b, h, w, c]
        )
      let latents = perImage("initial-latents", 0)
      const blendNoise = source === undefined ? undefined : perImage("inpaint-noise", 0)
      for (let i = 0; i < ts.length; i++) {
        const t = ts[i]!
        const prevT = previousTimestep(T, req.steps, t)
        const probe = req.attention !== undefined && (req.attention.steps === undefined || req.attention.steps.includes(i))
          ? { ...req.attention, recording: record(req.attention.selection) }
          : undefined
        const next = yield* runTensors("a sampling step", () =>
          tf.tidy(() => {
            const input = guided ? tf.concat([latents, latents], 0) : latents
            const out = backbone.denoise(weights, { latents: input, timesteps: Array.from({ length: input.shape[0]! }, () => t), context, hook: probe?.recording.hook })
            if (probe !== undefined) {
              const a = aggregate(probe.recording.calls(), probe.selection)
              const rows = a.maps.shape[0]!
              probe.onMaps(i, { ...a, maps: guided ? tf.slice(a.maps, [rows / 2, 0, 0], [rows / 2, -1, -1]) : a.maps }, start)
            }
            const modelOutput = guided
              ? (() => {
                const [u, cnd] = tf.split(out, 2, 0)
                return tf.add(u!, tf.mul(tf.sub(cnd!, u!), req.guidance))
              })()
              : out
            const noise = req.eta > 0 || req.scheduler === "ddpm" ? perImage("sampling-noise", i + 1) : undefined
            let prev = req.scheduler === "ddpm"
              ? ddpmStep(backbone.schedule, o, modelOutput, t, prevT, latents, noise).prevSample
              : ddimStep(backbone.schedule, o, modelOutput, t, prevT, latents, req.eta, noise).prevSample
            if (source !== undefined && mask !== undefined && blendNoise !== undefined) {
              const known = prevT >= 0 ? addNoise(backbone.schedule, source, blendNoise, seeds.map(() => prevT)) : source
              prev = tf.add(tf.mul(prev, mask), tf.mul(known, tf.sub(1, mask)))
            }
            return prev
          }))
        latents.dispose()
        latents = next
        if (req.onStep !== undefined) yield* req.onStep(i + 1, ts.length, start)
        yield* Effect.yieldNow
      }
      const pixels = yield* runTensors("decoding", () => tf.tidy(() => backbone.decodeLatents(latents)))
      const data = (yield* Effect.promise(() => pixels.data())) as Float32Array
      tf.dispose([pixels, latents, context, ...(source ? [source] : []), ...(mask ? [mask] : []), ...(blendNoise ? [blendNoise] : [])])
      for (let k = 0; k < b; k++) images.push(toImage(data, H, W, k))
    }
    return { images }
  })

export class Sampler extends Context.Service<Sampler, {
  readonly sample: (req: SampleRequest) => Effect.Effect<SampleResult, OutOfMemory | PromptError>
}>()("@disendiff/core/Sampler") {
  static readonly layer: Layer.Layer<Sampler, never, Backbone | TensorRuntime> = Layer.effect(
    Sampler,
    Effect.gen(function*() {
      const backbone = yield* Backbone
      const runtime = yield* TensorRuntime
      return Sampler.of({
        sample: (req) => sample(backbone, req).pipe(Effect.provideService(TensorRuntime, runtime))
      })
    })
  )
}
