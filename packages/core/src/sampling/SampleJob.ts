/**
 * A sampling request as plain data (trained tensors on the host, the attention maps summed over the
 * steps instead of a callback), so that worker threads can take its chunks: the images are cut into
 * chunks of `batchSize` as `sample` cuts them, each chunk is sampled whole on one thread, and the
 * results are put back in chunk order. Every image is computed exactly as `sample` computes it, with
 * or without workers, whatever their number.
 */
import { Effect } from "effect"
import type { BackboneShape } from "../backbone/Backbone.js"
import type { ProbeSelection } from "../attention/AttentionProbe.js"
import type { HostTensor } from "../checkpoint/Snapshot.js"
import { toTensors } from "../checkpoint/HostTensors.js"
import type { RgbImage } from "../image/Image.js"
import type { OutOfMemory, TensorRuntime } from "../tensor/TensorRuntime.js"
import { tf } from "../tensor/Tf.js"
import { encodePrompt, type PromptError } from "../tokenizer/Tokenizer.js"
import type { WorkerError } from "../training/WorkerError.js"
import { defaultSampleBatch, sample, type SampleRequest } from "./Sampler.js"

export interface SampleJob extends Omit<SampleRequest, "trained" | "onStep" | "attention"> {
  readonly trained?: ReadonlyMap<string, HostTensor> | undefined
  /** The conditional rows' cross-attention maps, summed over the given step indices (default all). */
  readonly attention?: { readonly selection: ProbeSelection; readonly steps?: ReadonlyArray<number> | undefined } | undefined
}

/** One chunk's attention maps summed over the steps: `[images of the chunk, H*W, tokens]`. */
export interface SummedMaps {
  /** Index of the chunk's first image. */
  readonly first: number
  readonly maps: HostTensor
  readonly height: number
  readonly width: number
  readonly layers: ReadonlyArray<string>
}

export interface SampleOutput {
  readonly images: ReadonlyArray<RgbImage>
  /** One per chunk, in image order; empty without `attention`. */
  readonly maps: ReadonlyArray<SummedMaps>
}

/** Called with (step, steps, index of the chunk's first image) after each step of each chunk. */
export type OnStep = (done: number, total: number, first: number) => Effect.Effect<void>

/** Chunks of images sampled on other threads, each with the same backbone as the caller's. */
export interface SampleWorkers {
  readonly count: number
  /** One chunk (at most `batchSize` images), its `first` image counted from 0. */
  readonly sample: (job: SampleJob, onStep: OnStep) => Effect.Effect<SampleOutput, WorkerError | OutOfMemory | PromptError>
}

/** The job in this thread. */
export const runSampleJob = (backbone: BackboneShape, job: SampleJob, onStep?: OnStep): Effect.Effect<SampleOutput, OutOfMemory | PromptError, TensorRuntime> =>
  Effect.scoped(Effect.gen(function*() {
    const trained = job.trained === undefined
      ? undefined
      : yield* Effect.acquireRelease(Effect.sync(() => toTensors(job.trained!)), (m) => Effect.sync(() => tf.dispose([...m.values()])))
    const sums = yield* Effect.acquireRelease(Effect.sync(() => new Map<number, tf.Tensor>()), (m) => Effect.sync(() => tf.dispose([...m.values()])))
    let grid = { height: 0, width: 0, layers: [] as ReadonlyArray<string> }
    const attention = job.attention
    const { images } = yield* sample(backbone, {
      ...job,
      trained,
      onStep,
      attention: attention === undefined ? undefined : {
        ...attention,
        onMaps: (_, a, first) => {
          const previous = sums.get(first)
          sums.set(first, tf.keep(previous === undefined ? tf.clone(a.maps) : tf.add(previous, a.maps)))
          previous?.dispose()
          grid = { height: a.height, width: a.width, layers: a.layers }
        }
      }
    })
    const maps: Array<SummedMaps> = []
    for (const [first, sum] of [...sums].sort((a, b) => a[0] - b[0])) {
      const data = Float32Array.from((yield* Effect.promise(() => sum.data())) as Float32Array)
      maps.push({ first, maps: { shape: [...sum.shape], data }, ...grid })
    }
    return { images, maps }
  }))

/**
 * The job on the workers when there are any and more than one chunk, else in this thread. Prompts are
 * checked here first, so a worker never meets an unknown word.
 */
export const sampleJob = (
  backbone: BackboneShape,
  job: SampleJob,
  o: { readonly onStep?: OnStep | undefined; readonly workers?: SampleWorkers | undefined } = {}
): Effect.Effect<SampleOutput, WorkerError | OutOfMemory | PromptError, TensorRuntime> =>
  Effect.gen(function*() {
    const chunk = job.batchSize ?? defaultSampleBatch
    if (o.workers === undefined || o.workers.count <= 1 || job.prompts.length <= chunk) return yield* runSampleJob(backbone, job, o.onStep)
    yield* Effect.forEach(new Set([...job.prompts, job.negativePrompt ?? ""]), (p) => encodePrompt(backbone.tokenizer, p))
    const starts = Array.from({ length: Math.ceil(job.prompts.length / chunk) }, (_, k) => k * chunk)
    const workers = o.workers
    const parts = yield* Effect.forEach(
      starts,
      (start) =>
        workers.sample(
          { ...job, prompts: job.prompts.slice(start, start + chunk), seeds: job.seeds.slice(start, start + chunk) },
          (done, total) => o.onStep?.(done, total, start) ?? Effect.void
        ),
      { concurrency: workers.count }
    )
    return {
      images: parts.flatMap((p) => p.images),
      maps: parts.flatMap((p, k) => p.maps.map((m) => ({ ...m, first: m.first + starts[k]! })))
    }
  })
