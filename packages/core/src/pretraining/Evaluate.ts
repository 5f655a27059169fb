/**
 * The built-in model's quality, measured by the world's analytic evaluator: sample held-out prompts,
 * detect what was drawn, and check count, shapes, colours and background against the prompt.
 */
import { Effect } from "effect"
import type { BackboneShape } from "../backbone/Backbone.js"
import type { RgbImage } from "../image/Image.js"
import { sample } from "../sampling/Sampler.js"
import type { OutOfMemory, TensorRuntime } from "../tensor/TensorRuntime.js"
import type { PromptError } from "../tokenizer/Tokenizer.js"
import { specOf } from "../world/Caption.js"
import { detect } from "../world/Detect.js"
import { checkAgainstPrompt } from "../world/Score.js"
import { type EvalPrompt, evaluationPrompts } from "./Dataset.js"

export interface Rates {
  readonly n: number
  readonly count: number
  readonly shapes: number
  readonly colours: number
  /** Among prompts that name a background. */
  readonly background: number
  readonly allCorrect: number
}

export interface Evaluation {
  readonly oneObject: Rates
  readonly twoObjects: Rates
}

export interface EvaluateOptions {
  /** Prompts per group (one object, two objects). */
  readonly n: number
  readonly steps: number
  readonly guidance: number
  readonly seed: number
  readonly onProgress?: ((done: number, total: number) => Effect.Effect<void>) | undefined
}

export const scoreImages = (prompts: ReadonlyArray<EvalPrompt>, images: ReadonlyArray<RgbImage>): Rates => {
  const checks = prompts.map((p, i) => ({ check: checkAgainstPrompt(detect(images[i]!), specOf(p.scene)), named: p.scene.namesBackground }))
  const rate = (xs: ReadonlyArray<boolean>) => (xs.length === 0 ? 0 : xs.filter(Boolean).length / xs.length)
  return {
    n: prompts.length,
    count: rate(checks.map((c) => c.check.count)),
    shapes: rate(checks.map((c) => c.check.shapes)),
    colours: rate(checks.map((c) => c.check.colours)),
    background: rate(checks.filter((c) => c.named).map((c) => c.check.background)),
    allCorrect: rate(checks.map((c) => c.check.allCorrect))
  }
}

export const evaluate = (backbone: BackboneShape, o: EvaluateOptions): Effect.Effect<Evaluation & { readonly images: ReadonlyArray<RgbImage> }, OutOfMemory | PromptError, TensorRuntime> =>
  Effect.gen(function*() {
    const { one, two } = evaluationPrompts(o.n)
    const prompts = [...one, ...two]
    const result = yield* sample(backbone, {
      prompts: prompts.map((p) => p.caption),
      seeds: prompts.map((_, i) => o.seed + i),
      steps: o.steps,
      guidance: o.guidance,
      eta: 0,
      batchSize: 16,
      onStep: o.onProgress
    })
    return {
      oneObject: scoreImages(one, result.images.slice(0, one.length)),
      twoObjects: scoreImages(two, result.images.slice(one.length)),
      images: result.images
    }
  })
