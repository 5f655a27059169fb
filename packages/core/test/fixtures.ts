/** Files the tests make for themselves. */
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { Effect } from "effect"
import { encodePng, type RgbImage } from "../src/image/Image.js"
import { writeSafetensors } from "../src/io/Safetensors.js"
import { initToyParameters, toyModelConfig, type ToySize } from "../src/models/ToyModel.js"
import * as CpuBackend from "../src/tensor/CpuBackend.js"
import { TensorRuntime } from "../src/tensor/TensorRuntime.js"

/** A `width x height` picture of two coloured discs on grey: a stand-in for "a cat and a dog". */
export const twoConceptImage = (width = 48, height = 40): RgbImage => {
  const data = new Float32Array(width * height * 3)
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3
      const inA = (x - width * 0.3) ** 2 + (y - height * 0.5) ** 2 < (height * 0.2) ** 2
      const inB = (x - width * 0.72) ** 2 + (y - height * 0.45) ** 2 < (height * 0.18) ** 2
      const rgb = inA ? [0.9, 0.4, 0.1] : inB ? [0.2, 0.3, 0.9] : [0.5, 0.5, 0.5]
      data.set(rgb, i)
    }
  }
  return { width, height, data }
}

export const tempDir = (prefix = "disendiff-test-") => fs.mkdtemp(path.join(os.tmpdir(), prefix))

export const writeTestImage = async (dir: string, name = "a.png") => {
  const file = path.join(dir, name)
  await fs.writeFile(file, encodePng(twoConceptImage()))
  return file
}

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
    yield* writeSafetensors(file, tensors, { size: JSON.stringify(size) }, "F16")
    return file
  }).pipe(Effect.provide(CpuBackend.layer)))
