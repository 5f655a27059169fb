/**
 * A comparison worker (a Node worker thread with its own tensor backend): runs whole grid cells
 * (`@disendiff/builtin/compare`'s `runCell`), posting progress, then the cell's result or its error.
 * An `interrupt` message interrupts the running cell (the trainer saves its checkpoint) and is answered
 * once it has stopped. `workerData` is `{ backend, threads }`.
 */
import type { BackendName } from "@disendiff/core"
import { type CellContext, costs, runCell } from "@disendiff/builtin/compare"
import type { GridCell } from "@disendiff/core/compare/Grid.js"
import { Effect, Fiber, ManagedRuntime } from "effect"
import { parentPort, workerData } from "node:worker_threads"
import { backendLayer } from "./Backends.js"

export type CompareRequest =
  | { readonly _tag: "run"; readonly id: number; readonly ctx: CellContext; readonly cell: GridCell }
  | { readonly _tag: "interrupt"; readonly id: number }

export type CompareReply =
  | { readonly _tag: "progress"; readonly id: number; readonly fraction: number; readonly detail: string }
  | { readonly _tag: "done"; readonly id: number; readonly result: unknown }
  | { readonly _tag: "failed"; readonly id: number; readonly error: { readonly _tag: string; readonly message: string } }
  | { readonly _tag: "interrupted"; readonly id: number }

const { backend, threads } = workerData as { backend: BackendName; threads?: number }
const runtime = ManagedRuntime.make(backendLayer(backend, { threads }))
const running = new Map<number, Fiber.Fiber<unknown, unknown>>()
const post = (reply: CompareReply) => parentPort!.postMessage(reply)

parentPort!.on("message", (req: CompareRequest) => {
  if (req._tag === "interrupt") {
    const fiber = running.get(req.id)
    if (fiber === undefined) return post({ _tag: "interrupted", id: req.id })
    void runtime.runPromise(Fiber.interrupt(fiber)).then(() => post({ _tag: "interrupted", id: req.id }))
    return
  }
  const program = runCell(req.ctx, req.cell, (fraction, detail) => Effect.sync(() => post({ _tag: "progress", id: req.id, fraction, detail })), costs(req.ctx.plan, req.cell.method)).pipe(
    Effect.matchEffect({
      onSuccess: (result) => Effect.sync(() => post({ _tag: "done", id: req.id, result })),
      onFailure: (e) => Effect.sync(() => post({ _tag: "failed", id: req.id, error: { _tag: e._tag, message: e.message } }))
    }),
    Effect.ensuring(Effect.sync(() => running.delete(req.id)))
  )
  running.set(req.id, runtime.runFork(program))
})
