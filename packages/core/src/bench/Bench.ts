/**
 * Timing of the engine on UNet workloads: forward, and forward + backward with gradients into attn2
 * to_k/to_v and the text conditioning (`kv`, the personalisation workload) or into every parameter
 * (`all`, as the PyTorch reference timing does). Medians after a warm-up; FLOPs counted from the
 * matMul and convolution kernels of a profiled run; the backend's plain matMul speed measured in the
 * same process for scale; peak memory from the runtime's allocator.
 */
import { Effect } from "effect"
import { fanInInit } from "../nn/Init.js"
import { makeWeights } from "../nn/Weights.js"
import { unetParameterShapes } from "../models/Shapes.js"
import { type UnetConfig, unetForward } from "../models/Unet2dConditionModel.js"
import { stream } from "../random/Rng.js"
import { TensorRuntime } from "../tensor/TensorRuntime.js"
import { tf } from "../tensor/Tf.js"

export interface UnetBenchOptions {
  readonly batch: number
  readonly height: number
  readonly width: number
  readonly grads: "kv" | "all"
  readonly runs: number
  readonly contextDim: number
  readonly tokens?: number
}

export interface UnetBenchResult {
  readonly backend: string
  /** The backend's kernel threads (1 where it does not say). */
  readonly threads: number
  readonly parameters: number
  readonly forwardSeconds: number
  readonly forwardBackwardSeconds: number
  /** FLOPs of one forward / one forward + backward (matMuls and convolutions). */
  readonly forwardGflop: number
  readonly forwardBackwardGflop: number
  /** Achieved GFLOP/s of the forward + backward. */
  readonly gflops: number
  readonly forwardGflops: number
  readonly matmulGflops: number
  readonly peakBytes: number
  readonly forwardRuns: ReadonlyArray<number>
  readonly forwardBackwardRuns: ReadonlyArray<number>
  /**
   * One profiled forward + backward: kernel time by kernel name, most first (custom-gradient wrappers left
   * out: their kernels are counted on their own). Where the time goes, beside PyTorch's profile.
   */
  readonly kernels?: ReadonlyArray<{ readonly name: string; readonly count: number; readonly ms: number }>
}

const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

/** FLOPs of the matMul and convolution kernels of a profiled run. */
export const countFlops = (kernels: ReadonlyArray<{ name: string; inputShapes: Array<Array<number>>; outputShapes: Array<Array<number>> }>) => {
  let flops = 0
  for (const k of kernels) {
    if (k.name === "BatchMatMul" || k.name === "_FusedMatMul") {
      const [a, b] = k.inputShapes as [Array<number>, Array<number>]
      const out = k.outputShapes[0]!
      const K = a.length === b.length ? (a[a.length - 1] === b[b.length - 2] ? a[a.length - 1]! : a[a.length - 2]!) : a[a.length - 1]!
      flops += 2 * out.reduce((x, y) => x * y, 1) * K
    }
    if (k.name === "Conv2D" || k.name === "FusedConv2D") {
      const [, w] = k.inputShapes as [Array<number>, Array<number>]
      const out = k.outputShapes[0]!
      flops += 2 * out.reduce((x, y) => x * y, 1) * w[0]! * w[1]! * w[2]!
    }
  }
  return flops
}

/** Random weights for a UNet config (for timing, values do not matter). */
export const randomUnetWeights = (cfg: UnetConfig, contextDim: number, seed = 0): Map<string, tf.Tensor> =>
  new Map(Object.entries(tf.tidy(() =>
    Object.fromEntries(unetParameterShapes(cfg, contextDim).map((p) => [p.name, fanInInit(seed, p.name, [...p.shape], p.kind === "weight" ? 1 : 0.1)]))
  )))

const time = (f: () => void) => {
  const t0 = performance.now()
  f()
  return (performance.now() - t0) / 1000
}

/** The backend's plain matMul throughput on 1024^3, median of 5. */
export const matmulGflops = (): number => {
  const a = tf.randomNormal([1024, 1024])
  const b = tf.randomNormal([1024, 1024])
  // (tf.tidy must not return the typed array: it would scan every element for tensors)
  const run = () => {
    const c = tf.matMul(a, b)
    c.dataSync()
    c.dispose()
  }
  run()
  const s = median(Array.from({ length: 5 }, () => time(run)))
  tf.dispose([a, b])
  return (2 * 1024 ** 3) / s / 1e9
}

