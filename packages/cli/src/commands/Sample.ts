/** `disendiff sample`: images from prompts with the base or a personalised model, seeded, as PNGs. */
import { Backbone, HostTensors, prepareImage, readImage, writePng } from "@disendiff/core"
import { sampleJob } from "@disendiff/core/sampling/SampleJob.js"
import { Console, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { UsageError } from "../Errors.js"
import { intInRange, outputFolder } from "../Preflight.js"
import { samplingProgress } from "../Progress.js"
import { loadModel, modelFlags } from "../Model.js"
import { defaultThreads } from "../Backends.js"
import { makeWorkerPool, workerCount, workersFlag } from "../WorkerPool.js"

export const sample = Command.make(
  "sample",
  {
    ...modelFlags,
    prompt: Flag.String("prompt").pipe(Flag.withDescription("the prompt (repeat the flag for several)"), Flag.atLeast(1)),
    steps: Flag.Int("steps").pipe(Flag.withDescription("sampling steps"), Flag.withDefault(50)),
    guidance: Flag.Finite("guidance").pipe(Flag.withDescription("classifier-free guidance scale"), Flag.withDefault(6)),
    eta: Flag.Finite("eta").pipe(Flag.withDescription("DDIM eta (0: deterministic DDIM, 1: DDPM-like)"), Flag.withDefault(0)),
    seed: Flag.Int("seed").pipe(Flag.withDescription("seed of the first image; image i uses seed + i"), Flag.withDefault(42)),
    n: Flag.Int("n").pipe(Flag.withDescription("images per prompt"), Flag.withDefault(4)),
    batch: Flag.Int("batch").pipe(Flag.withDescription("images per denoiser call (memory against speed)"), Flag.withDefault(4)),
    negative: Flag.String("negative").pipe(Flag.withDescription("negative prompt"), Flag.withDefault("")),
    inpaint: Flag.String("inpaint").pipe(Flag.withDescription("inpaint this image: keep it outside --mask, generate inside"), Flag.optional),
    mask: Flag.String("mask").pipe(Flag.withDescription("inpainting mask image: white = generate, black = keep"), Flag.optional),
    out: Flag.String("out").pipe(Flag.withDescription("output folder for the PNGs")),
    workers: workersFlag
  },
  (f) =>
    Effect.gen(function*() {
      // preflight before any compute: counts in range, the output folder writable
      yield* intInRange("steps", f.steps, 1)
      yield* intInRange("n", f.n, 1, Number.POSITIVE_INFINITY, "give --n 1 or more images per prompt")
      yield* intInRange("batch", f.batch, 1, Number.POSITIVE_INFINITY, "give --batch 1 or more images per denoiser call")
      yield* outputFolder("out", f.out)
      const model = yield* loadModel(f, f.prompt)
      const prompts = f.prompt.flatMap((p) => Array.from({ length: f.n }, () => p))
      const seeds = prompts.map((_, i) => f.seed + i)
      const sampleBatch = f.batch
      // whole batches of images on worker threads: only several batches have work to share
      const threads = Option.getOrElse(f.threads, defaultThreads)
      const count = Math.min(yield* workerCount(f.workers, f.backend, threads), Math.ceil(prompts.length / sampleBatch))
      const workers = count > 1 && model.spec !== undefined
        ? (yield* makeWorkerPool({ count, backend: f.backend, threads: Math.max(1, Math.floor(threads / count)) })).sample(model.spec)
        : undefined
      const result = yield* Effect.gen(function*() {
        const backbone = yield* Backbone
        yield* intInRange("steps", f.steps, 1, backbone.schedule.config.numTrainTimesteps)
        const trained = yield* model.trained(backbone)
        const host = trained === undefined ? undefined : yield* HostTensors.toHost(trained)
        const { height: H, width: W } = backbone.info.imageSize
        const source = f.inpaint
        const maskFile = f.mask
        const inpaint = Option.isSome(source)
          ? yield* Effect.gen(function*() {
            if (Option.isNone(maskFile)) return yield* new UsageError({ message: `--inpaint ${source.value}: no --mask given. Fix: give --mask FILE, an image that is white where new content goes and black elsewhere` })
            const image = prepareImage(yield* readImage(source.value), H)
            const m = prepareImage(yield* readImage(maskFile.value), H)
            const mask = new Float32Array(H * W).map((_, i) => (m.data[3 * i]! + m.data[3 * i + 1]! + m.data[3 * i + 2]! > 1.5 ? 1 : 0))
            return { image, mask }
          })
          : undefined
        const progress = samplingProgress(prompts.length, sampleBatch)
        return yield* sampleJob(backbone, {
          inpaint,
          prompts,
          seeds,
          steps: f.steps,
          guidance: f.guidance,
          eta: f.eta,
          negativePrompt: f.negative,
          trained: host,
          batchSize: sampleBatch
        }, { onStep: progress.onStep, workers }).pipe(Effect.ensuring(progress.close))
      }).pipe(Effect.provide(model.layer))
      yield* Effect.promise(() => fs.mkdir(f.out, { recursive: true }))
      const files: Array<{ file: string; prompt: string; seed: number }> = []
      for (const [i, img] of result.images.entries()) {
        const file = path.join(f.out, `${String(i).padStart(3, "0")}-seed${seeds[i]}.png`)
        yield* writePng(file, img)
        files.push({ file: path.basename(file), prompt: prompts[i]!, seed: seeds[i]! })
      }
      yield* Effect.promise(() => fs.writeFile(path.join(f.out, "samples.json"), JSON.stringify({ steps: f.steps, guidance: f.guidance, eta: f.eta, images: files }, null, 2)))
      yield* Console.log(`wrote ${files.length} images to ${f.out}`)
    }).pipe(Effect.scoped)
).pipe(Command.withDescription("generate images from prompts, with the base model or trained weights"))
