/**
 * The demo's fixed plan: which two novel concepts the training image holds, the personalisation
 * hyperparameters shared by both methods, the prompts of the paper's three groups (both concepts,
 * concept 1 alone, concept 2 alone) and the sampling settings. Everything that decides the demo's
 * numbers is fixed here and printed in its report, so a result can be reproduced and no run is
 * tuned on its own outcome; only the seed may change (several seeds: `seedTable`).
 */
import { Result } from "effect"
import { ablations, type CalibrationConfig } from "@disendiff/core/loss/LossCalibrator.js"
import { builtinCalibration, defaultTrainConfig, type TrainConfig } from "@disendiff/core/training/TrainConfig.js"
import { CaptionError, parseCaption } from "../world/Caption.js"
import { type NovelName, novelAppearance } from "../world/NovelAppearance.js"
import type { WorldAugmentOptions } from "../world/Augment.js"
import type { BackgroundName } from "../world/Vocabulary.js"

/** The demo's seed: the training image's layout, the training run and the sampling seeds derive from it. */
export const DEMO_SEED = 7

export const GROUPS = ["combined", "concept1", "concept2"] as const
export type GroupName = (typeof GROUPS)[number]

export const groupLabel: Readonly<Record<GroupName, string>> = {
  combined: "both concepts",
  concept1: "concept 1 alone",
  concept2: "concept 2 alone"
}

export const METHODS = ["disendiff", "baseline"] as const
export type MethodName = (typeof METHODS)[number]

/** One value per method. */
export const byMethod = <A>(f: (method: MethodName) => A): Record<MethodName, A> => ({ disendiff: f("disendiff"), baseline: f("baseline") })

export const methodLabel: Readonly<Record<MethodName, string>> = {
  disendiff: "DisenDiff",
  baseline: "Custom Diffusion (baseline)"
}

/**
 * DisenDiff with the built-in model's calibration (the official one at weight 0.1: docs/method.md); the
 * baseline is the same run with calibration off.
 */
export const methodCalibration: Readonly<Record<MethodName, CalibrationConfig>> = {
  disendiff: builtinCalibration,
  baseline: { ...builtinCalibration, ...ablations["custom-diffusion"] }
}

export interface DemoConcept {
  readonly modifier: string
  readonly concept: NovelName
}

export interface TrainingSettings {
  readonly steps: number
  /** Not scaled by the batch size. */
  readonly learningRate: number
  readonly batchSize: number
  readonly gradientAccumulation: number
  /** World renders of the concepts' classes with unnamed variation (Custom Diffusion's regularisation set); 0: none. */
  readonly regularizationImages: number
  /** The training image re-composited as other world images with matching captions (`world/Augment.ts`). */
  readonly augment: WorldAugmentOptions
}

export interface SamplingSettings {
  readonly steps: number
  readonly guidance: number
  readonly seedsPerPrompt: number
  /** Images per denoiser call. */
  readonly batchSize: number
}

export interface DemoPlan {
  readonly seed: number
  readonly quick: boolean
  /** Left to right in the training image. */
  readonly concepts: ReadonlyArray<DemoConcept>
  readonly background: BackgroundName
  readonly training: TrainingSettings
  readonly sampling: SamplingSettings
  /** Noise levels at which the attention maps of the training image are read (and averaged). */
  readonly attentionTimesteps: ReadonlyArray<number>
  readonly prompts: Readonly<Record<GroupName, ReadonlyArray<string>>>
}

