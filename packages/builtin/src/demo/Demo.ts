/**
 * The demo, end to end on the built-in model: draw the training image of two novel concepts, personalise
 * the model on it twice from the same seed and data (DisenDiff, and Custom Diffusion as the baseline:
 * the same run with calibration off), read each run's attention on the training image, sample the
 * plan's three prompt groups with both, score every image with the world's evaluator, and write the
 * figures, `metrics.json` and a self-contained `report.html` to the output folder.
 *
 * Progress is a typed `Stream` of events with an estimate of the time left, counted in denoiser row
 * passes (`workUnits`), so training steps and sampling steps weigh what they cost.
 */
import { Clock, Effect, Queue, Result, Schema, Stream } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { defaultSelection } from "@disendiff/core/attention/AttentionProbe.js"
import { imageAttention, mapOf, type TokenMaps } from "@disendiff/core/attention/ImageAttention.js"
import { Backbone, type BackboneShape, type ModelError } from "@disendiff/core/backbone/Backbone.js"
import * as ToyBackbone from "../backbone/ToyBackbone.js"
import { type BackboneSpec, backboneSpecLayer, type BackboneWorkers } from "../backbone/BackboneSpec.js"
import { CheckpointError, load as loadCheckpoint } from "@disendiff/core/checkpoint/Checkpoints.js"
import { colourScale, column, enlarge, heatmap, row } from "@disendiff/core/image/Heatmap.js"
import { encodePng, type RgbImage } from "@disendiff/core/image/Image.js"
import { makeWeights } from "@disendiff/core/nn/Weights.js"
import { sampleJob } from "@disendiff/core/sampling/SampleJob.js"
import { TensorRuntime } from "@disendiff/core/tensor/TensorRuntime.js"
import { tf } from "@disendiff/core/tensor/Tf.js"
import { conceptTokens } from "@disendiff/core/training/Prompt.js"
import { checkpointPath, train, type TrainError, type TrainEvent, trainingServices } from "@disendiff/core/training/Trainer.js"
import { type CaptionError, parseCaption } from "../world/Caption.js"
import { regularizationSet, trainingImage } from "./DemoData.js"
import {
  checkPlan,
  conceptMap,
  type DemoPlan,
  byMethod,
  type GroupName,
  METHODS,
  type MethodName,
  methodLabel,
  type PlannedPrompt,
  plannedPrompts,
  trainConfig,
  workUnits
} from "./DemoPlan.js"
import { attentionOverlap, type DemoMetrics, type TermGradients, meanShares, type MethodSummary, ownObjectShares, scoreImage, summarise } from "./Metrics.js"
import { type Figure, renderReport, type TokenFigure } from "./Report.js"
import { toTensors } from "@disendiff/core/checkpoint/HostTensors.js"
import { writeOutputFile } from "../OutputFile.js"

export type DemoPhase = "prepare" | "train" | "attention" | "sample" | "report"

export type DemoEvent =
  | {
    readonly _tag: "Started"
    readonly seed: number
    readonly quick: boolean
    readonly weights: string
    readonly backend: string
    readonly out: string
    /** Denoiser row passes the whole demo needs. */
    readonly work: number
  }
  | { readonly _tag: "Phase"; readonly phase: DemoPhase; readonly method: MethodName | null; readonly description: string }
  | {
    readonly _tag: "Progress"
    readonly phase: DemoPhase
    readonly method: MethodName
    /** Where the phase stands, e.g. "step 40/200". */
    readonly detail: string
    /** Of the whole demo's work. */
    readonly fraction: number
    readonly elapsedSeconds: number
    readonly etaSeconds: number
  }
  | {
    readonly _tag: "Finished"
    readonly out: string
    readonly report: string
    readonly metrics: string
    readonly seconds: number
    readonly summary: Readonly<Record<MethodName, MethodSummary>>
  }

/** The output folder cannot be written. */
export class DemoOutputError extends Schema.TaggedError<DemoOutputError>()("DemoOutputError", {
  path: Schema.String,
  reason: Schema.String,
  fix: Schema.String
}) {
  override get message() {
    return `${this.path}: ${this.reason}. Fix: ${this.fix}`
  }
}

export type DemoError = ModelError | TrainError | CaptionError | CheckpointError | DemoOutputError

export interface DemoOptions {
  readonly plan: DemoPlan
  readonly out: string
  /** A built-in model weights file; default: the installed one (`ToyBackbone.builtinWeightsPath`). */
  readonly weights?: string | undefined
  /**
   * Threads for the training micro-batches and the sampling chunks; the images and numbers are the
   * same with any number of them, or none.
   */
  readonly workers?: BackboneWorkers | undefined
}

/** How often each loss term's gradient norm is measured during personalisation (3 extra backward passes each time). */
const TERM_GRADIENTS_EVERY = 50

