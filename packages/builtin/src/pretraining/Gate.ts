/**
 * The built-in model's quality gate (issue 6), measured with the world's analytic evaluator:
 * 1. held-out prompts: one-object and two-object all-correct rates, and backgrounds as asked;
 * 2. world v2 models: over the colourless objects of those prompts, the share drawn two-tone against the
 *    share in renders of the same prompts (the model covers the unnamed variation);
 * 3. personalisation: after DisenDiff training on the demo's two-novel-concept image (the demo's plan),
 *    samples of the training caption show both novel concepts, and each concept prompted alone on each
 *    background shows that concept.
 * `markdown` renders the numbers and the training curve for docs/built-in-model.md.
 */
import { Effect, Layer, Stream } from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { createHash } from "node:crypto"
import { readSafetensorsHeader } from "@disendiff/core/io/Safetensors.js"
import { Backbone } from "@disendiff/core/backbone/Backbone.js"
import * as ToyBackbone from "../backbone/ToyBackbone.js"
import { load as loadCheckpoint } from "@disendiff/core/checkpoint/Checkpoints.js"
import { regularizationSet, trainingImage } from "../demo/DemoData.js"
import { conceptMap, demoPlan, trainConfig } from "../demo/DemoPlan.js"
import { encodePng } from "@disendiff/core/image/Image.js"
import { sample } from "@disendiff/core/sampling/Sampler.js"
import type { TensorRuntime } from "@disendiff/core/tensor/TensorRuntime.js"
import { tf } from "@disendiff/core/tensor/Tf.js"
import { train, trainingServices } from "@disendiff/core/training/Trainer.js"
import { detect } from "../world/Detect.js"
import { novelAppearance } from "../world/NovelAppearance.js"
import { isNovel } from "../world/Score.js"
import { type Evaluation, evaluate } from "./Evaluate.js"
import { type NovelName } from "../world/NovelAppearance.js"
import { BACKGROUNDS, type WorldName } from "../world/Vocabulary.js"
import { toTensors } from "@disendiff/core/checkpoint/HostTensors.js"

export interface GateOptions {
  readonly weights: string
  /** Held-out prompts per group. */
  readonly n: number
  readonly steps: number
  readonly guidance: number
  /** Samples of the training caption after personalisation. */
  readonly personalisationSamples: number
}

export interface GateResult {
  readonly world: WorldName
  readonly heldOut: Evaluation
  readonly personalisation: {
    readonly samples: number
    readonly bothConcepts: number
    readonly caption: string
    readonly trainingSteps: number
    /** Each concept alone on each background: the prompt, its samples, the share that show the concept. */
    readonly alone: ReadonlyArray<{ readonly prompt: string; readonly samples: number; readonly shown: number }>
  }
  readonly pass: {
    readonly oneObject: boolean
    readonly twoObjects: boolean
    readonly backgrounds: boolean
    /** World v2 only (null for v1 models). */
    readonly unnamed: boolean | null
    readonly personalisation: boolean
    readonly alone: boolean
  }
}

/**
 * The thresholds of issues 6 and 11. `unnamed`: the two-tone share of colourless objects in samples
 * within this distance of the renders' share.
 */
export const thresholds = { oneObject: 0.8, twoObjects: 0.6, backgrounds: 0.8, unnamed: 0.15, personalisation: 0.8, alone: 0.6 }

