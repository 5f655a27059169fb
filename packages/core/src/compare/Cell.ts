/**
 * One cell's training, resumable: trains `config` into `out` (its checkpoint `out/checkpoint.msgpack`),
 * continuing from the checkpoint an interrupted run left there, or doing nothing when that checkpoint is
 * already at the last step. Resuming is exact (the trainer's counter-based randomness), so a cell
 * interrupted any number of times ends with the bytes of one uninterrupted run. A checkpoint of another
 * configuration in `out` is refused (`ResumeMismatch`), never overwritten.
 *
 * Also: small helpers to store a cell's result as JSON written atomically (the result is the last thing
 * a cell writes, so its presence means the cell finished).
 */
import { Effect, Stream } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import type { Backbone } from "../backbone/Backbone.js"
import { load as loadCheckpoint } from "../checkpoint/Checkpoints.js"
import type { TensorRuntime } from "../tensor/TensorRuntime.js"
import { checkpointPath, train, type TrainError, trainingServices } from "../training/Trainer.js"
import type { TrainConfig } from "../training/TrainConfig.js"

export interface TrainedCell {
  readonly checkpoint: string
  /** The last step's loss terms (of this run; null when the checkpoint was already finished). */
  readonly last: { readonly loss: number; readonly base: number; readonly bind: number | null; readonly separation: number | null } | null
  /** Steps trained now (0 when it was finished before). */
  readonly trainedSteps: number
  readonly resumedFrom: number
}

export const fileExists = (file: string) => Effect.promise(() => fs.access(file).then(() => true, () => false))

export const trainCell = (o: {
  readonly config: TrainConfig
  readonly out: string
  readonly onStep?: ((step: number, total: number) => Effect.Effect<void>) | undefined
  /** Before the first step: the share of the class images generated so far. */
  readonly onPreparing?: ((fraction: number, images: number) => Effect.Effect<void>) | undefined
}): Effect.Effect<TrainedCell, TrainError, Backbone | TensorRuntime> =>
  Effect.gen(function*() {
    const file = checkpointPath(o.out)
    let resume: Parameters<typeof train>[0]["resume"]
    // a finished checkpoint goes through the trainer too: it checks the configuration and trains no step
    if (yield* fileExists(file)) resume = { path: file, snapshot: yield* loadCheckpoint(file) }
    let last: TrainedCell["last"] = null
    let trainedSteps = 0
    yield* train({ config: o.config, out: o.out, resume }).pipe(
      Stream.runForEach((e) => {
        if (e._tag === "Preparing") return o.onPreparing?.(e.fraction, e.total) ?? Effect.void
        if (e._tag !== "Step") return Effect.void
        last = { loss: e.loss, base: e.base, bind: e.bind, separation: e.separation }
        trainedSteps++
        return o.onStep?.(e.step, e.totalSteps) ?? Effect.void
      }),
      Effect.provide(trainingServices(o.config))
    )
    return { checkpoint: file, last, trainedSteps, resumedFrom: resume?.snapshot.header.step ?? 0 }
  })

/** Writes JSON to a temporary file and renames it into place: readers see the whole file or none. */
export const writeJsonAtomic = (file: string, value: unknown) =>
  Effect.promise(async () => {
    await fs.mkdir(path.dirname(file), { recursive: true })
    const tmp = `${file}.tmp-${process.pid}`
    await fs.writeFile(tmp, JSON.stringify(value, null, 2) + "\n")
    await fs.rename(tmp, file)
  })

/** A stored JSON document, or undefined when there is none (or it is not JSON: an interrupted writer's). */
export const readJson = <A>(file: string) =>
  Effect.promise(async () => {
    try {
      return JSON.parse(await fs.readFile(file, "utf8")) as A
    } catch {
      return undefined
    }
  })
