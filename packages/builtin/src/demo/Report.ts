/**
 * The demo's `report.html`: one self-contained page (images embedded as data: URIs, no scripts, no
 * external resources) that says what was run, shows the training image, the attention maps of every
 * token, every sample of both methods side by side, and the numbers, with a short explanation of the
 * method and of what to look at.
 */
import { escapeAttribute, escapeText } from "entities/escape"
import { novelAppearance } from "../world/NovelAppearance.js"
import { type DemoPlan, groupLabel, GROUPS, type GroupName, METHODS, type MethodName, methodLabel, type PlannedPrompt } from "./DemoPlan.js"
import type { DemoMetrics, Scores, TermGradients } from "./Metrics.js"

/** A PNG written to the output folder (`file` relative to it) and embedded in the page. */
export interface Figure {
  readonly file: string
  readonly png: Uint8Array
  readonly alt: string
}

/** A row of equal cells: the image, then one heatmap per token. */
export interface TokenFigure {
  readonly figure: Figure
  readonly tokens: ReadonlyArray<string>
}

export interface ReportInput {
  readonly metrics: DemoMetrics
  readonly trainingImage: Figure
  /** The first seed of every prompt, both methods. */
  readonly overview: Figure
  readonly trainingAttention: Readonly<Record<MethodName, TokenFigure>>
  readonly prompts: ReadonlyArray<{
    readonly planned: PlannedPrompt
    readonly methods: Readonly<Record<MethodName, { readonly grid: Figure; readonly attention: TokenFigure }>>
  }>
}

/** "concept 1 alone (<v1>, the ring)". */
const groupTitle = (plan: DemoPlan, g: GroupName): string => {
  const label = groupLabel[g][0]!.toUpperCase() + groupLabel[g].slice(1)
  const concept = g === "concept1" ? plan.concepts[0] : g === "concept2" ? plan.concepts[1] : undefined
  return concept === undefined ? label : `${label} (${concept.modifier}, the ${concept.concept})`
}

const t = (s: string) => escapeText(s)
const num = (x: number | null) => (x === null || !Number.isFinite(x) ? "-" : x.toFixed(2))

const img = (f: Figure, extra = "") =>
  `<img src="data:image/png;base64,${Buffer.from(f.png).toString("base64")}" alt="${escapeAttribute(f.alt)}" title="${escapeAttribute(f.file)}"${extra}>`

const figure = (f: Figure, caption: string) => `<figure>${img(f)}<figcaption>${t(caption)}</figcaption></figure>`

/** The heatmap row with each cell labelled beneath it (cells are equal, so the labels follow any scaling). */
const tokenFigure = (f: TokenFigure, caption: string) => {
  const cells = ["image", ...f.tokens]
  // 32-px cells and a 4-px colour scale, 2-px gaps, at any enlargement
  const total = cells.length * 32 + 4 + cells.length * 2
  const columns = `${cells.map(() => `${((100 * 32) / total).toFixed(3)}%`).join(" ")} ${((100 * 4) / total).toFixed(3)}%`
  return `<figure class="tokens">${img(f.figure)}<div class="labels" style="grid-template-columns: ${columns}; column-gap: ${
    ((100 * 2) / total).toFixed(3)
  }%">${cells.map((c) => `<span>${t(c)}</span>`).join("")}<span>max<br>min</span></div><figcaption>${t(caption)} Each map is scaled from its own minimum to its maximum (the bar on the right).</figcaption></figure>`
}

/**
 * What this run's numbers say, in one line, from the numbers themselves: the concept-alone groups'
 * leakage and image alignment of DisenDiff against the baseline, and whether the concepts were learned
 * at all: under 0.6 is barely above the 0.5 a right shape alone earns (`Metrics.ts`), so neither method
 * shows the concepts and the comparison says nothing.
 */
