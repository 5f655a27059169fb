/**
 * The comparison's grid as an Effect program: every (method, seed) cell is an independent run (train,
 * sample, score) that a `CellRunner` knows how to do, store and read back. `runGrid` reuses the cells
 * already finished, runs the others `jobs` at a time and reports one progress over the whole grid as a
 * typed `Stream` of events; its results come in cell order whatever `jobs` is, so they do not depend on
 * how many ran at once (each cell is deterministic on its own).
 *
 * Interrupting the stream interrupts every running cell; a runner leaves a cell resumable (the trainer
 * saves its checkpoint on interrupt) and writes its result last, so a cell is either finished or resumed.
 */
import { Clock, Effect, Queue, Stream } from "effect"

export interface GridCell {
  readonly method: string
  readonly seed: number
}

export const cellName = (c: GridCell) => `${c.method}/seed-${c.seed}`

export interface CellRunner<R, E, Rq> {
  /** A finished cell's stored result, or undefined when it has not finished. */
  readonly load: (cell: GridCell) => Effect.Effect<R | undefined, E, Rq>
  /** Runs a cell (continuing what an interrupted run left), reporting the fraction of it done. */
  readonly run: (cell: GridCell, progress: (fraction: number, detail: string) => Effect.Effect<void>) => Effect.Effect<R, E, Rq>
  /** What a cell costs relative to the others (e.g. denoiser row passes), for one progress and ETA. */
  readonly cost: (cell: GridCell) => number
}

export type GridEvent<R> =
  | {
    readonly _tag: "GridStarted"
    readonly cells: ReadonlyArray<GridCell>
    /** Cells whose stored results are reused. */
    readonly reused: number
    readonly jobs: number
  }
  | { readonly _tag: "CellStarted"; readonly cell: GridCell; readonly index: number }
  | {
    readonly _tag: "GridProgress"
    readonly cell: GridCell
    readonly detail: string
    /** Of the work left to do when the grid started. */
    readonly fraction: number
    readonly running: number
    readonly finished: number
    readonly total: number
    readonly elapsedSeconds: number
    readonly etaSeconds: number
  }
  | { readonly _tag: "CellFinished"; readonly cell: GridCell; readonly index: number; readonly result: R; readonly reused: boolean; readonly seconds: number }
  | { readonly _tag: "GridFinished"; readonly results: ReadonlyArray<{ readonly cell: GridCell; readonly result: R }>; readonly seconds: number }

export interface GridOptions<R, E, Rq> {
  readonly cells: ReadonlyArray<GridCell>
  /** Cells run at once (at least 1). */
  readonly jobs: number
  readonly runner: CellRunner<R, E, Rq>
}

/** The cells of methods x seeds, method-major (every seed of the first method, then the next). */
export const gridCells = (methods: ReadonlyArray<string>, seeds: ReadonlyArray<number>): ReadonlyArray<GridCell> =>
  methods.flatMap((method) => seeds.map((seed) => ({ method, seed })))

export const runGrid = <R, E, Rq>(options: GridOptions<R, E, Rq>): Stream.Stream<GridEvent<R>, E, Rq> =>
  Stream.callback<GridEvent<R>, E, Rq>((queue) =>
    program(options, (e) => Queue.offer(queue, e)).pipe(Effect.andThen(Queue.end(queue)))
  )

const program = <R, E, Rq>(options: GridOptions<R, E, Rq>, emit: (e: GridEvent<R>) => Effect.Effect<unknown>) =>
  Effect.gen(function*() {
    const { cells, runner } = options
    const jobs = Math.max(1, Math.floor(options.jobs))
    const t0 = yield* Clock.currentTimeMillis
    const results: Array<R | undefined> = yield* Effect.forEach(cells, (c) => runner.load(c))
    const reusedCount = results.filter((r) => r !== undefined).length
    yield* emit({ _tag: "GridStarted", cells, reused: reusedCount, jobs })
    for (const [index, cell] of cells.entries()) {
      const result = results[index]
      if (result !== undefined) yield* emit({ _tag: "CellFinished", cell, index, result, reused: true, seconds: 0 })
    }
    const pending = cells.map((cell, index) => ({ cell, index })).filter((p) => results[p.index] === undefined)
    const costs = pending.map((p) => Math.max(0, runner.cost(p.cell)))
    const work = costs.reduce((a, c) => a + c, 0)
    const fractions = new Float64Array(pending.length)
    let running = 0
    let finished = reusedCount
    // the rate is measured from the first progress report on (starting a model is not its speed)
    let rateStart: { readonly at: number; readonly done: number } | undefined
    const doneWork = () => costs.reduce((a, c, k) => a + c * fractions[k]!, 0)
    const report = (k: number, cell: GridCell, fraction: number, detail: string) =>
      Effect.gen(function*() {
        fractions[k] = Math.min(1, Math.max(fractions[k]!, fraction))
        const done = doneWork()
        const now = yield* Clock.currentTimeMillis
        const elapsedSeconds = (now - t0) / 1000
        const rate = rateStart === undefined || now === rateStart.at ? Number.NaN : (done - rateStart.done) / ((now - rateStart.at) / 1000)
        rateStart ??= { at: now, done }
        const etaSeconds = Number.isFinite(rate) && rate > 0 ? (work - done) / rate : Number.NaN
        yield* emit({
          _tag: "GridProgress",
          cell,
          detail,
          fraction: work > 0 ? done / work : 1,
          running,
          finished,
          total: cells.length,
          elapsedSeconds,
          etaSeconds
        })
      })
    yield* Effect.forEach(
      pending,
      ({ cell, index }, k) =>
        Effect.gen(function*() {
          running++
          yield* emit({ _tag: "CellStarted", cell, index })
          const started = yield* Clock.currentTimeMillis
          const result = yield* runner.run(cell, (fraction, detail) => report(k, cell, fraction, detail)).pipe(Effect.ensuring(Effect.sync(() => running--)))
          results[index] = result
          finished++
          yield* report(k, cell, 1, "finished")
          yield* emit({ _tag: "CellFinished", cell, index, result, reused: false, seconds: ((yield* Clock.currentTimeMillis) - started) / 1000 })
        }),
      { concurrency: jobs, discard: true }
    )
    yield* emit({
      _tag: "GridFinished",
      results: cells.map((cell, i) => ({ cell, result: results[i]! })),
      seconds: ((yield* Clock.currentTimeMillis) - t0) / 1000
    })
  })
