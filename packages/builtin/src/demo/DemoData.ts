/**
 * The demo's training data, drawn from the shapes world with the plan's seed: the training image holding
 * the two novel concepts side by side with its caption ("a <v1> circle and a <v2> square on a gray
 * background"), and Custom Diffusion's regularisation set, here renders of the concepts' classes with
 * the world's unnamed variation (any shade, layout of two tones) on random backgrounds, captioned by
 * class alone ("a circle and a square on a white background"): what the class words cover, as the
 * retrieved class photos are for Stable Diffusion.
 */
import { Result } from "effect"
import type { RgbImage } from "@disendiff/core/image/Image.js"
import { stream } from "@disendiff/core/random/Rng.js"
import { captionOf } from "../world/Caption.js"
import { type ConceptImage, conceptImage } from "../world/ConceptImage.js"
import { novelAppearance } from "../world/NovelAppearance.js"
import { renderScene } from "../world/Render.js"
import { sceneFromSpec } from "../world/Scene.js"
import { BACKGROUNDS } from "../world/Vocabulary.js"
import type { DemoPlan } from "./DemoPlan.js"

export const trainingImage = (plan: DemoPlan): ConceptImage =>
  conceptImage({
    concepts: plan.concepts.map((c) => c.concept),
    modifiers: plan.concepts.map((c) => c.modifier),
    background: plan.background,
    seed: plan.seed,
    index: 0
  })

export interface CaptionedImage {
  readonly image: RgbImage
  readonly caption: string
}

/** Scene indices 1, 2, ... of the plan's seed (index 0 is the training image's layout). */
export const regularizationSet = (plan: DemoPlan): ReadonlyArray<CaptionedImage> =>
  Array.from({ length: plan.training.regularizationImages }, (_, i) => {
    const background = BACKGROUNDS[stream(plan.seed, i, "demo-regularization").int(0, BACKGROUNDS.length - 1)]!
    const objects = plan.concepts.map((c) => ({ shape: novelAppearance(c.concept).shape, colour: null, modifier: null }))
    // cannot fail: the plan's one to three concepts become named objects without modifiers
    const scene = Result.getOrThrow(sceneFromSpec({ background, objects }, { seed: plan.seed, index: 1 + i, paintUnnamed: true }))
    return { image: renderScene(scene), caption: captionOf(scene) }
  })
