/**
 * The comparison's `report.html` (one self-contained page: PNGs as data: URIs, charts as inline SVG, no
 * scripts) and the "claim in the paper / what we measure" table for docs/paper-comparison.md, both from
 * a results document.
 */
import { Effect } from "effect"
import { escapeText } from "entities/escape"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { formatInterval as interval } from "@disendiff/core/compare/Bootstrap.js"
import { groupLabel, GROUPS } from "../demo/DemoPlan.js"
import { CompareOutputError } from "./CompareCell.js"
import type { CompareFigure } from "./Figures.js"
import { type CompareResults, type Entry, metricLabel, METRICS } from "./Results.js"

const f2 = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : "-")
const signed = (v: number) => (v > 0 ? "+" : "") + f2(v)
const difference = (e: Entry) => (e.differenceFromDisenDiff === undefined ? "" : `${signed(e.differenceFromDisenDiff.mean)} [${signed(e.differenceFromDisenDiff.low)}, ${signed(e.differenceFromDisenDiff.high)}]`)

/** Mean image alignment over the three groups. */
const meanOver = (r: CompareResults, method: string, metric: (typeof METRICS)[number]) =>
  GROUPS.reduce((a, g) => a + r.table[g][metric][method]!.mean, 0) / GROUPS.length

export interface Claim {
  readonly claim: string
  readonly measured: string
  /** "yes", "no", or "not run" when the grid lacks a method it needs. */
  readonly holds: "yes" | "no" | "not run"
}

/** The paper's claims the comparison can check, each with what this run measured. */
export const claims = (r: CompareResults): Array<Claim> => {
  const has = (...ids: Array<string>) => ids.every((id) => r.methods.some((m) => m.id === id))
  const out: Array<Claim> = []
  const order = ["disendiff", "custom-diffusion", "dreambooth", "textual-inversion"]
  if (has(...order)) {
    const v = order.map((m) => meanOver(r, m, "imageAlignment"))
    out.push({
      claim: "Image alignment: DisenDiff > Custom Diffusion > DreamBooth > Textual Inversion (Fig. 6a)",
      measured: order.map((m, i) => `${r.methods.find((x) => x.id === m)!.label} ${f2(v[i]!)}`).join(", ") + " (mean over the three groups)",
      holds: v.every((x, i) => i === 0 || v[i - 1]! > x) ? "yes" : "no"
    })
  } else out.push({ claim: "Image alignment: DisenDiff > Custom Diffusion > DreamBooth > Textual Inversion (Fig. 6a)", measured: "", holds: "not run" })
  if (has("disendiff", "custom-diffusion")) {
    const parts = GROUPS.map((g) => {
      const e = r.table[g].leakage["custom-diffusion"]!
      return { g, d: e.differenceFromDisenDiff!, dd: r.table[g].leakage["disendiff"]!.mean, cd: e.mean }
    })
    out.push({
      claim: "Lower leakage than Custom Diffusion",
      measured: parts.map((p) => `${groupLabel[p.g]}: DisenDiff ${f2(p.dd)}, Custom Diffusion ${f2(p.cd)} (CD - DD ${signed(p.d.mean)} [${signed(p.d.low)}, ${signed(p.d.high)}])`).join("; "),
      holds: parts.every((p) => p.d.low > 0) ? "yes" : "no"
    })
  } else out.push({ claim: "Lower leakage than Custom Diffusion", measured: "", holds: "not run" })
  const ablations = r.methods.filter((m) => m.kind === "ablation")
  if (has("disendiff") && ablations.length > 0) {
    const dd = meanOver(r, "disendiff", "imageAlignment")
    const below = ablations.filter((a) => meanOver(r, a.id, "imageAlignment") < dd)
    out.push({
      claim: "Every ablation of the calibration lowers image alignment (Fig. 6b)",
      measured: `DisenDiff ${f2(dd)}; ` + ablations.map((a) => `${a.label} ${f2(meanOver(r, a.id, "imageAlignment"))}`).join(", "),
      holds: below.length === ablations.length ? "yes" : "no"
    })
  } else out.push({ claim: "Every ablation of the calibration lowers image alignment (Fig. 6b)", measured: "", holds: "not run" })
  return out
}

export const claimsMarkdown = (r: CompareResults): string =>
  [
    "| claim in the paper | what we measure | holds here |",
    "|---|---|---|",
    ...claims(r).map((c) => `| ${c.claim} | ${c.measured || "-"} | ${c.holds} |`)
  ].join("\n") + "\n"

