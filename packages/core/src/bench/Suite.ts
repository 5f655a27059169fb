/**
 * The benchmark suite behind `npm run bench`, and the table it writes into docs/benchmarks.md.
 * Cases: fixture config A (batch 2, 16x16), a ~35M-parameter "medium" UNet (128/256/256, two layers
 * per block, cross-attention dim 256, 8 heads; batch 2, 32x32), the built-in model's personalisation
 * step (batch 8, official calibration) and its 50-step guided DDIM sample. The PyTorch reference is
 * fixtures/sd-tiny/torch-cpu-timing.json (2 threads, float32, gradients into every parameter).
 */
import { Effect, Layer, Schema, Stream } from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { AttentionProbe } from "../attention/AttentionProbe.js"
import { Backbone } from "../backbone/Backbone.js"
import * as ToyBackbone from "../backbone/ToyBackbone.js"
import { Checkpoints } from "../checkpoint/Checkpoints.js"
import { encodePng } from "../image/Image.js"
import { readDiffusersFolder, UNetConfig } from "../io/DiffusersFolder.js"
import { readSafetensors, writeSafetensors } from "../io/Safetensors.js"
import { LossCalibrator, officialCalibration } from "../loss/LossCalibrator.js"
import { unetConfig } from "../models/Configs.js"
import { canonicalName, toTensor } from "../models/Convert.js"
import { defaultToySize, initToyParameters, toyModelConfig } from "../models/ToyModel.js"
import { Optimizer, torchAdamW } from "../optim/Optimizer.js"
import { sample } from "../sampling/Sampler.js"
import { TensorRuntime } from "../tensor/TensorRuntime.js"
import { tf } from "../tensor/Tf.js"
import { defaultTrainConfig } from "../training/TrainConfig.js"
import { train } from "../training/Trainer.js"
import { conceptImage } from "../world/ConceptImage.js"
import { benchUnet, median, randomUnetWeights, type UnetBenchOptions, type UnetBenchResult } from "./Bench.js"

/** The UNet of a diffusers folder (`dir` or `dir/unet`) in our layout. */
export const loadUnet = Effect.fn("Bench.loadUnet")(function*(dir: string) {
  const root = path.basename(path.resolve(dir)) === "unet" ? path.dirname(path.resolve(dir)) : dir
  const folder = yield* readDiffusersFolder(root)
  const stored = yield* readSafetensors(folder.unet.weights)
  const weights = new Map<string, tf.Tensor>()
  for (const [name, t] of stored) {
    const c = canonicalName(name)
    weights.set(c, toTensor(c, { shape: t.shape, data: Float32Array.from(t.data) }))
  }
  return { cfg: unetConfig(folder.unet.config), weights, contextDim: folder.textEncoder.config.hidden_size }
})

/** The medium UNet of the PyTorch reference timing (about 35M parameters). */
export const mediumUnet = unetConfig(Schema.decodeUnknownSync(UNetConfig)({
  in_channels: 4,
  out_channels: 4,
  down_block_types: ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
  block_out_channels: [128, 256, 256],
  layers_per_block: 2,
  cross_attention_dim: 256,
  attention_head_dim: 8,
  norm_num_groups: 32
}))

export interface CaseResult {
  readonly name: string
  readonly description: string
  readonly unet?: UnetBenchResult & { readonly batch: number; readonly size: string; readonly grads: string }
  readonly seconds?: number
  readonly target?: string
  /** The PyTorch reference: forward and forward+backward (all grads), minimum over runs. */
  readonly torch?: { readonly forwardSeconds: number; readonly forwardBackwardSeconds: number }
}

const torchTiming = async (fixtures: string, key: string) => {
  try {
    const t = JSON.parse(await fs.readFile(path.join(fixtures, "torch-cpu-timing.json"), "utf8"))
    const c = t.cases[key]
    return c === undefined ? undefined : { forwardSeconds: c.forward.min_s as number, forwardBackwardSeconds: c.forward_backward.min_s as number }
  } catch {
    return undefined
  }
}

/** A toy weights file with fresh weights (timing does not depend on the values). */
const toyWeightsFile = Effect.promise(async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "disendiff-bench-"))
  return { dir, file: path.join(dir, "toy.safetensors") }
})

const builtinStep = (runs: number) =>
  Effect.gen(function*() {
    const { dir, file } = yield* toyWeightsFile
    const cfg = toyModelConfig()
    const params = initToyParameters(cfg, 0)
    yield* writeSafetensors(file, new Map(yield* Effect.promise(() => Promise.all(Object.entries(params).map(async ([k, t]) => [k, { shape: t.shape, data: (await t.data()) as Float32Array }] as const)))), { size: JSON.stringify(defaultToySize) })
    tf.dispose(Object.values(params))
    const c = conceptImage({ concepts: ["ring", "split"], background: "gray", modifiers: ["<v1>", "<v2>"] })
    const image = path.join(dir, "concepts.png")
    yield* Effect.promise(() => fs.writeFile(image, encodePng(c.image)))
    const config = {
      ...defaultTrainConfig({ backbone: "toy", image, prompt: c.caption }),
      steps: runs + 2,
      batchSize: 8,
      gradientAccumulation: 1
    }
    const layers = Layer.mergeAll(
      ToyBackbone.layer({ modifiers: ["<v1>", "<v2>"], weights: file }),
      AttentionProbe.layer(),
      LossCalibrator.layer(officialCalibration),
      Optimizer.layer(torchAdamW),
      Checkpoints.layer
    )
    const steps: Array<number> = []
    yield* train({ config, out: path.join(dir, "run") }).pipe(
      Stream.runForEach((e) => Effect.sync(() => e._tag === "Step" && steps.push(e.stepSeconds))),
      Effect.provide(layers)
    )
    // the first two steps warm up
    const stepSeconds = median(steps.slice(2))
    const sampled = yield* Effect.gen(function*() {
      const backbone = yield* Backbone
      yield* sample(backbone, { prompts: ["a red circle on a gray background"], seeds: [1], steps: 50, guidance: 4, eta: 0 }) // warm-up
      const times: Array<number> = []
      for (let i = 0; i < runs; i++) {
        const t0 = performance.now()
        yield* sample(backbone, { prompts: ["a red circle on a gray background"], seeds: [i], steps: 50, guidance: 4, eta: 0 })
        times.push((performance.now() - t0) / 1000)
      }
      return median(times)
    }).pipe(Effect.provide(ToyBackbone.layer({ modifiers: [], weights: file })))
    yield* Effect.promise(() => fs.rm(dir, { recursive: true, force: true }))
    return { stepSeconds, sampleSeconds: sampled }
  })

