/**
 * tfjs's WebAssembly backend (SIMD, one thread in Node) as a `TensorRuntime` layer: the default,
 * about 15-20 GFLOP/s on one core and available everywhere.
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
import { installFastBatchMatMul } from "./BatchMatMul.js"
import { installFastKernels } from "./Kernels.js"
import * as path from "node:path"

/** Default limit: the 4 GiB heap less room for XNNPACK's own buffers and the code itself. */
export const defaultLimitBytes = 3.5 * 2 ** 30

interface WasmModule {
  _malloc: (n: number) => number
  _free: (p: number) => void
}

export interface Options {
  readonly limitBytes?: number
}

export const make = (options: Options = {}): Layer.Layer<TensorRuntime> =>
  Layer.effect(
    TensorRuntime,
    Effect.promise(async () => {
      registerGradients()
      const require = createRequire(import.meta.url)
      wasm.setWasmPaths(path.dirname(require.resolve("@tensorflow/tfjs-backend-wasm")) + path.sep)
      await tf.setBackend("wasm")
      installFastBatchMatMul()
      installFastKernels()
      const module = (tf.backend() as unknown as { wasm: WasmModule }).wasm
      const guard = installGuard(module)
      guard.limitBytes = options.limitBytes ?? defaultLimitBytes
      return TensorRuntime.of({
        backend: "wasm",
        syncReads: true,
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
