/**
 * A pretraining gradient worker (a Node worker thread with its own tensor backend): receives the
 * weights and micro-batch indices, answers with each micro-batch's loss and gradients.
 * Started by GradientWorkerPool; the thread's `workerData` is `{ config, backend, threads }` (threads of
 * this worker's own wasm backend).
 */
import { type BackendName, tf } from "@disendiff/core"
import { MicroBatch, type PretrainConfig } from "@disendiff/builtin"
import { Effect, ManagedRuntime } from "effect"
import { parentPort, workerData } from "node:worker_threads"
import { backendLayer } from "./Backends.js"

export interface WorkerRequest {
  readonly id: number
  readonly names: ReadonlyArray<string>
  readonly shapes: ReadonlyArray<ReadonlyArray<number>>
  readonly data: ReadonlyArray<Float32Array>
  readonly microBatches: ReadonlyArray<number>
}

export type WorkerReply =
  | { readonly id: number; readonly results: ReadonlyArray<{ readonly loss: number; readonly grads: ReadonlyArray<Float32Array> }> }
  | { readonly id: number; readonly error: { readonly _tag: string; readonly fields: Record<string, unknown>; readonly message: string } }

const { config, backend, threads } = workerData as { config: PretrainConfig; backend: BackendName; threads?: number }
const runtime = ManagedRuntime.make(backendLayer(backend, { threads }))
let cached: { readonly key: string; readonly run: ReturnType<typeof MicroBatch.makeMicroBatch> } | undefined
const microBatchFor = (names: ReadonlyArray<string>) => {
  const key = names.join("\n")
  if (cached?.key !== key) cached = { key, run: MicroBatch.makeMicroBatch(config, names) }
  return cached.run
}

const handle = (req: WorkerRequest) =>
  Effect.gen(function*() {
    const microBatch = microBatchFor(req.names)
    const params = new Map(req.names.map((n, i) => [n, tf.tensor(req.data[i]!, [...req.shapes[i]!])]))
    const results: Array<{ loss: number; grads: Array<Float32Array> }> = []
    try {
      for (const mb of req.microBatches) {
        const { value, grads } = yield* microBatch(params, mb)
        const loss = (yield* Effect.promise(() => value.data()))[0]!
        // copies, never views of the backend's heap: they are transferred to the main thread
        const host = yield* Effect.promise(() => Promise.all(grads.map(async (g) => Float32Array.from(await g.data() as Float32Array))))
        tf.dispose([value, ...grads])
        results.push({ loss, grads: host })
      }
    } finally {
      tf.dispose([...params.values()])
    }
    return results
  })

parentPort!.on("message", (req: WorkerRequest) => {
  runtime.runPromise(handle(req)).then(
    (results) => parentPort!.postMessage({ id: req.id, results } satisfies WorkerReply, results.flatMap((r) => r.grads.map((g) => g.buffer as ArrayBuffer))),
    (e: unknown) => {
      const tagged = e as { _tag?: string; message?: string }
      const fields = typeof e === "object" && e !== null ? Object.fromEntries(Object.entries(e)) : {}
      parentPort!.postMessage({ id: req.id, error: { _tag: tagged._tag ?? "Error", fields, message: tagged.message ?? String(e) } } satisfies WorkerReply)
    }
  )
})
