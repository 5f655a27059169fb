/**
 * The HTTP API of `disendiff serve` (issue 15), over a real socket with a fake backbone: the token, the
 * upload limit, bad requests with the CLI's one-line messages (and nothing stored for them), unknown
 * jobs, one job end to end (submit, its events as Server-Sent Events, its record, its files), and a
 * cancelled job that ends with a checkpoint.
 */
import { Cluster, Jobs, JobStore, JobWorkflow } from "@disendiff/cli/serve"
import { CpuBackend, encodePng } from "@disendiff/core"
import { Effect, Layer, Logger, ManagedRuntime, Redacted, Stream } from "effect"
import * as HttpServer from "effect/http/HttpServer"
import { SqlError, UnknownError } from "effect/sql/SqlError"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Http from "../packages/cli/src/serve/Http.js"
import { disendiff, tempDir } from "./cli.js"

const token = "test-token-7f3a"
const maxUploadBytes = 64 * 1024
const prompt = "<v1> cat and <v2> dog"

let dir = ""
let data = ""
let base = ""
let image: Uint8Array = new Uint8Array()
let runtime: ManagedRuntime.ManagedRuntime<Jobs | HttpServer.HttpServer, unknown> | undefined
/** Everything the server logged (instead of the console): the token must never be in it. */
const logged: Array<string> = []

const auth = { authorization: `Bearer ${token}` }

const upload = (config: string | undefined, bytes: Uint8Array | null) => {
  const form = new FormData()
  if (bytes !== null) form.append("image", new Blob([bytes], { type: "image/png" }), "a.png")
  if (config !== undefined) form.append("config", config)
  return form
}

/** `bytes` null: no image part at all. */
const submit = (config: string | undefined, bytes: Uint8Array | null = image, headers: Record<string, string> = auth) =>
  fetch(`${base}/jobs`, { method: "POST", headers, body: upload(config, bytes) })

const json = async (r: Response) => (await r.json()) as any

/** A refused request: its status, and a body `{ error }` of one line. */
const expectError = async (r: Response, status: number) => {
  const body = await json(r)
  expect({ status: r.status, body }).toMatchObject({ status, body: { error: expect.any(String) } })
  expect(body.error).not.toContain("\n")
  return body.error as string
}

const jobFolders = async () => (await fs.readdir(path.join(data, "jobs")).catch(() => [] as Array<string>))

const expectNothingStored = async () => {
  expect(await json(await fetch(`${base}/jobs`, { headers: auth }))).toEqual([])
  expect(await jobFolders()).toEqual([])
}

interface SseEvent {
  readonly id: string | undefined
  readonly event: string | undefined
  readonly data: any
}

/** Reads a whole Server-Sent Events answer (the stream ends when the job does), without its keep-alive pings. */
const readEvents = async (r: Response): Promise<Array<SseEvent>> => {
  expect(r.status).toBe(200)
  expect(r.headers.get("content-type")).toContain("text/event-stream")
  const text = await r.text()
  return text.split("\n\n").filter((block) => block.trim() !== "").map((block) => {
    const fields = new Map<string, string>()
    for (const line of block.split("\n")) {
      const at = line.indexOf(":")
      if (at > 0) fields.set(line.slice(0, at), line.slice(at + 1).trimStart())
    }
    return { id: fields.get("id"), event: fields.get("event"), data: JSON.parse(fields.get("data") ?? "null") }
  }).filter((e) => e.event !== "ping")
}

const logs = Logger.layer([Logger.make((options) => void logged.push(Logger.formatLogFmt.log(options)))])

/** The port the server listens on, from its `HttpServer` service. */
const portOf = (rt: ManagedRuntime.ManagedRuntime<HttpServer.HttpServer, unknown>) =>
  rt.runPromise(Effect.gen(function*() {
    const address = (yield* HttpServer.HttpServer).address
    if (address._tag === "UnixPathAddress") throw new Error("expected a TCP address")
    return address.port
  }))

const waitFor = async <A>(what: string, timeoutMs: number, f: () => Promise<A | undefined>): Promise<A> => {
  const end = Date.now() + timeoutMs
  while (Date.now() < end) {
    const v = await f()
    if (v !== undefined) return v
    await new Promise((r) => setTimeout(r, 200))
  }
  throw new Error(`timed out waiting for ${what}`)
}

