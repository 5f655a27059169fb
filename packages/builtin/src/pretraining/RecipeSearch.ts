/**
 * Recipe search for the built-in model (issue 6, item 4): short pretraining runs of equal compute (same
 * model, same number of samples, same data order) that differ in one choice each, compared by the
 * world's evaluator; and sampler settings compared on one checkpoint. Runs are resumable: a variant
 * whose checkpoint already reached its steps is read, not retrained, and its evaluation is cached.
 */
import { Effect, Stream } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { load as loadCheckpoint } from "@disendiff/core/checkpoint/Checkpoints.js"
import { type Snapshot, snapshotDigest } from "@disendiff/core/checkpoint/Snapshot.js"
import { makeToyBackbone } from "../backbone/ToyBackbone.js"
import { toyModelConfig } from "../models/ToyModel.js"
import type { SamplingOptions } from "@disendiff/core/schedule/Schedulers.js"
import { tf } from "@disendiff/core/tensor/Tf.js"
import { type Evaluation, evaluate, type Rates } from "./Evaluate.js"
import { pretrain, pretrainCheckpointPath } from "./Pretrain.js"
import { defaultPretrainConfig, type PretrainConfig } from "./PretrainConfig.js"
import { toTensors } from "@disendiff/core/checkpoint/HostTensors.js"

export interface RecipeVariant {
  readonly name: string
  readonly change: string
  readonly overrides: Partial<PretrainConfig>
  /** Batch times this, steps divided by it: the same samples. */
  readonly batchMultiplier?: number
  /** Also evaluate the raw (non-averaged) weights: what the EMA buys. */
  readonly evaluateRaw?: boolean
}

const v = defaultPretrainConfig.recipe!

/** One change at a time from the built-in model's recipe (the first row). */
export const recipeVariants: ReadonlyArray<RecipeVariant> = [
  { name: "base", change: "the built-in recipe: v-prediction, scaled_linear + zero terminal SNR, lr 1e-3", overrides: {}, evaluateRaw: true },
  { name: "epsilon", change: "epsilon prediction on SD's scaled_linear (SD 1.x)", overrides: { recipe: { predictionType: "epsilon", betaSchedule: "scaled_linear", zeroTerminalSnr: false } } },
  { name: "x0", change: "x0 (sample) prediction", overrides: { recipe: { ...v, predictionType: "sample" } } },
  { name: "no-ztsnr", change: "scaled_linear without zero terminal SNR", overrides: { recipe: { ...v, zeroTerminalSnr: false } } },
  { name: "cosine", change: "cosine schedule (squaredcos_cap_v2)", overrides: { recipe: { ...v, betaSchedule: "squaredcos_cap_v2", zeroTerminalSnr: false } } },
  { name: "linear", change: "linear schedule + zero terminal SNR", overrides: { recipe: { ...v, betaSchedule: "linear" } } },
  { name: "lr-3e-4", change: "learning rate 3e-4", overrides: { learningRate: 3e-4 } },
  { name: "lr-3e-3", change: "learning rate 3e-3", overrides: { learningRate: 3e-3 } },
  { name: "no-min-snr", change: "min-SNR weighting off (gamma 1e6, no floor)", overrides: { minSnrGamma: 1e6, snrWeightFloor: 0 } },
  { name: "batch-x2", change: "batch doubled, half the steps", overrides: {}, batchMultiplier: 2 }
]

export interface SearchOptions {
  readonly out: string
  /** Optimizer steps of every run (batch-x2 takes half as many). */
  readonly steps: number
  readonly batchSize: number
  /** Held-out prompts per group for the final evaluation. */
  readonly evalSamples: number
  readonly only?: ReadonlyArray<string> | undefined
  readonly onRun?: ((name: string, event: string) => Effect.Effect<void>) | undefined
}

export interface RecipeResult {
  readonly variant: RecipeVariant
  readonly steps: number
  readonly samples: number
  readonly seconds: number
  readonly ema: Evaluation
  /** The raw (non-averaged) weights, where the variant asks for them. */
  readonly raw: Evaluation | undefined
}

