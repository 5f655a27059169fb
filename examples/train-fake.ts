/**
 * An Effect program that uses disendiff as a library: compose the layers, train the fake backbone for
 * a few steps while printing the progress stream, and save a checkpoint.
 *
 *   npm run build && node examples/dist/train-fake.js [out-dir]
 */
import { WasmBackend } from "@disendiff/backend-wasm"
import {
  AttentionProbe,
  Checkpoints,
  defaultTrainConfig,
  encodePng,
  FakeBackbone,
  LossCalibrator,
  officialCalibration,
  Optimizer,
  Trainer,
  torchAdamW
} from "@disendiff/core"
import { Console, Effect, Layer, Stream } from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"

/** Two coloured squares on grey, standing in for a photo of two concepts. */
const writeImage = (file: string) => {
  const size = 32
  const data = new Float32Array(size * size * 3).fill(0.5)
  for (let y = 8; y < 24; y++) {
    for (let x = 2; x < 14; x++) data.set([0.9, 0.3, 0.1], (y * size + x) * 3)
    for (let x = 18; x < 30; x++) data.set([0.1, 0.3, 0.9], (y * size + x) * 3)
  }
  return fs.writeFile(file, encodePng({ width: size, height: size, data }))
}

export const program = (out: string) =>
  Effect.gen(function*() {
    yield* Effect.promise(() => fs.mkdir(out, { recursive: true }))
    const image = path.join(out, "two-concepts.png")
    yield* Effect.promise(() => writeImage(image))
    const config = {
      ...defaultTrainConfig({ backbone: "fake", image, prompt: "<v1> cat and <v2> dog" }),
      steps: 5,
      gradientAccumulation: 1,
      learningRate: 1e-3
    }
    let finished = ""
    yield* Trainer.train({ config, out }).pipe(
      Stream.runForEach((event) => {
        switch (event._tag) {
          case "Step":
            return Console.log(`step ${event.step}/${event.totalSteps}  loss ${event.loss.toFixed(4)}  bind ${event.bind?.toFixed(4)}  s&s ${event.separation?.toFixed(4)}`)
          case "Finished":
            finished = event.path
            return Console.log(`checkpoint ${event.path} (digest ${event.digest.slice(0, 16)}...)`)
          default:
            return Effect.void
        }
      })
    )
    return finished
  }).pipe(
    Effect.provide(
      Layer.mergeAll(
        FakeBackbone.layer({ modifiers: ["<v1>", "<v2>"] }),
        AttentionProbe.layer(),
        LossCalibrator.layer(officialCalibration),
        Optimizer.layer(torchAdamW),
        Checkpoints.layer
      ).pipe(Layer.provideMerge(WasmBackend.layer))
    )
  )

if (process.argv[1] !== undefined && import.meta.url.endsWith(path.basename(process.argv[1]))) {
  const out = process.argv[2] ?? (await fs.mkdtemp(path.join(os.tmpdir(), "disendiff-example-")))
  await Effect.runPromise(program(out))
}
