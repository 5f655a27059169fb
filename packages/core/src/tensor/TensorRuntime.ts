/**
 * The tensor runtime: which tfjs backend is current, how much memory it holds, and the guard that
 * refuses work before the wasm heap runs out (wasm out-of-memory silently corrupts tensors, see
 * docs/reference/tfjs-backends.md §5).
 *
 * Backends are Layers that provide this service: `CpuBackend.layer` here, `WasmBackend.layer` in
 * `@disendiff/backend-wasm`, and the native and WebGPU layers in `@disendiff/backend-node`.
 */
import { Context, Effect, Schema } from "effect"
import { tf } from "./Tf.js"

export type BackendName = "cpu" | "wasm" | "node" | "node-gpu" | "webgpu"
export const backendNames: ReadonlyArray<BackendName> = ["wasm", "cpu", "node", "node-gpu", "webgpu"]

/** A backend that cannot start here: its package is missing, or it found no device. */
export class BackendUnavailable extends Schema.TaggedError<BackendUnavailable>()("BackendUnavailable", {
  backend: Schema.String,
  packageName: Schema.String,
  reason: Schema.String,
  fix: Schema.String
}) {
  override get message() {
    return `backend '${this.backend}' is unavailable (${this.packageName}): ${this.reason}. Fix: ${this.fix}`
  }
}

/** Work refused because it would exceed the backend's memory, before anything was corrupted. */
export class OutOfMemory extends Schema.TaggedError<OutOfMemory>()("OutOfMemory", {
  backend: Schema.String,
  what: Schema.String,
  requestedBytes: Schema.Number,
  liveBytes: Schema.Number,
  limitBytes: Schema.Number,
  fix: Schema.String
}) {
  override get message() {
    const gib = (n: number) => `${(n / 2 ** 30).toFixed(2)} GiB`
    return `${this.what} needs ${gib(this.requestedBytes)} on '${this.backend}' with ${gib(this.liveBytes)} ` +
      `in use, over the ${gib(this.limitBytes)} limit. Fix: ${this.fix}`
  }
}

/** Thrown from inside a kernel when the memory guard refuses an allocation; turned into `OutOfMemory`. */
export class AllocationRefused extends Error {
  constructor(readonly requestedBytes: number, readonly liveBytes: number, readonly limitBytes: number) {
    super(`allocation of ${requestedBytes} bytes refused: ${liveBytes} live, limit ${limitBytes}`)
  }
}

export interface MemoryStats {
  readonly liveBytes: number
  readonly peakBytes: number
  readonly limitBytes: number
  readonly numTensors: number
}

export class TensorRuntime extends Context.Service<TensorRuntime, {
  readonly backend: BackendName
  /** False on GPU backends, where tensors can only be read with `await data()`. */
  readonly syncReads: boolean
  /** What the backend runs on, for messages (e.g. the WebGPU adapter and its buffer limits). */
  readonly device?: string
  readonly memory: () => MemoryStats
  readonly resetPeak: () => void
  /** Threads the backend's kernels use (wasm: XNNPACK's pool); absent where the backend decides itself. */
  readonly threads?: number
}>()("@disendiff/core/TensorRuntime") {}

/** Memory accounting from tfjs's own counters, for backends without a hard heap limit. */
export const engineMemory = () => {
  let peak = 0
  return {
    memory: (): MemoryStats => {
      const m = tf.memory()
      peak = Math.max(peak, m.numBytes)
      return { liveBytes: m.numBytes, peakBytes: peak, limitBytes: Infinity, numTensors: m.numTensors }
    },
    resetPeak: () => {
      peak = tf.memory().numBytes
    }
  }
}

/**
 * Tensors that live as long as the enclosing scope (a layer's, typically): `make` creates them, and
 * the tensors `tensorsOf` finds in its result are disposed when the scope closes.
 */
export const scopedTensors = <A>(make: () => A, tensorsOf: (a: A) => Iterable<tf.Tensor>) =>
  Effect.acquireRelease(Effect.sync(make), (a) => Effect.sync(() => tf.dispose([...tensorsOf(a)])))

/** Fails with `OutOfMemory` when `bytes` more would not fit under the runtime's limit. */
export const ensureMemory = Effect.fn("TensorRuntime.ensureMemory")(function*(what: string, bytes: number) {
  const runtime = yield* TensorRuntime
  const m = runtime.memory()
  if (m.liveBytes + bytes > m.limitBytes) {
    return yield* new OutOfMemory({
      backend: runtime.backend,
      what,
      requestedBytes: bytes,
      liveBytes: m.liveBytes,
      limitBytes: m.limitBytes,
      fix: memoryFix(runtime.backend)
    })
  }
})

export const memoryFix = (backend: string) =>
  backend === "wasm"
    ? "use a smaller batch or resolution, or a backend without the 4 GiB wasm heap: --backend node, node-gpu or webgpu"
    : "use a smaller batch or resolution"

/**
 * Runs synchronous tensor code, turning a refused allocation into a typed `OutOfMemory` error.
 * Any other exception is a defect (a bug), not an expected failure.
 */
export const runTensors = <A>(what: string, f: () => A): Effect.Effect<A, OutOfMemory, TensorRuntime> =>
  TensorRuntime.use((runtime) =>
    Effect.suspend(() => {
      try {
        return Effect.succeed(f())
      } catch (e) {
        if (e instanceof AllocationRefused) {
          return Effect.fail(
            new OutOfMemory({
              backend: runtime.backend,
              what,
              requestedBytes: e.requestedBytes,
              liveBytes: e.liveBytes,
              limitBytes: e.limitBytes,
              fix: memoryFix(runtime.backend)
            })
          )
        }
        return Effect.die(e)
      }
    }))
