/**
 * The comparison's figures in `OUT/figures/`:
 * - a bar chart per metric (`bars-<metric>.svg` and `.png`): one cluster per prompt group, one bar per
 *   method at its mean, the 95% bootstrap interval as an error bar; the attention overlap likewise;
 * - a sample grid per method (`samples-<method>.png`): a row per grid seed, a column per prompt, each the
 *   prompt's first sampling seed, the same seeds for every method;
 * - attention heatmaps per method (`attention-<method>.png`): per grid seed, the training image beside each
 *   token's map on it.
 * The SVG is written here by hand; the PNG is the same chart drawn into pixels with a 5x7 font.
 */
import { Effect } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { column, enlarge, row } from "@disendiff/core/image/Heatmap.js"
import { decodeImage, encodePng, type RgbImage } from "@disendiff/core/image/Image.js"
import { groupLabel, GROUPS } from "../demo/DemoPlan.js"
import { CompareOutputError } from "./CompareCell.js"
import { drawText, textWidth } from "./Font.js"
import { type CompareResults, type Entry, higherIsBetter, metricLabel, METRICS } from "./Results.js"
import { writeOutputFile } from "../OutputFile.js"

export interface CompareFigure {
  /** Relative to the output folder. */
  readonly file: string
  readonly alt: string
  readonly kind: "bars" | "samples" | "attention"
  /** The SVG text of a chart, to inline in the report. */
  readonly svg?: string | undefined
}

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31"]

export interface BarChart {
  readonly title: string
  readonly clusters: ReadonlyArray<string>
  readonly series: ReadonlyArray<{ readonly label: string; readonly values: ReadonlyArray<Entry> }>
}

const layout = (c: BarChart) => {
  const bar = 14
  const gap = 28
  const left = 46
  const top = 34
  const plotH = 220
  const clusterW = c.series.length * bar + gap
  const legendX = left + c.clusters.length * clusterW + 16
  const legendW = 14 + Math.max(...c.series.map((s) => textWidth(s.label))) + 8
  return { bar, gap, left, top, plotH, clusterW, legendX, width: legendX + legendW + 10, height: top + plotH + 40 }
}

const fmt = (v: number) => v.toFixed(2)
const escapeXml = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")

export const barChartSvg = (c: BarChart): string => {
  const L = layout(c)
  const y = (v: number) => L.top + L.plotH * (1 - Math.min(1, Math.max(0, v)))
  const parts: Array<string> = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${L.width}" height="${L.height}" viewBox="0 0 ${L.width} ${L.height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${L.width}" height="${L.height}" fill="white"/>`,
    `<text x="${L.left}" y="18" font-size="13" font-weight="bold">${escapeXml(c.title)}</text>`
  ]
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    parts.push(`<line x1="${L.left}" x2="${L.legendX - 8}" y1="${y(t)}" y2="${y(t)}" stroke="#ddd"/>`)
    parts.push(`<text x="${L.left - 6}" y="${y(t) + 4}" text-anchor="end">${t.toFixed(2)}</text>`)
  }
  c.clusters.forEach((name, g) => {
    const x0 = L.left + g * L.clusterW + L.gap / 2
    c.series.forEach((s, k) => {
      const e = s.values[g]!
      const x = x0 + k * L.bar
      parts.push(
        `<rect x="${x}" y="${y(e.mean)}" width="${L.bar - 2}" height="${y(0) - y(e.mean)}" fill="${PALETTE[k % PALETTE.length]}"><title>${escapeXml(`${s.label}, ${name}: ${fmt(e.mean)} [${fmt(e.low)}, ${fmt(e.high)}]`)}</title></rect>`
      )
      const cx = x + (L.bar - 2) / 2
      parts.push(`<path d="M${cx} ${y(e.low)}V${y(e.high)}M${cx - 3} ${y(e.low)}h6M${cx - 3} ${y(e.high)}h6" stroke="black" fill="none"/>`)
    })
    parts.push(`<text x="${x0 + (c.series.length * L.bar) / 2}" y="${L.top + L.plotH + 16}" text-anchor="middle">${escapeXml(name)}</text>`)
  })
  parts.push(`<line x1="${L.left}" x2="${L.left}" y1="${L.top}" y2="${y(0)}" stroke="black"/>`)
  parts.push(`<line x1="${L.left}" x2="${L.legendX - 8}" y1="${y(0)}" y2="${y(0)}" stroke="black"/>`)
  c.series.forEach((s, k) => {
    const ly = L.top + k * 16
    parts.push(`<rect x="${L.legendX}" y="${ly}" width="10" height="10" fill="${PALETTE[k % PALETTE.length]}"/>`)
    parts.push(`<text x="${L.legendX + 14}" y="${ly + 9}">${escapeXml(s.label)}</text>`)
  })
  parts.push(`<text x="${L.left}" y="${L.height - 6}" fill="#555">bars: means; whiskers: 95% bootstrap intervals over seeds and prompts</text>`)
  parts.push("</svg>")
  return parts.join("\n") + "\n"
}

const hex = (c: string): [number, number, number] => [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16) / 255) as [number, number, number]