export const variantConfig = (o: SearchOptions, variant: RecipeVariant): PretrainConfig => {
  const k = variant.batchMultiplier ?? 1
  const steps = Math.round(o.steps / k)
  return {
    ...defaultPretrainConfig,
    batchSize: k * o.batchSize,
    gradientAccumulation: 1,
    // fixed, so that a search rerun with more steps extends its runs exactly (25: a tenth of the default 250)
    warmupSteps: Math.round(25 / k),
    checkpointEvery: 50,
    evalEvery: 0,
    ...variant.overrides,
    steps
  }
}

/** Mean of the per-attribute rates over both groups: the search's score (all-correct is near 0 early). */
export const attributeScore = (e: Evaluation) => {
  const parts = (r: Rates) => [r.count, r.shapes, r.colours, r.background]
  const xs = [...parts(e.oneObject), ...parts(e.twoObjects)]
  return xs.reduce((a, x) => a + x, 0) / xs.length
}

const evaluateSnapshot = (s: Snapshot, which: "ema" | "raw", n: number, sampling?: Partial<SamplingOptions>, steps = 25, guidance = 4) =>
  Effect.gen(function*() {
    const config = s.header.config as PretrainConfig
    const base = toyModelConfig(config.size, config.recipe)
    const cfg = { ...base, sampling: { ...base.sampling, ...sampling } }
    const params = toTensors(which === "ema" ? s.ema ?? s.trainable : s.trainable)
    const backbone = makeToyBackbone(cfg, params, { modifiers: [], name: which, identity: which })
    const e = yield* evaluate(backbone, { n, steps, guidance, seed: 1000 }).pipe(Effect.ensuring(Effect.sync(() => tf.dispose([...params.values()]))))
    return { oneObject: e.oneObject, twoObjects: e.twoObjects } satisfies Evaluation
  })

export const runRecipeSearch = (o: SearchOptions) =>
  Effect.gen(function*() {
    const results: Array<RecipeResult> = []
    for (const variant of recipeVariants) {
      if (o.only !== undefined && !o.only.includes(variant.name)) continue
      const out = path.join(o.out, variant.name)
      const config = variantConfig(o, variant)
      const file = pretrainCheckpointPath(out)
      const exists = yield* Effect.promise(() => fs.access(file).then(() => true, () => false))
      const previous = exists ? yield* loadCheckpoint(file) : undefined
      if (previous === undefined || previous.header.step < config.steps) {
        yield* o.onRun?.(variant.name, previous === undefined ? "training" : `resuming at step ${previous.header.step}`) ?? Effect.void
        yield* pretrain({ config, out, resume: previous === undefined ? undefined : { path: file, snapshot: previous } }).pipe(Stream.runDrain)
      }
      const s = yield* loadCheckpoint(file)
      const seconds = (s.header as unknown as { pretraining?: { seconds?: number } }).pretraining?.seconds ?? 0
      // evaluations are kept beside the checkpoint, keyed by its digest and the prompt count
      const key = `${snapshotDigest(s)}/${o.evalSamples}`
      const cacheFile = path.join(out, "evaluation.json")
      const cached = yield* Effect.promise(() => fs.readFile(cacheFile, "utf8").then((t) => JSON.parse(t) as { key: string; ema: Evaluation; raw?: Evaluation }, () => undefined))
      const wantRaw = variant.evaluateRaw === true
      const fresh = cached !== undefined && cached.key === key && (!wantRaw || cached.raw !== undefined)
      if (!fresh) yield* o.onRun?.(variant.name, "evaluating") ?? Effect.void
      const ema = fresh ? cached.ema : yield* evaluateSnapshot(s, "ema", o.evalSamples)
      const raw = !wantRaw ? undefined : fresh ? cached.raw : yield* evaluateSnapshot(s, "raw", o.evalSamples)
      if (!fresh) yield* Effect.promise(() => fs.writeFile(cacheFile, JSON.stringify({ key, ema, raw })))
      results.push({ variant, steps: s.header.step, samples: s.header.step * config.batchSize, seconds, ema, raw })
    }
    return results
  })

export interface SamplerVariant {
  readonly name: string
  readonly steps: number
  readonly guidance: number
  readonly sampling: Partial<SamplingOptions>
}

