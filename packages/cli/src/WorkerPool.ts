/**
 * Worker threads, one tensor backend each, so that a two-core machine computes two things at once:
 * pretraining micro-batches, personalisation micro-batches, or chunks of a sampling job. A job takes
 * whichever worker is free; results come back in the order of the work (micro-batch or chunk), and
 * the callers sum or join them in that order, so a result is bit-identical with any number of workers.
 */
import { type BackendName, type HostTensor, OutOfMemory, PromptError } from "@disendiff/core"
import type { BackboneSpec, BackboneWorkers, MicroBatch, PretrainConfig } from "@disendiff/builtin"
import type { SampleOutput, SampleWorkers } from "@disendiff/core/sampling/SampleJob.js"
import type { HostPart, TrainData, TrainWorkers } from "@disendiff/core/training/TrainMicroBatch.js"
import type { TrainEvent } from "@disendiff/core/training/Trainer.js"
import { WorkerError } from "@disendiff/core/training/WorkerError.js"
import { Effect, Option, Queue } from "effect"
import { Flag } from "effect/cli"
import { Worker } from "node:worker_threads"
import { UsageError } from "./Errors.js"
import type { WorkerReply, WorkerRequest } from "./Worker.js"

/** `--workers N` of the commands that run a backbone's micro-batches and sampling chunks on threads. */
export const workersFlag = Flag.Int("workers").pipe(
  Flag.withDescription(`worker threads for training micro-batches, training runs and sampling batches, sharing --threads (default: one per thread of --threads, on wasm and cpu); the result is the same for any number`),
  Flag.optional
)

/**
 * The worker count: given, or one per thread of the run's thread count (`--threads`, whose default is the
 * machine's cores, or `DISENDIFF_THREADS` on a shared machine) where a backend can run once per thread.
 */
export const workerCount = (flag: Option.Option<number>, backend: BackendName, threads: number) =>
  Effect.gen(function*() {
    const threaded = backend === "wasm" || backend === "cpu"
    const count = Option.getOrElse(flag, () => (threaded ? Math.max(1, Math.min(8, threads)) : 1))
    if (count < 1 || (count > 1 && !threaded)) {
      return yield* new UsageError({ message: `--workers ${count}: use 1 or more, and more than 1 only with --backend wasm or cpu (one device cannot be shared by threads)` })
    }
    return count
  })

export interface WorkerPool extends BackboneWorkers {
  readonly pretrain: (config: PretrainConfig) => MicroBatch.GradientWorkers
}

type Failure = Extract<WorkerReply, { _tag: "failed" }>["error"]

/** A worker's error back as the typed error it was, where the caller's channel has it. */
const failure = (e: Failure): WorkerError | OutOfMemory | PromptError =>
  e._tag === "OutOfMemory"
    ? new OutOfMemory(e.fields as ConstructorParameters<typeof OutOfMemory>[0])
    : e._tag === "PromptError"
    ? new PromptError(e.fields as ConstructorParameters<typeof PromptError>[0])
    : new WorkerError({ reason: e.message })

const paramsOf = (params: ReadonlyMap<string, HostTensor>) => {
  const names = [...params.keys()]
  return { names, shapes: names.map((n) => params.get(n)!.shape), data: names.map((n) => params.get(n)!.data) }
}

/** Work split into `n` parts, part k taking items k, k + n, ...; and the results put back in item order. */
const dealt = <A>(items: ReadonlyArray<A>, n: number) => Array.from({ length: Math.min(n, items.length) }, (_, k) => items.filter((_, i) => i % n === k))
const undealt = <B>(parts: ReadonlyArray<ReadonlyArray<B>>, length: number) => Array.from({ length }, (_, i) => parts[i % parts.length]![Math.floor(i / parts.length)]!)

/** The worker script is built JavaScript: without the source condition that a test runner may have set. */
const workerExecArgv = () => process.execArgv.filter((a, i, all) => a !== "--conditions=@disendiff/source" && !(a === "@disendiff/source" && all[i - 1] === "--conditions") && !(a === "--conditions" && all[i + 1] === "@disendiff/source"))