/** The bench's inputs (fixed seeds), the forward and the forward + backward as functions. */
const workload = (cfg: UnetConfig, weights: ReadonlyMap<string, tf.Tensor>, o: Omit<UnetBenchOptions, "runs">) => {
  const T = o.tokens ?? 77
  const B = o.batch
  const latents = tf.tensor(stream(1, 0, "bench-latents").normals(B * o.height * o.width * cfg.inChannels), [B, o.height, o.width, cfg.inChannels])
  const target = tf.tensor(stream(1, 0, "bench-target").normals(latents.size), latents.shape)
  const context = tf.tensor(stream(1, 0, "bench-context").normals(B * T * o.contextDim), [B, T, o.contextDim])
  const timesteps = Array.from({ length: B }, (_, i) => (i * 389 + 17) % 1000)
  const names = [...weights.keys()].filter((n) => o.grads === "all" || /attn2\.to_[kv]\.weight$/.test(n))
  const frozen = new Map([...weights].filter(([n]) => !names.includes(n)))
  const forward = () => tf.tidy(() => unetForward(cfg, makeWeights(weights), { latents, timesteps, context }))
  /** Loss and gradients (the conditioning first, then `names`), kept: the caller disposes them. */
  const lossAndGrads = () =>
    tf.tidy(() => {
      const f = (ctx: tf.Tensor, ...xs: Array<tf.Tensor>) => {
        const w = makeWeights(frozen, new Map(names.map((n, i) => [n, xs[i]!])))
        return tf.mean(tf.square(tf.sub(unetForward(cfg, w, { latents, timesteps, context: ctx }), target))) as tf.Scalar
      }
      const { value, grads } = tf.valueAndGrads(f)([context, ...names.map((n) => weights.get(n)!)])
      return [value, ...grads]
    })
  return { names, forward, lossAndGrads, dispose: () => tf.dispose([latents, target, context]) }
}

/**
 * One forward + backward of the bench's workload, read back: the loss, then the gradients into the
 * conditioning and into each trained parameter (`names`, in the weights' order). For checks that
 * results do not depend on the backend's thread count.
 */
export const unetLossAndGrads = (cfg: UnetConfig, weights: ReadonlyMap<string, tf.Tensor>, o: Omit<UnetBenchOptions, "runs">) => {
  const w = workload(cfg, weights, o)
  const out = w.lossAndGrads()
  const host = out.map((t) => Float32Array.from(t.dataSync() as Float32Array))
  tf.dispose(out)
  w.dispose()
  return { names: w.names, loss: host[0]![0]!, grads: host.slice(1) }
}

export const benchUnet = (cfg: UnetConfig, weights: ReadonlyMap<string, tf.Tensor>, o: UnetBenchOptions) =>
  Effect.gen(function*() {
    const runtime = yield* TensorRuntime
    const w = workload(cfg, weights, o)
    const forward = () => {
      const out = w.forward()
      out.dataSync()
      out.dispose()
    }
    const forwardBackward = () => {
      const out = w.lossAndGrads()
      for (const t of out) t.dataSync()
      tf.dispose(out)
    }
    forward()
    forwardBackward()
    const forwardRuns = Array.from({ length: o.runs }, () => time(forward))
    yield* Effect.yieldNow
    runtime.resetPeak()
    const forwardBackwardRuns = Array.from({ length: o.runs }, () => time(forwardBackward))
    const peakBytes = runtime.memory().peakBytes
    // count at once: tf.profile returns the same object every time, overwritten by the next call
    const forwardGflop = countFlops((yield* Effect.promise(() => tf.profile(() => forward()))).kernels as never) / 1e9
    const profiled = (yield* Effect.promise(() => tf.profile(() => forwardBackward()))).kernels
    const forwardBackwardGflop = countFlops(profiled as never) / 1e9
    const byName = new Map<string, { count: number; ms: number }>()
    for (const k of profiled) {
      if (k.name === "forward") continue // tf.customGrad's wrapper around kernels profiled on their own
      const e = byName.get(k.name) ?? { count: 0, ms: 0 }
      e.count++
      e.ms += k.kernelTimeMs as number
      byName.set(k.name, e)
    }
    const kernels = [...byName].map(([name, e]) => ({ name, count: e.count, ms: e.ms })).sort((a, b) => b.ms - a.ms)
    const result: UnetBenchResult = {
      backend: runtime.backend,
      threads: runtime.threads ?? 1,
      parameters: [...weights.values()].reduce((a, t) => a + t.size, 0),
      forwardSeconds: median(forwardRuns),
      forwardBackwardSeconds: median(forwardBackwardRuns),
      forwardGflop,
      forwardBackwardGflop,
      gflops: forwardBackwardGflop / median(forwardBackwardRuns),
      forwardGflops: forwardGflop / median(forwardRuns),
      matmulGflops: matmulGflops(),
      peakBytes,
      forwardRuns,
      forwardBackwardRuns,
      kernels
    }
    w.dispose()
    return result
  })

export { median }
