/** The `--backend` flag: a name to a `TensorRuntime` layer. */
import { NodeBackend } from "@disendiff/backend-node"
import { WasmBackend } from "@disendiff/backend-wasm"
import { type BackendName, backendNames, type BackendUnavailable, CpuBackend, type TensorRuntime } from "@disendiff/core"
import { BackendUnavailable as Unavailable } from "@disendiff/core"
import { Effect, Layer } from "effect"

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
      return Layer.unwrap(Effect.fail(new Unavailable({ backend: "webgpu", packageName: "webgpu", reason: "not wired in yet", fix: "use --backend wasm" })))
  }
}
