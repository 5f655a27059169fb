// Times the sd-tiny fixture UNet (config A, as `check-model` runs it: batch 2, 16x16x4 latents,
// 77 tokens) on one backend: the forward pass, and forward + backward to the cross-attention K/V
// weights (a training step's work without the optimizer). Median of the runs after two warm-up runs,
// each ending with an asynchronous read so the GPU has finished. The numbers in docs/backends.md.
//   node scripts/bench-unet.mjs [webgpu|wasm|cpu] [runs]
import { WebGpu } from "@disendiff/backend-node"
import { WasmBackend } from "@disendiff/backend-wasm"
import { CpuBackend, DiffusersFolder, nn, Safetensors, tf } from "@disendiff/core"
import { unetConfig } from "../packages/core/dist/models/Configs.js"
import { canonicalName, toTensor } from "../packages/core/dist/models/Convert.js"
import { unetForward } from "../packages/core/dist/models/Unet2dConditionModel.js"
import { Effect } from "effect"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const [backend = "webgpu", runsArg = "5"] = process.argv.slice(2)
const runs = Number(runsArg)
const fixtures = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../shared/fixtures/sd-tiny")
const runtime = { wasm: WasmBackend.layer, webgpu: WebGpu.layer, cpu: CpuBackend.layer }[backend]
if (runtime === undefined) throw new Error(`unknown backend ${backend}: use webgpu, wasm or cpu`)

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

const time = async (f) => {
  const times = []
  for (let i = 0; i < runs + 2; i++) {
    const t0 = performance.now()
    const out = f()
    await out.data()
    out.dispose()
    if (i >= 2) times.push(performance.now() - t0)
  }
  return { median: Math.round(median(times)), all: times.map((t) => Math.round(t)) }
}

const program = Effect.gen(function*() {
  const folder = yield* DiffusersFolder.readDiffusersFolder(path.join(fixtures, "A"))
  const weights = new Map()
  for (const [name, t] of yield* Safetensors.readSafetensors(folder.unet.weights)) {
    const canonical = canonicalName(name)
    weights.set(canonical, toTensor(canonical, { shape: t.shape, data: Float32Array.from(t.data) }))
  }
  const io = yield* Safetensors.readSafetensors(path.join(fixtures, "A/unet_io.safetensors"))
  const nhwc = (t) => tf.transpose(tf.tensor(Float32Array.from(t.data), [...t.shape]), [0, 2, 3, 1])
  const cfg = unetConfig(folder.unet.config)
  const latents = nhwc(io.get("sample"))
  const context = tf.tensor(Float32Array.from(io.get("encoder_hidden_states").data), [...io.get("encoder_hidden_states").shape])
  const timesteps = Array.from(io.get("timestep").data, Number)
  const kv = [...weights.keys()].filter((k) => /attn2\.to_[kv]\.weight$/.test(k))
  const forward = yield* Effect.promise(() => time(() => tf.tidy(() => unetForward(cfg, nn.makeWeights(weights), { latents, timesteps, context }))))
  const backward = yield* Effect.promise(() =>
    time(() =>
      tf.tidy(() => {
        const grads = tf.grads((...trained) => {
          const w = nn.makeWeights(weights, new Map(kv.map((k, i) => [k, trained[i]])))
          return tf.mean(tf.square(unetForward(cfg, w, { latents, timesteps, context })))
        })(kv.map((k) => weights.get(k)))
        return tf.sum(tf.stack(grads.map((g) => tf.sum(g)))) // one read that needs every gradient
      })
    )
  )
  console.log(JSON.stringify({ backend, runs, forward_ms: forward, forward_backward_ms: backward }))
})

await Effect.runPromise(program.pipe(Effect.provide(runtime)))
