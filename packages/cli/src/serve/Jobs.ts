/**
 * The job service as its users see it (the HTTP API and library callers): submit a job, list and read
 * jobs, follow a job's events, cancel it, and reach its files. Submission checks everything first
 * (`JobRequest`), then writes the job's folder, its record, and starts its workflow.
 */
import { Context, Effect, Layer, Schedule, Stream } from "effect"
import type { SqlError } from "effect/sql/SqlError"
import { WorkflowEngine } from "effect/workflow/WorkflowEngine"
import { randomUUID } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { JobFileNotFound, type JobNotFound, JobRejected } from "./JobErrors.js"
import { defaultLimits, type Limits, resolveRequest } from "./JobRequest.js"
import { type JobEvent, type JobRecord, JobStore } from "./JobStore.js"
import { PersonaliseJob, specFile } from "./JobWorkflow.js"

const terminal = new Set(["succeeded", "failed", "cancelled"])

export class Jobs extends Context.Service<Jobs, {
  readonly limits: Limits
  readonly submit: (configJson: string, image: Uint8Array | undefined) => Effect.Effect<JobRecord, JobRejected | SqlError>
  readonly list: Effect.Effect<ReadonlyArray<JobRecord>, SqlError>
  readonly get: (jobId: string) => Effect.Effect<JobRecord, JobNotFound | SqlError>
  /** The job's events after `afterSeq`, then new ones as they come, until the job has ended. */
  readonly events: (jobId: string, afterSeq?: number) => Stream.Stream<JobEvent, JobNotFound | SqlError>
  /** Asks the job to stop at its next step boundary (it saves a checkpoint first). */
  readonly cancel: (jobId: string) => Effect.Effect<JobRecord, JobNotFound | SqlError>
  /** Relative paths of the job's files: checkpoint, deltas, samples. */
  readonly files: (jobId: string) => Effect.Effect<ReadonlyArray<string>, JobNotFound | SqlError>
  /** The absolute path of one of `files`. */
  readonly file: (jobId: string, name: string) => Effect.Effect<string, JobNotFound | JobFileNotFound | SqlError>
}>()("@disendiff/cli/serve/Jobs") {
  static readonly layer = (options: { readonly limits?: Partial<Limits> | undefined } = {}) =>
    Layer.effect(
      Jobs,
      Effect.gen(function*() {
        const store = yield* JobStore
        const engine = yield* WorkflowEngine
        const limits = { ...defaultLimits, ...options.limits }
        const listFiles = (jobId: string) =>
          Effect.gen(function*() {
            yield* store.get(jobId)
            const dir = store.dir(jobId)
            const entries = yield* Effect.promise(() => fs.readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []))
            return entries
              .filter((e) => e.isFile() && !e.name.endsWith(".tmp") && !e.name.includes(".tmp-"))
              .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
              .filter((f) => f !== "job.json")
              .sort()
          })
        return {
          limits,
          submit: (configJson, image) =>
            Effect.gen(function*() {
              const jobId = randomUUID()
              const dir = store.dir(jobId)
              const spec = yield* resolveRequest(configJson, image, path.join(dir, "image"), limits)
              // files first: a record never points at a folder that is not there
              yield* Effect.tryPromise({
                try: async () => {
                  await fs.mkdir(dir, { recursive: true })
                  await fs.writeFile(path.join(dir, "image"), image!)
                  await fs.writeFile(specFile(dir), JSON.stringify(spec, null, 2))
                },
                catch: (e) => new JobRejected({ input: "storage", reason: `cannot write the job's files (${String(e)})`, fix: "check the server's --data folder" })
              })
              // a record that cannot be written leaves no folder behind
              const record = yield* store.create(jobId, spec.config.steps).pipe(
                Effect.tapError(() => Effect.promise(() => fs.rm(dir, { recursive: true, force: true })))
              )
              yield* store.appendEvent(jobId, { _tag: "Submitted", totalSteps: spec.config.steps })
              yield* PersonaliseJob.execute({ jobId }, { discard: true }).pipe(Effect.provideService(WorkflowEngine, engine))
              return record
            }),
          list: store.list,
          get: store.get,
          events: (jobId, afterSeq = 0) =>
            Stream.unwrap(Effect.gen(function*() {
              yield* store.get(jobId)
              let seq = afterSeq
              let ended = false
              // poll the store: events come from whichever runner holds the job
              const poll = Effect.gen(function*() {
                const job = yield* store.get(jobId)
                const batch = yield* store.events(jobId, seq)
                if (batch.length > 0) seq = batch[batch.length - 1]!.seq
                if (batch.length === 0 && terminal.has(job.status)) ended = true
                return batch
              })
              return Stream.repeat(Stream.fromEffect(poll), Schedule.spaced("250 millis")).pipe(
                Stream.takeUntil(() => ended),
                Stream.flatMap((batch) => Stream.fromIterable(batch))
              )
            })),
          cancel: (jobId) => store.requestCancel(jobId),
          files: listFiles,
          file: (jobId, name) =>
            Effect.gen(function*() {
              const files = yield* listFiles(jobId)
              if (!files.includes(name)) return yield* new JobFileNotFound({ jobId, file: name })
              return path.join(store.dir(jobId), name)
            })
        }
      })
    )
}
