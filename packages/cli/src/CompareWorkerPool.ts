/**
 * Grid cells on worker threads: `count` workers, each with its own backend, each running one cell at a
 * time. A cell goes to whichever worker is free; the grid collects results in cell order, so the outcome
 * does not depend on the count. Interrupting a cell asks its worker to interrupt it and waits until the
 * worker has saved the cell's checkpoint.
 */
import type { BackendName } from "@disendiff/core"
import { CellFailed, type CellContext, type CellResult, type CompareError, CompareOutputError, cellCost, loadCell } from "@disendiff/builtin/compare"
import type { CellRunner, GridCell } from "@disendiff/core/compare/Grid.js"
import { Effect, Queue } from "effect"
import { Worker } from "node:worker_threads"
import type { CompareReply, CompareRequest } from "./CompareWorker.js"


export const makeCompareWorkers = (o: { readonly count: number; readonly backend: BackendName; readonly threads?: number | undefined }) =>
  Effect.gen(function*() {
    const workers = yield* Effect.acquireRelease(
      Effect.sync(() => Array.from({ length: o.count }, () => new Worker(new URL("./CompareWorker.js", import.meta.url), { workerData: { backend: o.backend, threads: o.threads } }))),
      (ws) => Effect.promise(() => Promise.all(ws.map((w) => w.terminate())))
    )
    const free = yield* Queue.unbounded<Worker>()
    for (const w of workers) yield* Queue.offer(free, w)
    let nextId = 0
    const ask = (worker: Worker, ctx: CellContext, cell: GridCell, progress: (f: number, d: string) => Effect.Effect<void>) =>
      Effect.callback<CellResult, CellFailed>((resume) => {
        const id = nextId++
        const onMessage = (reply: CompareReply) => {
          if (reply.id !== id) return
          if (reply._tag === "progress") return void Effect.runFork(progress(reply.fraction, reply.detail))
          if (reply._tag === "interrupted") return
          cleanup()
          if (reply._tag === "done") resume(Effect.succeed(reply.result as CellResult))
          else resume(Effect.fail(new CellFailed({ reason: reply.error.message })))
        }
        const onError = (e: Error) => {
          cleanup()
          resume(Effect.fail(new CellFailed({ reason: `a comparison worker failed: ${e.message}` })))
        }
        const cleanup = () => {
          worker.off("message", onMessage)
          worker.off("error", onError)
        }
        worker.on("message", onMessage)
        worker.on("error", onError)
        worker.postMessage({ _tag: "run", id, ctx, cell } satisfies CompareRequest)
        // on interrupt: ask the worker to stop the cell, and wait until its checkpoint is saved
        return Effect.callback<void>((done) => {
          const onStopped = (reply: CompareReply) => {
            if (reply.id !== id || (reply._tag !== "interrupted" && reply._tag !== "done" && reply._tag !== "failed")) return
            worker.off("message", onStopped)
            cleanup()
            done(Effect.void)
          }
          worker.on("message", onStopped)
          worker.postMessage({ _tag: "interrupt", id } satisfies CompareRequest)
        })
      })
    return (ctx: CellContext): CellRunner<CellResult, CompareError, never> => ({
      load: (cell) => loadCell(ctx, cell),
      cost: (cell) => cellCost(ctx.plan, cell.method),
      run: (cell, progress) =>
        Effect.acquireUseRelease(Queue.take(free), (w) => ask(w, ctx, cell, progress), (w) => Queue.offer(free, w))
    })
  })

export { CompareOutputError }