beforeAll(async () => {
  dir = await tempDir()
  data = path.join(dir, "data")
  await fs.mkdir(data)
  const w = 40
  image = encodePng({ width: w, height: w, data: new Float32Array(w * w * 3).map((_, i) => ((i * 7919) % 255) / 255) })
  const cluster = Cluster.layer({ database: { kind: "sqlite", file: path.join(data, "jobs.sqlite") }, mode: { _tag: "alone" } })
  const runs = JobWorkflow.layer.pipe(
    Layer.provide(JobWorkflow.RunnerSettings.layer({ name: "test", chunkSteps: 10, maxJobs: 1 })),
    Layer.provide(CpuBackend.layer)
  )
  const jobs = Layer.mergeAll(Jobs.layer({ limits: { maxUploadBytes } }), runs).pipe(Layer.provideMerge(JobStore.layer(data)), Layer.provide(cluster))
  const server = Http.layerServer({ host: "127.0.0.1", port: 0, token: Redacted.make(token) }).pipe(Layer.provideMerge(jobs), Layer.provide(logs))
  const rt = ManagedRuntime.make(server)
  runtime = rt
  base = `http://127.0.0.1:${await portOf(rt)}`
}, 120_000)

afterAll(async () => {
  await runtime?.dispose()
  if (dir !== "") await fs.rm(dir, { recursive: true, force: true })
})

describe("requests that are refused, with nothing stored", () => {
  const good = JSON.stringify({ backbone: "fake", prompt, steps: 20, seed: 1 })

  it("serves the OpenAPI document without a token", async () => {
    const r = await fetch(`${base}/openapi.json`)
    expect(r.status).toBe(200)
    const doc = await json(r)
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(["/jobs", "/jobs/{id}", "/jobs/{id}/events", "/jobs/{id}/cancel"]))
  })

  it("no token, or a wrong one: 401", async () => {
    expect(await expectError(await submit(good, image, {}), 401)).toMatch(/^unauthorized: .*Authorization: Bearer/)
    await expectError(await submit(good, image, { authorization: "Bearer not-the-token" }), 401)
    await expectError(await submit(good, image, { authorization: `Basic ${token}` }), 401)
    await expectError(await fetch(`${base}/jobs`), 401)
    await expectError(await fetch(`${base}/jobs`, { headers: { authorization: `Bearer ${token}x` } }), 401)
    await expectError(await fetch(`${base}/jobs/nope/events`), 401)
    // the token is checked first: a bad request without it says nothing about the request
    await expectError(await fetch(`${base}/jobs/nope/events?after=soon`), 401)
    await expectError(await fetch(`${base}/jobs/nope/files/checkpoint.msgpack`, { headers: { authorization: "Bearer" } }), 401)
    await expectNothingStored()
  })

  it("an upload over the limit: 413", async () => {
    const big = new Uint8Array(maxUploadBytes + 1024).map((_, i) => i % 251)
    expect(await expectError(await submit(good, big), 413)).toContain(`limit of ${maxUploadBytes}`)
    // far over: refused on its Content-Length, before the body is read
    const huge = new Uint8Array(maxUploadBytes + 3 * 1024 * 1024)
    expect(await expectError(await submit(good, huge), 413)).toContain(`limit of ${maxUploadBytes}`)
    await expectNothingStored()
  })

  it("a corrupt or missing image: 400 naming image", async () => {
    expect(await expectError(await submit(good, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])), 400)).toMatch(/^image: /)
    expect(await expectError(await submit(good, image.subarray(0, 60)), 400)).toMatch(/^image: /)
    expect(await expectError(await submit(good, null), 400)).toMatch(/^image: no training image/)
    await expectNothingStored()
  })

  it("an invalid config: 400 with train's one-line message", async () => {
    expect(await expectError(await submit("{not json", image), 400)).toMatch(/^config: invalid JSON/)
    expect(await expectError(await submit("[1, 2]", image), 400)).toMatch(/^config: not a JSON object/)
    expect(await expectError(await submit(undefined, image), 400)).toMatch(/^config: no configuration/)
    expect(await expectError(await submit(JSON.stringify({ prompt, steps: "many" }), image), 400)).toMatch(/^config\.steps: /)
    expect(await expectError(await submit(JSON.stringify({ prompt, image: "/etc/passwd" }), image), 400)).toMatch(/^config\.image: is set by the server/)
    expect(await expectError(await submit(JSON.stringify({ backbone: "fake", prompt, steps: 5001 }), image), 400)).toBe(
      "config.steps: 5001 is over the server's limit of 5000. Fix: ask for 5000 steps or fewer"
    )
    expect(await expectError(await submit(JSON.stringify({ backbone: "fake", prompt: "a cat" }), image), 400)).toMatch(/^config\.prompt: /)
    expect(await expectError(await submit(JSON.stringify({ backbone: "fake", prompt, samples: { prompts: [] } }), image), 400)).toMatch(/^config\.samples\.prompts: /)
    await expectNothingStored()
  })

  it("not multipart: refused", async () => {
    const r = await fetch(`${base}/jobs`, { method: "POST", headers: { ...auth, "content-type": "application/json" }, body: good })
    expect(r.status).toBe(415)
    await expectNothingStored()
  })

  it("an unknown job: 404", async () => {
    const id = "00000000-0000-0000-0000-000000000000"
    expect(await expectError(await fetch(`${base}/jobs/${id}`, { headers: auth }), 404)).toBe(`job ${id}: no such job. Fix: list the jobs with GET /jobs`)
    await expectError(await fetch(`${base}/jobs/${id}/events`, { headers: auth }), 404)
    await expectError(await fetch(`${base}/jobs/${id}/cancel`, { method: "POST", headers: auth }), 404)
    await expectError(await fetch(`${base}/jobs/${id}/files/checkpoint.msgpack`, { headers: auth }), 404)
    expect(await expectError(await fetch(`${base}/jobs/${id}/events?after=soon`, { headers: auth }), 400)).toMatch(/^query\.after: /)
    await expectNothingStored()
  })
})

