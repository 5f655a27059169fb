/**
 * The job service's runners (issue 15), below the HTTP API: jobs are durable workflows that finish
 * exactly once with the digest of the same training run alone, also when the runner that holds a job
 * is killed with SIGKILL mid-run (another runner takes it over from its last checkpoint) and when the
 * whole service restarts mid-job. Storage: SQLite here; PostgreSQL too when DISENDIFF_TEST_DATABASE_URL
 * is set (`.ci/run` starts Debian's PostgreSQL and sets it; DISENDIFF_REQUIRE_POSTGRES=1 makes its
 * absence a failure).
 */
import { encodePng } from "@disendiff/core"
import { Cluster, Jobs, JobStore, JobWorkflow } from "@disendiff/cli/serve"
import { WasmBackend } from "@disendiff/backend-wasm"
import { Duration, Effect, Layer, ManagedRuntime, Redacted } from "effect"
import { spawn, type ChildProcess } from "node:child_process"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { freePort, root, tempDir } from "./cli.js"

const bin = path.join(root, "packages/cli/dist/bin.js")
const prompt = "<v1> cat and <v2> dog"
// small jobs: the test is about who runs what and the digests, not about training (batch 1, no accumulation)
const steps = 12
const seeds = [1, 2, 3, 4]
let dir = ""
let imageBytes: Uint8Array = new Uint8Array()
/** The digest of `train` run alone for each seed: what every job must end with. */
const reference = new Map<number, string>()

const jobConfig = (seed: number) => JSON.stringify({ backbone: "fake", prompt, steps, seed, batchSize: 1, gradientAccumulation: 1 })

const cliTrain = (seed: number, out: string, image: string) =>
  new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, [bin, "train", "--backbone", "fake", "--image", image, "--prompt", prompt, "--seed", String(seed), "--steps", String(steps), "--batch-size", "1", "--gradient-accumulation", "1", "--out", out, "--json"], { cwd: root, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d: Buffer) => (stdout += d))
    child.stderr.on("data", (d: Buffer) => (stderr += d))
    child.on("close", (code) => {
      const finished = stdout.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l)).find((e) => e._tag === "Finished")
      if (code !== 0 || finished === undefined) reject(new Error(`train failed (${code}): ${stderr}`))
      else resolve(finished.digest)
    })
  })

/** A client of the cluster in this process: submits jobs and reads their records, runs none. */
const clientRuntime = (database: Cluster.Database, data: string, mode: Cluster.ClusterOptions["mode"] = { _tag: "client" }) => {
  const cluster = Cluster.layer({ database, mode, lockExpiration: Duration.seconds(3) })
  const store = JobStore.layer(data)
  const runs = mode._tag === "client"
    ? Layer.empty
    : JobWorkflow.layer.pipe(Layer.provide(JobWorkflow.RunnerSettings.layer({ name: "in-process", chunkSteps: 4, maxJobs: 1 })), Layer.provide(WasmBackend.layer))
  const layer = Layer.mergeAll(Jobs.layer(), runs).pipe(Layer.provideMerge(store), Layer.provide(cluster))
  return ManagedRuntime.make(layer)
}

const runner = (database: Cluster.Database, data: string, port: number): ChildProcess => {
  const db = database.kind === "sqlite" ? database.file : Redacted.value(database.url)
  const child = spawn(process.execPath, [bin, "serve", "--runner", "--address", `127.0.0.1:${port}`, "--database", db, "--data", data, "--chunk-steps", "4", "--lock-expiration", "3"], {
    cwd: root,
    stdio: ["ignore", "ignore", "pipe"]
  })
  child.stderr!.on("data", (d: Buffer) => process.env.DISENDIFF_TEST_VERBOSE && process.stderr.write(`[runner ${port}] ${d}`))
  return child
}

const waitFor = async <A>(what: string, timeoutMs: number, f: () => Promise<A | undefined>, state?: () => Promise<unknown>): Promise<A> => {
  const end = Date.now() + timeoutMs
  while (Date.now() < end) {
    const v = await f()
    if (v !== undefined) return v
    await new Promise((r) => setTimeout(r, 200))
  }
  throw new Error(`timed out waiting for ${what}${state === undefined ? "" : `: ${JSON.stringify(await state())}`}`)
}

const temporaries = async (data: string) =>
  (await fs.readdir(data, { recursive: true }).catch(() => [] as Array<string>)).filter((n) => String(n).endsWith(".tmp") || String(n).includes(".tmp-"))

beforeAll(async () => {
  dir = await tempDir()
  const w = 40
  imageBytes = encodePng({ width: w, height: w, data: new Float32Array(w * w * 3).map((_, i) => ((i * 7919) % 255) / 255) })
  const image = path.join(dir, "a.png")
  await fs.writeFile(image, imageBytes)
  for (const seed of seeds) reference.set(seed, await cliTrain(seed, path.join(dir, `reference-${seed}`), image))
}, 300_000)

afterAll(async () => {
  if (dir !== "") await fs.rm(dir, { recursive: true, force: true })
})

