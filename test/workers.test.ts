/**
 * Training micro-batches and sampling chunks on worker threads (the CLI's pool, built) give the same
 * results as without workers: the demo's checkpoints, images, attention maps and numbers, `train`'s
 * checkpoint and `sample`'s images.
 */
import { WasmBackend } from "@disendiff/backend-wasm"
import { run } from "@disendiff/builtin/demo"
import { assert, describe, it } from "@effect/vitest"
import { beforeAll, expect } from "vitest"
import { Effect, Stream } from "effect"
import { CheckpointFile, encodePng } from "@disendiff/core"
import { createHash } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { tempDir } from "../packages/core/test/fixtures.js"
import { tinyDemoPlan, writeToyWeights } from "../packages/builtin/test/fixtures.js"
import { makeWorkerPool } from "../packages/cli/dist/WorkerPool.js"
import { disendiff, digestOf } from "./cli.js"

const tinyPlan = tinyDemoPlan

let dir = ""
let weights = ""

beforeAll(async () => {
  dir = await tempDir()
  weights = await writeToyWeights(path.join(dir, "tiny.safetensors"))
})

const sha = (bytes: Uint8Array | string) => createHash("sha256").update(bytes).digest("hex")

/**
 * A digest of every output file: a checkpoint's tensors and loss history (its header also names the
 * output folder), metrics.json without the timings; the report, which prints the timings, is left out.
 */
const outputs = (out: string) =>
  Effect.gen(function*() {
    const entries = yield* Effect.promise(() => fs.readdir(out, { recursive: true, withFileTypes: true }))
    const files = entries.filter((e) => e.isFile()).map((e) => path.relative(out, path.join(e.parentPath, e.name))).filter((f) => f !== "report.html").sort()
    const digests = new Map<string, string>()
    for (const f of files) {
      if (f.endsWith(".msgpack")) {
        const s = yield* CheckpointFile.load(path.join(out, f))
        const tensors = [s.trainable, s.optimizer.m, s.optimizer.v].flatMap((m) => [...m].map(([k, t]) => `${k}:${sha(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength))}`))
        digests.set(f, sha(JSON.stringify({ step: s.header.step, losses: s.header.lossHistory, tensors })))
        continue
      }
      const bytes = yield* Effect.promise(() => fs.readFile(path.join(out, f)))
      if (f !== "metrics.json") digests.set(f, sha(bytes))
      else {
        const m = JSON.parse(bytes.toString("utf8"))
        delete m.seconds
        for (const t of Object.values(m.training) as Array<Record<string, unknown>>) delete t.seconds
        digests.set(f, sha(JSON.stringify(m)))
      }
    }
    return digests
  })

describe("work on worker threads", () => {
  it.effect("writes the same checkpoints, images and metrics with two workers as with none", () =>
    Effect.gen(function*() {
      const plan = tinyPlan()
      yield* Stream.runDrain(run({ plan, out: path.join(dir, "none"), weights }))
      yield* Effect.scoped(Effect.gen(function*() {
        const workers = yield* makeWorkerPool({ count: 2, backend: "wasm", threads: 1 })
        yield* Stream.runDrain(run({ plan, out: path.join(dir, "two"), weights, workers }))
      }))
      const none = yield* outputs(path.join(dir, "none"))
      const two = yield* outputs(path.join(dir, "two"))
      assert.deepStrictEqual([...two.keys()], [...none.keys()])
      assert.isTrue(none.size > 60)
      for (const [f, bytes] of none) assert.strictEqual(two.get(f), bytes, f)
    }).pipe(Effect.provide(WasmBackend.make({ threads: 1 }))), 300_000)

  it("train: the same checkpoint with --workers 1 and 2 (three micro-batches a step, an uneven split)", async () => {
    const image = path.join(dir, "a.png")
    await fs.writeFile(image, encodePng({ width: 16, height: 16, data: new Float32Array(16 * 16 * 3).map((_, i) => ((i * 29) % 97) / 97) }))
    const digests = []
    for (const n of ["1", "2"]) {
      const out = path.join(dir, `train-${n}`)
      const r = await disendiff([
        "train", "--backbone", "fake", "--image", image, "--prompt", "<v1> cat and <v2> dog", "--steps", "3", "--seed", "2",
        "--batch-size", "1", "--gradient-accumulation", "3", "--out", out, "--json", "--workers", n
      ])
      expect(r.code, r.stderr).toBe(0)
      digests.push(await digestOf(path.join(out, "checkpoint.msgpack")))
    }
    expect(digests[1]).toBe(digests[0])
  })

  it("sample: the same images with --workers 1 and 2 (three batches of the built-in model)", async () => {
    const images = []
    for (const n of ["1", "2"]) {
      const out = path.join(dir, `sample-${n}`)
      const r = await disendiff(["sample", "--prompt", "a red circle on a gray background", "--n", "3", "--batch", "1", "--steps", "3", "--seed", "4", "--out", out, "--workers", n])
      expect(r.code, r.stderr).toBe(0)
      const names = (await fs.readdir(out)).filter((f) => f.endsWith(".png")).sort()
      images.push(await Promise.all(names.map(async (f) => [f, sha(await fs.readFile(path.join(out, f)))] as const)))
    }
    expect(images[0]!.length).toBe(3)
    expect(images[1]).toEqual(images[0])
  })

  it("--workers 0, or more than 1 on a device backend: one line saying what to give", async () => {
    const r = await disendiff(["sample", "--prompt", "a red circle on a gray background", "--out", path.join(dir, "w0"), "--workers", "0"])
    expect(r.code).not.toBe(0)
    expect(r.stderr).toContain("--workers 0: use 1 or more")
  })
})
