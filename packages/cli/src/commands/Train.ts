/**
 * `disendiff train`: personalise a backbone on one image with DisenDiff.
 *
 * The configuration comes from the official recipe for the backbone, then `--config file.json`, then
 * explicit flags. With `--resume`, the checkpoint's own configuration is the starting point and only
 * `--steps` (the total target) and `--checkpoint-every` may change.
 */
import {
  ablations,
  AttentionProbe,
  type Backbone,
  type ModelError,
  type OutOfMemory,
  StableDiffusion,
  ToyBackbone,
  backboneKinds,
  Checkpoints,
  CheckpointFile,
  defaultTrainConfig,
  FakeBackbone,
  LossCalibrator,
  Optimizer,
  readImage,
  type TensorRuntime,
  TrainConfig,
  Trainer,
  trainableSets
} from "@disendiff/core"
import { Effect, Layer, Option, Schema, Stream } from "effect"
import { Command, Flag } from "effect/cli"
import * as fs from "node:fs/promises"
import { backendLayer, backendNames } from "../Backends.js"
import { ConfigFileError, UsageError } from "../Errors.js"
import { jsonReporter, textReporter } from "../Progress.js"

const flags = {
  backbone: Flag.Literals("backbone", backboneKinds).pipe(Flag.withDescription("which model to personalise: toy (built-in), sd (a diffusers folder) or fake (tests)"), Flag.optional),
  model: Flag.String("model").pipe(Flag.withDescription("a diffusers SD 1.x folder (--backbone sd), or a built-in-model weights file (--backbone toy)"), Flag.optional),
  image: Flag.String("image").pipe(Flag.withDescription("the training image holding the concepts (PNG or JPEG)"), Flag.optional),
  prompt: Flag.String("prompt").pipe(Flag.withDescription('caption with a modifier before each class word, e.g. "<v1> cat and <v2> dog"'), Flag.optional),
  steps: Flag.Int("steps").pipe(Flag.withDescription("total optimizer steps (the target, also when resuming)"), Flag.optional),
  seed: Flag.Int("seed").pipe(Flag.withDescription("seed of every random draw"), Flag.optional),
  out: Flag.String("out").pipe(Flag.withDescription("output folder; the final checkpoint is OUT/checkpoint.msgpack")),
  resume: Flag.String("resume").pipe(Flag.withDescription("continue from this checkpoint"), Flag.optional),
  checkpointEvery: Flag.Int("checkpoint-every").pipe(Flag.withDescription("also save every K steps"), Flag.optional),
  backend: Flag.Literals("backend", backendNames).pipe(Flag.withDescription("tensor backend"), Flag.withDefault("wasm" as const)),
  json: Flag.Boolean("json").pipe(Flag.withDescription("print one JSON event per line"), Flag.withDefault(false)),
  config: Flag.String("config").pipe(Flag.withDescription("a JSON file with any TrainConfig fields (flags override it)"), Flag.optional),
  lr: Flag.Finite("lr").pipe(Flag.withDescription("base learning rate (scaled by batch x accumulation unless the config says not to)"), Flag.optional),
  batchSize: Flag.Int("batch-size").pipe(Flag.withDescription("rows per micro-batch"), Flag.optional),
  gradientAccumulation: Flag.Int("gradient-accumulation").pipe(Flag.withDescription("micro-batches per optimizer step"), Flag.optional),
  ablation: Flag.Literals("ablation", Object.keys(ablations)).pipe(Flag.withDescription("a paper ablation; custom-diffusion turns calibration off"), Flag.optional),
  regularization: Flag.String("regularization").pipe(Flag.withDescription("folder of regularisation images with captions"), Flag.optional),
  generateRegularization: Flag.Int("generate-regularization").pipe(Flag.withDescription("generate this many regularisation images with the base model"), Flag.optional),
  classPrompt: Flag.String("class-prompt").pipe(Flag.withDescription('prompt for generated regularisation images, e.g. "a cat and a dog"'), Flag.optional),
  modifierInit: Flag.Literals("modifier-init", ["rare", "class"]).pipe(Flag.withDescription("new token rows start from rare tokens (official) or from the class word"), Flag.optional),
  trainable: Flag.Literals("trainable", trainableSets).pipe(Flag.withDescription("kv (official), qkv or attn2 (paper ablations)"), Flag.optional)
}

type Flags = { readonly [K in keyof typeof flags]: (typeof flags)[K] extends Flag.Flag<infer A> ? A : never }

const readJson = (file: string) =>
  Effect.tryPromise({
    try: async () => JSON.parse(await fs.readFile(file, "utf8")) as unknown,
    catch: (e) => new ConfigFileError({ path: file, reason: e instanceof SyntaxError ? `invalid JSON (${e.message})` : "cannot read the file" })
  })

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x)

const deepMerge = (a: unknown, b: unknown): unknown =>
  isObject(a) && isObject(b) ? Object.fromEntries([...new Set([...Object.keys(a), ...Object.keys(b)])].map((k) => [k, k in b ? deepMerge(a[k], b[k]) : a[k]])) : b