/** The same chart in pixels (at twice the SVG's size, for sharp text). */
export const barChartPng = (c: BarChart): Uint8Array => {
  const L = layout(c)
  const S = 2
  const width = L.width * S
  const height = L.height * S
  const data = new Float32Array(width * height * 3).fill(1)
  const set = (x: number, y: number, rgb: readonly [number, number, number]) => {
    const xi = Math.round(x)
    const yi = Math.round(y)
    if (xi < 0 || yi < 0 || xi >= width || yi >= height) return
    data.set(rgb, (yi * width + xi) * 3)
  }
  const rect = (x: number, y: number, w: number, h: number, rgb: readonly [number, number, number]) => {
    for (let yy = Math.round(y * S); yy < Math.round((y + h) * S); yy++) for (let xx = Math.round(x * S); xx < Math.round((x + w) * S); xx++) set(xx, yy, rgb)
  }
  const black = [0, 0, 0] as const
  const grey = [0.87, 0.87, 0.87] as const
  const text = (s: string, x: number, y: number, anchor: "start" | "middle" | "end" = "start") => {
    const w = textWidth(s, S)
    const x0 = anchor === "start" ? x * S : anchor === "middle" ? x * S - w / 2 : x * S - w
    drawText(s, x0, y * S - 7 * S, S, (px, py) => set(px, py, black))
  }
  const y = (v: number) => L.top + L.plotH * (1 - Math.min(1, Math.max(0, v)))
  text(c.title, L.left, 18)
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    rect(L.left, y(t), L.legendX - 8 - L.left, 0.5, grey)
    text(t.toFixed(2), L.left - 6, y(t) + 4, "end")
  }
  c.clusters.forEach((name, g) => {
    const x0 = L.left + g * L.clusterW + L.gap / 2
    c.series.forEach((s, k) => {
      const e = s.values[g]!
      const x = x0 + k * L.bar
      rect(x, y(e.mean), L.bar - 2, y(0) - y(e.mean), hex(PALETTE[k % PALETTE.length]!))
      const cx = x + (L.bar - 2) / 2
      rect(cx - 0.5, y(e.high), 1, y(e.low) - y(e.high), black)
      rect(cx - 3, y(e.low) - 0.5, 6, 1, black)
      rect(cx - 3, y(e.high) - 0.5, 6, 1, black)
    })
    text(name, x0 + (c.series.length * L.bar) / 2, L.top + L.plotH + 16, "middle")
  })
  rect(L.left, L.top, 1, L.plotH, black)
  rect(L.left, y(0), L.legendX - 8 - L.left, 1, black)
  c.series.forEach((s, k) => {
    const ly = L.top + k * 16
    rect(L.legendX, ly, 10, 10, hex(PALETTE[k % PALETTE.length]!))
    text(s.label, L.legendX + 14, ly + 9)
  })
  return encodePng({ width, height, data })
}

/** The bar charts of a results document: one per metric over the three groups, and the attention overlap. */
export const barCharts = (r: CompareResults): Array<{ readonly name: string; readonly chart: BarChart }> => {
  const labels = r.methods.map((m) => m.label)
  const charts = METRICS.map((metric) => ({
    name: metric,
    chart: {
      title: `${metricLabel[metric]} (${higherIsBetter[metric] ? "higher" : "lower"} is better)`,
      clusters: GROUPS.map((g) => groupLabel[g]),
      series: r.methods.map((m, k) => ({ label: labels[k]!, values: GROUPS.map((g) => r.table[g][metric][m.id]!) }))
    }
  }))
  return [
    ...charts,
    {
      name: "attentionOverlap",
      chart: {
        title: "attention overlap of the class words on the training image (lower is better)",
        clusters: ["training image"],
        series: r.methods.map((m, k) => ({ label: labels[k]!, values: [r.attentionOverlap[m.id]!] }))
      }
    }
  ]
}

const readPng = (file: string) =>
  Effect.gen(function*() {
    const bytes = yield* Effect.tryPromise({
      try: () => fs.readFile(file),
      catch: () => new CompareOutputError({ path: file, reason: "a finished run's image is missing", fix: "remove that run's result.json so that it runs again" })
    })
    return yield* decodeImage(file, bytes).pipe(Effect.mapError((e) => new CompareOutputError({ path: file, reason: e.reason, fix: "remove that run's result.json so that it runs again" })))
  })

const writeFile = (file: string, bytes: string | Uint8Array) => writeOutputFile(file, bytes, (e) => new CompareOutputError(e))

export const writeFigures = (out: string, r: CompareResults) =>
  Effect.gen(function*() {
    const figures: Array<CompareFigure> = []
    for (const { name, chart } of barCharts(r)) {
      const svg = barChartSvg(chart)
      yield* writeFile(path.join(out, "figures", `bars-${name}.svg`), svg)
      yield* writeFile(path.join(out, "figures", `bars-${name}.png`), barChartPng(chart))
      figures.push({ file: `figures/bars-${name}.png`, alt: chart.title, kind: "bars", svg })
    }
    const perPrompt = r.images.filter((i) => i.method === r.methods[0]?.id && i.trainingSeed === r.seeds[0]).length / Math.max(1, r.prompts.length)
    for (const m of r.methods) {
      const rows: Array<RgbImage> = []
      const maps: Array<RgbImage> = []
      for (const seed of r.seeds) {
        const dir = path.join(out, "runs", m.id, `seed-${seed}`)
        const firsts: Array<RgbImage> = []
        for (let p = 0; p < r.prompts.length; p++) firsts.push(yield* readPng(path.join(dir, "samples", `${String(p * perPrompt).padStart(3, "0")}.png`)))
        rows.push(row(firsts))
        maps.push(yield* readPng(path.join(dir, "attention-training.png")))
      }
      const grid = `figures/samples-${m.id}.png`
      yield* writeFile(path.join(out, grid), encodePng(enlarge(column(rows), 3)))
      figures.push({ file: grid, alt: `${m.label}: the first sample of every prompt (columns, in group order), one row per seed (${r.seeds.join(", ")})`, kind: "samples" })
      const attention = `figures/attention-${m.id}.png`
      yield* writeFile(path.join(out, attention), encodePng(column(maps, 4)))
      figures.push({ file: attention, alt: `${m.label}: the training image and each token's attention map on it, one row per seed (${r.seeds.join(", ")})`, kind: "attention" })
    }
    return figures
  })
