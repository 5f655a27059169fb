/** The `--backend` flag: a name to a `TensorRuntime` layer. */
import { NodeBackend, WebGpu } from "@disendiff/backend-node"
import { WasmBackend } from "@disendiff/backend-wasm"
import { type BackendName, backendNames, type BackendUnavailable, CpuBackend, TensorRuntime } from "@disendiff/core"
import { Console, Context, Layer } from "effect"

export { backendNames }

export const backendLayer = (name: BackendName): Layer.Layer<TensorRuntime, BackendUnavailable> => {
  switch (name) {
    case "wasm":
      return WasmBackend.layer
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
