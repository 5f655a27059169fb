/** `disendiff sample`: images from prompts with the base or a personalised model, seeded, as PNGs. */
import { Backbone, Sampler, writePng } from "@disendiff/core"
import { Console, Effect, Layer } from "effect"
import { Command, Flag } from "effect/cli"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { loadModel, modelFlags } from "../Model.js"

export const sample = Command.make(
  "sample",
  {
    ...modelFlags,
    prompt: Flag.String("prompt").pipe(Flag.withDescription("the prompt (repeat the flag for several)"), Flag.atLeast(1)),
    steps: Flag.Int("steps").pipe(Flag.withDescription("sampling steps"), Flag.withDefault(50)),
    guidance: Flag.Finite("guidance").pipe(Flag.withDescription("classifier-free guidance scale"), Flag.withDefault(6)),
    eta: Flag.Finite("eta").pipe(Flag.withDescription("DDIM eta (0: deterministic DDIM, 1: DDPM-like)"), Flag.withDefault(0)),
    seed: Flag.Int("seed").pipe(Flag.withDescription("seed of the first image; image i uses seed + i"), Flag.withDefault(42)),
    n: Flag.Int("n").pipe(Flag.withDescription("images per prompt"), Flag.withDefault(4)),
    negative: Flag.String("negative").pipe(Flag.withDescription("negative prompt"), Flag.withDefault("")),
    out: Flag.String("out").pipe(Flag.withDescription("output folder for the PNGs"))
  },
  (f) =>
    Effect.gen(function*() {
      const model = yield* loadModel(f, f.prompt)
      const prompts = f.prompt.flatMap((p) => Array.from({ length: f.n }, () => p))
      const seeds = prompts.map((_, i) => f.seed + i)
      const result = yield* Effect.gen(function*() {
        const backbone = yield* Backbone
        const sampler = yield* Sampler
        const trained = yield* model.trained(backbone)
        return yield* sampler.sample({
          prompts,
          seeds,
          steps: f.steps,
          guidance: f.guidance,
          eta: f.eta,
          negativePrompt: f.negative,
          trained,
          onStep: (i, n) => (i === n ? Effect.void : Effect.sync(() => process.stderr.write(`\rstep ${i}/${n}`)))
        })
      }).pipe(Effect.provide(Sampler.layer.pipe(Layer.provideMerge(model.layer))))
      process.stderr.write("\n")
      yield* Effect.promise(() => fs.mkdir(f.out, { recursive: true }))
      const files: Array<{ file: string; prompt: string; seed: number }> = []
      for (const [i, img] of result.images.entries()) {
        const file = path.join(f.out, `${String(i).padStart(3, "0")}-seed${seeds[i]}.png`)
        yield* writePng(file, img)
        files.push({ file: path.basename(file), prompt: prompts[i]!, seed: seeds[i]! })
      }
      yield* Effect.promise(() => fs.writeFile(path.join(f.out, "samples.json"), JSON.stringify({ steps: f.steps, guidance: f.guidance, eta: f.eta, images: files }, null, 2)))
      yield* Console.log(`wrote ${files.length} images to ${f.out}`)
    })
).pipe(Command.withDescription("generate images from prompts, with the base model or trained weights"))
