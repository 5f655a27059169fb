/**
 * One cell of the comparison on the built-in model: train the method with the grid seed (resuming what an
 * interrupted run left), read its attention on the training image, sample every prompt with the seeds
 * every method shares, score each image with the world's evaluator, and store the samples, the attention
 * figure and `result.json` (written last) in `OUT/runs/<method>/seed-<s>/`.
 *
 * A stored result carries the key of the settings that made it; a cell whose folder holds another key is
 * refused, so a grid never mixes numbers of two settings.
 */
import { Effect, Result, Schema } from "effect"
import { createHash } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { defaultSelection } from "@disendiff/core/attention/AttentionProbe.js"
import { probeSelection } from "@disendiff/core/loss/LossCalibrator.js"
import { imageAttention, mapOf, type TokenMaps } from "@disendiff/core/attention/ImageAttention.js"
import { Backbone, type BackboneShape, type ModelError } from "@disendiff/core/backbone/Backbone.js"
import { load as loadCheckpoint, type CheckpointError } from "@disendiff/core/checkpoint/Checkpoints.js"
import { toTensors } from "@disendiff/core/checkpoint/HostTensors.js"
import { readJson, trainCell, writeJsonAtomic } from "@disendiff/core/compare/Cell.js"
import { cellName, type GridCell } from "@disendiff/core/compare/Grid.js"
import { colourScale, enlarge, heatmap, row } from "@disendiff/core/image/Heatmap.js"
import { encodePng, readImage, type RgbImage } from "@disendiff/core/image/Image.js"
import { makeWeights } from "@disendiff/core/nn/Weights.js"
import { sample } from "@disendiff/core/sampling/Sampler.js"
import type { TensorRuntime } from "@disendiff/core/tensor/TensorRuntime.js"
import { tf } from "@disendiff/core/tensor/Tf.js"
import { conceptTokens } from "@disendiff/core/training/Prompt.js"
import type { TrainError } from "@disendiff/core/training/Trainer.js"
import * as ToyBackbone from "../backbone/ToyBackbone.js"
import { conceptMap, type GroupName } from "../demo/DemoPlan.js"
import { type AttentionShares, attentionOverlap, meanShares, ownObjectShares, scoreImage } from "../demo/Metrics.js"
import { parseCaption } from "../world/Caption.js"
import { novelAppearance } from "../world/NovelAppearance.js"
import { cellConfig, cellPrompts, type ComparePlan } from "./ComparePlan.js"

export interface ImageRecord {
  readonly group: GroupName
  /** The prompt's position among all prompts. */
  readonly prompt: number
  readonly seed: number
  readonly imageAlignment: number
  readonly textAlignment: number
  readonly leaked: boolean
  readonly allCorrect: boolean
}

export interface CellResult {
  readonly key: string
  readonly method: string
  readonly seed: number
  /** The last training step's loss terms (from the checkpoint's history). */
  readonly training: { readonly steps: number; readonly loss: number; readonly base: number; readonly bind: number | null; readonly separation: number | null }
  /** Soft IoU of the two class words' maps on the training image. */
  readonly attentionOverlap: number
  readonly attentionOnOwnObject: AttentionShares
  readonly images: ReadonlyArray<ImageRecord>
}

/** A cell folder holding a run of other settings, or an unusable output folder. */
export class CompareOutputError extends Schema.TaggedError<CompareOutputError>()("CompareOutputError", {
  path: Schema.String,
  reason: Schema.String,
  fix: Schema.String
}) {
  override get message() {
    return `${this.path}: ${this.reason}. Fix: ${this.fix}`
  }
}

/** A cell that failed elsewhere (a worker thread): its error's one line. */
export class CellFailed extends Schema.TaggedError<CellFailed>()("CellFailed", { reason: Schema.String }) {
  override get message() {
    return this.reason
  }
}

export type CellError = TrainError | ModelError | CheckpointError | CompareOutputError | CellFailed

export const cellDir = (out: string, cell: GridCell) => path.join(out, "runs", cell.method, `seed-${cell.seed}`)