/** Flag values that were given, as a partial config. */
const flagOverrides = (f: Flags): Record<string, unknown> => {
  const o: Record<string, unknown> = {}
  const set = (key: string, v: Option.Option<unknown>) => Option.isSome(v) && (o[key] = v.value)
  set("backbone", f.backbone)
  set("model", f.model)
  set("image", f.image)
  set("prompt", f.prompt)
  set("steps", f.steps)
  set("seed", f.seed)
  set("checkpointEvery", f.checkpointEvery)
  set("learningRate", f.lr)
  set("batchSize", f.batchSize)
  set("gradientAccumulation", f.gradientAccumulation)
  set("modifierInit", f.modifierInit)
  set("trainable", f.trainable)
  const reg: Record<string, unknown> = {}
  if (Option.isSome(f.regularization)) reg.dir = f.regularization.value
  if (Option.isSome(f.generateRegularization)) reg.generate = f.generateRegularization.value
  if (Option.isSome(f.classPrompt)) reg.prompt = f.classPrompt.value
  if (Object.keys(reg).length > 0) o.regularization = reg
  if (Option.isSome(f.ablation)) o.calibration = ablations[f.ablation.value]
  return o
}

export const resolveConfig = Effect.fn("train.resolveConfig")(function*(f: Flags) {
  const fromFile = Option.isSome(f.config) ? yield* readJson(f.config.value) : {}
  const overrides = deepMerge(fromFile, flagOverrides(f)) as Record<string, unknown>
  if (Option.isSome(f.resume)) {
    const snapshot = yield* CheckpointFile.load(f.resume.value)
    const base = snapshot.header.config
    const merged = deepMerge(base, overrides)
    const config = yield* Schema.decodeUnknownEffect(TrainConfig)(merged).pipe(
      Effect.mapError((e) => new ConfigFileError({ path: f.resume.pipe(Option.getOrElse(() => "")), reason: `stored configuration is invalid: ${e.message}` }))
    )
    return { config, resume: { path: f.resume.value, snapshot } }
  }
  const backbone = (overrides.backbone ?? "toy") as TrainConfig["backbone"]
  if (overrides.image === undefined) return yield* new UsageError({ message: "--image is required (the training image)" })
  if (overrides.prompt === undefined) return yield* new UsageError({ message: '--prompt is required, e.g. --prompt "<v1> cat and <v2> dog"' })
  const base = defaultTrainConfig({ backbone, image: String(overrides.image), prompt: String(overrides.prompt) })
  const config = yield* Schema.decodeUnknownEffect(TrainConfig)(deepMerge(base, overrides)).pipe(
    Effect.mapError((e) => new ConfigFileError({ path: f.config.pipe(Option.getOrElse(() => "command-line flags")), reason: e.message }))
  )
  return { config, resume: undefined }
})

/** The services a run needs, for its backbone and configuration. */
export const backboneLayer = (config: TrainConfig, modifiers: ReadonlyArray<string>): Layer.Layer<Backbone, UsageError | ModelError | OutOfMemory, TensorRuntime> => {
  const classWords = modifiers.map((m) => config.prompt.split(/\s+/)[config.prompt.split(/\s+/).indexOf(m) + 1] ?? "")
  const common = { modifiers, trainable: config.trainable, modifierInit: config.modifierInit, classWords }
  switch (config.backbone) {
    case "fake":
      return FakeBackbone.layer({ modifiers, trainable: config.trainable })
    case "toy":
      // --model, if given, is a built-in-model weights file (default: the committed one)
      return ToyBackbone.layer({ ...common, weights: config.model ?? undefined })
    case "sd":
      return config.model === null
        ? Layer.unwrap(Effect.fail(new UsageError({ message: "--backbone sd needs --model DIR (a diffusers Stable Diffusion 1.x folder)" })))
        : StableDiffusion.layer({ ...common, model: config.model, batchSize: config.batchSize })
  }
}

export const trainingLayer = (config: TrainConfig, modifiers: ReadonlyArray<string>) => {
  const backbone = backboneLayer(config, modifiers)
  return Layer.mergeAll(
    backbone,
    AttentionProbe.layer({ queries: config.calibration.maps === "all-resolutions" ? "all" : 256 }),
    LossCalibrator.layer(config.calibration),
    Optimizer.layer(config.optimizer),
    Checkpoints.layer
  )
}

export const train = Command.make("train", flags, (f) =>
  Effect.gen(function*() {
    const { config, resume } = yield* resolveConfig(f)
    // preflight before any compute: the image decodes, the backend starts, the prompt fits the tokenizer
    yield* readImage(config.image)
    const modifiers = [...new Set(config.prompt.match(/<[^<>\s]+>/g) ?? [])]
    const reporter = f.json ? jsonReporter : textReporter()
    yield* Trainer.train({ config, out: f.out, resume, onInterrupted: reporter.interrupted }).pipe(
      Stream.runForEach(reporter.report),
      Effect.ensuring(reporter.close),
      Effect.provide(trainingLayer(config, modifiers).pipe(Layer.provideMerge(backendLayer(f.backend))))
    )
  })).pipe(Command.withDescription("personalise a model on one image holding several concepts (DisenDiff)"))