/** Markdown tables of every group and metric: mean [95% interval], and the difference from DisenDiff. */
export const resultsMarkdown = (r: CompareResults): string =>
  GROUPS.map((g) =>
    [
      `**${groupLabel[g]}** (mean [95% interval]; difference from DisenDiff [95% interval])`,
      "",
      `| method | ${METRICS.map((m) => metricLabel[m]).join(" | ")} |`,
      `|---|${METRICS.map(() => "---|").join("")}`,
      ...r.methods.map((m) => `| ${m.label} | ${METRICS.map((k) => { const e = r.table[g][k][m.id]!; return `${interval(e)}${e.differenceFromDisenDiff ? `; ${difference(e)}` : ""}` }).join(" | ")} |`)
    ].join("\n")
  ).join("\n\n") + "\n"

const css = `body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}
th{background:#f4f4f4}img{image-rendering:pixelated;max-width:100%}figure{margin:1em 0}.no{color:#b00}.yes{color:#070}`

export const renderCompareReport = (out: string, r: CompareResults, figures: ReadonlyArray<CompareFigure>) =>
  Effect.gen(function*() {
    const img = (f: CompareFigure) =>
      Effect.tryPromise({
        try: () => fs.readFile(path.join(out, f.file)),
        catch: () => new CompareOutputError({ path: path.join(out, f.file), reason: "a figure just written is missing", fix: "check the output folder" })
      }).pipe(Effect.map((b) => `<figure><img src="data:image/png;base64,${b.toString("base64")}" alt="${escapeText(f.alt)}"><figcaption>${escapeText(f.alt)}</figcaption></figure>`))
    const charts = figures.filter((f) => f.kind === "bars").map((f) => `<figure>${f.svg ?? ""}</figure>`).join("\n")
    const samples = (yield* Effect.forEach(figures.filter((f) => f.kind === "samples"), img)).join("\n")
    const attention = (yield* Effect.forEach(figures.filter((f) => f.kind === "attention"), img)).join("\n")
    const tables = GROUPS.map((g) => `<h3>${escapeText(groupLabel[g])}</h3><table><tr><th>method</th>${METRICS.map((m) => `<th>${escapeText(metricLabel[m])}</th><th>minus DisenDiff</th>`).join("")}</tr>${
      r.methods.map((m) => `<tr><td>${escapeText(m.label)}</td>${METRICS.map((k) => { const e = r.table[g][k][m.id]!; return `<td>${interval(e)}</td><td>${difference(e)}</td>` }).join("")}</tr>`).join("")
    }</table>`).join("\n")
    const methods = `<table><tr><th>method</th><th>source</th><th>steps</th><th>lr</th><th>batch</th><th>trains</th><th>calibration</th><th>regularisation</th></tr>${
      r.methods.map((m) => `<tr><td>${escapeText(m.label)}</td><td>${escapeText(m.source)}</td><td>${m.steps}</td><td>${m.learningRate}</td><td>${m.batchSize}</td><td>${m.trainable}</td><td>${escapeText(m.calibration)}</td><td>${escapeText(m.regularization)}</td></tr>`).join("")
    }</table>`
    const claimRows = claims(r).map((c) => `<tr><td>${escapeText(c.claim)}</td><td>${escapeText(c.measured || "-")}</td><td class="${c.holds === "yes" ? "yes" : "no"}">${c.holds}</td></tr>`).join("")
    const overlap = `<table><tr><th>method</th><th>attention overlap</th><th>minus DisenDiff</th></tr>${
      r.methods.map((m) => `<tr><td>${escapeText(m.label)}</td><td>${interval(r.attentionOverlap[m.id]!)}</td><td>${difference(r.attentionOverlap[m.id]!)}</td></tr>`).join("")
    }</table>`
    return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>DisenDiff: the paper's comparison on the built-in model</title><style>${css}</style></head>
<body>
<h1>The paper's comparison on the built-in model</h1>
<p>Training caption: <code>${escapeText(r.caption)}</code>. Seeds ${r.seeds.join(", ")}${r.quick ? " (--quick)" : ""}; model ${escapeText(r.model.file)} (sha256 ${r.model.sha256.slice(0, 12)}).
Every method trains on the same image and caption with the same seed, and samples the same prompts with the same sampling seeds.
Intervals: 95% percentile bootstrap over seeds and prompts (${r.resamples} replicates); differences are paired (same draws for both methods).</p>
<h2>Claims of the paper</h2>
<table><tr><th>claim in the paper</th><th>what we measure</th><th>holds here</th></tr>${claimRows}</table>
<h2>Charts</h2>
${charts}
<h2>Tables</h2>
${tables}
<h3>Attention overlap of the class words on the training image (lower is better)</h3>
${overlap}
<h2>Methods</h2>
${methods}
<h2>Samples</h2>
<p>Columns: the prompts in group order (both concepts, concept 1 alone, concept 2 alone): ${r.prompts.map((p) => `<code>${escapeText(p.prompt)}</code>`).join(", ")}.</p>
${samples}
<h2>Attention on the training image</h2>
${attention}
</body></html>
`
  })
