/**
 * `disendiff serve`: the job service. Alone (the default) one process serves the HTTP API and runs the
 * jobs, storing into a SQLite file in `--data`. Across machines: `serve --runner --address HOST:PORT`
 * on each machine that runs jobs and `serve --api-only` where the API is served, all with the same
 * `--database postgres://...` and the same `--data` folder (shared). docs/serve.md.
 */
import { Console, Duration, Effect, Layer, Option, Redacted } from "effect"
import { Command, Flag } from "effect/cli"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { backendLayer, backendNames, threadsFlag } from "../Backends.js"
import { FlagError } from "../Errors.js"
import { intInRange, outputFolder } from "../Preflight.js"
import * as Cluster from "../serve/Cluster.js"
import { Jobs } from "../serve/Jobs.js"
import { JobStore } from "../serve/JobStore.js"
import * as JobWorkflow from "../serve/JobWorkflow.js"

const flags = {
  data: Flag.String("data").pipe(Flag.withDescription("folder of job files (image, checkpoint, samples), shared by all runners"), Flag.withDefault("disendiff-data")),
  database: Flag.String("database").pipe(
    Flag.withDescription("a SQLite file, or postgres://user@host/db for several machines (or env DISENDIFF_DATABASE_URL); default: DATA/jobs.sqlite"),
    Flag.optional
  ),
  host: Flag.String("host").pipe(Flag.withDescription("HTTP API address"), Flag.withDefault("127.0.0.1")),
  port: Flag.Int("port").pipe(Flag.withDescription("HTTP API port"), Flag.withDefault(8787)),
  runner: Flag.Boolean("runner").pipe(Flag.withDescription("run jobs as one of several runners (no HTTP API); needs --address and a shared --database"), Flag.withDefault(false)),
  apiOnly: Flag.Boolean("api-only").pipe(Flag.withDescription("serve the HTTP API and run no jobs (runners run them); needs a shared --database"), Flag.withDefault(false)),
  address: Flag.String("address").pipe(Flag.withDescription("this runner's HOST:PORT, reachable by the other runners"), Flag.optional),
  maxJobs: Flag.Int("max-jobs").pipe(Flag.withDescription("jobs this process trains at once (each holds one model in memory)"), Flag.withDefault(1)),
  chunkSteps: Flag.Int("chunk-steps").pipe(Flag.withDescription("training steps per workflow activity; each ends with a checkpoint"), Flag.withDefault(50)),
  lockExpiration: Flag.Int("lock-expiration").pipe(Flag.withDescription("seconds before another runner takes over a dead runner's jobs"), Flag.withDefault(30)),
  maxUploadMb: Flag.Finite("max-upload-mb").pipe(Flag.withDescription("largest training image accepted, MB"), Flag.withDefault(8)),
  maxSteps: Flag.Int("max-steps").pipe(Flag.withDescription("most training steps a job may ask for"), Flag.withDefault(5000)),
  backend: Flag.Literals("backend", backendNames).pipe(Flag.withDescription("tensor backend of the jobs run here"), Flag.withDefault("wasm" as const)),
  threads: threadsFlag
}

/** The API token: env DISENDIFF_API_TOKEN, else DATA/api-token (made on first start, mode 0600). Never printed. */
const apiToken = (data: string) =>
  Effect.promise(async () => {
    const fromEnv = process.env.DISENDIFF_API_TOKEN
    if (fromEnv !== undefined && fromEnv !== "") return { token: Redacted.make(fromEnv), source: "the environment (DISENDIFF_API_TOKEN)" }
    const file = path.join(data, "api-token")
    const existing = await fs.readFile(file, "utf8").then((t) => t.trim(), () => "")
    if (existing !== "") return { token: Redacted.make(existing), source: file }
    await fs.writeFile(file, randomBytes(24).toString("base64url") + "\n", { mode: 0o600, flag: "wx" }).catch(() => undefined)
    return { token: Redacted.make((await fs.readFile(file, "utf8")).trim()), source: `${file} (new)` }
  })

