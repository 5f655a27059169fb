/**
 * TensorFlow's native backends for Node as `TensorRuntime` layers: `@tensorflow/tfjs-node` (CPU,
 * libtensorflow with its thread pool) and `@tensorflow/tfjs-node-gpu` (CUDA). Neither is a dependency:
 * both download libtensorflow 2.9.1 at install time, which needs network access and, for the GPU
 * build, a CUDA 11.2 / cuDNN 8.1 userland. They are imported lazily, and a missing or broken install
 * is a typed `BackendUnavailable` that says how to install it, never a crash at import.
 */
import { BackendUnavailable, engineMemory, registerGradients, TensorRuntime, tf } from "@disendiff/core"
import { Effect, Layer } from "effect"

interface NativePackage {
  readonly backend: "node" | "node-gpu"
  readonly packageName: string
  readonly install: string
}

export const cpuPackage: NativePackage = {
  backend: "node",
  packageName: "@tensorflow/tfjs-node",
  install: "npm install @tensorflow/tfjs-node@4.22.0 && npm install-scripts approve @tensorflow/tfjs-node " +
    "(its install script downloads libtensorflow 2.9.1 from storage.googleapis.com)"
}

export const gpuPackage: NativePackage = {
  backend: "node-gpu",
  packageName: "@tensorflow/tfjs-node-gpu",
  install: "npm install @tensorflow/tfjs-node-gpu@4.22.0 && npm install-scripts approve @tensorflow/tfjs-node-gpu " +
    "(downloads libtensorflow-gpu 2.9.1; needs an NVIDIA driver with CUDA 11.2 and cuDNN 8.1). " +
    "The recommended GPU path is --backend webgpu"
}

/** Imports a package by a name the compiler does not resolve (it is not a dependency). */
const importOptional = (name: string): Promise<unknown> => import(name)

const load = (p: NativePackage) =>
  Effect.tryPromise({
    try: async () => {
      registerGradients()
      await importOptional(p.packageName)
      // the package registers the 'tensorflow' backend on import
      const ok = await tf.setBackend("tensorflow")
      if (!ok) throw new Error("the 'tensorflow' backend failed to initialise")
    },
    catch: (e) => {
      const text = e instanceof Error ? e.message : String(e)
      const missing = /Cannot find (module|package)|ERR_MODULE_NOT_FOUND/.test(text)
      return new BackendUnavailable({
        backend: p.backend,
        packageName: p.packageName,
        reason: missing ? "the package is not installed" : `it failed to load: ${text.split("\n")[0]}`,
        fix: p.install
      })
    }
  })

const make = (p: NativePackage): Layer.Layer<TensorRuntime, BackendUnavailable> =>
  Layer.effect(
    TensorRuntime,
    Effect.gen(function*() {
      yield* load(p)
      const { memory, resetPeak } = engineMemory()
      return TensorRuntime.of({ backend: p.backend, syncReads: true, memory, resetPeak })
    })
  )

/** libtensorflow on the CPU. */
export const layerCpu: Layer.Layer<TensorRuntime, BackendUnavailable> = make(cpuPackage)

/** libtensorflow with CUDA. */
export const layerGpu: Layer.Layer<TensorRuntime, BackendUnavailable> = make(gpuPackage)
