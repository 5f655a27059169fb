/**
 * A worker thread with its own tensor backend (started by WorkerPool): computes pretraining
 * micro-batches, personalisation micro-batches or whole runs, or batches of a sampling job, from plain data, with the
 * same code as the main thread, and answers with plain data. `workerData` is `{ backend, threads }`
 * (threads of this worker's own wasm backend). It keeps the last backbone and training data it was sent.
 */
import { AttentionProbe, Backbone, type BackendName, LossCalibrator, type OutOfMemory, tf, Trainer } from "@disendiff/core"
import { type BackboneSpec, backboneSpecLayer, MicroBatch, type PretrainConfig, type TrainRun } from "@disendiff/builtin"
import { runSampleJob, type SampleJob } from "@disendiff/core/sampling/SampleJob.js"
import { makeTrainMicroBatch, type MicroBatchTask, readValues, type TrainData } from "@disendiff/core/training/TrainMicroBatch.js"
import { Context, Effect, Exit, Layer, ManagedRuntime, Scope, Stream } from "effect"
import { parentPort, workerData } from "node:worker_threads"
import { backendLayer } from "./Backends.js"

interface Params {
  readonly names: ReadonlyArray<string>
  readonly shapes: ReadonlyArray<ReadonlyArray<number>>
  readonly data: ReadonlyArray<Float32Array>
}

export type WorkerRequest =
  | { readonly _tag: "pretrain"; readonly id: number; readonly config: PretrainConfig; readonly params: Params; readonly microBatches: ReadonlyArray<number> }
  | {
    readonly _tag: "train"
    readonly id: number
    readonly spec: BackboneSpec
    /** Sent once per run and worker; later requests name it by `dataId`. */
    readonly dataId: number
    readonly data?: TrainData | undefined
    readonly params: Params
    readonly tasks: ReadonlyArray<MicroBatchTask>
  }
  | { readonly _tag: "trainRun"; readonly id: number; readonly spec: BackboneSpec; readonly run: TrainRun }
  | { readonly _tag: "sample"; readonly id: number; readonly spec: BackboneSpec; readonly job: SampleJob }

export type WorkerReply =
  /** A sampling step `{ done, total }` or a training run's event. */
  | { readonly _tag: "progress"; readonly id: number; readonly event: unknown }
  | { readonly _tag: "done"; readonly id: number; readonly result: unknown }
  | { readonly _tag: "failed"; readonly id: number; readonly error: { readonly _tag: string; readonly fields: Record<string, unknown>; readonly message: string } }

const { backend, threads } = workerData as { backend: BackendName; threads?: number }
const runtime = ManagedRuntime.make(backendLayer(backend, { threads }))
const post = (reply: WorkerReply, transfer: ReadonlyArray<ArrayBuffer> = []) => parentPort!.postMessage(reply, [...transfer])

let pretrainCache: { readonly key: string; readonly run: ReturnType<typeof MicroBatch.makeMicroBatch> } | undefined
const pretrainMicroBatch = (config: PretrainConfig, names: ReadonlyArray<string>) => {
  const key = JSON.stringify(config) + "\n" + names.join("\n")
  if (pretrainCache?.key !== key) pretrainCache = { key, run: MicroBatch.makeMicroBatch(config, names) }
  return pretrainCache.run
}

/** The last backbone built, kept open until another is asked for. */
let backboneCache: { readonly key: string; readonly scope: Scope.Closeable; readonly backbone: Backbone["Service"] } | undefined
const backboneOf = (spec: BackboneSpec) =>
  Effect.gen(function*() {
    const key = JSON.stringify(spec)
    if (backboneCache?.key === key) return backboneCache.backbone
    trainCache = undefined
    if (backboneCache !== undefined) yield* Scope.close(backboneCache.scope, Exit.void)
    backboneCache = undefined
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(backboneSpecLayer(spec), scope).pipe(Effect.onError(() => Scope.close(scope, Exit.void)))
    const backbone = Context.get(context, Backbone)
    backboneCache = { key, scope, backbone }
    return backbone
  })

