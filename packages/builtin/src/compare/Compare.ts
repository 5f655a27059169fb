/**
 * `disendiff compare` on the built-in model, as a program: draw the shared data (the demo's training
 * image and regularisation renders), run the grid of methods x seeds (core's `runGrid`: finished cells
 * reused, `jobs` at once), then write `results.json`, the figures and `report.html`. A typed `Stream` of
 * events: the grid's, then `Written`.
 *
 * Cells run in this thread by default; the CLI passes a runner that sends them to worker threads.
 */
import { Effect, Queue, Stream } from "effect"
import { createHash } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { type CellRunner, type GridEvent, gridCells, runGrid } from "@disendiff/core/compare/Grid.js"
import { methodDefinition } from "@disendiff/core/compare/Methods.js"
import { encodePng } from "@disendiff/core/image/Image.js"
import type { TensorRuntime } from "@disendiff/core/tensor/TensorRuntime.js"
import * as ToyBackbone from "../backbone/ToyBackbone.js"
import { regularizationSet, trainingImage } from "../demo/DemoData.js"
import { checkPlan } from "../demo/DemoPlan.js"
import type { CaptionError } from "../world/Caption.js"
import { type CellContext, type CellError, type CellResult, CompareOutputError, loadCell, runCell } from "./CompareCell.js"
import { cellCost, cellConfig, type ComparePlan, dataFiles } from "./ComparePlan.js"
import { writeFigures } from "./Figures.js"
import { type CompareResults, summariseResults } from "./Results.js"
import { renderCompareReport } from "./CompareReport.js"
import { writeOutputFile } from "../OutputFile.js"

export type CompareEvent =
  | { readonly _tag: "Prepared"; readonly out: string; readonly cells: number; readonly methods: ReadonlyArray<string>; readonly seeds: ReadonlyArray<number> }
  | GridEvent<CellResult>
  | { readonly _tag: "Written"; readonly results: string; readonly report: string; readonly summary: CompareResults }

export type CompareError = CellError | CaptionError

export interface CompareOptions<R = TensorRuntime> {
  readonly plan: ComparePlan
  readonly out: string
  /** Built-in weights file (default: the committed model). */
  readonly weights?: string | undefined
  /** Cells at once (default 1). */
  readonly jobs?: number | undefined
  /** How cells run (default: in this thread, one at a time whatever `jobs`). */
  readonly runner?: ((ctx: CellContext) => CellRunner<CellResult, CompareError, R>) | undefined
}

/** Each cell's cost, its training's part (class images included) and their part, in denoiser row passes. */
export const costs = (plan: ComparePlan, method: string) => {
  const c = cellConfig(plan, method, 0, ".", "")
  const prepare = c.regularization.generate * 100
  return { prepare, train: c.steps * c.batchSize * c.gradientAccumulation * 3 + prepare, total: cellCost(plan, method) }
}

/** Cells run in this thread (the default runner). */
export const inProcessRunner = (ctx: CellContext): CellRunner<CellResult, CompareError, TensorRuntime> => ({
  load: (cell) => loadCell(ctx, cell),
  run: (cell, progress) => runCell(ctx, cell, progress, costs(ctx.plan, cell.method)),
  cost: (cell) => cellCost(ctx.plan, cell.method)
})

const write = (file: string, bytes: string | Uint8Array) => writeOutputFile(file, bytes, (e) => new CompareOutputError(e))

/** Draws the shared data into `out/data` (the same bytes every time) and returns the cells' context. */
export const prepare = (plan: ComparePlan, outDir: string, weights?: string) =>
  Effect.gen(function*() {
    const planError = checkPlan(plan.demo)
    if (planError !== undefined) return yield* planError
    for (const m of plan.methods) {
      if (methodDefinition(m) === undefined) return yield* new CompareOutputError({ path: m, reason: "no such method", fix: "see `disendiff compare --help`" })
    }
    const out = path.resolve(outDir)
    const data = trainingImage(plan.demo)
    yield* write(path.join(out, dataFiles.image), encodePng(data.image))
    const regularization = regularizationSet(plan.demo)
    if (regularization.length > 0) {
      const dir = path.join(out, dataFiles.regularization)
      for (const [i, r] of regularization.entries()) yield* write(path.join(dir, `${String(i).padStart(4, "0")}.png`), encodePng(r.image))
      yield* write(path.join(dir, "captions.txt"), regularization.map((r) => r.caption).join("\n") + "\n")
    }
    const weightsFile = weights ?? ToyBackbone.builtinWeightsPath
    const bytes = yield* Effect.tryPromise({
      try: () => fs.readFile(weightsFile),
      catch: () => new CompareOutputError({ path: weightsFile, reason: "cannot read the weights file", fix: "give a built-in model weights file (--weights)" })
    })
    const ctx: CellContext = { plan, out, caption: data.caption, weightsDigest: createHash("sha256").update(bytes).digest("hex"), weights }
    return ctx
  })

export const run = <R = TensorRuntime>(options: CompareOptions<R>): Stream.Stream<CompareEvent, CompareError, R | TensorRuntime> =>
  Stream.callback<CompareEvent, CompareError, R | TensorRuntime>((queue) =>
    program(options, (e) => Queue.offer(queue, e)).pipe(Effect.andThen(Queue.end(queue)))
  )

const program = <R>(options: CompareOptions<R>, emit: (e: CompareEvent) => Effect.Effect<unknown>) =>
  Effect.gen(function*() {
    const { plan } = options
    const ctx = yield* prepare(plan, options.out, options.weights)
    const cells = gridCells(plan.methods, plan.seeds)
    yield* emit({ _tag: "Prepared", out: ctx.out, cells: cells.length, methods: plan.methods, seeds: plan.seeds })
    const runner = (options.runner ?? (inProcessRunner as unknown as (c: CellContext) => CellRunner<CellResult, CompareError, R | TensorRuntime>))(ctx)
    let results: ReadonlyArray<CellResult> = []
    yield* runGrid({ cells, jobs: options.runner === undefined ? 1 : options.jobs ?? 1, runner }).pipe(
      Stream.runForEach((e) => {
        if (e._tag === "GridFinished") results = e.results.map((r) => r.result)
        return emit(e)
      })
    )
    const summary = summariseResults({ plan, out: ctx.out, caption: ctx.caption, weights: { file: options.weights ?? "built-in", sha256: ctx.weightsDigest }, cells: results })
    const resultsFile = path.join(ctx.out, "results.json")
    yield* write(resultsFile, JSON.stringify(summary, null, 2) + "\n")
    const figures = yield* writeFigures(ctx.out, summary)
    const reportFile = path.join(ctx.out, "report.html")
    yield* write(reportFile, yield* renderCompareReport(ctx.out, summary, figures))
    yield* emit({ _tag: "Written", results: resultsFile, report: reportFile, summary })
  })