/** DDIM settings around the built-in defaults (25 steps, guidance 4, trailing spacing, x0 clipped). */
export const samplerVariants: ReadonlyArray<SamplerVariant> = [
  { name: "default: 25 steps, guidance 4, x0 clipped", steps: 25, guidance: 4, sampling: {} },
  { name: "x0 not clipped", steps: 25, guidance: 4, sampling: { clipSample: null, useClippedModelOutput: false } },
  { name: "x0 clipped, noise estimate kept", steps: 25, guidance: 4, sampling: { useClippedModelOutput: false } },
  { name: "leading spacing (SD's default)", steps: 25, guidance: 4, sampling: { spacing: "leading", stepsOffset: 1, setAlphaToOne: false } },
  { name: "guidance 1 (none)", steps: 25, guidance: 1, sampling: {} },
  { name: "guidance 2", steps: 25, guidance: 2, sampling: {} },
  { name: "guidance 7.5", steps: 25, guidance: 7.5, sampling: {} },
  { name: "10 steps", steps: 10, guidance: 4, sampling: {} },
  { name: "50 steps", steps: 50, guidance: 4, sampling: {} }
]

export const runSamplerSearch = (checkpoint: string, n: number) =>
  Effect.gen(function*() {
    const s = yield* loadCheckpoint(checkpoint)
    const rows: Array<{ readonly variant: SamplerVariant; readonly evaluation: Evaluation }> = []
    for (const variant of samplerVariants) {
      rows.push({ variant, evaluation: yield* evaluateSnapshot(s, "ema", n, variant.sampling, variant.steps, variant.guidance) })
    }
    return { step: s.header.step, rows }
  })

const pct = (x: number) => `${(100 * x).toFixed(0)}%`
const cells = (e: Evaluation) =>
  [e.oneObject.count, e.oneObject.shapes, e.oneObject.colours, e.oneObject.background, e.oneObject.allCorrect, e.twoObjects.allCorrect].map(pct).join(" | ")

export const recipeMarkdown = (results: ReadonlyArray<RecipeResult>, o: SearchOptions, backend: string) => [
  `Equal-compute runs from scratch (${o.steps} steps of batch ${o.batchSize}, ${o.steps * o.batchSize} samples each, warm-up 25 steps, the same data order and initial weights), ` +
  `then ${o.evalSamples} held-out prompts per group sampled from the EMA weights (DDIM 25 steps, guidance 4) and scored by the evaluator; ` +
  `"score" is the mean of count, shape, colour and background rates over both groups (all-correct rates are near zero this early). ` +
  `Minutes: training time while the machine also ran the long pretraining. Measured on ${backend} by \`disendiff recipe-search --out ${o.out} --steps ${o.steps} --batch ${o.batchSize} --n ${o.evalSamples}\`.`,
  "",
  "| variant | change | 1-obj count | 1-obj shape | 1-obj colour | 1-obj bg | 1-obj all | 2-obj all | score (EMA) | score (raw weights) | minutes |",
  "|---|---|---|---|---|---|---|---|---|---|---|",
  ...results.map((r) =>
    `| ${r.variant.name} | ${r.variant.change} | ${cells(r.ema)} | ${attributeScore(r.ema).toFixed(3)} | ${r.raw === undefined ? "" : attributeScore(r.raw).toFixed(3)} | ${(r.seconds / 60).toFixed(1)} |`
  )
].join("\n")

export const samplerMarkdown = (r: { readonly step: number; readonly rows: ReadonlyArray<{ readonly variant: SamplerVariant; readonly evaluation: Evaluation }> }, checkpoint: string, n: number) => [
  `Sampler settings on the long run's EMA weights at step ${r.step} (\`${path.basename(checkpoint)}\`), ${n} held-out prompts per group, the same seeds for every row.`,
  "",
  "| sampler | 1-obj count | 1-obj shape | 1-obj colour | 1-obj bg | 1-obj all | 2-obj all | score |",
  "|---|---|---|---|---|---|---|---|",
  ...r.rows.map((x) => `| ${x.variant.name} | ${cells(x.evaluation)} | ${attributeScore(x.evaluation).toFixed(3)} |`)
].join("\n")
