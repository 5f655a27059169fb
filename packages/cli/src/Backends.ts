/** The `--backend` and `--threads` flags: a name and a thread count to a `TensorRuntime` layer. */
import { NodeBackend, WebGpu } from "@disendiff/backend-node"
import { WasmBackend } from "@disendiff/backend-wasm"
import { type BackendName, backendNames, type BackendUnavailable, CpuBackend, TensorRuntime } from "@disendiff/core"
import { Console, Context, Layer, Option } from "effect"
import { Flag } from "effect/cli"

export { backendNames }

/** The machine's cores, at most 8 (XNNPACK's cap): `--threads`'s default. */
export const defaultThreads = (): number => WasmBackend.defaultThreads()

/**
 * `--threads N`: threads for the wasm backend's kernels (default: the machine's cores, at most 8).
 * Results are the same for any N. Other backends ignore it (tfjs-node sizes TensorFlow's own pool,
 * cpu is one JavaScript thread, WebGPU runs on the device).
 */
export const threadsFlag = Flag.Int("threads").pipe(
  Flag.withDescription(`threads for the wasm backend's kernels, 1 to ${WasmBackend.maxThreads} (default: the machine's cores, here ${WasmBackend.defaultThreads()}); results are the same for any N`),
  Flag.optional
)

export interface BackendOptions {
  /** From `--threads` (an Option) or a number; absent: the backend's default. */
  readonly threads?: Option.Option<number> | number | undefined
}

const threadsOf = (o: BackendOptions): number | undefined =>
  o.threads === undefined ? undefined : typeof o.threads === "number" ? o.threads : Option.getOrUndefined(o.threads)

export const backendLayer = (name: BackendName, options: BackendOptions = {}): Layer.Layer<TensorRuntime, BackendUnavailable> => {
  switch (name) {
    case "wasm": {
      const threads = threadsOf(options)
      return threads === undefined ? WasmBackend.layer : WasmBackend.make({ threads })
    }
    case "cpu":
      return CpuBackend.layer
    case "node":
      return NodeBackend.layerCpu
    case "node-gpu":
      return NodeBackend.layerGpu
    case "webgpu":
      // which adapter it found decides the speed by 10x or more: say it (on stderr, beside the output)
      return WebGpu.layer.pipe(Layer.tap((services) => Console.error(`webgpu: ${Context.get(services, TensorRuntime).device ?? "no adapter description"}`)))
  }
}