describe("jobs through HTTP", () => {
  it("one job end to end: submit, follow its events to the end, read its record, download its files", async () => {
    const config = { backbone: "fake", prompt, steps: 20, seed: 1, samples: { prompts: ["<v1> cat"], n: 1, seed: 7, steps: 2 } }
    // the same training by the CLI, meanwhile: the job must end with its digest
    const imageFile = path.join(dir, "a.png")
    await fs.writeFile(imageFile, image)
    const cli = disendiff(["train", "--backbone", "fake", "--image", imageFile, "--prompt", prompt, "--seed", "1", "--steps", "20", "--out", path.join(dir, "cli"), "--json", "--backend", "cpu"])
    const submitted = await submit(JSON.stringify(config))
    expect(submitted.status).toBe(201)
    const job = await json(submitted)
    expect(job).toMatchObject({ status: "queued", totalSteps: 20, digest: null })

    const events = await readEvents(await fetch(`${base}/jobs/${job.id}/events`, { headers: auth }))
    expect(events.map((e) => Number(e.id))).toEqual(events.map((_, i) => i + 1))
    // plain messages (no `event:` line), so that EventSource's onmessage receives them
    expect(events.filter((e) => e.event !== undefined)).toEqual([])
    expect(events[0]!.data.event._tag).toBe("Submitted")
    const last = events[events.length - 1]!.data.event
    expect(last).toMatchObject({ _tag: "Succeeded", step: 20, digest: expect.stringMatching(/^[0-9a-f]{64}$/) })
    expect(events.filter((e) => e.data.event._tag === "Step").length).toBeGreaterThanOrEqual(20)

    // continuing after an event: Last-Event-ID (as a reconnecting EventSource sends it) or ?after=
    const n = events.length
    const tail = await readEvents(await fetch(`${base}/jobs/${job.id}/events`, { headers: { ...auth, "last-event-id": String(n - 1) } }))
    expect(tail.map((e) => e.id)).toEqual([String(n)])
    const after = await readEvents(await fetch(`${base}/jobs/${job.id}/events?after=${n - 2}`, { headers: auth }))
    expect(after.map((e) => e.id)).toEqual([String(n - 1), String(n)])

    const record = await json(await fetch(`${base}/jobs/${job.id}`, { headers: auth }))
    expect(record).toMatchObject({ id: job.id, status: "succeeded", step: 20, digest: last.digest, error: null })
    const trained = await cli
    expect(trained.code, trained.stderr).toBe(0)
    const finished = trained.stdout.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l)).find((e) => e._tag === "Finished")
    expect(record.digest).toBe(finished?.digest)
    expect(record.files).toEqual(expect.arrayContaining(["checkpoint.msgpack", "samples/000-seed7.png"]))
    expect(record.files.some((f: string) => /^deltas\/.*\.safetensors$/.test(f))).toBe(true)
    expect(await json(await fetch(`${base}/jobs`, { headers: auth }))).toEqual([expect.objectContaining({ id: job.id, status: "succeeded" })])

    const checkpoint = await fetch(`${base}/jobs/${job.id}/files/checkpoint.msgpack`, { headers: auth })
    expect(checkpoint.status).toBe(200)
    const bytes = new Uint8Array(await checkpoint.arrayBuffer())
    expect(bytes).toEqual(new Uint8Array(await fs.readFile(path.join(data, "jobs", job.id, "checkpoint.msgpack"))))
    const sample = await fetch(`${base}/jobs/${job.id}/files/samples/000-seed7.png`, { headers: auth })
    expect(sample.status).toBe(200)
    expect(sample.headers.get("content-type")).toBe("image/png")
    expect([...new Uint8Array(await sample.arrayBuffer()).subarray(0, 4)]).toEqual([0x89, 0x50, 0x4e, 0x47])

    // only the job's own files: no path out of its folder, nothing it does not have
    await expectError(await fetch(`${base}/jobs/${job.id}/files/job.json`, { headers: auth }), 404)
    await expectError(await fetch(`${base}/jobs/${job.id}/files/..%2F..%2Fjobs.sqlite`, { headers: auth }), 404)
    await expectError(await fetch(`${base}/jobs/${job.id}/files/samples/999.png`, { headers: auth }), 404)
  }, 300_000)

  it("a cancelled job stops at a step boundary with a checkpoint", async () => {
    const submitted = await submit(JSON.stringify({ backbone: "fake", prompt, steps: 5000, seed: 2 }))
    expect(submitted.status).toBe(201)
    const job = await json(submitted)
    await waitFor("the job to train some steps", 120_000, async () => {
      const r = await json(await fetch(`${base}/jobs/${job.id}`, { headers: auth }))
      return r.step > 0 ? r : undefined
    })
    const cancelled = await fetch(`${base}/jobs/${job.id}/cancel`, { method: "POST", headers: auth })
    expect(cancelled.status).toBe(200)
    expect(await json(cancelled)).toMatchObject({ id: job.id, cancelRequested: true })

    const events = await readEvents(await fetch(`${base}/jobs/${job.id}/events`, { headers: auth }))
    const last = events[events.length - 1]!.data.event
    expect(last._tag).toBe("Cancelled")
    const record = await json(await fetch(`${base}/jobs/${job.id}`, { headers: auth }))
    expect(record).toMatchObject({ status: "cancelled", step: last.step, digest: expect.stringMatching(/^[0-9a-f]{64}$/) })
    expect(record.step).toBeLessThan(5000)
    expect(record.files).toContain("checkpoint.msgpack")
    const checkpoint = await fetch(`${base}/jobs/${job.id}/files/checkpoint.msgpack`, { headers: auth })
    expect(checkpoint.status).toBe(200)
    expect((await checkpoint.arrayBuffer()).byteLength).toBeGreaterThan(0)
  }, 300_000)

  it("never logs the token", () => {
    expect(logged.some((line) => line.includes("Sent HTTP response"))).toBe(true)
    expect(logged.filter((line) => line.includes(token))).toEqual([])
  })
})