/**
 * Personalisation hyperparameters, chosen before the built-in model's weights existed (on stand-in
 * weights, for time only): the full demo should take at most 10 minutes and `--quick` at most 3 on
 * the project's 2-core machine. Tune them once the real model is in (docs/demo.md).
 * - lr 2e-3 unscaled and 800 steps (since 2026-11-30, on the world v2 model): on validation seeds
 *   101-103 of `train` on the demo's image (never demo or report seeds), the ring alone was shown on
 *   the three backgrounds in 28% of samples after 800 steps at 1e-3 and 43% at 2e-3 (8 per background
 *   and seed; paired differences -5, +37, +12 points), and in 4% after 400 steps at 1e-3 (seed 101);
 *   1200 steps added nothing visible (docs/built-in-model.md). The prototype
 *   (docs/reference/builtin-model-prototype.md) had found 8e-5 to 1e-4 barely moved a model of this
 *   size. 800 steps keep the full demo within its 10 minutes. 60 steps for `--quick`, a smoke run.
 * - batch 4, no accumulation: 0.2-0.6 s per step with attention probing on the shared 2-core machine
 *   (wasm, stand-in weights of the built-in model's size, depending on the machine's other load). Two
 *   micro-batches of 2 on two worker threads were measured and not taken (issue 13): 0.30 s a step
 *   against 0.35 s for one batch of 4, as each micro-batch pays the ~1000-kernel dispatch of a pass;
 *   with workers the two methods train at once instead (`Demo.ts`).
 * - 64 regularisation renders: the official recipe mixes 200 retrieved class images with the target.
 * - world augmentation on (background, size with size words, translation, flip with the caption's order
 *   swapped): one image is one layout, and without it concept-alone prompts on other backgrounds
 *   collapsed to blobs (issue 11's controlled experiment). Resizing needs a world v2 model's size words
 *   and is skipped by a v1 model.
 */
const AUGMENT: WorldAugmentOptions = { background: true, resize: true, translate: true, flip: true }
const TRAINING: { readonly full: TrainingSettings; readonly quick: TrainingSettings } = {
  full: { steps: 800, learningRate: 2e-3, batchSize: 4, gradientAccumulation: 1, regularizationImages: 64, augment: AUGMENT },
  quick: { steps: 60, learningRate: 2e-3, batchSize: 4, gradientAccumulation: 1, regularizationImages: 64, augment: AUGMENT }
}

/** DDIM with trailing spacing (the built-in model's default); guidance 4 as the built-in model's evaluation uses. */
const SAMPLING: { readonly full: SamplingSettings; readonly quick: SamplingSettings } = {
  full: { steps: 25, guidance: 4, seedsPerPrompt: 4, batchSize: 8 },
  quick: { steps: 15, guidance: 4, seedsPerPrompt: 2, batchSize: 8 }
}

/**
 * The paper's three prompt groups in the world's words: five prompts each, with backgrounds, other
 * named objects and (for the single concepts) the other concept's class word as a named object, which
 * is where leakage shows. `<v1>` is the ring circle, `<v2>` the split square.
 */
const PROMPTS: Readonly<Record<GroupName, ReadonlyArray<string>>> = {
  combined: [
    "a <v1> circle and a <v2> square on a gray background",
    "a <v1> circle and a <v2> square on a black background",
    "a <v1> circle and a <v2> square on a white background",
    "a <v2> square and a <v1> circle on a gray background",
    "a <v2> square and a <v1> circle on a black background"
  ],
  concept1: [
    "a <v1> circle on a black background",
    "a <v1> circle on a white background",
    "a <v1> circle on a gray background",
    "a <v1> circle and a red triangle on a white background",
    "a <v1> circle and a purple square on a black background"
  ],
  concept2: [
    "a <v2> square on a black background",
    "a <v2> square on a white background",
    "a <v2> square on a gray background",
    "a <v2> square and a blue diamond on a white background",
    "a green circle and a <v2> square on a black background"
  ]
}

export const demoPlan = (o: { readonly seed?: number | undefined; readonly quick?: boolean | undefined } = {}): DemoPlan => {
  const quick = o.quick ?? false
  return {
    seed: o.seed ?? DEMO_SEED,
    quick,
    concepts: [{ modifier: "<v1>", concept: "ring" }, { modifier: "<v2>", concept: "split" }],
    background: "gray",
    training: quick ? TRAINING.quick : TRAINING.full,
    sampling: quick ? SAMPLING.quick : SAMPLING.full,
    attentionTimesteps: [250, 500, 750],
    prompts: PROMPTS
  }
}

/** Which novel appearance each modifier stands for. */
export const conceptMap = (plan: DemoPlan): Readonly<Record<string, NovelName>> =>
  Object.fromEntries(plan.concepts.map((c) => [c.modifier, c.concept]))