export const reading = (m: DemoMetrics): string => {
  const groups = ["concept1", "concept2"] as const
  const mean = (k: MethodName, key: "leakage" | "imageAlignment") => groups.reduce((a, g) => a + m.summary[k][g][key], 0) / groups.length
  const [dl, bl] = [mean("disendiff", "leakage"), mean("baseline", "leakage")]
  const [da, ba] = [mean("disendiff", "imageAlignment"), mean("baseline", "imageAlignment")]
  const cmp = (a: number, b: number) => (Math.abs(a - b) < 0.005 ? "the same as" : a < b ? "lower than" : "higher than")
  const learned = Math.max(da, ba) >= 0.6
  return `with concepts prompted alone, DisenDiff's leakage (${dl.toFixed(2)}) is ${cmp(dl, bl)} Custom Diffusion's (${bl.toFixed(2)}) and its image alignment ` +
    `(${da.toFixed(2)}) ${cmp(da, ba)} Custom Diffusion's (${ba.toFixed(2)}); ` +
    (learned
      ? `one seed is one draw: the table over several seeds (docs/demo-seeds.md) says whether the difference holds.`
      : `image alignment under 0.6 for both means the model did not learn the concepts, so this run cannot show the method either way.`)
}

/** The mean over the measured steps of weight x |grad term| / |grad base| (null when the term was off). */
export const pull = (gs: ReadonlyArray<TermGradients>, term: "bind" | "separation"): number | null => {
  const xs = gs.flatMap((g) => (g[term] === null || g.base === 0 ? [] : [(g.weight * g[term]!) / g.base]))
  return xs.length === 0 ? null : xs.reduce((a, x) => a + x, 0) / xs.length
}

const scoreLine = (s: Scores) =>
  `image alignment ${num(s.imageAlignment)} · text alignment ${num(s.textAlignment)} · leakage ${num(s.leakage)} · all correct ${num(s.allCorrect)} (${s.images} images)`

const STYLE = `
body { font-family: system-ui, sans-serif; max-width: 1120px; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45 }
img { image-rendering: pixelated; max-width: 100%; height: auto; display: block }
figure { margin: 0.6em 0 1.2em }
figcaption { font-size: 0.88em; color: #555 }
table { border-collapse: collapse; margin: 0.6em 0 }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em }
td.n { text-align: right; font-variant-numeric: tabular-nums }
.warning { background: #fff3cd; border: 1px solid #d9b54a; padding: 0.6em 1em }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 1.2em }
.tokens .labels { display: grid; font-size: 0.75em; text-align: center; overflow-wrap: anywhere }
code { background: #f3f3f3; padding: 0 0.2em }
`

