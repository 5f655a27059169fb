/**
 * The WebGPU backend end to end through the CLI: parity with the reference fixtures, and a short
 * fake-backbone training run that matches the same run on wasm. On machines without a GPU it runs on
 * Mesa's software OpenGL (scripts/install-webgpu-deps.sh installs it). These tests skip only when no
 * adapter starts and DISENDIFF_REQUIRE_WEBGPU is unset; CI sets it, so there they must run.
 */
import { WebGpu } from "@disendiff/backend-node"
import { CheckpointFile, type CheckRow, encodePng, TensorRuntime, tf } from "@disendiff/core"
import { Context, Effect, Layer, Result } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { disendiff, root, tempDir } from "./cli.js"

const fixtures = path.resolve(root, "fixtures/sd-tiny")
const required = (process.env["DISENDIFF_REQUIRE_WEBGPU"] ?? "") !== ""
const probe = await Effect.runPromise(Effect.result(WebGpu.probe()))
const reason = Result.isFailure(probe) ? probe.failure.message : undefined
if (reason !== undefined && !required) {
  console.warn(`webgpu tests skipped: ${reason}\n(set DISENDIFF_REQUIRE_WEBGPU=1 to make this a failure)`)
}

describe("webgpu adapter", () => {
  it("starts here, or the machine is allowed to lack one", () => {
    if (required) expect(reason, "DISENDIFF_REQUIRE_WEBGPU is set").toBeUndefined()
    if (Result.isSuccess(probe)) {
      expect(probe.success.maxStorageBufferBindingSize).toBeGreaterThan(0)
      expect(probe.success.maxBufferSize).toBeGreaterThanOrEqual(probe.success.maxStorageBufferBindingSize)
    }
  })

  it("an unknown DISENDIFF_WEBGPU_ADAPTER is a typed error naming the choices", async () => {
    const r = await disendiff(["check-model", "--fixtures", fixtures, "--backend", "webgpu"], { env: { [WebGpu.adapterEnv]: "tpu" } })
    expect(r.code).toBe(1)
    expect(r.stderr).toContain("backend 'webgpu' is unavailable")
    expect(r.stderr).toContain("auto, gpu, software")
  })
})

const gpuProbe = await Effect.runPromise(Effect.result(WebGpu.probe({ adapter: "gpu" })))

describe.skipIf(Result.isSuccess(gpuProbe))("webgpu without a GPU", () => {
  it("--backend webgpu restricted to a GPU exits 1 saying what is missing and what to install", async () => {
    const r = await disendiff(["check-model", "--fixtures", fixtures, "--backend", "webgpu"], { env: { [WebGpu.adapterEnv]: "gpu" } })
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/backend 'webgpu' is unavailable \(webgpu\): (no Vulkan loader|no GPU adapter|only a software adapter)/)
    expect(r.stderr).toContain("Vulkan driver")
    expect(r.stderr).toContain(`${WebGpu.adapterEnv}=software`)
    expect(r.stdout).not.toContain("tensors checked")
  })
})