export interface PlannedPrompt {
  readonly group: GroupName
  /** Position within its group. */
  readonly index: number
  readonly prompt: string
  /** The same seeds for both methods, so that their images pair up. */
  readonly seeds: ReadonlyArray<number>
  /** Where its images start among all the demo's images (prompts in order, seeds in order). */
  readonly first: number
}

/** Every prompt in group order, with its sampling seeds: `seed * 100000 + 100 * prompt + k`. */
export const plannedPrompts = (plan: DemoPlan): ReadonlyArray<PlannedPrompt> => {
  const n = plan.sampling.seedsPerPrompt
  return GROUPS.flatMap((group) => plan.prompts[group].map((prompt, index) => ({ group, index, prompt }))).map((p, i) => ({
    ...p,
    seeds: Array.from({ length: n }, (_, k) => plan.seed * 100_000 + 100 * i + k),
    first: i * n
  }))
}

/**
 * Checks that every prompt is a world caption, that each modifier names its concept by the class word
 * (shape) its appearance goes with, and that each group asks for exactly the concepts it is named for.
 */
export const checkPlan = (plan: DemoPlan): CaptionError | undefined => {
  const concepts = conceptMap(plan)
  const modifiers = plan.concepts.map((c) => c.modifier)
  const wanted: Record<GroupName, ReadonlyArray<string>> = {
    combined: modifiers,
    concept1: modifiers.slice(0, 1),
    concept2: modifiers.slice(1, 2)
  }
  for (const group of GROUPS) {
    for (const prompt of plan.prompts[group]) {
      const parsed = parseCaption(prompt)
      if (Result.isFailure(parsed)) return parsed.failure
      const fail = (word: string, reason: string, fix: string) => new CaptionError({ caption: prompt, word, reason, fix })
      const asked = new Set<string>()
      for (const o of parsed.success.objects) {
        if (o.modifier === null) continue
        const concept = concepts[o.modifier]
        if (concept === undefined) return fail(o.modifier, `${o.modifier} stands for none of the demo's concepts`, `use ${modifiers.join(" or ")}`)
        const shape = novelAppearance(concept).shape
        if (o.shape !== shape) return fail(o.shape, `${o.modifier} is the ${concept} ${shape}, not a ${o.shape}`, `write "${o.modifier} ${shape}"`)
        asked.add(o.modifier)
      }
      if ([...asked].sort().join(" ") !== [...wanted[group]].sort().join(" ")) {
        return fail("", `a ${group} prompt must ask for ${wanted[group].join(" and ")}`, `move the prompt to the group it belongs to`)
      }
    }
  }
  return undefined
}

/** Work in denoiser row passes: a training step is a forward and a backward (about 3 passes) per row. */
export const workUnits = (plan: DemoPlan) => {
  const t = plan.training
  const train = t.steps * t.batchSize * t.gradientAccumulation * 3
  const images = plannedPrompts(plan).length * plan.sampling.seedsPerPrompt
  const sample = images * plan.sampling.steps * (plan.sampling.guidance === 1 ? 1 : 2)
  return { train, sample, total: METHODS.length * (train + sample) }
}

/** The training run of one method on the demo's data. */
export const trainConfig = (plan: DemoPlan, method: MethodName, files: { readonly image: string; readonly regularization: string | null; readonly caption: string }): TrainConfig => ({
  ...defaultTrainConfig({ backbone: "toy", image: files.image, prompt: files.caption }),
  seed: plan.seed,
  steps: plan.training.steps,
  batchSize: plan.training.batchSize,
  gradientAccumulation: plan.training.gradientAccumulation,
  learningRate: plan.training.learningRate,
  scaleLearningRate: false,
  calibration: methodCalibration[method],
  // the plan says which world augmentations run (they are the built-in default, but the plan decides)
  augment: { ...defaultTrainConfig({ backbone: "toy", image: files.image, prompt: files.caption }).augment, world: plan.training.augment },
  regularization: { dir: files.regularization, generate: 0, prompt: null }
})
