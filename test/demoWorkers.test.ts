/**
 * The demo's training micro-batches and sampling chunks on worker threads (the CLI's pool, built)
 * give the same checkpoints, images, attention maps and numbers as the demo without workers.
 */
import { WasmBackend } from "@disendiff/backend-wasm"
import { demoPlan, run } from "@disendiff/builtin/demo"
import { assert, describe, it } from "@effect/vitest"
import { beforeAll } from "vitest"
import { Effect, Stream } from "effect"
import { CheckpointFile } from "@disendiff/core"
import { createHash } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { tempDir } from "../packages/core/test/fixtures.js"
import { writeToyWeights } from "../packages/builtin/test/fixtures.js"
import { makeWorkerPool } from "../packages/cli/dist/WorkerPool.js"

/** Two training steps of two micro-batches, every prompt with one seed (two chunks), two sampling steps. */
const tinyPlan = () => {
  const plan = demoPlan({ seed: 5, quick: true })
  return {
    ...plan,
    training: { ...plan.training, steps: 2, batchSize: 2, gradientAccumulation: 2, regularizationImages: 2 },
    sampling: { ...plan.sampling, steps: 2, seedsPerPrompt: 1 },
    attentionTimesteps: [500]
  }
}

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

describe("the demo on worker threads", () => {
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
})
