/**
 * Measures the evaluator on ground truth: renders held-out scenes (drawn with `CALIBRATION_SEED`, which
 * training data must not use), optionally adds Gaussian pixel noise, detects, and reports how often the
 * detection agrees with the truth, plus how well novel appearances are recognised and told apart from
 * named colours and from each other.
 */
import { Result } from "effect"
import type { RgbImage } from "@disendiff/core/image/Image.js"
import { stream } from "@disendiff/core/random/Rng.js"
import { specOf } from "./Caption.js"
import { detect, type DetectedObject } from "./Detect.js"
import { NOVEL_APPEARANCES, NOVEL_NAMES, novelAppearance } from "./NovelAppearance.js"
import { renderScene } from "./Render.js"
import { sampleScene, type Scene, sceneFromSpec } from "./Scene.js"
import { checkAgainstPrompt, isNovel } from "./Score.js"

export const CALIBRATION_SEED = 0xca11b

/** The image with N(0, sigma^2) added to every value, clamped to [0, 1]; noise keyed by (seed, index). */
export const addNoise = (image: RgbImage, sigma: number, seed: number, index: number): RgbImage => {
  const z = stream(seed, index, "world-noise").normals(image.data.length)
  const data = new Float32Array(image.data.length)
  for (let i = 0; i < data.length; i++) data[i] = Math.min(1, Math.max(0, image.data[i]! + sigma * z[i]!))
  return { width: image.width, height: image.height, data }
}

/** Fractions of scenes where each criterion holds. */
export interface Accuracy {
  readonly scenes: number
  readonly count: number
  readonly shape: number
  readonly colour: number
  readonly background: number
  readonly allCorrect: number
}

export interface NovelRates {
  /** Novel objects in mixed scenes, and the fraction recognised as their own appearance. */
  readonly positives: number
  readonly truePositiveRate: number
  /** (named object, appearance) pairs, and the fraction wrongly recognised. */
  readonly namedNegatives: number
  readonly falsePositiveRateNamed: number
  /** (novel object, another appearance) pairs, and the fraction wrongly recognised. */
  readonly otherNegatives: number
  readonly falsePositiveRateOther: number
}

export interface CalibrationReport {
  readonly noise: number
  readonly one: Accuracy
  readonly two: Accuracy
  /** Scenes with one novel object among named ones, judged with the modifier's appearance. */
  readonly mixed: Accuracy
  readonly novel: NovelRates
}

export interface CalibrationOptions {
  /** How many world scenes, and as many mixed scenes. */
  readonly scenes: number
  /** Gaussian pixel noise sigma (0 for clean renders). */
  readonly noise: number
  readonly seed?: number
}

class Tally {
  scenes = 0
  count = 0
  shape = 0
  colour = 0
  background = 0
  allCorrect = 0
  add(c: ReturnType<typeof checkAgainstPrompt>) {
    this.scenes++
    this.count += +c.count
    this.shape += +c.shapes
    this.colour += +c.colours
    this.background += +c.background
    this.allCorrect += +c.allCorrect
  }
  get accuracy(): Accuracy {
    const f = (k: number) => (this.scenes === 0 ? 0 : k / this.scenes)
    return { scenes: this.scenes, count: f(this.count), shape: f(this.shape), colour: f(this.colour), background: f(this.background), allCorrect: f(this.allCorrect) }
  }
}

/** The detected object nearest to a scene object's centre, if one lies within its half-size. */
const objectAt = (objects: ReadonlyArray<DetectedObject>, o: Scene["objects"][number]): DetectedObject | undefined => {
  let best: DetectedObject | undefined
  let bestD = o.halfSize
  for (const d of objects) {
    const dist = Math.hypot(d.fit.x - o.centre.x, d.fit.y - o.centre.y)
    if (dist <= bestD) {
      bestD = dist
      best = d
    }
  }
  return best
}

export const calibrate = (options: CalibrationOptions): CalibrationReport => {
  const seed = options.seed ?? CALIBRATION_SEED
  const look = (scene: Scene, index: number) => {
    const clean = renderScene(scene)
    return detect(options.noise > 0 ? addNoise(clean, options.noise, seed, index) : clean)
  }
  const one = new Tally()
  const two = new Tally()
  const mixed = new Tally()
  let positives = 0
  let truePositives = 0
  let namedNegatives = 0
  let namedPositives = 0
  let otherNegatives = 0
  let otherPositives = 0
  const judgeNamed = (d: DetectedObject | undefined) => {
    if (d === undefined) return
    for (const a of NOVEL_APPEARANCES) {
      namedNegatives++
      namedPositives += +isNovel(d, a)
    }
  }

  for (let i = 0; i < options.scenes; i++) {
    const scene = sampleScene(seed, i)
    const detection = look(scene, 2 * i)
    // judged against the whole truth: the background even where the caption leaves it unnamed
    const check = checkAgainstPrompt(detection, { ...specOf(scene), background: scene.background })
    ;(scene.objects.length === 1 ? one : two).add(check)
    for (const o of scene.objects) judgeNamed(objectAt(detection.objects, o))

    // the same kind of scene with one object replaced by a novel appearance on its own shape
    const concept = NOVEL_NAMES[i % NOVEL_NAMES.length]!
    const base = specOf(scene)
    const slot = stream(seed, i, "world-calibration-slot").int(0, base.objects.length - 1)
    const spec = {
      background: scene.background,
      objects: base.objects.map((o, k) =>
        k === slot ? { shape: novelAppearance(concept).shape, colour: null, modifier: "<v1>" } : o
      )
    }
    const concepts = { "<v1>": concept }
    const mixedScene = Result.getOrThrow(sceneFromSpec(spec, { seed, index: i, concepts }))
    const mixedDetection = look(mixedScene, 2 * i + 1)
    mixed.add(checkAgainstPrompt(mixedDetection, spec, concepts))
    mixedScene.objects.forEach((o, k) => {
      const d = objectAt(mixedDetection.objects, o)
      if (k !== slot) return judgeNamed(d)
      positives++
      for (const a of NOVEL_APPEARANCES) {
        const hit = d !== undefined && isNovel(d, a)
        if (a.name === concept) truePositives += +hit
        else {
          otherNegatives++
          otherPositives += +hit
        }
      }
    })
  }
  return {
    noise: options.noise,
    one: one.accuracy,
    two: two.accuracy,
    mixed: mixed.accuracy,
    novel: {
      positives,
      truePositiveRate: positives === 0 ? 0 : truePositives / positives,
      namedNegatives,
      falsePositiveRateNamed: namedNegatives === 0 ? 0 : namedPositives / namedNegatives,
      otherNegatives,
      falsePositiveRateOther: otherNegatives === 0 ? 0 : otherPositives / otherNegatives
    }
  }
}