/** Report images are 32 px world images drawn 4x larger, pixels kept crisp. */
const SCALE = 4

const writeFile = (file: string, bytes: string | Uint8Array) => writeOutputFile(file, bytes, (e) => new DemoOutputError(e))

export const run = (options: DemoOptions): Stream.Stream<DemoEvent, DemoError, TensorRuntime> =>
  Stream.callback<DemoEvent, DemoError, TensorRuntime>((queue) =>
    program(options, (e) => Queue.offer(queue, e)).pipe(Effect.andThen(Queue.end(queue)))
  )

/** The word tokens of a prompt (no start, end or padding) and their positions. */
const words = (backbone: BackboneShape, text: string) => {
  const encoded = backbone.tokenizer.encode(text)
  return Array.from({ length: encoded.length - 2 }, (_, i) => ({ position: i + 1, token: encoded.tokens[i + 1]! }))
}

/**
 * An image beside one heatmap per word token and the colour scale, enlarged. The maps are drawn on their
 * own, not blended with the image (a magenta ring showing through would read as attention).
 */
const tokenFigure = (backbone: BackboneShape, image: RgbImage, text: string, maps: TokenMaps) => {
  const tokens = words(backbone, text)
  const picture = enlarge(row([image, ...tokens.map((t) => heatmap(mapOf(maps, t.position), maps.height, maps.width, image, 1)), colourScale(image.height)]), SCALE)
  return { picture, tokens: tokens.map((t) => t.token) }
}

/** For each modifier and class word of `text`, the share of its map on its own object in `image`. */
const ownShares = (backbone: BackboneShape, image: RgbImage, text: string, maps: TokenMaps) =>
  ownObjectShares(image, words(backbone, text), (p) => mapOf(maps, p), maps.height, maps.width)

