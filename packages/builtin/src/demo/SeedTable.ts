/**
 * The demo's results across several seeds as a markdown table (for docs/demo.md), so that nobody takes
 * one lucky seed for the method's effect: for each prompt group and metric, each method's mean, sample
 * standard deviation and range over the seeds.
 */
import { groupLabel, GROUPS, METHODS, methodLabel } from "./DemoPlan.js"
import type { DemoMetrics, MethodSummary } from "./Metrics.js"

const spread = (xs: ReadonlyArray<number>): string => {
  const mean = xs.reduce((a, x) => a + x, 0) / xs.length
  const sd = xs.length < 2 ? Number.NaN : Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (xs.length - 1))
  const range = `[${Math.min(...xs).toFixed(2)}, ${Math.max(...xs).toFixed(2)}]`
  return `${mean.toFixed(2)} ± ${Number.isNaN(sd) ? "-" : sd.toFixed(2)} ${range}`
}

export const seedTable = (runs: ReadonlyArray<DemoMetrics>): string => {
  if (runs.length === 0) throw new RangeError("no runs to summarise")
  const first = runs[0]!
  const rows: Array<[string, string, (s: MethodSummary) => number]> = [
    ...GROUPS.flatMap((g) => [
      [groupLabel[g], "image alignment ↑", (s: MethodSummary) => s[g].imageAlignment] as [string, string, (s: MethodSummary) => number],
      [groupLabel[g], "text alignment ↑", (s: MethodSummary) => s[g].textAlignment] as [string, string, (s: MethodSummary) => number],
      [groupLabel[g], "leakage ↓", (s: MethodSummary) => s[g].leakage] as [string, string, (s: MethodSummary) => number]
    ]),
    ["training image", "attention overlap ↓", (s) => s.attentionOverlap]
  ]
  const lines = [
    `Demo results over ${runs.length} seeds (${runs.map((r) => r.seed).join(", ")}), ${first.quick ? "--quick" : "full"} demo, ` +
    `model ${first.weights.model} (identity ${first.weights.identity.slice(0, 12)}): mean ± sample standard deviation [min, max].`,
    "",
    `| prompts | metric | ${METHODS.map((m) => methodLabel[m]).join(" | ")} |`,
    `|---|---|${METHODS.map(() => "---|").join("")}`,
    ...rows.map(([group, metric, pick]) => `| ${group} | ${metric} | ${METHODS.map((m) => spread(runs.map((r) => pick(r.summary[m])))).join(" | ")} |`)
  ]
  return lines.join("\n") + "\n"
}
