/**
 * Pretraining's micro-batches on worker threads: one tensor backend per thread, so a two-core machine
 * computes two micro-batches at once. Worker k takes micro-batches k, k + n, ...; results come back in
 * micro-batch order and are summed in that order, so a run is bit-identical with any number of workers.
 */
import { type BackendName, type HostTensor, OutOfMemory } from "@disendiff/core"
import { GradientWorkerError, MicroBatch, type PretrainConfig } from "@disendiff/builtin"
import { Effect } from "effect"
import { Worker } from "node:worker_threads"
import type { WorkerReply, WorkerRequest } from "./GradientWorker.js"

export const makeGradientWorkers = (options: { readonly count: number; readonly config: PretrainConfig; readonly backend: BackendName; readonly threads?: number }) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const workerData = { config: options.config, backend: options.backend, threads: options.threads }
      return Array.from({ length: options.count }, () => new Worker(new URL("./GradientWorker.js", import.meta.url), { workerData }))
    }),
    (workers) => Effect.promise(() => Promise.all(workers.map((w) => w.terminate())))
  ).pipe(Effect.map((workers): MicroBatch.GradientWorkers => {
    let nextId = 0
    const ask = (worker: Worker, req: WorkerRequest) =>
      Effect.callback<ReadonlyArray<MicroBatch.HostGradients>, GradientWorkerError | OutOfMemory>((resume) => {
        const onMessage = (reply: WorkerReply) => {
          if (reply.id !== req.id) return
          cleanup()
          if ("results" in reply) resume(Effect.succeed(reply.results))
          else if (reply.error._tag === "OutOfMemory") resume(Effect.fail(new OutOfMemory(reply.error.fields as ConstructorParameters<typeof OutOfMemory>[0])))
          else resume(Effect.fail(new GradientWorkerError({ reason: reply.error.message })))
        }
        const onError = (e: Error) => {
          cleanup()
          resume(Effect.fail(new GradientWorkerError({ reason: e.message })))
        }
        const onExit = (code: number) => {
          cleanup()
          resume(Effect.fail(new GradientWorkerError({ reason: `the thread exited with code ${code}` })))
        }
        const cleanup = () => {
          worker.off("message", onMessage)
          worker.off("error", onError)
          worker.off("exit", onExit)
        }
        worker.on("message", onMessage)
        worker.on("error", onError)
        worker.on("exit", onExit)
        worker.postMessage(req)
      })
    return {
      count: workers.length,
      compute: (params: ReadonlyMap<string, HostTensor>, microBatches: ReadonlyArray<number>) =>
        Effect.gen(function*() {
          const names = [...params.keys()]
          const shapes = names.map((n) => params.get(n)!.shape)
          const data = names.map((n) => params.get(n)!.data)
          const assigned = workers.map((_, k) => microBatches.filter((_, i) => i % workers.length === k))
          const replies = yield* Effect.forEach(
            workers.map((w, k) => [w, assigned[k]!] as const).filter(([, mbs]) => mbs.length > 0),
            ([w, mbs]) => ask(w, { id: nextId++, names, shapes, data, microBatches: mbs }),
            { concurrency: "unbounded" }
          )
          // back to micro-batch order: the i-th index went to worker i % n as its (i / n)-th
          return microBatches.map((_, i) => replies[i % workers.length]![Math.floor(i / workers.length)]!)
        })
    }
  }))