describe("one process alone (SQLite)", () => {
  it("runs jobs to the digest of the same run alone, and a restarted service resumes a job mid-run", async () => {
    const data = path.join(dir, "alone")
    await fs.mkdir(data)
    const database: Cluster.Database = { kind: "sqlite", file: path.join(data, "jobs.sqlite") }
    let rt = clientRuntime(database, data, { _tag: "alone" })
    const jobs = await rt.runPromise(Effect.forEach(seeds, (seed) => Jobs.use((j) => j.submit(jobConfig(seed), imageBytes))))
    // stop the whole service once the last job has trained some steps but not all
    const last = jobs[jobs.length - 1]!.id
    await waitFor("the last job to start", 120_000, async () => {
      const r = await rt.runPromise(JobStore.use((s) => s.get(last)))
      return r.step > 0 ? r : undefined
    })
    await rt.dispose()
    rt = clientRuntime(database, data, { _tag: "alone" })
    const done = await waitFor("every job to finish", 180_000, async () => {
      const all = await rt.runPromise(JobStore.use((s) => s.list))
      return all.every((j) => j.status === "succeeded") ? all : undefined
    })
    await rt.dispose()
    for (const [i, job] of jobs.entries()) {
      expect(done.find((j) => j.id === job.id)?.digest).toBe(reference.get(seeds[i]!))
    }
    expect(await temporaries(data)).toEqual([])
  }, 400_000)
})

/** A fresh PostgreSQL database for one test run, on the server of DISENDIFF_TEST_DATABASE_URL. */
const freshPostgres = async (): Promise<Cluster.Database | undefined> => {
  const base = process.env.DISENDIFF_TEST_DATABASE_URL
  if (base === undefined || base === "") {
    if (process.env.DISENDIFF_REQUIRE_POSTGRES === "1") throw new Error("DISENDIFF_REQUIRE_POSTGRES=1 but DISENDIFF_TEST_DATABASE_URL is not set")
    return undefined
  }
  const name = `disendiff_test_${process.pid}_${Date.now()}`
  const { SqlClient } = await import("effect/sql/SqlClient")
  await Effect.runPromise(
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql.unsafe(`CREATE DATABASE ${name}`)
    }).pipe(Effect.provide(Cluster.sqlLayer({ kind: "postgres", url: Redacted.make(base) })), Effect.scoped)
  )
  const url = new URL(base)
  url.pathname = `/${name}`
  return { kind: "postgres", url: Redacted.make(url.toString()) }
}

const runnerTest = (label: string, database: () => Promise<Cluster.Database | undefined>) =>
  it(`${label}: 20 jobs at once on two runner processes complete exactly once with the digest of the same job alone; SIGKILL of the runner holding a running job: it completes on the other`, async (ctx) => {
    const db = await database()
    if (db === undefined) return ctx.skip()
    const data = path.join(dir, `runners-${label}`)
    await fs.mkdir(data)
    const ports = [await freePort(), await freePort()]
    const runners = ports.map((p) => runner(db, data, p))
    const rt = clientRuntime(db, data)
    try {
      const count = Number(process.env.DISENDIFF_TEST_JOBS ?? 20)
      const submitted = await rt.runPromise(
        Effect.forEach(Array.from({ length: count }, (_, i) => seeds[i % seeds.length]!), (seed) => Jobs.use((j) => Effect.map(j.submit(jobConfig(seed), imageBytes), (r) => ({ id: r.id, seed }))), { concurrency: "unbounded" })
      )
      const ids = new Set(submitted.map((s) => s.id))
      const list = () => rt.runPromise(JobStore.use((s) => s.list)).then((all) => all.filter((j) => ids.has(j.id)))
      // the runner that holds a job in the middle of its training
      const victim = await waitFor("a job mid-run on a runner", 180_000, async () =>
        (await list()).find((j) => j.status === "running" && j.step >= 2 && j.step < steps - 2 && j.runner !== null)
      )
      const pid = Number(victim.runner!.split(":").pop())
      const killed = runners.find((r) => r.pid === pid)
      expect(killed).toBeDefined()
      killed!.kill("SIGKILL")
      const done = await waitFor("every job to end", 300_000, async () => {
        const all = await list()
        return all.length === count && all.every((j) => j.status === "succeeded" || j.status === "failed" || j.status === "cancelled") ? all : undefined
      }, async () => (await list()).map((j) => `${j.status} ${j.step} ${j.runner} ${j.error ?? ""}`))
      for (const s of submitted) {
        const job = done.find((j) => j.id === s.id)!
        expect({ id: s.id, status: job.status, error: job.error, digest: job.digest }).toEqual({ id: s.id, status: "succeeded", error: null, digest: reference.get(s.seed) })
        // exactly once: one success recorded per job
        const events = await rt.runPromise(JobStore.use((st) => st.events(s.id, 0)))
        expect(events.filter((e) => (e.event as { _tag: string })._tag === "Succeeded")).toHaveLength(1)
      }
      // the killed runner's job finished on the other runner
      expect(done.find((j) => j.id === victim.id)!.runner).not.toBe(victim.runner)
      expect(await temporaries(data)).toEqual([])
    } finally {
      for (const r of runners) r.kill("SIGKILL")
      await rt.dispose()
    }
  }, 600_000)

describe("two runner processes", () => {
  runnerTest("SQLite", async () => ({ kind: "sqlite", file: path.join(dir, "runners-sqlite.sqlite") }))
  runnerTest("PostgreSQL", freshPostgres)
})
