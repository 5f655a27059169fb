/**
 * Where jobs live: one row per job and its events in SQL (SQLite by default, PostgreSQL for several
 * machines; the statements are plain enough for both), and its files (image, configuration,
 * checkpoint, samples) in a folder per job under a directory all runners share.
 */
import { Context, Effect, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import * as path from "node:path"
import { JobNotFound } from "./JobErrors.js"

export const JobStatus = Schema.Literals(["queued", "running", "succeeded", "failed", "cancelled"])
export type JobStatus = typeof JobStatus.Type

export const JobRecord = Schema.Struct({
  id: Schema.String,
  createdAt: Schema.String,
  updatedAt: Schema.String,
  status: JobStatus,
  step: Schema.Int,
  totalSteps: Schema.Int,
  /** SHA-256 over the trained tensors and optimizer state (`snapshotDigest`), once trained. */
  digest: Schema.NullOr(Schema.String),
  error: Schema.NullOr(Schema.String),
  cancelRequested: Schema.Boolean,
  /** The runner process that last worked on the job. */
  runner: Schema.NullOr(Schema.String)
})
export type JobRecord = typeof JobRecord.Type

export interface JobEvent {
  readonly seq: number
  readonly at: string
  readonly event: unknown
}

interface Row {
  readonly id: string
  readonly created_at: string
  readonly updated_at: string
  readonly status: JobStatus
  readonly step: number | bigint
  readonly total_steps: number | bigint
  readonly digest: string | null
  readonly error: string | null
  readonly cancel_requested: number | bigint | boolean
  readonly runner: string | null
}

const toRecord = (r: Row): JobRecord => ({
  id: r.id,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
  status: r.status,
  step: Number(r.step),
  totalSteps: Number(r.total_steps),
  digest: r.digest,
  error: r.error,
  cancelRequested: Boolean(Number(r.cancel_requested)),
  runner: r.runner
})

const now = () => new Date().toISOString()

export class JobStore extends Context.Service<JobStore, {
  /** The shared folder of job files. */
  readonly root: string
  readonly dir: (jobId: string) => string
  readonly create: (jobId: string, totalSteps: number) => Effect.Effect<JobRecord, SqlError>
  readonly get: (jobId: string) => Effect.Effect<JobRecord, SqlError | JobNotFound>
  readonly list: Effect.Effect<ReadonlyArray<JobRecord>, SqlError>
  readonly update: (jobId: string, fields: Partial<Pick<JobRecord, "status" | "step" | "digest" | "error" | "runner">>) => Effect.Effect<void, SqlError>
  readonly requestCancel: (jobId: string) => Effect.Effect<JobRecord, SqlError | JobNotFound>
  readonly appendEvent: (jobId: string, event: unknown) => Effect.Effect<void, SqlError>
  /** Events after `afterSeq`, oldest first. */
  readonly events: (jobId: string, afterSeq: number) => Effect.Effect<ReadonlyArray<JobEvent>, SqlError>
}>()("@disendiff/cli/serve/JobStore") {
  static readonly layer = (root: string) =>
    Layer.effect(
      JobStore,
      Effect.gen(function*() {
        const sql = yield* SqlClient
        // plain types so that SQLite and PostgreSQL read the same statements
        yield* sql`CREATE TABLE IF NOT EXISTS disendiff_jobs (
          id TEXT PRIMARY KEY,
          created_at TEXT NOT NULL,
          updated_at TEXT NOT NULL,
          status TEXT NOT NULL,
          step INTEGER NOT NULL,
          total_steps INTEGER NOT NULL,
          digest TEXT,
          error TEXT,
          cancel_requested INTEGER NOT NULL,
          runner TEXT
        )`
        yield* sql`CREATE TABLE IF NOT EXISTS disendiff_job_events (
          job_id TEXT NOT NULL,
          seq INTEGER NOT NULL,
          at TEXT NOT NULL,
          event TEXT NOT NULL,
          PRIMARY KEY (job_id, seq)
        )`
        const get = (jobId: string) =>
          sql<Row>`SELECT * FROM disendiff_jobs WHERE id = ${jobId}`.pipe(
            Effect.flatMap((rows) => rows.length === 0 ? Effect.fail(new JobNotFound({ jobId })) : Effect.succeed(toRecord(rows[0]!)))
          )
        return {
          root,
          dir: (jobId) => path.join(root, "jobs", jobId),
          create: (jobId, totalSteps) =>
            Effect.gen(function*() {
              const t = now()
              yield* sql`INSERT INTO disendiff_jobs (id, created_at, updated_at, status, step, total_steps, digest, error, cancel_requested, runner)
                VALUES (${jobId}, ${t}, ${t}, 'queued', 0, ${totalSteps}, NULL, NULL, 0, NULL)`
              return yield* get(jobId).pipe(Effect.orDie)
            }),
          get,
          list: sql<Row>`SELECT * FROM disendiff_jobs ORDER BY created_at, id`.pipe(Effect.map((rows) => rows.map(toRecord))),
          update: (jobId, fields) =>
            Effect.gen(function*() {
              const t = now()
              const f = fields
              // one statement per field keeps the SQL portable and each write small
              if (f.status !== undefined) yield* sql`UPDATE disendiff_jobs SET status = ${f.status}, updated_at = ${t} WHERE id = ${jobId}`
              if (f.step !== undefined) yield* sql`UPDATE disendiff_jobs SET step = ${f.step}, updated_at = ${t} WHERE id = ${jobId}`
              if (f.digest !== undefined) yield* sql`UPDATE disendiff_jobs SET digest = ${f.digest}, updated_at = ${t} WHERE id = ${jobId}`
              if (f.error !== undefined) yield* sql`UPDATE disendiff_jobs SET error = ${f.error}, updated_at = ${t} WHERE id = ${jobId}`
              if (f.runner !== undefined) yield* sql`UPDATE disendiff_jobs SET runner = ${f.runner}, updated_at = ${t} WHERE id = ${jobId}`
            }),
          requestCancel: (jobId) =>
            Effect.gen(function*() {
              yield* get(jobId)
              yield* sql`UPDATE disendiff_jobs SET cancel_requested = 1, updated_at = ${now()} WHERE id = ${jobId}`
              return yield* get(jobId)
            }),
          appendEvent: (jobId, event) =>
            sql`INSERT INTO disendiff_job_events (job_id, seq, at, event)
              SELECT ${jobId}, COALESCE(MAX(seq), 0) + 1, ${now()}, ${JSON.stringify(event)} FROM disendiff_job_events WHERE job_id = ${jobId}`.pipe(Effect.asVoid),
          events: (jobId, afterSeq) =>
            sql<{ seq: number | bigint; at: string; event: string }>`SELECT seq, at, event FROM disendiff_job_events
              WHERE job_id = ${jobId} AND seq > ${afterSeq} ORDER BY seq`.pipe(
              Effect.map((rows) => rows.map((r) => ({ seq: Number(r.seq), at: r.at, event: JSON.parse(r.event) as unknown })))
            )
        }
      })
    )
}