export const runGate = (o: GateOptions) =>
  Effect.gen(function*() {
    const world = yield* ToyBackbone.worldOfWeights(o.weights)
    const heldOut: Evaluation = yield* Effect.gen(function*() {
      const backbone = yield* Backbone
      const e = yield* evaluate(backbone, { n: o.n, steps: o.steps, guidance: o.guidance, seed: 2000, world })
      return { oneObject: e.oneObject, twoObjects: e.twoObjects, ...(e.unnamed === undefined ? {} : { unnamed: e.unnamed }) }
    }).pipe(Effect.provide(ToyBackbone.layer({ modifiers: [], weights: o.weights })))

    // personalisation on the demo's data with its DisenDiff settings
    const plan = demoPlan()
    const dir = yield* Effect.promise(() => fs.mkdtemp(path.join(os.tmpdir(), "disendiff-gate-")))
    const data = trainingImage(plan)
    const image = path.join(dir, "training.png")
    yield* Effect.promise(() => fs.writeFile(image, encodePng(data.image)))
    const reg = regularizationSet(plan)
    const regDir = reg.length === 0 ? null : path.join(dir, "regularization")
    if (regDir !== null) {
      yield* Effect.promise(async () => {
        await fs.mkdir(regDir, { recursive: true })
        for (const [i, r] of reg.entries()) await fs.writeFile(path.join(regDir, `${String(i).padStart(4, "0")}.png`), encodePng(r.image))
        await fs.writeFile(path.join(regDir, "captions.txt"), reg.map((r) => r.caption).join("\n") + "\n")
      })
    }
    const config = { ...trainConfig(plan, "disendiff", { image, regularization: regDir, caption: data.caption }), model: o.weights }
    const modifiers = plan.concepts.map((c) => c.modifier)
    const classWords = plan.concepts.map((c) => novelAppearance(c.concept).shape)
    const backboneLayer = ToyBackbone.layer({ modifiers, classWords, weights: o.weights })
    yield* train({ config, out: path.join(dir, "run") }).pipe(
      Stream.runDrain,
      Effect.provide(Layer.merge(backboneLayer, trainingServices(config)))
    )
    const snapshot = yield* loadCheckpoint(path.join(dir, "run", "checkpoint.msgpack"))
    const concepts = conceptMap(plan)
    // each concept alone on each background, a quarter as many samples each as the training caption gets
    const perAlone = Math.max(1, Math.ceil(o.personalisationSamples / 4))
    const alonePrompts = plan.concepts.flatMap((c) =>
      BACKGROUNDS.map((bg) => ({ prompt: `a ${c.modifier} ${novelAppearance(c.concept).shape} on a ${bg} background`, concept: c.concept }))
    )
    const { both, alone } = yield* Effect.gen(function*() {
      const backbone = yield* Backbone
      const trained = toTensors(snapshot.trainable)
      const prompts = [
        ...Array.from({ length: o.personalisationSamples }, () => data.caption),
        ...alonePrompts.flatMap((p) => Array.from({ length: perAlone }, () => p.prompt))
      ]
      const r = yield* sample(backbone, {
        prompts,
        seeds: prompts.map((_, i) => 3000 + i),
        steps: o.steps,
        guidance: o.guidance,
        eta: 0,
        trained,
        batchSize: 8
      })
      tf.dispose([...trained.values()])
      const shows = (img: (typeof r.images)[number], concept: NovelName) => detect(img).objects.some((d) => isNovel(d, novelAppearance(concept)))
      const both = r.images.slice(0, o.personalisationSamples).filter((img) => Object.values(concepts).every((c) => shows(img, c))).length
      const alone = alonePrompts.map((p, k) => {
        const first = o.personalisationSamples + k * perAlone
        const images = r.images.slice(first, first + perAlone)
        return { prompt: p.prompt, samples: perAlone, shown: images.filter((img) => shows(img, p.concept)).length / perAlone }
      })
      return { both, alone }
    }).pipe(Effect.provide(backboneLayer))
    yield* Effect.promise(() => fs.rm(dir, { recursive: true, force: true }))
    const personalisation = { samples: o.personalisationSamples, bothConcepts: both / o.personalisationSamples, caption: data.caption, trainingSteps: config.steps, alone }
    const result: GateResult = {
      world,
      heldOut,
      personalisation,
      pass: {
        oneObject: heldOut.oneObject.allCorrect >= thresholds.oneObject,
        twoObjects: heldOut.twoObjects.allCorrect >= thresholds.twoObjects,
        backgrounds: Math.min(heldOut.oneObject.background, heldOut.twoObjects.background) >= thresholds.backgrounds,
        unnamed: heldOut.unnamed === undefined ? null : Math.abs(heldOut.unnamed.samples - heldOut.unnamed.renders) <= thresholds.unnamed,
        personalisation: personalisation.bothConcepts >= thresholds.personalisation,
        alone: alone.every((a) => a.shown >= thresholds.alone)
      }
    }
    return result
  })

export type GateRequirements = TensorRuntime

const pct = (x: number) => `${(100 * x).toFixed(0)}%`

export const gateMarkdown = (g: GateResult, o: GateOptions & { readonly date: string; readonly backend: string }) => {
  const row = (name: string, r: Evaluation["oneObject"]) =>
    `| ${name} | ${r.n} | ${pct(r.count)} | ${pct(r.shapes)} | ${pct(r.colours)} | ${pct(r.background)} | ${pct(r.allCorrect)} |`
  const mark = (ok: boolean) => (ok ? "pass" : "FAIL")
  return [
    `Measured ${o.date} on ${o.backend} by \`disendiff builtin-report --gate\` on \`${path.basename(o.weights)}\` (world ${g.world}): held-out prompts (caption combinations never seen in pretraining), DDIM ${o.steps} steps, guidance ${o.guidance}.`,
    "",
    "| prompts | n | count | shapes | colours | background (when named) | all correct |",
    "|---|---|---|---|---|---|---|",
    row("one object", g.heldOut.oneObject),
    row("two objects", g.heldOut.twoObjects),
    "",
    "| gate | threshold | measured | result |",
    "|---|---|---|---|",
    `| one object all correct | ${pct(thresholds.oneObject)} | ${pct(g.heldOut.oneObject.allCorrect)} | ${mark(g.pass.oneObject)} |`,
    `| two objects all correct | ${pct(thresholds.twoObjects)} | ${pct(g.heldOut.twoObjects.allCorrect)} | ${mark(g.pass.twoObjects)} |`,
    `| backgrounds as asked | ${pct(thresholds.backgrounds)} | ${pct(Math.min(g.heldOut.oneObject.background, g.heldOut.twoObjects.background))} | ${mark(g.pass.backgrounds)} |`,
    ...(g.heldOut.unnamed === undefined || g.pass.unnamed === null ? [] : [
      `| colourless objects drawn two-tone (samples ${pct(g.heldOut.unnamed.samples)} at guidance ${g.heldOut.unnamed.guidance ?? o.guidance}, renders ${pct(g.heldOut.unnamed.renders)}, ${g.heldOut.unnamed.n} objects) | within ${pct(thresholds.unnamed)} | ${((100 * (g.heldOut.unnamed.samples - g.heldOut.unnamed.renders)).toFixed(0))} points | ${mark(g.pass.unnamed)} |`
    ]),
    `| both novel concepts in samples of "${g.personalisation.caption}" after DisenDiff (${g.personalisation.trainingSteps} steps, ${g.personalisation.samples} samples) | ${pct(thresholds.personalisation)} | ${pct(g.personalisation.bothConcepts)} | ${mark(g.pass.personalisation)} |`,
    ...g.personalisation.alone.map((a) => `| the concept in samples of "${a.prompt}" (${a.samples} samples) | ${pct(thresholds.alone)} | ${pct(a.shown)} | ${mark(a.shown >= thresholds.alone)} |`)
  ].join("\n")
}