/** What a cell's numbers depend on: its training configuration, the prompts and sampling, the weights. */
export const cellKey = (plan: ComparePlan, cell: GridCell, out: string, caption: string, weightsDigest: string): string => {
  const config = cellConfig(plan, cell.method, cell.seed, out, caption)
  const { image: _image, regularization, checkpointEvery: _every, ...rest } = config
  return createHash("sha256").update(JSON.stringify({
    config: { ...rest, regularization: { ...regularization, dir: regularization.dir === null ? null : "data" } },
    prompts: cellPrompts(plan, cell.seed),
    sampling: plan.demo.sampling,
    attentionTimesteps: plan.demo.attentionTimesteps,
    weights: weightsDigest,
    // the all-resolutions ablation trained on the 16x16 maps until 2026-11-30 (its probe was not
    // wired): its key names the maps it now records, so an earlier run is refused, not reused
    ...(config.calibration.maps === "16x16" ? {} : { trainingProbe: probeSelection(config.calibration) })
  })).digest("hex")
}

export interface CellContext {
  readonly plan: ComparePlan
  /** Absolute output folder. */
  readonly out: string
  readonly caption: string
  /** SHA-256 of the weights file. */
  readonly weightsDigest: string
  readonly weights?: string | undefined
}

export const loadCell = (ctx: CellContext, cell: GridCell) =>
  Effect.gen(function*() {
    const file = path.join(cellDir(ctx.out, cell), "result.json")
    const stored = yield* readJson<CellResult>(file)
    if (stored === undefined) return undefined
    const key = cellKey(ctx.plan, cell, ctx.out, ctx.caption, ctx.weightsDigest)
    if (stored.key !== key) {
      return yield* new CompareOutputError({
        path: file,
        reason: `${cellName(cell)} was run with other settings (another model, --quick or plan)`,
        fix: "give another --out, or remove that run's folder"
      })
    }
    return stored
  })

/** The word tokens of a prompt (no start, end or padding) and their positions. */
const words = (backbone: BackboneShape, text: string) => {
  const encoded = backbone.tokenizer.encode(text)
  return Array.from({ length: encoded.length - 2 }, (_, i) => ({ position: i + 1, token: encoded.tokens[i + 1]! }))
}

/** The training image beside one heatmap per word token and the colour scale, 4x. */
export const attentionFigure = (backbone: BackboneShape, image: RgbImage, text: string, maps: TokenMaps) =>
  enlarge(row([image, ...words(backbone, text).map((t) => heatmap(mapOf(maps, t.position), maps.height, maps.width, image, 1)), colourScale(image.height)]), 4)