export const renderReport = (r: ReportInput): string => {
  const m = r.metrics
  const plan = m.plan
  const [c1, c2] = plan.concepts.map((c) => ({ ...c, look: novelAppearance(c.concept) }))
  const out: Array<string> = []
  out.push(`<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">`)
  out.push(`<title>DisenDiff demo, seed ${m.seed}</title><style>${STYLE}</style></head><body>`)
  out.push(`<h1>DisenDiff on the built-in model</h1>`)
  if (!m.weights.builtin) {
    out.push(
      `<p class="warning">These results come from the weights file <code>${t(m.weights.file)}</code>, not from the built-in model. ` +
        `If it is an untrained stand-in, the images are noise and the numbers say nothing about the method.</p>`
    )
  }

  out.push(`<h2 id="what">What this shows</h2>`)
  out.push(`<p class="reading"><b>In one line:</b> ${t(reading(m))}</p>`)
  out.push(
    `<p>The training image below holds two new concepts that the world's words cannot name: ${t(c1?.modifier ?? "")}, ${t(c1?.look.description ?? "")}, ` +
      `and ${t(c2?.modifier ?? "")}, ${t(c2?.look.description ?? "")}. The built-in text-to-image model was personalised on this one image and its caption ` +
      `twice, from the same seed and data, with two methods that differ only in DisenDiff's attention losses.</p>`
  )
  out.push(
    `<p><b>${t(methodLabel.baseline)}</b> fine-tunes the key and value projections of every cross-attention layer and one new token embedding per concept ` +
      `with the denoising loss alone. <b>${t(methodLabel.disendiff)}</b> (CVPR 2024) adds two losses on the 16x16 cross-attention maps: ` +
      `L<sub>bind</sub> pulls each modifier token's map onto its class word's map, and L<sub>s&amp;s</sub> separates the class words' maps ` +
      `(each map is smoothed and squared to suppress weak attention, then compared by soft IoU), so that each new token binds to its own object.</p>`
  )
  out.push(
    `<p><b>What to look at.</b> The prompts with one concept alone: where the two concepts are entangled, the other one shows up as well, ` +
      `or the asked object takes on the other's look (leakage). The attention maps of the class words on the training image: under DisenDiff ` +
      `each should cover its own object, under the baseline they may overlap. Both methods sample with the same seeds, so images pair up.</p>`
  )

  out.push(`<h2 id="setup">Training image and settings</h2>`)
  out.push(figure(r.trainingImage, `training image (${r.trainingImage.file}): "${m.caption}"`))
  const tr = plan.training
  const sa = plan.sampling
  const settings: Array<[string, string]> = [
    ["seed", String(m.seed)],
    ["mode", plan.quick ? "quick" : "full"],
    ["training steps", String(tr.steps)],
    ["learning rate", String(tr.learningRate)],
    ["batch size x accumulation", `${tr.batchSize} x ${tr.gradientAccumulation}`],
    ["regularisation images", String(tr.regularizationImages)],
    ["sampling", `DDIM, ${sa.steps} steps, guidance ${sa.guidance}, ${sa.seedsPerPrompt} seeds per prompt`],
    ["attention read at timesteps", plan.attentionTimesteps.join(", ")],
    ["model", `${m.weights.model} (${m.weights.file}, identity ${m.weights.identity.slice(0, 12)})`],
    ["backend", m.backend],
    ["time", `${m.seconds.toFixed(0)} s in all; training ${METHODS.map((k) => `${methodLabel[k]} ${m.training[k].seconds.toFixed(0)} s`).join(", ")}`]
  ]
  out.push(`<table id="settings">${settings.map(([k, v]) => `<tr><th>${t(k)}</th><td>${t(v)}</td></tr>`).join("")}</table>`)

  out.push(`<h2 id="numbers">Numbers</h2>`)
  const head = `<tr><th>prompts</th><th>metric</th>${METHODS.map((k) => `<th>${t(methodLabel[k])}</th>`).join("")}</tr>`
  const rows: Array<string> = []
  for (const g of GROUPS) {
    for (const [key, label] of [["imageAlignment", "image alignment ↑"], ["textAlignment", "text alignment ↑"], ["leakage", "leakage ↓"]] as const) {
      rows.push(`<tr><td>${t(groupTitle(plan, g))}</td><td>${label}</td>${METHODS.map((k) => `<td class="n">${num(m.summary[k][g][key])}</td>`).join("")}</tr>`)
    }
  }
  rows.push(`<tr><td>training image</td><td>attention overlap of the class words ↓</td>${METHODS.map((k) => `<td class="n">${num(m.summary[k].attentionOverlap)}</td>`).join("")}</tr>`)
  const shareTokens = [...new Set(METHODS.flatMap((k) => Object.keys(m.summary[k].attentionOnOwnObject.training)))]
  for (const where of ["training", "samples"] as const) {
    for (const token of shareTokens) {
      rows.push(`<tr><td>${where === "training" ? "training image" : "samples"}</td><td>attention of ${t(token)} on its own object ↑</td>${
        METHODS.map((k) => {
          const s = m.summary[k].attentionOnOwnObject[where][token]
          return `<td class="n">${s === undefined ? "-" : `${num(s.share)}${where === "samples" ? ` <small>(${s.n})</small>` : ""}`}</td>`
        }).join("")
      }</tr>`)
    }
  }
  for (const term of ["bind", "separation"] as const) {
    rows.push(`<tr><td>training</td><td>pull of L<sub>${term === "bind" ? "bind" : "s&amp;s"}</sub>: weight x |grad| / |grad L<sub>base</sub>|</td>${
      METHODS.map((k) => {
        const x = pull(m.training[k].termGradients, term)
        // small at the paper's weight 0.01: two significant digits, not two decimals
        return `<td class="n">${x === null ? "-" : x.toPrecision(2)}</td>`
      }).join("")
    }</tr>`)
  }
  rows.push(`<tr><td>training (last step)</td><td>loss</td>${METHODS.map((k) => `<td class="n">${num(m.training[k].loss)}</td>`).join("")}</tr>`)
  out.push(`<table id="metrics">${head}${rows.join("")}</table>`)
  out.push(
    `<ul><li><b>Image alignment</b>: how close each asked concept is to its reference object: the mean of its appearance similarity (both tones, each in its place) and its shape check, for the object matched to it.</li>` +
      `<li><b>Text alignment</b>: the share of the prompt's requests the image meets: object count, shapes, colours or appearances, background.</li>` +
      `<li><b>Leakage</b>: the share of images that show a concept more often than the prompt asks for it (the other concept appears, or an object takes on its look).</li>` +
      `<li><b>Pull of L<sub>bind</sub>, L<sub>s&amp;s</sub></b>: how hard each calibration term pulls on the trainable weights relative to the diffusion loss, the mean over the steps where the gradient norms were measured (the first and every 50th); the baseline trains without them (-).</li>` +
      `<li><b>Attention on its own object</b>: the share of a modifier's or class word's attention (summed to 1) that falls on the object it names, found by the evaluator; on samples, the mean over images that show every named object (their number in brackets). Calibration should raise it.</li>` +
      `<li><b>Attention overlap</b>: soft IoU of the two class words' attention maps on the training image (min-max normalised), what L<sub>s&amp;s</sub> lowers.</li></ul>` +
      `<p>All are measured by the shapes world's analytic evaluator (no neural network), per image, and averaged over the prompts' images. ` +
      `One seed is one draw: see the spread across seeds before reading a difference as the method's effect.</p>`
  )

  out.push(`<h2 id="attention">Attention on the training image</h2>`)
  for (const k of METHODS) out.push(tokenFigure(r.trainingAttention[k], `${methodLabel[k]}: each token's cross-attention (16x16 layers, mean over heads, layers and timesteps ${plan.attentionTimesteps.join(", ")})`))

  out.push(`<h2 id="samples">Samples</h2>`)
  out.push(figure(r.overview, `the first seed of every prompt in order: ${methodLabel.disendiff} above, ${methodLabel.baseline} below`))
  for (const g of GROUPS) {
    out.push(`<h3>${t(groupTitle(plan, g))}</h3>`)
    for (const p of r.prompts.filter((q) => q.planned.group === g)) {
      out.push(`<h4>“${t(p.planned.prompt)}”</h4><div class="pair">`)
      const scores = m.prompts.find((q) => q.prompt === p.planned.prompt && q.group === g)
      for (const k of METHODS) {
        const s = scores?.methods[k]
        out.push(`<div>${figure(p.methods[k].grid, `${methodLabel[k]}, seeds ${p.planned.seeds.join(", ")}: ${s === undefined ? "" : scoreLine(s)}`)}`)
        out.push(`${tokenFigure(p.methods[k].attention, `attention while sampling seed ${p.planned.seeds[0]}`)}</div>`)
      }
      out.push(`</div>`)
    }
  }

  out.push(`<h2 id="prompts">Prompts and seeds</h2>`)
  for (const g of GROUPS) {
    out.push(`<h3>${t(groupTitle(plan, g))}</h3><ul>`)
    for (const p of r.prompts.filter((q) => q.planned.group === g)) out.push(`<li><code>${t(p.planned.prompt)}</code>, seeds ${p.planned.seeds.join(", ")}</li>`)
    out.push(`</ul>`)
  }
  out.push(`<p>Files: <code>metrics.json</code> (every number above, per image), <code>figures/</code>, the checkpoints of both runs ` +
    `(${METHODS.map((k) => `<code>${t(m.training[k].checkpoint)}</code>`).join(", ")}).</p>`)
  out.push(`</body></html>\n`)
  return out.join("\n")
}