const program = Effect.fnUntraced(function*(options: DemoOptions, emit: (e: DemoEvent) => Effect.Effect<unknown>) {
  const { plan, out } = options
  const spec: BackboneSpec = { kind: "toy", options: { modifiers: plan.concepts.map((c) => c.modifier), weights: options.weights } }
  const planError = checkPlan(plan)
  if (planError !== undefined) return yield* planError
  const runtime = yield* TensorRuntime
  const t0 = yield* Clock.currentTimeMillis
  const work = workUnits(plan)
  const weightsFile = options.weights ?? ToyBackbone.builtinWeightsPath
  yield* emit({ _tag: "Started", seed: plan.seed, quick: plan.quick, weights: weightsFile, backend: runtime.backend, out, work: work.total })

  let done = 0
  // the rate is measured from the end of the first unit of work on: loading the model and the first
  // (warm-up) step would otherwise inflate the early estimates
  let rateStart: { readonly at: number; readonly done: number } | undefined
  const progress = (phase: DemoPhase, method: MethodName, detail: string, units: number) =>
    Effect.gen(function*() {
      done += units
      const now = yield* Clock.currentTimeMillis
      const elapsedSeconds = (now - t0) / 1000
      const rate = rateStart === undefined ? done / elapsedSeconds : (done - rateStart.done) / ((now - rateStart.at) / 1000)
      rateStart ??= { at: now, done }
      const etaSeconds = (work.total - done) / rate
      yield* emit({ _tag: "Progress", phase, method, detail, fraction: done / work.total, elapsedSeconds, etaSeconds })
    })
  const phase = (phase: DemoPhase, method: MethodName | null, description: string) => emit({ _tag: "Phase", phase, method, description })

  const figure = (name: string, picture: RgbImage, alt: string) =>
    Effect.gen(function*() {
      const f: Figure = { file: `figures/${name}.png`, png: encodePng(picture), alt }
      yield* writeFile(path.join(out, f.file), f.png)
      return f
    })

  return yield* Effect.gen(function*() {
    const backbone = yield* Backbone

    // ---- data ----
    yield* phase("prepare", null, "drawing the training image and the regularisation set")
    const data = trainingImage(plan)
    const imageFile = path.join(out, "training-image.png")
    yield* writeFile(imageFile, encodePng(data.image))
    const trainingFigure = yield* figure("training-image", enlarge(data.image, 2 * SCALE), data.caption)
    const regularization = regularizationSet(plan)
    const regularizationDir = regularization.length === 0 ? null : path.join(out, "regularization")
    if (regularizationDir !== null) {
      // a folder left by an earlier run with more images would not match the captions
      yield* Effect.promise(() => fs.rm(regularizationDir, { recursive: true, force: true }))
      for (const [i, r] of regularization.entries()) yield* writeFile(path.join(regularizationDir, `${String(i).padStart(4, "0")}.png`), encodePng(r.image))
      yield* writeFile(path.join(regularizationDir, "captions.txt"), regularization.map((r) => r.caption).join("\n") + "\n")
    }

    const prompts = plannedPrompts(plan)
    const flat = prompts.flatMap((p) => p.seeds.map((seed) => ({ prompt: p.prompt, seed })))
    const concepts = conceptMap(plan)
    const specs = new Map(prompts.map((p) => [p.prompt, Result.getOrThrow(parseCaption(p.prompt))]))
    const classPositions = conceptTokens(backbone.tokenizer, backbone.tokenizer.encode(data.caption).ids).map((c) => c.classes[0]!)

    // with two workers or more, the two methods train at once, each on a worker thread (the same
    // computation as in this thread); attention and sampling follow, their batches on the workers
    const workers = options.workers !== undefined && options.workers.count >= METHODS.length ? options.workers : undefined

    /** One method's personalisation: its last losses, pulls and time. */
    const personalise = (method: MethodName) => Effect.gen(function*() {
      const config = trainConfig(plan, method, { image: imageFile, regularization: regularizationDir, caption: data.caption })
      yield* phase("train", method, `personalising with ${methodLabel[method]}: ${config.steps} steps`)
      const tTrain = yield* Clock.currentTimeMillis
      let last = { loss: Number.NaN, base: Number.NaN, bind: null as number | null, separation: null as number | null }
      const termGradients: Array<TermGradients> = []
      const stepUnits = work.train / config.steps
      const onEvent = (e: TrainEvent) => {
        if (e._tag === "TermGradients") termGradients.push({ step: e.step, base: e.base, bind: e.bind, separation: e.separation, weight: e.weight })
        if (e._tag !== "Step") return Effect.void
        last = { loss: e.loss, base: e.base, bind: e.bind, separation: e.separation }
        return progress("train", method, `step ${e.step}/${e.totalSteps}`, stepUnits)
      }
      const run = { config, out: path.join(out, method), termGradientsEvery: TERM_GRADIENTS_EVERY }
      yield* workers !== undefined
        ? workers.trainRun(spec, run, onEvent)
        : train(run).pipe(
          Stream.runForEach(onEvent),
          Effect.provide(trainingServices(config))
        )
      return {
        ...last,
        termGradients,
        checkpoint: path.join(method, "checkpoint.msgpack"),
        seconds: ((yield* Clock.currentTimeMillis) - tTrain) / 1000
      }
    })

    /** One trained method's attention on the training image, samples and scores. */
    const evaluate = (method: MethodName, training: Effect.Success<ReturnType<typeof personalise>>) => Effect.gen(function*() {
      return yield* Effect.scoped(Effect.gen(function*() {
        const snapshot = yield* loadCheckpoint(checkpointPath(path.join(out, method)))
        const trained = yield* Effect.acquireRelease(
          Effect.sync(() => toTensors(snapshot.trainable)),
          (m) => Effect.sync(() => tf.dispose([...m.values()]))
        )

        // ---- attention on the training image ----
        yield* phase("attention", method, "reading the attention maps of the training image")
        const maps = yield* imageAttention(backbone, makeWeights(backbone.parameters.frozen, trained), {
          image: data.image,
          caption: data.caption,
          timesteps: plan.attentionTimesteps,
          seed: plan.seed,
          selection: defaultSelection
        })
        const overlap = attentionOverlap(mapOf(maps, classPositions[0]!), mapOf(maps, classPositions[1]!))
        const attention = tokenFigure(backbone, data.image, data.caption, maps)
        const trainingShares = meanShares([ownShares(backbone, data.image, data.caption, maps)])
        const attentionFigure = yield* figure(`attention-training-${method}`, attention.picture, `${methodLabel[method]}: attention of each token on the training image`)

        // ---- sample ----
        yield* phase("sample", method, `sampling ${flat.length} images (${prompts.length} prompts x ${plan.sampling.seedsPerPrompt} seeds)`)
        const rowsPerImage = plan.sampling.guidance === 1 ? 1 : 2
        const sampled = yield* sampleJob(backbone, {
          prompts: flat.map((f) => f.prompt),
          seeds: flat.map((f) => f.seed),
          steps: plan.sampling.steps,
          guidance: plan.sampling.guidance,
          eta: 0,
          trained: snapshot.trainable,
          batchSize: plan.sampling.batchSize,
          attention: { selection: defaultSelection }
        }, {
          workers: workers?.sample(spec),
          onStep: (i, n, first) => {
            const size = Math.min(plan.sampling.batchSize, flat.length - first)
            return progress("sample", method, `images ${first + 1}-${first + size} of ${flat.length}, step ${i}/${n}`, size * rowsPerImage)
          }
        })
        // the maps of each image, averaged over the sampling steps
        const sampleMaps: Array<TokenMaps> = []
        for (const { first, maps, height, width, layers } of sampled.maps) {
          const [b, , T] = maps.shape as [number, number, number]
          const per = maps.data.length / b
          for (let k = 0; k < b; k++) {
            const data = maps.data.slice(k * per, (k + 1) * per).map((v) => v / plan.sampling.steps)
            sampleMaps[first + k] = { data, tokens: T, height, width, layers }
          }
        }
        const scores = sampled.images.map((img, i) => scoreImage(img, specs.get(flat[i]!.prompt)!, concepts))
        const sampleShares = meanShares(sampled.images.map((img, i) => ownShares(backbone, img, flat[i]!.prompt, sampleMaps[i]!)))
        return {
          training,
          overlap,
          attention: { figure: attentionFigure, tokens: attention.tokens },
          attentionOnOwnObject: { training: trainingShares, samples: sampleShares },
          scores,
          samples: sampled.images,
          sampleMaps
        }
      }))
    })
    const results = workers !== undefined
      ? yield* Effect.all(byMethod(personalise), { concurrency: "unbounded" }).pipe(
        Effect.flatMap((trained) => Effect.all(byMethod((m) => evaluate(m, trained[m]))))
      )
      // one method after the other, in plan order
      : yield* Effect.all(byMethod((m) => Effect.flatMap(personalise(m), (t) => evaluate(m, t))))

    // ---- figures, metrics, report ----
    yield* phase("report", null, "writing the figures, metrics.json and report.html")
    const imagesOf = (p: PlannedPrompt) => ({ start: p.first, end: p.first + p.seeds.length })
    const promptFigures: Array<{ readonly planned: PlannedPrompt; readonly methods: Record<MethodName, { readonly grid: Figure; readonly attention: TokenFigure }> }> = []
    for (const p of prompts) {
      const { start, end } = imagesOf(p)
      const methods = yield* Effect.all(byMethod((method) =>
        Effect.gen(function*() {
          const r = results[method]
          const name = `${method}-${p.group}-${p.index + 1}`
          const grid = yield* figure(`samples-${name}`, enlarge(row(r.samples.slice(start, end)), SCALE), `${methodLabel[method]}: "${p.prompt}", seeds ${p.seeds.join(", ")}`)
          const att = tokenFigure(backbone, r.samples[start]!, p.prompt, r.sampleMaps[start]!)
          const attFigure = yield* figure(`attention-${name}`, att.picture, `${methodLabel[method]}: attention of each token while sampling "${p.prompt}" (seed ${p.seeds[0]})`)
          return { grid, attention: { figure: attFigure, tokens: att.tokens } }
        })
      ))
      promptFigures.push({ planned: p, methods })
    }
    const overview = yield* figure(
      "overview",
      column(METHODS.map((m) => enlarge(row(prompts.map((p) => results[m].samples[imagesOf(p).start]!)), SCALE))),
      "the first seed of every prompt: DisenDiff above, the baseline below"
    )

    const summary = byMethod((m): MethodSummary => {
      const group = (g: GroupName) =>
        summarise(prompts.filter((p) => p.group === g).flatMap((p) => {
          const { start, end } = imagesOf(p)
          return results[m].scores.slice(start, end)
        }))
      return {
        combined: group("combined"),
        concept1: group("concept1"),
        concept2: group("concept2"),
        attentionOverlap: results[m].overlap,
        attentionOnOwnObject: results[m].attentionOnOwnObject
      }
    })
    const seconds = ((yield* Clock.currentTimeMillis) - t0) / 1000
    const metrics: DemoMetrics = {
      seed: plan.seed,
      quick: plan.quick,
      weights: { file: weightsFile, model: backbone.info.name, identity: backbone.info.identity, builtin: weightsFile === ToyBackbone.builtinWeightsPath },
      backend: runtime.backend,
      seconds,
      plan,
      caption: data.caption,
      summary,
      training: byMethod((m) => results[m].training),
      prompts: prompts.map((p) => {
        const { start, end } = imagesOf(p)
        return {
          group: p.group,
          prompt: p.prompt,
          seeds: p.seeds,
          methods: byMethod((m) => {
            const scores = results[m].scores.slice(start, end)
            return { ...summarise(scores), perImage: scores.map((s, k) => ({ seed: p.seeds[k]!, ...s })) }
          })
        }
      })
    }
    const metricsFile = path.join(out, "metrics.json")
    yield* writeFile(metricsFile, JSON.stringify(metrics, null, 2) + "\n")
    const reportFile = path.join(out, "report.html")
    yield* writeFile(reportFile, renderReport({
      metrics,
      trainingImage: trainingFigure,
      overview,
      trainingAttention: byMethod((m) => results[m].attention),
      prompts: promptFigures
    }))
    yield* emit({ _tag: "Finished", out, report: reportFile, metrics: metricsFile, seconds, summary })
  }).pipe(
    Effect.provide(backboneSpecLayer(spec))
  )
})