describe("server failures", () => {
  it("a failing job store: 500 with a fixed line, the details only in the server's log", async () => {
    const secret = "no such table: disendiff_jobs (/srv/private/jobs.sqlite)"
    const failure = new SqlError({ reason: new UnknownError({ cause: new Error(secret), message: secret }) })
    const broken = Layer.succeed(Jobs, {
      limits: { maxUploadBytes, maxSteps: 5000 },
      submit: () => Effect.fail(failure),
      list: Effect.fail(failure),
      get: () => Effect.fail(failure),
      events: () => Stream.fail(failure),
      cancel: () => Effect.fail(failure),
      files: () => Effect.fail(failure),
      file: () => Effect.fail(failure)
    })
    const rt = ManagedRuntime.make(Http.layerServer({ host: "127.0.0.1", port: 0, token: Redacted.make(token) }).pipe(Layer.provide(broken), Layer.provide(logs)))
    try {
      const url = `http://127.0.0.1:${await portOf(rt)}`
      const id = "00000000-0000-0000-0000-000000000000"
      const answers = [
        await fetch(`${url}/jobs`, { headers: auth }),
        await fetch(`${url}/jobs`, { method: "POST", headers: auth, body: upload(JSON.stringify({ backbone: "fake", prompt }), image) }),
        await fetch(`${url}/jobs/${id}`, { headers: auth }),
        await fetch(`${url}/jobs/${id}/events`, { headers: auth }),
        await fetch(`${url}/jobs/${id}/cancel`, { method: "POST", headers: auth }),
        await fetch(`${url}/jobs/${id}/files/checkpoint.msgpack`, { headers: auth })
      ]
      for (const r of answers) {
        const line = await expectError(r, 500)
        expect(line).toMatch(/^the server failed on this request\. Fix: /)
        expect(line).not.toContain("sqlite")
      }
      expect(logged.some((l) => l.includes(secret))).toBe(true)
    } finally {
      await rt.dispose()
    }
  })

  it("a port that is taken: one line naming it", async () => {
    const port = Number(new URL(base).port)
    const failure = await runtime!.runPromise(
      Effect.scoped(Layer.build(Http.layer({ host: "127.0.0.1", port, token: Redacted.make(token) }))).pipe(Effect.flip)
    )
    expect(failure).toBeInstanceOf(Http.ServeFailed)
    expect(failure.message).toMatch(new RegExp(`^cannot serve on 127\\.0\\.0\\.1:${port} \\(.*EADDRINUSE.*\\)\\. Fix: stop the process that holds this port`))
  })
})