describe.skipIf(reason !== undefined && !required)("webgpu backend", () => {
  it("check-model passes every tensor of the sd-tiny fixtures", async () => {
    const r = await disendiff(["check-model", "--fixtures", fixtures, "--backend", "webgpu", "--json"])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/^webgpu: (gpu|software) adapter /m)
    const report = JSON.parse(r.stdout) as { backend: string; rows: Array<CheckRow>; failed: number }
    expect(report.backend).toBe("webgpu")
    expect(report.failed).toBe(0)
    expect(report.rows.filter((row) => !row.pass)).toEqual([])
    // every fixture kind is covered: text encoder, UNet, attention maps, gradients, VAE, DDIM, schedulers, tokenizer
    expect(new Set(report.rows.map((row) => row.fixture))).toEqual(
      new Set(["clip", "unet", "attn_probs", "unet_grads", "vae", "ddim", "scheduler_tables.safetensors", "tokenizer_cases.json"])
    )
  }, 600_000)

  it("runs in this process with asynchronous reads only, counts tensor bytes, and fails reads after invalid GPU work", async () => {
    const runtime = await Effect.runPromise(Effect.scoped(Layer.build(WebGpu.layer)).pipe(Effect.map((c) => Context.get(c, TensorRuntime))))
    expect(runtime.backend).toBe("webgpu")
    expect(tf.getBackend()).toBe("webgpu")
    expect(runtime.syncReads).toBe(false)
    expect(runtime.device).toMatch(/largest shader binding \d/)
    const before = runtime.memory().liveBytes
    // above WEBGPU_CPU_HANDOFF_SIZE_THRESHOLD (1000 elements), so on the GPU
    const a = tf.fill([64, 64], 0.5)
    expect(runtime.memory().liveBytes - before).toBe(64 * 64 * 4)
    const product = tf.matMul(a, a)
    expect(Array.from((await product.data()).slice(0, 2))).toEqual([16, 16])
    // AddN binds one storage buffer per input, over the adapter's 8: WebGPU rejects it, and reads then fail
    const terms = Array.from({ length: 12 }, (_, i) => tf.fill([2000], i))
    await expect(tf.addN(terms).data()).rejects.toThrow(/WebGPU rejected a kernel/)
    await expect(product.data()).rejects.toThrow(/WebGPU rejected a kernel/)
  })

  describe("3 fake-backbone training steps", () => {
    let dir = ""
    const image = () => path.join(dir, "a.png")
    beforeAll(async () => {
      dir = await tempDir()
      const w = 40
      const data = new Float32Array(w * w * 3).map((_, i) => ((i * 7919) % 255) / 255)
      await fs.writeFile(image(), encodePng({ width: w, height: w, data }))
    })

    const train = (backend: string) =>
      disendiff(["train", "--backbone", "fake", "--image", image(), "--prompt", "<v1> cat and <v2> dog", "--steps", "3", "--seed", "7", "--backend", backend, "--out", path.join(dir, backend)])

    it("match the same run on wasm within 1e-5 relative on every trainable tensor", async () => {
      const gpu = await train("webgpu")
      expect(gpu.code, gpu.stderr).toBe(0)
      const wasm = await train("wasm")
      expect(wasm.code, wasm.stderr).toBe(0)
      const load = (backend: string) => Effect.runPromise(CheckpointFile.load(path.join(dir, backend, "checkpoint.msgpack")))
      const [a, b] = await Promise.all([load("webgpu"), load("wasm")])
      expect(a.header.step).toBe(3)
      expect(a.header.baseModel).toEqual(b.header.baseModel)
      expect([...a.trainable.keys()].sort()).toEqual([...b.trainable.keys()].sort())
      for (const [name, ref] of b.trainable) {
        const got = a.trainable.get(name)!
        expect(got.shape).toEqual(ref.shape)
        let scale = 0
        let diff = 0
        for (let i = 0; i < ref.data.length; i++) {
          scale = Math.max(scale, Math.abs(ref.data[i]!))
          diff = Math.max(diff, Math.abs(got.data[i]! - ref.data[i]!))
        }
        expect(scale, name).toBeGreaterThan(0)
        expect(diff / scale, name).toBeLessThan(1e-5)
      }
      // the same losses and (nonzero) gradient norms step by step
      expect(a.header.lossHistory).toHaveLength(3)
      a.header.lossHistory.forEach((l, i) => {
        const r = b.header.lossHistory[i]!
        expect(r.gradNorm).toBeGreaterThan(0)
        expect(Math.abs(l.loss - r.loss) / Math.abs(r.loss)).toBeLessThan(1e-5)
        expect(Math.abs(l.gradNorm - r.gradNorm) / r.gradNorm).toBeLessThan(1e-4)
      })
    }, 300_000)
  })
})
