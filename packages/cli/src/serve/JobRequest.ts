/**
 * A job submission: the training image's bytes and one JSON object with any of `train`'s configuration
 * fields (the same fields as `disendiff train --config`, on the same defaults) plus `samples`, the
 * prompts to sample once trained. Everything is checked before anything is stored: the JSON, each
 * field, the image's bytes, the prompt's layout, and the server's limits.
 */
import { checkPromptWords, decodeImage, defaultTrainConfig, type PromptError, TrainConfig } from "@disendiff/core"
import { Effect, Schema, SchemaIssue } from "effect"
import { deepMerge, isObject } from "../commands/Train.js"
import { JobRejected } from "./JobErrors.js"

export const SampleRequest = Schema.Struct({
  prompts: Schema.Array(Schema.String).check(Schema.isMinLength(1)),
  /** Images per prompt. */
  n: Schema.optionalKey(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 16 }))),
  /** Seed of the first image; image i uses seed + i (as `disendiff sample`). */
  seed: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))),
  steps: Schema.optionalKey(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 1000 }))),
  guidance: Schema.optionalKey(Schema.Finite)
})
export type SampleRequest = typeof SampleRequest.Type

/** What a runner needs to run the job, stored as `job.json` in the job's folder. */
export const JobSpec = Schema.Struct({
  config: TrainConfig,
  samples: Schema.NullOr(SampleRequest)
})
export type JobSpec = typeof JobSpec.Type

export interface Limits {
  /** Largest accepted image upload, bytes. */
  readonly maxUploadBytes: number
  /** Most optimizer steps one job may ask for. */
  readonly maxSteps: number
}

export const defaultLimits: Limits = { maxUploadBytes: 8 * 1024 * 1024, maxSteps: 5000 }

/** Paths on the server, or settings that name them: a job may not choose them. */
const serverOwned = ["image", "imageSha256", "model"] as const

const formatter = SchemaIssue.makeFormatterStandardSchemaV1()

const firstIssue = (e: Schema.SchemaError) => {
  const first = formatter(e.issue).issues[0]
  const field = (first?.path ?? []).map((k) => String(typeof k === "object" && k !== null && "key" in k ? k.key : k)).join(".")
  return { field, reason: (first?.message ?? e.message).replace(/\s*\n\s*/g, " ") }
}

const reject = (input: string, reason: string, fix: string) => Effect.fail(new JobRejected({ input, reason, fix }))

/** Checks a submission; `imagePath` is where the runner will find the image. */
export const resolveRequest = Effect.fn("JobRequest.resolve")(function*(
  json: string,
  image: Uint8Array | undefined,
  imagePath: string,
  limits: Limits
) {
  if (image === undefined) return yield* reject("image", "no training image in the upload", "send the image as the multipart field \"image\" (PNG or JPEG)")
  if (image.byteLength > limits.maxUploadBytes) {
    return yield* reject("image", `${image.byteLength} bytes is over the server's limit of ${limits.maxUploadBytes}`, "send a smaller image (the model works at its own resolution anyway)")
  }
  const parsed = yield* Effect.try({ try: () => JSON.parse(json) as unknown, catch: (e) => new JobRejected({ input: "config", reason: `invalid JSON (${(e as Error).message})`, fix: "send one JSON object of train configuration fields, e.g. {\"prompt\": \"<v1> circle and <v2> square\", \"steps\": 100}" }) })
  if (!isObject(parsed)) return yield* reject("config", "not a JSON object", "send one JSON object of train configuration fields")
  for (const key of serverOwned) {
    if (key in parsed) return yield* reject(`config.${key}`, "is set by the server, not by a job", `leave "${key}" out (the image is the upload; the model is the runner's)`)
  }
  if (isObject(parsed.regularization) && parsed.regularization.dir !== undefined && parsed.regularization.dir !== null) {
    return yield* reject("config.regularization.dir", "names a folder on the server", "leave it out; use regularization.generate instead")
  }
  const { samples, ...fields } = parsed
  if (typeof fields.prompt !== "string") return yield* reject("config.prompt", "missing", "give the image's caption with a modifier before each class word, e.g. \"<v1> circle and <v2> square\"")
  const backbone = fields.backbone ?? "toy"
  if (backbone !== "toy" && backbone !== "fake") return yield* reject("config.backbone", `${JSON.stringify(backbone)} is not served`, "use \"toy\" (the built-in model, the default) or \"fake\"")
  const base = defaultTrainConfig({ backbone, image: imagePath, prompt: fields.prompt })
  const config = yield* Schema.decodeUnknownEffect(TrainConfig)(deepMerge(base, fields)).pipe(
    Effect.mapError((e) => {
      const { field, reason } = firstIssue(e)
      return new JobRejected({ input: `config${field === "" ? "" : `.${field}`}`, reason, fix: "correct that field (docs/cli.md lists train's configuration fields)" })
    })
  )
  if (config.steps > limits.maxSteps) return yield* reject("config.steps", `${config.steps} is over the server's limit of ${limits.maxSteps}`, `ask for ${limits.maxSteps} steps or fewer`)
  const sampleRequest = samples === undefined || samples === null
    ? null
    : yield* Schema.decodeUnknownEffect(SampleRequest)(samples).pipe(
      Effect.mapError((e) => {
        const { field, reason } = firstIssue(e)
        return new JobRejected({ input: `config.samples${field === "" ? "" : `.${field}`}`, reason, fix: "give samples as {\"prompts\": [\"...\"], \"n\": 1, \"seed\": 42, \"steps\": 50, \"guidance\": 6}" })
      })
    )
  yield* decodeImage("image", image).pipe(Effect.mapError((e) => new JobRejected({ input: "image", reason: e.reason, fix: "send a PNG or JPEG file" })))
  yield* checkPromptWords(config.prompt).pipe(Effect.mapError((e: PromptError) => new JobRejected({ input: "config.prompt", reason: e.reason, fix: e.fix })))
  return { config, samples: sampleRequest } satisfies JobSpec
})
