/**
 * `results.json`: every image's scores, and per prompt group and metric each method's mean with its 95%
 * bootstrap interval over seeds and prompts, and its paired difference from DisenDiff with an interval
 * (core's `compare/Bootstrap.ts`). The attention overlap on the training image is one number per run:
 * its interval is over seeds alone.
 */
import { bootstrapMean, type Interval, pairedDifference } from "@disendiff/core/compare/Bootstrap.js"
import { methodDefinition } from "@disendiff/core/compare/Methods.js"
import { effectiveLearningRate } from "@disendiff/core/training/TrainConfig.js"
import { groupLabel, GROUPS, type GroupName } from "../demo/DemoPlan.js"
import type { CellResult, ImageRecord } from "./CompareCell.js"
import { cellConfig, cellPrompts, type ComparePlan } from "./ComparePlan.js"

export const METRICS = ["imageAlignment", "textAlignment", "leakage", "allCorrect"] as const
export type MetricName = (typeof METRICS)[number]

export const metricLabel: Readonly<Record<MetricName, string>> = {
  imageAlignment: "image alignment",
  textAlignment: "text alignment",
  leakage: "leakage",
  allCorrect: "all requests met"
}
export const higherIsBetter: Readonly<Record<MetricName, boolean>> = { imageAlignment: true, textAlignment: true, leakage: false, allCorrect: true }

const value = (r: ImageRecord, m: MetricName): number => (m === "leakage" ? +r.leaked : m === "allCorrect" ? +r.allCorrect : r[m])

export interface Entry extends Interval {
  /** This method minus DisenDiff on the same seeds and prompts (absent for DisenDiff, or without it in the grid). */
  readonly differenceFromDisenDiff?: Interval | undefined
}

export interface CompareResults {
  readonly model: { readonly file: string; readonly sha256: string }
  readonly caption: string
  readonly seeds: ReadonlyArray<number>
  readonly quick: boolean
  readonly resamples: number
  readonly methods: ReadonlyArray<{
    readonly id: string
    readonly label: string
    readonly kind: string
    readonly source: string
    readonly steps: number
    readonly learningRate: number
    readonly batchSize: number
    readonly trainable: string
    readonly calibration: string
    readonly regularization: string
  }>
  readonly prompts: ReadonlyArray<{ readonly group: GroupName; readonly prompt: string }>
  /** table[group][metric][method]. */
  readonly table: Readonly<Record<GroupName, Readonly<Record<MetricName, Readonly<Record<string, Entry>>>>>>
  readonly attentionOverlap: Readonly<Record<string, Entry>>
  readonly training: Readonly<Record<string, ReadonlyArray<CellResult["training"] & { readonly seed: number }>>>
  /** Every sampled image: its method, the grid seed that trained the run, and `seed`, its sampling seed. */
  readonly images: ReadonlyArray<{ readonly method: string; readonly trainingSeed: number } & ImageRecord>
}

/** seeds x prompts matrix of one method, group and metric: each cell the mean over that prompt's images. */
const matrix = (cells: ReadonlyArray<CellResult>, group: GroupName, metric: MetricName): Array<Array<number>> =>
  cells.map((c) => {
    const byPrompt = new Map<number, Array<number>>()
    for (const r of c.images) if (r.group === group) byPrompt.set(r.prompt, [...(byPrompt.get(r.prompt) ?? []), value(r, metric)])
    return [...byPrompt.entries()].sort((a, b) => a[0] - b[0]).map(([, vs]) => vs.reduce((a, v) => a + v, 0) / vs.length)
  })

export const summariseResults = (o: {
  readonly plan: ComparePlan
  readonly out: string
  readonly caption: string
  readonly weights: { readonly file: string; readonly sha256: string }
  /** Every cell's result, method-major as the grid runs them. */
  readonly cells: ReadonlyArray<CellResult>
}): CompareResults => {
  const { plan } = o
  const options = { resamples: plan.resamples, seed: 0 }
  const byMethod = (m: string) => plan.seeds.map((s) => o.cells.find((c) => c.method === m && c.seed === s)!)
  const hasDisenDiff = plan.methods.includes("disendiff")
  const entry = (m: string, x: (cells: ReadonlyArray<CellResult>) => Array<Array<number>>): Entry => {
    const mine = x(byMethod(m))
    const own = bootstrapMean(mine, options)
    return m === "disendiff" || !hasDisenDiff ? own : { ...own, differenceFromDisenDiff: pairedDifference(mine, x(byMethod("disendiff")), options) }
  }
  const table = Object.fromEntries(GROUPS.map((g) => [
    g,
    Object.fromEntries(METRICS.map((metric) => [metric, Object.fromEntries(plan.methods.map((m) => [m, entry(m, (cs) => matrix(cs, g, metric))]))]))
  ])) as unknown as CompareResults["table"]
  const prompts = cellPrompts(plan, plan.seeds[0] ?? 0)
  return {
    model: o.weights,
    caption: o.caption,
    seeds: plan.seeds,
    quick: plan.demo.quick,
    resamples: plan.resamples,
    methods: plan.methods.map((id) => {
      const d = methodDefinition(id)!
      const c = cellConfig(plan, id, 0, o.out, o.caption)
      const cal = c.calibration
      return {
        id,
        label: d.label,
        kind: d.kind,
        source: d.source,
        steps: c.steps,
        learningRate: effectiveLearningRate(c),
        batchSize: c.batchSize * c.gradientAccumulation,
        trainable: c.trainable,
        calibration: cal.enabled
          ? `weight ${cal.weight}, bind ${cal.bind ? "on" : "off"}, separation ${cal.separation}, suppression ${cal.suppression}, gaussian ${cal.gaussian ? "on" : "off"}, maps ${cal.maps}`
          : "off",
        regularization: c.regularization.dir !== null
          ? `${plan.demo.training.regularizationImages} world renders of the classes`
          : c.regularization.generate > 0
          ? `${c.regularization.generate} class images generated by the base model`
          : "none"
      }
    }),
    prompts: prompts.map((p) => ({ group: p.group, prompt: p.prompt })),
    table,
    attentionOverlap: Object.fromEntries(plan.methods.map((m) => [m, entry(m, (cs) => cs.map((c) => [c.attentionOverlap]))])),
    training: Object.fromEntries(plan.methods.map((m) => [m, byMethod(m).map((c) => ({ seed: c.seed, ...c.training }))])),
    images: o.cells.flatMap((c) => c.images.map((r) => ({ method: c.method, trainingSeed: c.seed, ...r })))
  }
}

export { groupLabel }