let trainCache: { readonly dataId: number; readonly run: ReturnType<typeof makeTrainMicroBatch> } | undefined

const tensorsOf = (p: Params) => new Map(p.names.map((n, i) => [n, tf.tensor(p.data[i]!, [...p.shapes[i]!])]))

// copies, never views of the backend's heap: they are transferred to the main thread
const hostCopy = (t: tf.Tensor) => Effect.promise(async () => Float32Array.from(await t.data() as Float32Array))

const handle = (req: WorkerRequest) =>
  Effect.gen(function*() {
    switch (req._tag) {
      case "pretrain": {
        const microBatch = pretrainMicroBatch(req.config, req.params.names)
        const params = tensorsOf(req.params)
        const results: Array<MicroBatch.HostGradients> = []
        yield* Effect.gen(function*() {
          for (const mb of req.microBatches) {
            const { value, grads } = yield* microBatch(params, mb)
            const loss = (yield* Effect.promise(() => value.data()))[0]!
            const host = yield* Effect.forEach(grads, hostCopy)
            tf.dispose([value, ...grads])
            results.push({ loss, grads: host })
          }
        }).pipe(Effect.ensuring(Effect.sync(() => tf.dispose([...params.values()]))))
        return { result: results, transfer: results.flatMap((r) => r.grads.map((g) => g.buffer as ArrayBuffer)) }
      }
      case "train": {
        const backbone = yield* backboneOf(req.spec)
        if (trainCache?.dataId !== req.dataId) {
          if (req.data === undefined) return yield* Effect.die(new Error(`training data ${req.dataId} was never sent to this worker`))
          const data = req.data
          trainCache = {
            dataId: req.dataId,
            run: makeTrainMicroBatch({
              data,
              backbone,
              probe: AttentionProbe.make(data.selection),
              calibrator: LossCalibrator.make(data.config.calibration),
              names: req.params.names
            })
          }
        }
        const run = trainCache.run
        const params = tensorsOf(req.params)
        const results: Array<{ values: ReadonlyArray<number>; grads: Array<Float32Array> }> = []
        yield* Effect.gen(function*() {
          for (const task of req.tasks) {
            const r = yield* run(params, task)
            const grads = yield* Effect.forEach(r.grads, hostCopy)
            tf.dispose(r.grads)
            results.push({ values: yield* readValues(r), grads })
          }
        }).pipe(Effect.ensuring(Effect.sync(() => tf.dispose([...params.values()]))))
        return { result: results, transfer: results.flatMap((r) => r.grads.map((g) => g.buffer as ArrayBuffer)) }
      }
      case "trainRun": {
        // the layers the demo gives an in-process run, built from the same plain data
        const { config, out, termGradientsEvery } = req.run
        yield* Trainer.train({ config, out, termGradientsEvery }).pipe(
          Stream.runForEach((event) => Effect.sync(() => post({ _tag: "progress", id: req.id, event }))),
          Effect.provide(Layer.merge(backboneSpecLayer(req.spec), Trainer.trainingServices(config)))
        )
        return { result: null, transfer: [] }
      }
      case "sample": {
        const backbone = yield* backboneOf(req.spec)
        const output = yield* runSampleJob(backbone, req.job, (done, total) => Effect.sync(() => post({ _tag: "progress", id: req.id, event: { done, total } })))
        return { result: output, transfer: output.maps.map((m) => m.maps.data.buffer as ArrayBuffer) }
      }
    }
  })

parentPort!.on("message", (req: WorkerRequest) => {
  runtime.runPromise(handle(req) as Effect.Effect<{ result: unknown; transfer: Array<ArrayBuffer> }, OutOfMemory | Error>).then(
    ({ result, transfer }) => post({ _tag: "done", id: req.id, result }, transfer),
    (e: unknown) => {
      const tagged = e as { _tag?: string; message?: string }
      const fields = typeof e === "object" && e !== null ? Object.fromEntries(Object.entries(e)) : {}
      post({ _tag: "failed", id: req.id, error: { _tag: tagged._tag ?? "Error", fields, message: tagged.message ?? String(e) } })
    }
  )
})
