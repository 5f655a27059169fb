/**
 * Pretraining data and held-out evaluation prompts for the shapes world. One caption combination in
 * ten (the set of shape/colour pairs and the background it names) never appears in pretraining: the
 * quality gate samples only those, so it measures composition, not recall of seen captions.
 */
import { purposeId } from "@disendiff/core/random/Rng.js"
import { CALIBRATION_SEED } from "../world/Calibration.js"
import { captionOf, specOf } from "../world/Caption.js"
import { sampleWorldScene, type Scene } from "../world/Scene.js"
import type { WorldName } from "../world/Vocabulary.js"

/** The combination a caption asks for, independent of layout. */
const combination = (scene: Scene) => {
  const spec = specOf(scene)
  return `${spec.objects.map((o) => `${o.size ? `${o.size}-` : ""}${o.colour}-${o.shape}`).join("+")}@${spec.background ?? "any"}`
}

export const isHeldOut = (scene: Scene): boolean => purposeId(combination(scene)) % 10 === 0

/** The k-th training scene: scenes of held-out combinations are skipped, deterministically. */
export const trainingScene = (seed: number, k: number, world: WorldName = "shapes"): Scene => {
  for (let j = 0; ; j++) {
    const scene = sampleWorldScene(world, seed, k * 8 + j)
    if (!isHeldOut(scene)) return scene
  }
}

export interface EvalPrompt {
  readonly caption: string
  readonly scene: Scene
}

/** The first `n` held-out one-object and `n` two-object prompts of the evaluation seed. */
export const evaluationPrompts = (n: number, world: WorldName = "shapes"): { readonly one: Array<EvalPrompt>; readonly two: Array<EvalPrompt> } => {
  const one: Array<EvalPrompt> = []
  const two: Array<EvalPrompt> = []
  for (let i = 0; one.length < n || two.length < n; i++) {
    const scene = sampleWorldScene(world, CALIBRATION_SEED, i)
    if (!isHeldOut(scene)) continue
    const list = scene.objects.length === 1 ? one : two
    if (list.length < n) list.push({ caption: captionOf(scene), scene })
  }
  return { one, two }
}
