/** Files the built-in model's tests make for themselves. */
import { CpuBackend, Safetensors, TensorRuntime } from "@disendiff/core"
import { Effect } from "effect"
import { type DemoPlan, demoPlan } from "../src/demo/DemoPlan.js"
import { initToyParameters, toyModelConfig, type ToySize } from "../src/models/ToyModel.js"

/** A much smaller built-in model than the real one (same architecture, 16x16 attention level included). */
export const tinyToySize: ToySize = { channels: [8, 16], layersPerBlock: 1, heads: 2, normGroups: 4, textHidden: 16, textLayers: 1, textHeads: 2 }

/**
 * Untrained built-in model weights, written as `disendiff export-builtin` writes the real ones (the size
 * in the metadata): a stand-in until the pretrained file exists. Its samples are noise. It makes tfjs's
 * cpu backend current: call it before providing another backend.
 */
export const writeToyWeights = (file: string, size: ToySize = tinyToySize, seed = 0): Promise<string> =>
  Effect.runPromise(Effect.gen(function*() {
    yield* TensorRuntime
    const params = initToyParameters(toyModelConfig(size), seed)
    const tensors = new Map(Object.entries(params).map(([k, t]) => [k, { shape: t.shape, data: t.dataSync() as Float32Array }]))
    Object.values(params).forEach((t) => t.dispose())
    yield* Safetensors.writeSafetensors(file, tensors, { size: JSON.stringify(size) }, "F16")
    return file
  }).pipe(Effect.provide(CpuBackend.layer)))

/**
 * The demo's plan with tiny work: every prompt with one seed, two sampling steps, two training steps of 4
 * rows (two copies of the target and two renders make one epoch: every step holds the target twice).
 */
export const tinyDemoPlan = (): DemoPlan => {
  const plan = demoPlan({ seed: 5, quick: true })
  return {
    ...plan,
    training: { ...plan.training, steps: 2, batchSize: 4, regularizationImages: 2 },
    sampling: { ...plan.sampling, steps: 2, seedsPerPrompt: 1 },
    attentionTimesteps: [500]
  }
}
