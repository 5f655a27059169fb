/**
 * The pure-JS tfjs cpu backend as a `TensorRuntime` layer: about 35x slower than wasm, used as an
 * independent reference in tests (its kernels share no code with wasm's XNNPACK).
 */
import "@tensorflow/tfjs-backend-cpu"
import { Effect, Layer } from "effect"
import { registerGradients, tf } from "./Tf.js"
import { engineMemory, TensorRuntime } from "./TensorRuntime.js"

export const layer: Layer.Layer<TensorRuntime> = Layer.effect(
  TensorRuntime,
  Effect.promise(async () => {
    registerGradients()
    await tf.setBackend("cpu")
    // The cpu backend greets Node users on its first write with advice to install tfjs-node.
    ;(tf.backend() as unknown as { firstUse: boolean }).firstUse = false
    const { memory, resetPeak } = engineMemory()
    return TensorRuntime.of({ backend: "cpu", syncReads: true, memory, resetPeak })
  })
)
