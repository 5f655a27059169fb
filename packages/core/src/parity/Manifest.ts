/**
 * The fixture manifest format of fixtures/sd-tiny: configurations with model folders and
 * fixture files, every tensor with its role and tolerance; shared scheduler tables; tokenizer cases.
 */
import { Effect, Schema } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { ModelError } from "../backbone/Backbone.js"

export const TensorSpec = Schema.Struct({
  shape: Schema.Array(Schema.Int),
  dtype: Schema.String,
  role: Schema.optionalKey(Schema.NullOr(Schema.String)),
  recommended_atol: Schema.optionalKey(Schema.NullOr(Schema.Finite)),
  recommended_rtol: Schema.optionalKey(Schema.NullOr(Schema.Finite)),
  note: Schema.optionalKey(Schema.NullOr(Schema.String))
})
export type TensorSpec = typeof TensorSpec.Type

export const FixtureFile = Schema.Struct({
  file: Schema.String,
  description: Schema.optionalKey(Schema.String),
  tensors: Schema.Record(Schema.String, TensorSpec)
})
export type FixtureFile = typeof FixtureFile.Type

const ModelPaths = Schema.Struct({ config: Schema.String, weights: Schema.optionalKey(Schema.String) })

export const Manifest = Schema.Struct({
  configs: Schema.Record(
    Schema.String,
    Schema.Struct({
      models: Schema.Struct({
        unet: ModelPaths,
        vae: ModelPaths,
        text_encoder: ModelPaths,
        scheduler: Schema.optionalKey(ModelPaths)
      }),
      fixtures: Schema.Record(Schema.String, FixtureFile)
    })
  ),
  scheduler_tables: Schema.optionalKey(FixtureFile),
  /** The scheduler config the shared tables were made with (SD 1.x's). */
  sd_scheduler_config: Schema.optionalKey(Schema.Unknown),
  tokenizer: Schema.optionalKey(Schema.Struct({ file: Schema.String, vocab_file: Schema.String }))
})
export type Manifest = typeof Manifest.Type

export const readManifest = Effect.fn("Manifest.read")(function*(dir: string) {
  const file = path.join(dir, "manifest.json")
  const text = yield* Effect.tryPromise({
    try: () => fs.readFile(file, "utf8"),
    catch: () => new ModelError({ path: file, reason: "missing or unreadable", fix: "point --fixtures at a folder with a manifest.json" })
  })
  const raw = yield* Effect.try({
    try: (): unknown => JSON.parse(text),
    catch: (e) => new ModelError({ path: file, reason: `invalid JSON (${(e as Error).message})`, fix: "restore the manifest" })
  })
  return yield* Schema.decodeUnknownEffect(Manifest)(raw).pipe(
    Effect.mapError((e) => new ModelError({ path: file, reason: `not a fixture manifest: ${e.message}`, fix: "use the sd-tiny manifest format" }))
  )
})
