/**
 * `disendiff attention`: per-token cross-attention maps of a prompt, as PNG heatmaps beside the image
 * (attention.png, and attention.svg with each token's label under its map) and as raw numbers. Maps are the mean over the probed layers' heads (16x16 layers by default, as the
 * method reads them). With `--image`, the image is noised to `--timestep` and denoised once; without,
 * an image is sampled from the prompt and the maps are averaged over its sampling steps.
 */
import { Backbone, encodePng, Heatmap, ImageAttention, nn, prepareImage, readImage, Sampler, tf, writePng } from "@disendiff/core"
import { Console, Effect, Layer, Option } from "effect"
import { Command, Flag } from "effect/cli"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { loadModel, modelFlags } from "../Model.js"
import { intInRange, oneOf, outputFolder } from "../Preflight.js"

const safeName = (token: string) => token.replace(/[^A-Za-z0-9<>_-]/g, "_").replace(/[<>]/g, "")

export const attention = Command.make(
  "attention",
  {
    ...modelFlags,
    prompt: Flag.String("prompt").pipe(Flag.withDescription("the prompt whose tokens' maps to draw")),
    image: Flag.String("image").pipe(Flag.withDescription("read the maps on this image (else sample one from the prompt)"), Flag.optional),
    timestep: Flag.Int("timestep").pipe(Flag.withDescription("noise level for --image"), Flag.withDefault(400)),
    steps: Flag.Int("steps").pipe(Flag.withDescription("sampling steps when no --image"), Flag.withDefault(50)),
    guidance: Flag.Finite("guidance").pipe(Flag.withDescription("guidance when no --image"), Flag.withDefault(6)),
    seed: Flag.Int("seed").pipe(Flag.withDescription("seed of the noise"), Flag.withDefault(42)),
    queries: Flag.String("layers").pipe(Flag.withDescription("'16x16' (the method's layers) or 'all' (every resolution, resized)"), Flag.withDefault("16x16")),
    out: Flag.String("out").pipe(Flag.withDescription("output folder"))
  },
  (f) =>
    Effect.gen(function*() {
      // preflight before any compute: the choices and counts, the output folder writable
      const layers = yield* oneOf("layers", f.queries, ["16x16", "all"])
      yield* intInRange("steps", f.steps, 1)
      yield* intInRange("timestep", f.timestep, 0)
      yield* outputFolder("out", f.out)
      const model = yield* loadModel(f, [f.prompt])
      const selection = { queries: layers === "all" ? ("all" as const) : 256 }
      const result = yield* Effect.gen(function*() {
        const backbone = yield* Backbone
        const sampler = yield* Sampler
        const T = backbone.schedule.config.numTrainTimesteps
        yield* intInRange("timestep", f.timestep, 0, T - 1, `give --timestep a noise level from 0 to ${T - 1} (the model's training timesteps)`)
        yield* intInRange("steps", f.steps, 1, T)
        const trained = yield* model.trained(backbone)
        const weights = nn.makeWeights(backbone.parameters.frozen, trained ?? backbone.parameters.trainable)
        const encoded = backbone.tokenizer.encode(f.prompt)
        const { height: H } = backbone.info.imageSize
        if (Option.isSome(f.image)) {
          const image = prepareImage(yield* readImage(f.image.value), H)
          const maps = yield* ImageAttention.imageAttention(backbone, weights, { image, caption: f.prompt, timesteps: [f.timestep], seed: f.seed, selection })
          return { image, encoded, ...maps }
        }
        // sample, averaging the conditional rows' maps over every step
        let sum: tf.Tensor | undefined
        let grid = { height: 0, width: 0, layers: [] as ReadonlyArray<string> }
        let count = 0
        const r = yield* sampler.sample({
          prompts: [f.prompt],
          seeds: [f.seed],
          steps: f.steps,
          guidance: f.guidance,
          eta: 0,
          trained,
          attention: {
            selection,
            onMaps: (_, a) => {
              const next = tf.keep(sum === undefined ? tf.clone(a.maps) : tf.add(sum, a.maps))
              sum?.dispose()
              sum = next
              grid = { height: a.height, width: a.width, layers: a.layers }
              count++
            }
          }
        })
        const mean = tf.div(sum!, count)
        const data = (yield* Effect.promise(() => mean.data())) as Float32Array
        tf.dispose([mean, sum!])
        return { image: r.images[0]!, data, encoded, ...grid }
      }).pipe(Effect.provide(Sampler.layer.pipe(Layer.provideMerge(model.layer))))

      // one heatmap per token before the padding, and the raw maps
      const backboneTokens = result.encoded
      const T = backboneTokens.ids.length
      const N = result.height * result.width
      yield* Effect.promise(() => fs.mkdir(f.out, { recursive: true }))
      yield* writePng(path.join(f.out, "image.png"), result.image)
      const heatmaps = []
      const maps: Record<string, Array<number>> = {}
      for (let p = 0; p < backboneTokens.length; p++) {
        const map = Array.from({ length: N }, (_, n) => result.data[n * T + p]!)
        const token = backboneTokens.tokens[p]!
        maps[`${p}:${token}`] = map
        // the map on its own, not blended with the image (bright objects would read as attention)
        const img = Heatmap.heatmap(map, result.height, result.width, result.image, 1)
        heatmaps.push(img)
        yield* writePng(path.join(f.out, `${String(p).padStart(2, "0")}-${safeName(token)}.png`), img)
      }
      const scale = Math.max(1, Math.floor(128 / result.image.width))
      // the image, each token's map (scaled from its minimum to its maximum) and the colour scale
      const grid = Heatmap.row([result.image, ...heatmaps, Heatmap.colourScale(result.image.height)])
      const png = encodePng(Heatmap.enlarge(grid, scale))
      yield* Effect.promise(() => fs.writeFile(path.join(f.out, "attention.png"), png))
      const cell = result.image.width
      const cells = [
        { width: cell, label: "image" },
        // BPE marks a word's end with </w>; a label reads better without it
        ...backboneTokens.tokens.slice(0, backboneTokens.length).map((t) => ({ width: cell, label: t.replace(/<\/w>$/, "") })),
        { width: 4, label: "max" }
      ]
      yield* Effect.promise(() => fs.writeFile(path.join(f.out, "attention.svg"), Heatmap.labelledRowSvg(png, { height: grid.height, gap: 2, scale, cells })))
      yield* Effect.promise(() =>
        fs.writeFile(path.join(f.out, "maps.json"), JSON.stringify({ prompt: f.prompt, height: result.height, width: result.width, layers: result.layers, maps }))
      )
      yield* Console.log(`wrote ${backboneTokens.length} token maps to ${f.out}`)
    })
).pipe(Command.withDescription("draw per-token cross-attention maps as heatmaps and raw data"))
