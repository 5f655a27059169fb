/**
 * The demo's results across several seeds as a markdown table (docs/demo-seeds.md), so that nobody takes
 * one lucky seed for the method's effect. For each prompt group and metric: each method's mean with its
 * 95% bootstrap interval over seeds and prompts, and DisenDiff's paired difference from Custom Diffusion
 * with its interval (`Bootstrap.ts`: a replicate redraws seeds and prompts; both methods share seeds,
 * prompts and sampling seeds, so a paired replicate takes the same draws for both). A prompt's score is
 * the mean over its sampled images. The attention rows have one value per seed (the training image, or
 * the mean over a seed's samples): their intervals are over seeds only.
 */
import { bootstrapMean, formatInterval, pairedDifference } from "@disendiff/core/compare/Bootstrap.js"
import { groupLabel, GROUPS, type GroupName, METHODS, methodLabel, type MethodName } from "./DemoPlan.js"
import type { DemoMetrics, MethodSummary, Scores } from "./Metrics.js"

/** Replicates of every interval; the draws are keyed, so the table is the same on every run. */
const RESAMPLES = 2000

/** Seeds x prompts: each seed's score on each prompt of the group, for one method and metric. */
const promptMatrix = (runs: ReadonlyArray<DemoMetrics>, group: GroupName, method: MethodName, metric: keyof Scores) =>
  runs.map((r) => r.prompts.filter((p) => p.group === group).map((p) => p.methods[method][metric]))

/** Seeds x 1: one number per seed, or undefined when a seed lacks it. */
const seedColumn = (runs: ReadonlyArray<DemoMetrics>, method: MethodName, pick: (s: MethodSummary) => number | undefined) => {
  const xs = runs.map((r) => pick(r.summary[method]))
  return xs.every((x): x is number => x !== undefined && Number.isFinite(x)) ? xs.map((x) => [x]) : undefined
}

const row = (label: string, metric: string, matrices: Readonly<Record<MethodName, ReadonlyArray<ReadonlyArray<number>>>>): string => {
  const [a, b] = METHODS
  const cells = METHODS.map((m) => formatInterval(bootstrapMean(matrices[m], { resamples: RESAMPLES })))
  return `| ${label} | ${metric} | ${cells.join(" | ")} | ${formatInterval(pairedDifference(matrices[a], matrices[b], { resamples: RESAMPLES }))} |`
}

export const seedTable = (runs: ReadonlyArray<DemoMetrics>): string => {
  if (runs.length === 0) throw new RangeError("no runs to summarise")
  const first = runs[0]!
  const [a, b] = METHODS
  const metrics: ReadonlyArray<[keyof Scores, string]> = [["imageAlignment", "image alignment ↑"], ["textAlignment", "text alignment ↑"], ["leakage", "leakage ↓"]]
  const byMethod = <T>(f: (m: MethodName) => T) => Object.fromEntries(METHODS.map((m) => [m, f(m)])) as Record<MethodName, T>
  const promptRows = GROUPS.flatMap((g) => metrics.map(([k, label]) => row(groupLabel[g], label, byMethod((m) => promptMatrix(runs, g, m, k)))))
  const overlap = row("training image", "attention overlap ↓", byMethod((m) => runs.map((r) => [r.summary[m].attentionOverlap])))
  // each token's share of its normalised map on its own object, where every seed has it for both methods
  const attentionRows = (["training", "samples"] as const).flatMap((where) =>
    Object.keys(first.summary[a].attentionOnOwnObject[where]).flatMap((token) => {
      const columns = byMethod((m) => seedColumn(runs, m, (s) => s.attentionOnOwnObject[where][token]?.share))
      if (columns[a] === undefined || columns[b] === undefined) return []
      return [row(where === "training" ? "training image" : "samples", `attention of \`${token}\` on its object ↑`, columns as Record<MethodName, Array<Array<number>>>)]
    })
  )
  const lines = [
    `Demo results over ${runs.length} seed${runs.length === 1 ? "" : "s"} (${runs.map((r) => r.seed).join(", ")}), ${first.quick ? "--quick" : "full"} demo, ` +
    `model ${first.weights.model} (identity ${first.weights.identity.slice(0, 12)}): mean and 95% bootstrap interval ` +
    `over seeds and prompts (${RESAMPLES} replicates; attention rows: over seeds), and the paired difference ` +
    `${methodLabel[a]} − ${methodLabel[b]} with its interval.`,
    "",
    `| prompts | metric | ${METHODS.map((m) => methodLabel[m]).join(" | ")} | ${methodLabel[a]} − ${methodLabel[b]} |`,
    `|---|---|${METHODS.map(() => "---|").join("")}---|`,
    ...promptRows,
    overlap,
    ...attentionRows
  ]
  return lines.join("\n") + "\n"
}
