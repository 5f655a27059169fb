/**
 * The wasm backend's thread count changes speed, never results: XNNPACK splits its products and
 * convolutions by output tiles and sums each output in the same order with any number of threads.
 * In-process: fixture A's UNet forward + backward (every parameter) and a product and convolution of
 * the medium UNet's sizes, bit for bit at 1, 2 and 3 threads (the backend restarts for each count).
 * Through the CLI: `sample` and `train` write the same bytes, and `check-model` reports the same errors,
 * with `--threads 1` and `--threads 2`.
 */
import { WasmBackend } from "@disendiff/backend-wasm"
import { Bench, encodePng, TensorRuntime, tf } from "@disendiff/core"
import { BenchSuite } from "@disendiff/builtin"
import { Effect } from "effect"
import { createHash } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { disendiff, root, tempDir } from "./cli.js"
import { makeSdFolder } from "./sdFolder.js"

const hash = (xs: ReadonlyArray<Float32Array>) => {
  const h = createHash("sha256")
  for (const x of xs) h.update(new Uint8Array(x.buffer, x.byteOffset, x.byteLength))
  return h.digest("hex")
}

const fixtureA = path.join(root, "fixtures/sd-tiny/A")

const computeWith = (threads: number) =>
  Effect.gen(function*() {
    const runtime = yield* TensorRuntime
    const { cfg, weights, contextDim } = yield* BenchSuite.loadUnet(fixtureA)
    const r = Bench.unetLossAndGrads(cfg, weights, { batch: 2, height: 16, width: 16, grads: "all", contextDim })
    tf.dispose([...weights.values()])
    const big = tf.tidy(() => {
      const a = tf.randomNormal([512, 1024], 0, 1, "float32", 1)
      const b = tf.randomNormal([1024, 768], 0, 1, "float32", 2)
      const x = tf.randomNormal([2, 32, 32, 128], 0, 1, "float32", 3)
      const w = tf.randomNormal([3, 3, 128, 256], 0, 1, "float32", 4)
      return [tf.matMul(a, b), tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, "same")]
    })
    const kernels = big.map((t) => Float32Array.from(t.dataSync() as Float32Array))
    tf.dispose(big)
    return { threads: runtime.threads, loss: r.loss, unet: hash(r.grads), count: r.grads.length, kernels: hash(kernels) }
  }).pipe(Effect.provide(WasmBackend.make({ threads })))

describe("wasm threads", () => {
  it("fixture A forward + backward, a large product and convolution: the same bits at 1, 2 and 3 threads", async () => {
    const results = []
    for (const n of [1, 2, 3]) results.push(await Effect.runPromise(computeWith(n)))
    expect(results.map((r) => r.threads)).toEqual([1, 2, 3])
    expect(results[0]!.count).toBeGreaterThan(100)
    expect(Number.isFinite(results[0]!.loss)).toBe(true)
    for (const r of results.slice(1)) {
      expect(r.loss).toBe(results[0]!.loss)
      expect(r.unet).toBe(results[0]!.unet)
      expect(r.kernels).toBe(results[0]!.kernels)
    }
  })

  it("sample and train through the CLI: the same bytes with --threads 1 and --threads 2", async () => {
    const dir = await tempDir()
    const files = async (d: string) => {
      const names = (await fs.readdir(d)).filter((f) => f.endsWith(".png")).sort()
      return Promise.all(names.map(async (f) => [f, createHash("sha256").update(await fs.readFile(path.join(d, f))).digest("hex")] as const))
    }
    const outs = []
    for (const n of ["1", "2"]) {
      const o = path.join(dir, `s${n}`)
      const r = await disendiff(["sample", "--prompt", "a red circle on a gray background", "--n", "2", "--steps", "6", "--seed", "4", "--out", o, "--threads", n])
      expect(r.code, r.stderr).toBe(0)
      outs.push(await files(o))
    }
    expect(outs[0]!.length).toBe(2)
    expect(outs[1]).toEqual(outs[0])

    const model = await makeSdFolder(path.join(dir, "sd"))
    const image = path.join(dir, "cat-dog.png")
    await fs.writeFile(image, encodePng({ width: 48, height: 40, data: new Float32Array(48 * 40 * 3).map((_, i) => ((i * 37) % 200) / 255) }))
    const digests = []
    for (const n of ["1", "2"]) {
      const out = path.join(dir, `t${n}`)
      const r = await disendiff([
        "train", "--backbone", "sd", "--model", model, "--image", image, "--prompt", "<v1> cat and <v2> dog",
        "--steps", "2", "--seed", "3", "--batch-size", "2", "--gradient-accumulation", "1", "--modifier-init", "class", "--out", out, "--json", "--threads", n
      ])
      expect(r.code, r.stderr).toBe(0)
      const inspected = await disendiff(["checkpoint", "inspect", "--json", path.join(out, "checkpoint.msgpack")])
      digests.push(JSON.parse(inspected.stdout).digest)
    }
    expect(digests[1]).toBe(digests[0])
  })

  it("check-model (every fixture tensor of the UNet, VAE and text encoder): the same errors with --threads 1 and --threads 2", async () => {
    const rows = []
    for (const n of ["1", "2"]) {
      const r = await disendiff(["check-model", "--fixtures", path.join(root, "fixtures/sd-tiny"), "--json", "--threads", n])
      expect(r.code, r.stderr).toBe(0)
      rows.push(JSON.parse(r.stdout).rows)
    }
    expect(rows[0].length).toBeGreaterThan(100)
    expect(rows[1]).toEqual(rows[0])
  })
})
