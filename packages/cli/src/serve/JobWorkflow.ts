/**
 * A personalisation job as a durable workflow (`effect/workflow` on `effect/cluster`): training in
 * activities of K steps, each ending with the job's checkpoint written atomically, then sampling and
 * the Custom Diffusion export. The engine records each finished activity; a runner that dies mid-job
 * hands the workflow to another, which replays the finished activities from their records and runs
 * the unfinished one again from the last checkpoint. Training resumes bit for bit (the trainer's
 * counter-based randomness), so the job ends with the digest of an uninterrupted run.
 */
import {
  CheckpointFile,
  CustomDiffusion,
  HostTensors,
  Sampler,
  snapshotDigest,
  Trainer,
  writePng
} from "@disendiff/core"
import { Clock, Context, Effect, Layer, Schema, Semaphore, Stream } from "effect"
import * as Activity from "effect/workflow/Activity"
import * as Workflow from "effect/workflow/Workflow"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { backboneLayer, trainingLayer } from "../commands/Train.js"
import { JobFailed } from "./JobErrors.js"
import { JobSpec } from "./JobRequest.js"
import { JobStore } from "./JobStore.js"

export const JobOutcome = Schema.Struct({
  status: Schema.Literals(["succeeded", "cancelled"]),
  step: Schema.Number,
  digest: Schema.String
})
export type JobOutcome = typeof JobOutcome.Type

export const PersonaliseJob = Workflow.make("PersonaliseJob", {
  payload: { jobId: Schema.String },
  success: JobOutcome,
  error: JobFailed,
  idempotencyKey: (p) => p.jobId
})

/** A runner's settings: its name in job records, the activity length, and how many jobs run at once. */
export class RunnerSettings extends Context.Service<RunnerSettings, {
  readonly name: string
  /** Optimizer steps per training activity (each ends with a checkpoint). */
  readonly chunkSteps: number
  /** Jobs that train or sample at the same time in this process (memory: one model each). */
  readonly slots: Semaphore.Semaphore
}>()("@disendiff/cli/serve/RunnerSettings") {
  static readonly layer = (o: { readonly name: string; readonly chunkSteps: number; readonly maxJobs: number }) =>
    Layer.effect(RunnerSettings, Effect.map(Semaphore.make(o.maxJobs), (slots) => ({ name: o.name, chunkSteps: o.chunkSteps, slots })))
}

export const specFile = (dir: string) => path.join(dir, "job.json")
export const checkpointFile = (dir: string) => path.join(dir, "checkpoint.msgpack")
const modifiersOf = (prompt: string) => [...new Set(prompt.match(/<[^<>\s]+>/g) ?? [])]

/** Any failure of a job's run, as the one line stored with the job. */
const failed = (jobId: string) => (e: unknown) =>
  new JobFailed({ jobId, reason: e instanceof Error ? e.message : typeof e === "object" && e !== null && "message" in e ? String(e.message) : String(e) })

const readSpec = Effect.fn("Job.readSpec")(function*(jobId: string) {
  const store = yield* JobStore
  const text = yield* Effect.tryPromise(() => fs.readFile(specFile(store.dir(jobId)), "utf8"))
  return yield* Schema.decodeUnknownEffect(Schema.fromJsonString(JobSpec))(text)
})

class Cancelled extends Schema.TaggedError<Cancelled>()("Cancelled", {}) {}

const TrainChunk = Schema.Struct({ step: Schema.Number, digest: Schema.String, cancelled: Schema.Boolean })

/** Train the job up to step `target`, from its checkpoint when it has one. */
const trainTo = Effect.fn("Job.trainTo")(function*(jobId: string, target: number) {
  const store = yield* JobStore
  const runner = yield* RunnerSettings
  const dir = store.dir(jobId)
  const spec = yield* readSpec(jobId)
  const file = checkpointFile(dir)
  yield* CheckpointFile.removeStaleTemporaries(dir)
  const exists = yield* Effect.promise(() => fs.access(file).then(() => true, () => false))
  const snapshot = exists ? yield* CheckpointFile.load(file) : undefined
  if (snapshot !== undefined && snapshot.header.step >= target) {
    return { step: snapshot.header.step, digest: snapshotDigest(snapshot), cancelled: false }
  }
  yield* store.update(jobId, { status: "running", runner: runner.name })
  const config = { ...spec.config, steps: target }
  let lastCheck = 0
  const cancelled = yield* Trainer.train({ config, out: dir, resume: snapshot === undefined ? undefined : { path: file, snapshot } }).pipe(
    Stream.runForEach((event) =>
      Effect.gen(function*() {
        if (event._tag === "Started") {
          // every activity starts a run; its totalSteps is the chunk's end, the job's is stored
          yield* store.appendEvent(jobId, { ...event, totalSteps: spec.config.steps, runner: runner.name })
          return
        }
        // the run's ETA is to the chunk's end; the job's is to its last step
        const perStep = (e: { readonly step: number; readonly etaSeconds: number; readonly stepSeconds: number }) =>
          target > e.step ? e.etaSeconds / (target - e.step) : e.stepSeconds
        yield* store.appendEvent(
          jobId,
          event._tag === "Step" ? { ...event, totalSteps: spec.config.steps, etaSeconds: perStep(event) * (spec.config.steps - event.step) } : event
        )
        if (event._tag !== "Step") return
        yield* store.update(jobId, { step: event.step })
        // a cancel request stops the run at this step boundary; the trainer saves its checkpoint
        const t = yield* Clock.currentTimeMillis
        if (t - lastCheck >= 500 || event.step === target) {
          lastCheck = t
          if ((yield* store.get(jobId)).cancelRequested) return yield* new Cancelled()
        }
      })
    ),
    Effect.as(false),
    Effect.catchTag("Cancelled", () => Effect.succeed(true)),
    Effect.provide(trainingLayer(config, modifiersOf(config.prompt)))
  )
  const final = yield* CheckpointFile.load(file)
  return { step: final.header.step, digest: snapshotDigest(final), cancelled }
})