export const makeWorkerPool = (o: { readonly count: number; readonly backend: BackendName; readonly threads?: number | undefined }) =>
  Effect.gen(function*() {
    const workers = yield* Effect.acquireRelease(
      Effect.sync(() => Array.from({ length: o.count }, () => new Worker(new URL("./Worker.js", import.meta.url), { workerData: { backend: o.backend, threads: o.threads }, execArgv: workerExecArgv() }))),
      (ws) => Effect.promise(() => Promise.all(ws.map((w) => w.terminate())))
    )
    const free = yield* Queue.unbounded<Worker>()
    for (const w of workers) yield* Queue.offer(free, w)
    let nextId = 0

    /** One request on one worker, its progress passed on as it comes. */
    const ask = <A>(worker: Worker, req: WorkerRequest, onProgress?: (event: unknown) => Effect.Effect<void>): Effect.Effect<A, WorkerError | OutOfMemory | PromptError> =>
      Effect.gen(function*() {
        const replies = yield* Queue.unbounded<WorkerReply>()
        const onMessage = (reply: WorkerReply) => reply.id === req.id && Queue.offerUnsafe(replies, reply)
        const lost = (reason: string) => Queue.offerUnsafe(replies, { _tag: "failed", id: req.id, error: { _tag: "WorkerError", fields: {}, message: reason } })
        const onError = (e: Error) => lost(e.message)
        const onExit = (code: number) => lost(`the thread exited with code ${code}`)
        return yield* Effect.gen(function*() {
          worker.on("message", onMessage)
          worker.on("error", onError)
          worker.on("exit", onExit)
          worker.postMessage(req)
          while (true) {
            const reply = yield* Queue.take(replies)
            if (reply._tag === "progress") yield* onProgress?.(reply.event) ?? Effect.void
            else if (reply._tag === "done") return reply.result as A
            else return yield* failure(reply.error)
          }
        }).pipe(Effect.ensuring(Effect.sync(() => {
          worker.off("message", onMessage)
          worker.off("error", onError)
          worker.off("exit", onExit)
        })))
      })
    /** A request on whichever worker is free (one request per worker at a time). */
    const onFree = <A>(f: (worker: Worker) => Effect.Effect<A, WorkerError | OutOfMemory | PromptError>) =>
      Effect.acquireUseRelease(Queue.take(free), f, (w) => Queue.offer(free, w))

    // training data goes to each worker once per run
    const dataIds = new WeakMap<TrainData, number>()
    const sent = new Map<Worker, number>()
    let nextDataId = 0

    const train = (spec: BackboneSpec): TrainWorkers => ({
      count: workers.length,
      compute: (data, params, tasks) =>
        Effect.gen(function*() {
          let dataId = dataIds.get(data)
          if (dataId === undefined) dataIds.set(data, dataId = nextDataId++)
          const p = paramsOf(params)
          const parts = yield* Effect.forEach(
            dealt(tasks, workers.length),
            (part) =>
              onFree((w) =>
                ask<ReadonlyArray<HostPart>>(w, { _tag: "train", id: nextId++, spec, dataId, data: sent.get(w) === dataId ? undefined : data, params: p, tasks: part }).pipe(
                  Effect.tap(() => Effect.sync(() => sent.set(w, dataId)))
                )
              ) as Effect.Effect<ReadonlyArray<HostPart>, WorkerError | OutOfMemory>,
            { concurrency: "unbounded" }
          )
          return undealt(parts, tasks.length)
        })
    })

    const sample = (spec: BackboneSpec): SampleWorkers => ({
      count: workers.length,
      sample: (job, onStep) => onFree((w) => ask<SampleOutput>(w, { _tag: "sample", id: nextId++, spec, job }, (e) => onStep((e as { done: number }).done, (e as { total: number }).total, 0))) as Effect.Effect<SampleOutput, WorkerError | OutOfMemory | PromptError>
    })

    const pretrain = (config: PretrainConfig): MicroBatch.GradientWorkers => ({
      count: workers.length,
      compute: (params, microBatches) =>
        Effect.gen(function*() {
          const p = paramsOf(params)
          const parts = yield* Effect.forEach(
            dealt(microBatches, workers.length),
            (part) => onFree((w) => ask<ReadonlyArray<MicroBatch.HostGradients>>(w, { _tag: "pretrain", id: nextId++, config, params: p, microBatches: part })) as Effect.Effect<ReadonlyArray<MicroBatch.HostGradients>, WorkerError | OutOfMemory>,
            { concurrency: "unbounded" }
          )
          return undealt(parts, microBatches.length)
        })
    })

    const trainRun: WorkerPool["trainRun"] = (spec, run, onEvent) =>
      onFree((w) => ask<null>(w, { _tag: "trainRun", id: nextId++, spec, run }, (e) => onEvent(e as TrainEvent))).pipe(Effect.asVoid)

    return { count: workers.length, train, trainRun, sample, pretrain } satisfies WorkerPool
  })