export const runCell = (
  ctx: CellContext,
  cell: GridCell,
  progress: (fraction: number, detail: string) => Effect.Effect<void>,
  cost: { readonly prepare: number; readonly train: number; readonly total: number }
): Effect.Effect<CellResult, CellError, TensorRuntime> =>
  Effect.gen(function*() {
    const { plan } = ctx
    const dir = cellDir(ctx.out, cell)
    const config = cellConfig(plan, cell.method, cell.seed, ctx.out, ctx.caption)
    const modifiers = plan.demo.concepts.map((c) => c.modifier)
    return yield* Effect.gen(function*() {
      const backbone = yield* Backbone
      // ---- train (or resume, or nothing when the checkpoint is finished) ----
      // training's share of the cell's cost, class images first
      const trainShare = cost.train / cost.total
      const prepareShare = cost.prepare / cost.total
      yield* trainCell({
        config,
        out: dir,
        onPreparing: (fraction, images) => progress(prepareShare * fraction, `class images ${Math.round(100 * fraction)}% of ${images}`),
        onStep: (step, total) => progress(prepareShare + (trainShare - prepareShare) * step / total, `step ${step}/${total}`)
      })
      const snapshot = yield* loadCheckpoint(path.join(dir, "checkpoint.msgpack"))
      const lastRecord = snapshot.header.lossHistory.at(-1)
      return yield* Effect.scoped(Effect.gen(function*() {
        const trained = yield* Effect.acquireRelease(Effect.sync(() => toTensors(snapshot.trainable)), (m) => Effect.sync(() => tf.dispose([...m.values()])))
        const weights = makeWeights(backbone.parameters.frozen, trained)
        // ---- attention on the training image ----
        const image = yield* readImage(config.image)
        const maps = yield* imageAttention(backbone, weights, {
          image,
          caption: ctx.caption,
          timesteps: plan.demo.attentionTimesteps,
          seed: plan.demo.seed,
          selection: defaultSelection
        })
        const classes = conceptTokens(backbone.tokenizer, backbone.tokenizer.encode(ctx.caption).ids).map((c) => c.classes[0]!)
        const overlap = attentionOverlap(mapOf(maps, classes[0]!), mapOf(maps, classes[1]!))
        const shares = meanShares([ownObjectShares(image, words(backbone, ctx.caption), (p) => mapOf(maps, p), maps.height, maps.width)])
        yield* writeBytes(path.join(dir, "attention-training.png"), encodePng(attentionFigure(backbone, image, ctx.caption, maps)))

        // ---- sample every prompt with the shared seeds ----
        const prompts = cellPrompts(plan, cell.seed)
        const flat = prompts.flatMap((p, i) => p.seeds.map((seed) => ({ prompt: p.prompt, group: p.group, index: i, seed })))
        const s = plan.demo.sampling
        const sampled = yield* sample(backbone, {
          prompts: flat.map((f) => f.prompt),
          seeds: flat.map((f) => f.seed),
          steps: s.steps,
          guidance: s.guidance,
          eta: 0,
          trained,
          batchSize: s.batchSize,
          onStep: (i, n, first) =>
            progress(
              trainShare + (1 - trainShare) * (first + (i / n) * Math.min(s.batchSize, flat.length - first)) / flat.length,
              `images ${first + 1}-${Math.min(first + s.batchSize, flat.length)} of ${flat.length}, step ${i}/${n}`
            )
        })
        const concepts = conceptMap(plan.demo)
        const specs = new Map(prompts.map((p) => [p.prompt, Result.getOrThrow(parseCaption(p.prompt))]))
        const images = sampled.images.map((img, k): ImageRecord => {
          const f = flat[k]!
          const score = scoreImage(img, specs.get(f.prompt)!, concepts)
          return { group: f.group, prompt: f.index, seed: f.seed, ...score }
        })
        for (const [k, img] of sampled.images.entries()) yield* writeBytes(path.join(dir, "samples", `${String(k).padStart(3, "0")}.png`), encodePng(img))
        const result: CellResult = {
          key: cellKey(plan, cell, ctx.out, ctx.caption, ctx.weightsDigest),
          method: cell.method,
          seed: cell.seed,
          training: {
            steps: snapshot.header.step,
            loss: lastRecord?.loss ?? Number.NaN,
            base: lastRecord?.base ?? Number.NaN,
            bind: lastRecord?.bind ?? null,
            separation: lastRecord?.separation ?? null
          },
          attentionOverlap: overlap,
          attentionOnOwnObject: shares,
          images
        }
        yield* writeJsonAtomic(path.join(dir, "result.json"), result)
        return result
      }))
    }).pipe(
      Effect.provide(ToyBackbone.layer({
        modifiers,
        trainable: config.trainable,
        modifierInit: config.modifierInit,
        classWords: plan.demo.concepts.map((c) => novelAppearance(c.concept).shape),
        weights: ctx.weights
      }))
    )
  })

const writeBytes = (file: string, bytes: Uint8Array) =>
  Effect.tryPromise({
    try: async () => {
      await fs.mkdir(path.dirname(file), { recursive: true })
      await fs.writeFile(file, bytes)
    },
    catch: (e) => new CompareOutputError({ path: file, reason: `cannot write (${String(e)})`, fix: "check the output folder, its permissions and the free disk space" })
  })