const parseAddress = (value: string) =>
  Effect.gen(function*() {
    const m = /^(.+):(\d+)$/.exec(value)
    const port = m === null ? NaN : Number(m[2])
    if (m === null || !(port >= 1 && port <= 65535)) {
      return yield* new FlagError({ flag: "address", value, reason: "not HOST:PORT", fix: "give this runner's address as the other runners reach it, e.g. --address 10.0.0.5:34431" })
    }
    return { host: m[1]!, port }
  })

export const serve = Command.make("serve", flags, (f) =>
  Effect.gen(function*() {
    yield* intInRange("port", f.port, 0, 65535)
    yield* intInRange("max-jobs", f.maxJobs, 1)
    yield* intInRange("chunk-steps", f.chunkSteps, 1)
    yield* intInRange("lock-expiration", f.lockExpiration, 3)
    yield* intInRange("max-steps", f.maxSteps, 1)
    if (!(f.maxUploadMb > 0)) return yield* new FlagError({ flag: "max-upload-mb", value: String(f.maxUploadMb), reason: "must be above 0", fix: "give the largest upload in MB, e.g. --max-upload-mb 8" })
    if (f.runner && f.apiOnly) return yield* new FlagError({ flag: "api-only", value: "", reason: "a process cannot be --runner and --api-only at once", fix: "start one process of each" })
    const data = path.resolve(yield* outputFolder("data", f.data))
    const dbValue = Option.getOrElse(f.database, () => process.env.DISENDIFF_DATABASE_URL ?? path.join(data, "jobs.sqlite"))
    const database = Cluster.parseDatabase(dbValue)
    const mode = f.runner
      ? yield* Effect.gen(function*() {
        if (Option.isNone(f.address)) return yield* new FlagError({ flag: "address", value: "", reason: "--runner needs this runner's address", fix: "give --address HOST:PORT, reachable by the other runners" })
        return { _tag: "runner" as const, ...(yield* parseAddress(f.address.value)) }
      })
      : f.apiOnly
      ? { _tag: "client" as const }
      : { _tag: "alone" as const }
    const name = `${os.hostname()}:${process.pid}`
    const cluster = Cluster.layer({ database, mode, lockExpiration: Duration.seconds(f.lockExpiration) })
    const store = JobStore.layer(data)
    const runs = mode._tag === "client"
      ? Layer.empty
      : JobWorkflow.layer.pipe(
        Layer.provide(JobWorkflow.RunnerSettings.layer({ name, chunkSteps: f.chunkSteps, maxJobs: f.maxJobs })),
        Layer.provide(backendLayer(f.backend, { threads: f.threads }))
      )
    const api = mode._tag === "runner"
      ? Layer.empty
      : Layer.unwrap(Effect.gen(function*() {
        const { token, source } = yield* apiToken(data)
        yield* Console.error(`disendiff serve: API on http://${f.host}:${f.port} (token from ${source}); data in ${data}; database ${database.kind === "sqlite" ? database.file : "postgres"}`)
        // loaded here: runners never load the HTTP stack
        const Http = yield* Effect.promise(() => import("../serve/Http.js"))
        return Http.layer({ host: f.host, port: f.port, token }).pipe(
          Layer.provide(Jobs.layer({ limits: { maxUploadBytes: Math.round(f.maxUploadMb * 1024 * 1024), maxSteps: f.maxSteps } }))
        )
      }))
    if (mode._tag === "runner") yield* Console.error(`disendiff serve: runner ${name} at ${mode.host}:${mode.port}; data in ${data}; database ${database.kind === "sqlite" ? database.file : "postgres"}`)
    return yield* Layer.launch(Layer.mergeAll(runs, api).pipe(Layer.provide(store), Layer.provide(cluster)))
  })).pipe(Command.withDescription("serve personalisation jobs over HTTP, durable across runner failures (docs/serve.md)"))
