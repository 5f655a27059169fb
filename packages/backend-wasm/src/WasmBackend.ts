/**
 * tfjs's WebAssembly backend (SIMD; XNNPACK's products and convolutions on `threads` threads) as a
 * `TensorRuntime` layer: the default, available everywhere.
 *
 * Threads: tfjs runs one thread in Node; `Module.ts` starts the threaded-SIMD build itself with the
 * chosen count (default: the machine's cores, at most 8, XNNPACK's cap). Results are the same bit for
 * bit with any count (test/threads.test.ts). The backend is one per process: a layer asking for a
 * different count than the running backend's restarts it (tensors held on the old one are lost), so
 * a process should pick its count once.
 *
 * The wasm32 heap stops at 4 GiB, and when its `malloc` fails tfjs silently places the tensor at
 * address 0, corrupting others (docs/reference/tfjs-backends.md §5). This layer wraps the
 * backend's allocator: it keeps exact live and peak byte counts and refuses, with
 * `AllocationRefused` (turned into a typed `OutOfMemory` by `runTensors`), any allocation that would
 * pass the limit, and any that `malloc` itself fails.
 */
import { Effect, Layer } from "effect"
import * as wasm from "@tensorflow/tfjs-backend-wasm"
import { AllocationRefused, registerGradients, TensorRuntime, tf } from "@disendiff/core"
import { createRequire } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import { installFastBatchMatMul } from "./BatchMatMul.js"
import { installFastKernels } from "./Kernels.js"
import { maxThreads, startModule, unrefThreads } from "./Module.js"
import { installPoolSwitch, installThreadedKernels, threadsOf } from "./Pool.js"

/** Default limit: the 4 GiB heap less room for XNNPACK's own buffers and the code itself. */
export const defaultLimitBytes = 3.5 * 2 ** 30

/**
 * Default thread count: `DISENDIFF_THREADS` when set (e.g. 1 on a machine shared with other jobs, where
 * a thread pool waits on threads the scheduler has not run), else the machine's cores (what Node may
 * use); at most XNNPACK's 8.
 */
export const defaultThreads = (): number => {
  const env = Number(process.env["DISENDIFF_THREADS"])
  return Math.min(Number.isInteger(env) && env >= 1 ? env : os.availableParallelism(), maxThreads)
}

export { maxThreads }

interface WasmModule {
  _malloc: (n: number) => number
  _free: (p: number) => void
}

export interface Options {
  readonly limitBytes?: number
  /** Threads for XNNPACK's kernels, 1 to 8 (more are capped at 8); default `defaultThreads()`. */
  readonly threads?: number
}

/** The running backend's thread count (the backend is a process-wide singleton). */
let running: { readonly threads: number } | undefined
/** tfjs's own loader (the SIMD build, one thread), registered when the package is imported. */
let tfjsFactory: ReturnType<typeof tf.findBackendFactory> | undefined

const startBackend = async (threads: number): Promise<void> => {
  tfjsFactory ??= tf.findBackendFactory("wasm")
  if (running?.threads === threads) return
  // a running backend is disposed, which also ends its threads
  if (tf.findBackendFactory("wasm") != null) tf.removeBackend("wasm")
  if (threads === 1) {
    const require = createRequire(import.meta.url)
    wasm.setWasmPaths(path.dirname(require.resolve("@tensorflow/tfjs-backend-wasm")) + path.sep)
    wasm.setThreadsCount(1)
    tf.registerBackend("wasm", tfjsFactory, 2)
  } else {
    const module = await startModule(threads)
    wasm.setThreadsCount(threads)
    const backend = new wasm.BackendWasm(module as never)
    unrefThreads(module)
    installPoolSwitch(module, threads)
    tf.registerBackend("wasm", () => backend, 2)
  }
  running = { threads }
}

export const make = (options: Options = {}): Layer.Layer<TensorRuntime> =>
  Layer.effect(
    TensorRuntime,
    Effect.promise(async () => {
      registerGradients()
      const threads = Math.max(1, Math.min(Math.floor(options.threads ?? defaultThreads()), maxThreads))
      await startBackend(threads)
      await tf.setBackend("wasm")
      installFastBatchMatMul()
      installFastKernels()
      installThreadedKernels()
      const module = (tf.backend() as unknown as { wasm: WasmModule }).wasm
      const guard = installGuard(module)
      guard.limitBytes = options.limitBytes ?? defaultLimitBytes
      return TensorRuntime.of({
        backend: "wasm",
        syncReads: true,
        threads: threadsOf(module),
        memory: () => ({
          liveBytes: guard.liveBytes,
          peakBytes: guard.peakBytes,
          limitBytes: guard.limitBytes,
          numTensors: tf.memory().numTensors
        }),
        resetPeak: () => {
          guard.peakBytes = guard.liveBytes
        }
      })
    })
  )

export const layer: Layer.Layer<TensorRuntime> = make()

interface Guard {
  liveBytes: number
  peakBytes: number
  limitBytes: number
}

const guards = new WeakMap<WasmModule, Guard>()

/** Wraps `_malloc`/`_free` once per wasm module instance (the backend is a process-wide singleton). */
const installGuard = (module: WasmModule): Guard => {
  const existing = guards.get(module)
  if (existing) return existing
  const guard: Guard = { liveBytes: 0, peakBytes: 0, limitBytes: defaultLimitBytes }
  const sizes = new Map<number, number>()
  // Emscripten's `_malloc`/`_free` start as stubs that overwrite themselves with the raw exports on
  // their first call; make that happen now, or it would overwrite the wrappers below.
  module._free(module._malloc(8))
  const malloc = module._malloc
  const free = module._free
  module._malloc = (n: number) => {
    if (guard.liveBytes + n > guard.limitBytes) throw new AllocationRefused(n, guard.liveBytes, guard.limitBytes)
    const p = malloc(n)
    if (p === 0 && n > 0) throw new AllocationRefused(n, guard.liveBytes, guard.limitBytes)
    sizes.set(p >>> 0, n)
    guard.liveBytes += n
    if (guard.liveBytes > guard.peakBytes) guard.peakBytes = guard.liveBytes
    return p
  }
  module._free = (p: number) => {
    const n = sizes.get(p >>> 0)
    if (n !== undefined) {
      sizes.delete(p >>> 0)
      guard.liveBytes -= n
    }
    free(p)
  }
  guards.set(module, guard)
  return guard
}