/** Sample the requested prompts with the trained model, and export the Custom Diffusion deltas. */
const finish = Effect.fn("Job.finish")(function*(jobId: string) {
  const store = yield* JobStore
  const dir = store.dir(jobId)
  const spec = yield* readSpec(jobId)
  const snapshot = yield* CheckpointFile.load(checkpointFile(dir))
  const modifiers = modifiersOf(spec.config.prompt)
  yield* CustomDiffusion.exportDeltas(path.join(dir, "deltas"), snapshot.trainable, modifiers)
  const s = spec.samples
  if (s === null) return
  const prompts = s.prompts.flatMap((p) => Array.from({ length: s.n ?? 1 }, () => p))
  const seeds = prompts.map((_, i) => (s.seed ?? 42) + i)
  const steps = s.steps ?? 50
  const guidance = s.guidance ?? 6
  const images = yield* Effect.gen(function*() {
    const sampler = yield* Sampler
    const result = yield* sampler.sample({
      prompts,
      seeds,
      steps,
      guidance,
      eta: 0,
      trained: HostTensors.toTensors(snapshot.trainable),
      onStep: (done, total, first) => store.appendEvent(jobId, { _tag: "SampleStep", done, total, first, images: prompts.length }).pipe(Effect.orDie)
    })
    return result.images
  }).pipe(Effect.provide(Sampler.layer.pipe(Layer.provideMerge(backboneLayer(spec.config, modifiers)))))
  const out = path.join(dir, "samples")
  yield* Effect.promise(() => fs.mkdir(out, { recursive: true }))
  const files: Array<{ file: string; prompt: string; seed: number }> = []
  for (const [i, img] of images.entries()) {
    const name = `${String(i).padStart(3, "0")}-seed${seeds[i]}.png`
    yield* writePng(path.join(out, name), img)
    files.push({ file: name, prompt: prompts[i]!, seed: seeds[i]! })
  }
  yield* Effect.promise(() => fs.writeFile(path.join(out, "samples.json"), JSON.stringify({ steps, guidance, eta: 0, images: files }, null, 2)))
})

/** The workflow's body: chunks of training, then sampling; the job's record follows each stage. */
const execute = (payload: { readonly jobId: string }) =>
  Effect.gen(function*() {
    const { jobId } = payload
    const store = yield* JobStore
    const runner = yield* RunnerSettings
    const guard = <A, E, R>(e: Effect.Effect<A, E, R>) => runner.slots.withPermits(1)(e).pipe(Effect.mapError(failed(jobId)))
    const spec = yield* Activity.make({ name: "read-spec", success: JobSpec, error: JobFailed, execute: readSpec(jobId).pipe(Effect.mapError(failed(jobId))) })
    const total = spec.config.steps
    let chunk = { step: 0, digest: "", cancelled: false }
    for (let end = Math.min(runner.chunkSteps, total); ; end = Math.min(end + runner.chunkSteps, total)) {
      chunk = yield* Activity.make({ name: `train-to-${end}`, success: TrainChunk, error: JobFailed, execute: guard(trainTo(jobId, end)) })
      if (chunk.cancelled || end === total) break
    }
    if (chunk.cancelled) {
      yield* store.update(jobId, { status: "cancelled", step: chunk.step, digest: chunk.digest }).pipe(Effect.orDie)
      yield* store.appendEvent(jobId, { _tag: "Cancelled", step: chunk.step }).pipe(Effect.orDie)
      return { status: "cancelled" as const, step: chunk.step, digest: chunk.digest }
    }
    yield* Activity.make({ name: "finish", error: JobFailed, execute: guard(finish(jobId)) })
    yield* store.update(jobId, { status: "succeeded", step: chunk.step, digest: chunk.digest }).pipe(Effect.orDie)
    yield* store.appendEvent(jobId, { _tag: "Succeeded", step: chunk.step, digest: chunk.digest }).pipe(Effect.orDie)
    return { status: "succeeded" as const, step: chunk.step, digest: chunk.digest }
  }).pipe(
    Effect.tapError((e) =>
      Effect.gen(function*() {
        const store = yield* JobStore
        yield* store.update(payload.jobId, { status: "failed", error: e.reason })
        yield* store.appendEvent(payload.jobId, { _tag: "Failed", error: e.reason })
      }).pipe(Effect.orDie)
    )
  )

/** Registers the workflow on a runner: it needs the job store, the runner's settings and a backend. */
export const layer = PersonaliseJob.toLayer(execute)
