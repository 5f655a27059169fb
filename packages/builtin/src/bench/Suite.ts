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
import { AttentionProbe } from "@disendiff/core/attention/AttentionProbe.js"
import { Backbone } from "@disendiff/core/backbone/Backbone.js"
import * as ToyBackbone from "../backbone/ToyBackbone.js"
import { Checkpoints } from "@disendiff/core/checkpoint/Checkpoints.js"
import { encodePng } from "@disendiff/core/image/Image.js"
import { readUnetFolder, UNetConfig } from "@disendiff/core/io/DiffusersFolder.js"
import { readSafetensors, writeSafetensors } from "@disendiff/core/io/Safetensors.js"
import { LossCalibrator, officialCalibration } from "@disendiff/core/loss/LossCalibrator.js"
import { unetConfig } from "@disendiff/core/models/Configs.js"
import { canonicalName, toTensor } from "@disendiff/core/models/Convert.js"
import { defaultToySize, initToyParameters, toyModelConfig } from "../models/ToyModel.js"
import { Optimizer, torchAdamW } from "@disendiff/core/optim/Optimizer.js"
import { sample } from "@disendiff/core/sampling/Sampler.js"
import { type BackendUnavailable, TensorRuntime } from "@disendiff/core/tensor/TensorRuntime.js"
import { tf } from "@disendiff/core/tensor/Tf.js"
import { defaultTrainConfig } from "@disendiff/core/training/TrainConfig.js"
import { train } from "@disendiff/core/training/Trainer.js"
import { conceptImage } from "../world/ConceptImage.js"
import { benchUnet, median, randomUnetWeights, type UnetBenchOptions, type UnetBenchResult } from "@disendiff/core/bench/Bench.js"