/** The training curve from a pretraining checkpoint's history: loss (mean per interval), evaluations, time. */
export const curveMarkdown = (file: string) =>
  Effect.map(loadCheckpoint(file), (s) => {
    const h = s.header
    const extra = (h as unknown as { pretraining?: { evaluations?: ReadonlyArray<{ step: number; samples: number; seconds: number; backend: string; evaluation: Evaluation }>; seconds?: number } }).pretraining
    const config = h.config as { batchSize: number; gradientAccumulation: number }
    const perStep = config.batchSize * config.gradientAccumulation
    const evals = new Map((extra?.evaluations ?? []).map((e) => [e.step, e]))
    const every = Math.max(100, Math.ceil(h.step / 30 / 100) * 100)
    const v2 = [...evals.values()].some((e) => e.evaluation.unnamed !== undefined)
    const lines = [
      `From \`${path.basename(file)}\` at step ${h.step} (${h.step * perStep} samples, ${((extra?.seconds ?? 0) / 3600).toFixed(1)} h of training). Loss: the mean of the interval's steps; evaluation: the EMA weights on held-out prompts (24 per group, 25 steps, guidance 4), all-correct rates` +
      (v2 ? "; two-tone: the share of colourless objects drawn two-tone, samples / renders (samples at the evaluation's guidance unless marked with their own, \`g 1\`: \`Evaluate.ts\`)." : "."),
      "",
      `| step | samples | loss | hours | backend | one object | two objects |${v2 ? " two-tone |" : ""}`,
      `|---|---|---|---|---|---|---|${v2 ? "---|" : ""}`
    ]
    for (let start = 0; start < h.step; start += every) {
      const end = Math.min(h.step, start + every)
      const slice = h.lossHistory.filter((r) => r.step > start && r.step <= end)
      if (slice.length === 0) continue
      const loss = slice.reduce((a, r) => a + r.loss, 0) / slice.length
      const ev = [...evals.values()].filter((e) => e.step > start && e.step <= end).at(-1)
      lines.push(
        `| ${end} | ${end * perStep} | ${loss.toFixed(4)} | ${ev === undefined ? "" : (ev.seconds / 3600).toFixed(1)} | ${ev?.backend ?? ""} | ${ev === undefined ? "" : pct(ev.evaluation.oneObject.allCorrect)} | ${ev === undefined ? "" : pct(ev.evaluation.twoObjects.allCorrect)} |` +
          (v2 ? ` ${ev?.evaluation.unnamed === undefined ? "" : `${pct(ev.evaluation.unnamed.samples)} / ${pct(ev.evaluation.unnamed.renders)}${ev.evaluation.unnamed.guidance === undefined ? "" : ` (g ${ev.evaluation.unnamed.guidance})`}`} |` : "")
      )
    }
    return lines.join("\n")
  })

/** What the weights file is: its size, SHA-256, and the step, checkpoint digest and configuration in its metadata. */
export const weightsMarkdown = (file: string) =>
  Effect.gen(function*() {
    const bytes = yield* Effect.promise(() => fs.readFile(file))
    const sha256 = createHash("sha256").update(bytes).digest("hex")
    const { metadata } = yield* readSafetensorsHeader(file)
    return [
      `\`${path.basename(file)}\`: ${(bytes.length / 2 ** 20).toFixed(1)} MiB, SHA-256 \`${sha256}\`; the EMA weights of pretraining step ${metadata.step ?? "?"} ` +
      `(checkpoint digest \`${metadata.checkpoint_digest ?? "?"}\`), exported with \`disendiff export-builtin\`. Its pretraining configuration (from the file's metadata):`,
      "",
      "```json",
      metadata.pretrain_config === undefined ? "{}" : JSON.stringify(JSON.parse(metadata.pretrain_config)),
      "```"
    ].join("\n")
  })