export const runSuite = (fixtures: string, o: { readonly runs: number; readonly onCase?: (name: string) => Effect.Effect<void> }) =>
  Effect.gen(function*() {
    const results: Array<CaseResult> = []
    const unetCase = (name: string, description: string, load: Effect.Effect<{ cfg: typeof mediumUnet; weights: Map<string, tf.Tensor>; contextDim: number }, unknown, TensorRuntime>, opts: Omit<UnetBenchOptions, "grads" | "runs" | "contextDim">, torchKey: string) =>
      Effect.gen(function*() {
        if (o.onCase !== undefined) yield* o.onCase(name)
        const { cfg, weights, contextDim } = yield* load
        const torch = yield* Effect.promise(() => torchTiming(fixtures, torchKey))
        for (const grads of ["all", "kv"] as const) {
          const r = yield* benchUnet(cfg, weights, { ...opts, grads, runs: o.runs, contextDim })
          results.push({ name: `${name} (${grads})`, description, unet: { ...r, batch: opts.batch, size: `${opts.height}x${opts.width}`, grads }, ...(torch === undefined ? {} : { torch }) })
        }
        tf.dispose([...weights.values()])
      })
    yield* unetCase("fixture A", "sd-tiny config A, 1.1M parameters", loadUnet(path.join(fixtures, "A")), { batch: 2, height: 16, width: 16 }, "A_16x16_b2")
    yield* unetCase("medium", "128/256/256, 2 layers per block, 8 heads, 34.9M parameters", Effect.sync(() => ({ cfg: mediumUnet, weights: randomUnetWeights(mediumUnet, 256), contextDim: 256 })), { batch: 2, height: 32, width: 32 }, "medium_32x32_b2")
    if (o.onCase !== undefined) yield* o.onCase("built-in model")
    const builtin = yield* builtinStep(o.runs)
    results.push({ name: "built-in personalisation step", description: "batch 8, official calibration, AdamW", seconds: builtin.stepSeconds, target: "0.5 s" })
    results.push({ name: "built-in 50-step guided sample", description: "one 32x32 image, DDIM 50 steps, guidance 4", seconds: builtin.sampleSeconds, target: "2 s" })
    return results
  })

const f3 = (x: number) => (x < 0.01 ? x.toExponential(2) : x.toFixed(3))

/** The markdown table for docs/benchmarks.md. */
export const markdownTable = (results: ReadonlyArray<CaseResult>, meta: { readonly date: string; readonly backend: string; readonly machine: string }) => {
  const lines = [
    `Measured ${meta.date} on ${meta.machine}, backend ${meta.backend} (\`npm run bench\`; raw numbers in bench/results/).`,
    "",
    "| case | batch | latent | grads | forward s | fwd+bwd s | GFLOP fwd+bwd | GFLOP/s | matMul GFLOP/s | fraction of matMul | PyTorch fwd / fwd+bwd s | ours / PyTorch fwd, fwd+bwd | peak MiB |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  ]
  for (const r of results) {
    if (r.unet === undefined) continue
    const u = r.unet
    const ratio = r.torch === undefined || u.grads !== "all"
      ? "-"
      : `${(u.forwardSeconds / r.torch.forwardSeconds).toFixed(2)}x, ${(u.forwardBackwardSeconds / r.torch.forwardBackwardSeconds).toFixed(2)}x`
    const torch = r.torch === undefined ? "-" : `${f3(r.torch.forwardSeconds)} / ${f3(r.torch.forwardBackwardSeconds)}`
    lines.push(
      `| ${r.name} | ${u.batch} | ${u.size} | ${u.grads} | ${f3(u.forwardSeconds)} | ${f3(u.forwardBackwardSeconds)} | ${u.forwardBackwardGflop.toFixed(2)} | ${u.gflops.toFixed(1)} | ${u.matmulGflops.toFixed(1)} | ${(u.gflops / u.matmulGflops).toFixed(2)} | ${torch} | ${ratio} | ${(u.peakBytes / 2 ** 20).toFixed(0)} |`
    )
  }
  lines.push("", "| built-in model | seconds | target |", "|---|---|---|")
  for (const r of results) if (r.seconds !== undefined) lines.push(`| ${r.name} (${r.description}) | ${r.seconds.toFixed(3)} | ${r.target ?? "-"} |`)
  return lines.join("\n")
}