/** The UNet of a diffusers folder (`dir`, `dir/unet`, or a UNet-only folder) in our layout. */
export const loadUnet = Effect.fn("Bench.loadUnet")(function*(dir: string) {
  const unet = yield* readUnetFolder(dir)
  const stored = yield* readSafetensors(unet.weights)
  const weights = new Map<string, tf.Tensor>()
  for (const [name, t] of stored) {
    const c = canonicalName(name)
    weights.set(c, toTensor(c, { shape: t.shape, data: Float32Array.from(t.data) }))
  }
  return { cfg: unetConfig(unet.config), weights, contextDim: unet.contextDim }
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
  /** PyTorch's forward and forward+backward (all grads), minimum over runs. */
  readonly torch?: TorchTiming
  /** The same case (all gradients) at other thread counts: the scaling table. */
  readonly scaling?: ReadonlyArray<UnetBenchResult>
}

/**
 * PyTorch on the same UNet: `side-by-side` when the suite ran the peer (bench/torch/unet_timing.py) in the
 * same run on this machine, `reference` when it read the stored timing of another day
 * (fixtures/sd-tiny/torch-cpu-timing.json).
 */
export interface TorchTiming {
  readonly forwardSeconds: number
  readonly forwardBackwardSeconds: number
  readonly source: "side-by-side" | "reference"
  readonly threads: number
  readonly version?: string
  /** Side by side: self CPU milliseconds by op of one profiled forward+backward (torch.autograd.profiler). */
  readonly profileMs?: Readonly<Record<string, number>>
}

/** The UNet cases the PyTorch peer knows. */
export type TorchCase = "A" | "medium"

/**
 * How the suite gets a backend with a given thread count (the CLI's wasm layer); absent: the provided
 * backend only, no scaling table.
 */
export type WithThreads = (threads: number) => <A, E>(effect: Effect.Effect<A, E, TensorRuntime>) => Effect.Effect<A, E | BackendUnavailable>

/** Thread counts of a scaling table: 1, 2, 4, 8 up to `max`, and `max` itself. */
export const scalingCounts = (max: number): ReadonlyArray<number> =>
  [...new Set([1, 2, 4, 8].filter((n) => n <= max).concat(max))].sort((a, b) => a - b)

const torchTiming = async (fixtures: string, key: string) => {
  try {
    const t = JSON.parse(await fs.readFile(path.join(fixtures, "torch-cpu-timing.json"), "utf8"))
    const c = t.cases[key]
    return c === undefined
      ? undefined
      : { forwardSeconds: c.forward.min_s as number, forwardBackwardSeconds: c.forward_backward.min_s as number, source: "reference" as const, threads: t.threads as number, version: t.torch as string }
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

export interface SuiteOptions {
  readonly runs: number
  readonly onCase?: (name: string) => Effect.Effect<void>
  /** Thread counts for the scaling table (with `withThreads`). */
  readonly scaling?: ReadonlyArray<number>
  readonly withThreads?: WithThreads
  /** The thread count of the main table and the built-in model's rows (with `withThreads`). */
  readonly threads?: number
  /** Leaves the medium UNet out (minutes per thread count on a busy machine). */
  readonly skipMedium?: boolean
  /** Times the full demo (the CLI runs `disendiff demo` in a child process); absent: not timed. */
  readonly demoSeconds?: Effect.Effect<number>
  /**
   * Times PyTorch on the same case in this run (the CLI runs the peer script in a child process, right after
   * our own timing of the case); absent, or undefined for a case: the stored reference.
   */
  readonly torchPeer?: (c: TorchCase) => Effect.Effect<TorchTiming | undefined>
}

export const runSuite = (fixtures: string, o: SuiteOptions) =>
  Effect.gen(function*() {
    const results: Array<CaseResult> = []
    // the backend restarts for each thread count: every case provides its own
    const atDefault = <A, E>(effect: Effect.Effect<A, E, TensorRuntime>): Effect.Effect<A, E | BackendUnavailable, TensorRuntime> =>
      o.withThreads !== undefined && o.threads !== undefined ? o.withThreads(o.threads)(effect) : effect
    type Load = Effect.Effect<{ cfg: typeof mediumUnet; weights: Map<string, tf.Tensor>; contextDim: number }, unknown, TensorRuntime>
    const unetCase = (name: string, description: string, load: Load, opts: Omit<UnetBenchOptions, "grads" | "runs" | "contextDim">, torchKey: string, peerCase: TorchCase) =>
      Effect.gen(function*() {
        if (o.onCase !== undefined) yield* o.onCase(name)
        const stored = yield* Effect.promise(() => torchTiming(fixtures, torchKey))
        const once = (grads: "all" | "kv") =>
          Effect.gen(function*() {
            const { cfg, weights, contextDim } = yield* load
            const r = yield* benchUnet(cfg, weights, { ...opts, grads, runs: o.runs, contextDim })
            tf.dispose([...weights.values()])
            return r
          })
        const scaling: Array<UnetBenchResult> = []
        if (o.withThreads !== undefined) {
          for (const n of o.scaling ?? []) {
            if (o.onCase !== undefined) yield* o.onCase(`${name} on ${n} thread${n === 1 ? "" : "s"}`)
            scaling.push(yield* o.withThreads(n)(once("all")))
          }
        }
        const ours = { all: yield* atDefault(once("all")), kv: yield* atDefault(once("kv")) }
        if (o.torchPeer !== undefined && o.onCase !== undefined) yield* o.onCase(`${name}: PyTorch side by side`)
        const torch = (o.torchPeer === undefined ? undefined : yield* o.torchPeer(peerCase)) ?? stored
        for (const grads of ["all", "kv"] as const) {
          const r = ours[grads]
          results.push({
            name: `${name} (${grads})`,
            description,
            unet: { ...r, batch: opts.batch, size: `${opts.height}x${opts.width}`, grads },
            ...(torch === undefined ? {} : { torch }),
            ...(grads === "all" && scaling.length > 0 ? { scaling } : {})
          })
        }
      })
    yield* unetCase("fixture A", "sd-tiny config A, 1.1M parameters", loadUnet(path.join(fixtures, "A")), { batch: 2, height: 16, width: 16 }, "A_16x16_b2", "A")
    if (o.skipMedium !== true) yield* unetCase("medium", "128/256/256, 2 layers per block, 8 heads, 34.9M parameters", Effect.sync(() => ({ cfg: mediumUnet, weights: randomUnetWeights(mediumUnet, 256), contextDim: 256 })), { batch: 2, height: 32, width: 32 }, "medium_32x32_b2", "medium")
    if (o.onCase !== undefined) yield* o.onCase("built-in model")
    const builtin = yield* atDefault(builtinStep(o.runs))
    results.push({ name: "built-in personalisation step", description: "batch 8, official calibration, AdamW", seconds: builtin.stepSeconds, target: "0.5 s" })
    results.push({ name: "built-in 50-step guided sample", description: "one 32x32 image, DDIM 50 steps, guidance 4", seconds: builtin.sampleSeconds, target: "2 s" })
    if (o.demoSeconds !== undefined) {
      if (o.onCase !== undefined) yield* o.onCase("full demo")
      results.push({ name: "full demo", description: "`disendiff demo`, built-in model, the plan's seed, default --workers (one per core)", seconds: yield* o.demoSeconds })
    }
    return results
  })

const f3 = (x: number) => (x < 0.01 ? x.toExponential(2) : x.toFixed(3))

const minOf = (xs: ReadonlyArray<number>) => Math.min(...xs)

// the products: matMuls, batched matMuls, convolutions and their gradient kernels, on either side
const ourProducts = /^(BatchMatMul|_FusedMatMul|Conv2D|FusedConv2D|Conv2DBackpropInput|Conv2DBackpropFilter)$/
const torchProducts = /^aten::(mm|addmm_?|bmm|baddbmm|matmul|convolution_backward|mkldnn_convolution|_convolution|thnn_conv2d|slow_conv2d_forward)$/

/** Where one forward+backward's time goes on each side: products, transposes (ours), the rest. */
const splitTable = (results: ReadonlyArray<CaseResult>) => {
  const rows = results.filter((r) => r.unet?.grads === "all" && r.unet.kernels !== undefined && r.torch?.profileMs !== undefined)
  if (rows.length === 0) return []
  const lines = [
    "",
    "Where one forward+backward's time goes (all gradients; ours: kernel time of one profiled run, PyTorch: self CPU time under its profiler, which slows its step):",
    "",
    "| case | ours: products / transposes / the rest (ms), kernels | PyTorch: products / the rest (ms) | our products over PyTorch's timed fwd+bwd |",
    "|---|---|---|---|"
  ]
  for (const r of rows) {
    const k = r.unet!.kernels!
    const sum = (f: (name: string) => boolean) => k.filter((e) => f(e.name)).reduce((a, e) => a + e.ms, 0)
    const products = sum((n) => ourProducts.test(n))
    const transposes = sum((n) => n === "Transpose")
    const rest = sum((n) => !ourProducts.test(n) && n !== "Transpose")
    const count = k.reduce((a, e) => a + e.count, 0)
    const t = Object.entries(r.torch!.profileMs!)
    const tp = t.filter(([n]) => torchProducts.test(n)).reduce((a, [, ms]) => a + ms, 0)
    const tr = t.filter(([n]) => !torchProducts.test(n)).reduce((a, [, ms]) => a + ms, 0)
    lines.push(`| ${r.name.replace(/ \(all\)$/, "")} | ${products.toFixed(0)} / ${transposes.toFixed(0)} / ${rest.toFixed(0)}, ${count} | ${tp.toFixed(0)} / ${tr.toFixed(0)} | ${(products / 1000 / r.torch!.forwardBackwardSeconds).toFixed(2)}x |`)
  }
  return lines
}

const torchSource = (t: TorchTiming) =>
  t.source === "side-by-side"
    ? `timed side by side in this run (bench/torch/unet_timing.py, torch ${t.version ?? "?"}, ${t.threads} threads)`
    : `the stored reference of another machine and day (fixtures/sd-tiny/torch-cpu-timing.json, torch ${t.version ?? "?"}, ${t.threads} threads; a ratio to it moves with the machine)`

const scaledTorchThreads = (results: ReadonlyArray<CaseResult>) => [...new Set(results.flatMap((r) => (r.scaling !== undefined && r.torch !== undefined ? [r.torch.threads] : [])))].join(", ") || "-"

/** The markdown tables for docs/benchmarks.md. */
export const markdownTable = (results: ReadonlyArray<CaseResult>, meta: { readonly date: string; readonly backend: string; readonly machine: string; readonly threads: number; readonly conditions?: string }) => {
  const lines = [
    `Measured ${meta.date} on ${meta.machine}, backend ${meta.backend}, ${meta.threads} thread${meta.threads === 1 ? "" : "s"} (\`npm run bench\`; raw numbers in bench/results/).` +
    (meta.conditions === undefined ? "" : ` ${meta.conditions}`),
    "",
    "| case | batch | latent | grads | forward s | fwd+bwd s (median / min) | GFLOP fwd+bwd | GFLOP/s | matMul GFLOP/s | fraction of matMul | PyTorch fwd / fwd+bwd s | ours / PyTorch fwd, fwd+bwd (min / min) | peak MiB |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  ]
  for (const r of results) {
    if (r.unet === undefined) continue
    const u = r.unet
    const ratio = r.torch === undefined || u.grads !== "all"
      ? "-"
      : `${(minOf(u.forwardRuns) / r.torch.forwardSeconds).toFixed(2)}x, ${(minOf(u.forwardBackwardRuns) / r.torch.forwardBackwardSeconds).toFixed(2)}x`
    const torch = r.torch === undefined ? "-" : `${f3(r.torch.forwardSeconds)} / ${f3(r.torch.forwardBackwardSeconds)}`
    lines.push(
      `| ${r.name} | ${u.batch} | ${u.size} | ${u.grads} | ${f3(u.forwardSeconds)} | ${f3(u.forwardBackwardSeconds)} / ${f3(minOf(u.forwardBackwardRuns))} | ${u.forwardBackwardGflop.toFixed(2)} | ${u.gflops.toFixed(1)} | ${u.matmulGflops.toFixed(1)} | ${(u.gflops / u.matmulGflops).toFixed(2)} | ${torch} | ${ratio} | ${(u.peakBytes / 2 ** 20).toFixed(0)} |`
    )
  }
  const peers = [...new Set(results.flatMap((r) => (r.unet?.grads === "all" && r.torch !== undefined ? [torchSource(r.torch)] : [])))]
  if (peers.length > 0) lines.push("", `PyTorch: ${peers.join("; ")}.`)
  lines.push(...splitTable(results))
  const scaled = results.filter((r) => r.scaling !== undefined && r.scaling.length > 0)
  if (scaled.length > 0) {
    lines.push(
      "",
      "Thread scaling (all gradients; speed-up and ratio from the minimum fwd+bwd over the runs, as the PyTorch reference's):",
      "",
      `| case | threads | forward s | fwd+bwd s (median / min) | speed-up over 1 thread | matMul GFLOP/s | ours / PyTorch (${scaledTorchThreads(results)} threads) fwd+bwd |`,
      "|---|---|---|---|---|---|---|"
    )
    for (const r of scaled) {
      const one = r.scaling!.find((s) => s.threads === 1)
      for (const s of r.scaling!) {
        const best = minOf(s.forwardBackwardRuns)
        const speedup = one === undefined ? "-" : `${(minOf(one.forwardBackwardRuns) / best).toFixed(2)}x`
        const ratio = r.torch === undefined ? "-" : `${(best / r.torch.forwardBackwardSeconds).toFixed(2)}x`
        lines.push(`| ${r.name.replace(/ \(all\)$/, "")} | ${s.threads} | ${f3(s.forwardSeconds)} | ${f3(s.forwardBackwardSeconds)} / ${f3(best)} | ${speedup} | ${s.matmulGflops.toFixed(1)} | ${ratio} |`)
      }
    }
  }
  lines.push("", "| built-in model | seconds | target |", "|---|---|---|")
  for (const r of results) if (r.seconds !== undefined) lines.push(`| ${r.name} (${r.description}) | ${r.seconds.toFixed(3)} | ${r.target ?? "-"} |`)
  return lines.join("\n")
}
