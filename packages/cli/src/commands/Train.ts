/**
 * `disendiff train`: personalise a backbone on one image with DisenDiff.
 *
 * The configuration comes from the official recipe for the backbone, then `--config file.json`, then
 * explicit flags. With `--resume`, the checkpoint's own configuration is the starting point and only
 * `--steps` (the total target) and `--checkpoint-every` may change.
 */
import {
  ablations,
  type Backbone,
  ModelError,
  type OutOfMemory,
  StableDiffusion,
  backboneKinds,
  CheckpointError,
  CheckpointFile,
  checkPromptWords,
  defaultTrainConfig,
  readImage,
  Safetensors,
  type TensorRuntime,
  TrainConfig,
  Trainer,
  trainableSets
} from "@disendiff/core"
import { type BackboneSpec, backboneSpecLayer, ToyBackbone } from "@disendiff/builtin"
import { Effect, Layer, Option, Schema, SchemaIssue, Stream } from "effect"
import { Command, Flag } from "effect/cli"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { backendLayer, backendNames, defaultThreads, threadsFlag } from "../Backends.js"
import { makeWorkerPool, workerCount, workersFlag } from "../WorkerPool.js"
import { ConfigFileError, FlagError, OutputError, UsageError } from "../Errors.js"
import { outputFolder } from "../Preflight.js"
import { jsonReporter, textReporter } from "../Progress.js"

const flags = {
  backbone: Flag.Literals("backbone", backboneKinds).pipe(
    Flag.withDescription("which model to personalise: toy (the built-in model; the default), sd (a diffusers folder) or fake (tests)"),
    Flag.optional
  ),
  model: Flag.String("model").pipe(Flag.withDescription("a diffusers SD 1.x folder (--backbone sd), or a built-in-model weights file (--backbone toy)"), Flag.optional),
  image: Flag.String("image").pipe(Flag.withDescription("the training image holding the concepts (PNG or JPEG)"), Flag.optional),
  prompt: Flag.String("prompt").pipe(Flag.withDescription('caption with a modifier before each class word, e.g. "<v1> cat and <v2> dog"'), Flag.optional),
  steps: Flag.Int("steps").pipe(Flag.withDescription("total optimizer steps (the target, also when resuming)"), Flag.optional),
  seed: Flag.Int("seed").pipe(Flag.withDescription("seed of every random draw"), Flag.optional),
  out: Flag.String("out").pipe(Flag.withDescription("output folder; the final checkpoint is OUT/checkpoint.msgpack")),
  resume: Flag.String("resume").pipe(Flag.withDescription("continue from this checkpoint"), Flag.optional),
  overwrite: Flag.Boolean("overwrite").pipe(
    Flag.withDescription("start a new run in an --out folder that holds another run's checkpoints (they are kept aside as *.bak-TIME)"),
    Flag.withDefault(false)
  ),
  checkpointEvery: Flag.Int("checkpoint-every").pipe(Flag.withDescription("also save every K steps"), Flag.optional),
  backend: Flag.Literals("backend", backendNames).pipe(Flag.withDescription("tensor backend"), Flag.withDefault("wasm" as const)),
  threads: threadsFlag,
  workers: workersFlag,
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
  trainable: Flag.Literals("trainable", trainableSets).pipe(Flag.withDescription("kv (official), qkv or attn2 (paper ablations), tokens (Textual Inversion: the new rows only) or unet (DreamBooth: the whole UNet)"), Flag.optional)
}

type Flags = { readonly [K in keyof typeof flags]: (typeof flags)[K] extends Flag.Flag<infer A> ? A : never }

const readJson = (file: string) =>
  Effect.tryPromise({
    try: async () => JSON.parse(await fs.readFile(file, "utf8")) as unknown,
    catch: (e) =>
      e instanceof SyntaxError
        ? new ConfigFileError({ path: file, reason: `invalid JSON (${e.message})`, fix: "write it as one JSON object of TrainConfig fields" })
        : new ConfigFileError({ path: file, reason: `cannot read the file (${(e as NodeJS.ErrnoException).code ?? String(e)})`, fix: "check the path" })
  }).pipe(
    Effect.filterOrFail(
      (json): json is Record<string, unknown> => isObject(json),
      () => new ConfigFileError({ path: file, reason: "not a JSON object", fix: 'write it as one JSON object of TrainConfig fields, e.g. {"steps": 100, "seed": 3}' })
    )
  )

export const isObject = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x)

export const deepMerge = (a: unknown, b: unknown): unknown =>
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

/** The flag of each TrainConfig field that has one. */
const flagOfField: Record<string, string> = {
  backbone: "backbone",
  model: "model",
  image: "image",
  prompt: "prompt",
  steps: "steps",
  seed: "seed",
  checkpointEvery: "checkpoint-every",
  learningRate: "lr",
  batchSize: "batch-size",
  gradientAccumulation: "gradient-accumulation",
  modifierInit: "modifier-init",
  trainable: "trainable",
  "regularization.dir": "regularization",
  "regularization.generate": "generate-regularization",
  "regularization.prompt": "class-prompt"
}

const issueFormatter = SchemaIssue.makeFormatterStandardSchemaV1()

const valueAt = (o: unknown, keys: ReadonlyArray<PropertyKey>): unknown =>
  keys.reduce<unknown>((x, k) => (isObject(x) ? x[String(k)] : undefined), o)

/**
 * An invalid configuration as one line: naming the flag when the value came from a flag, else the
 * field of the configuration file (or of the checkpoint's stored configuration).
 */
const invalidConfig = (error: Schema.SchemaError, flagValues: Record<string, unknown>, source: string) => {
  const first = issueFormatter(error.issue).issues[0]
  const keys = (first?.path ?? []).map((k) => (typeof k === "object" && k !== null && "key" in k ? k.key : k)) as ReadonlyArray<PropertyKey>
  const field = keys.map(String).join(".")
  const reason = (first?.message ?? error.message).replace(/\s*\n\s*/g, " ")
  const flag = flagOfField[field]
  const given = valueAt(flagValues, keys)
  if (flag !== undefined && given !== undefined) {
    return new FlagError({ flag, value: String(given), reason: reason.replace(/^Expected/, "expected"), fix: `see \`disendiff train --help\` for --${flag}` })
  }
  return new ConfigFileError({ path: source, reason: `${field === "" ? "" : `${field}: `}${reason}` })
}

export const resolveConfig = Effect.fn("train.resolveConfig")(function*(f: Flags) {
  const fromFile = Option.isSome(f.config) ? yield* readJson(f.config.value) : {}
  const fromFlags = flagOverrides(f)
  const overrides = deepMerge(fromFile, fromFlags) as Record<string, unknown>
  if (Option.isSome(f.resume)) {
    const snapshot = yield* CheckpointFile.load(f.resume.value)
    const base = snapshot.header.config as TrainConfig
    // the model is the checkpoint's: say so before anything else about the prompt or the weights
    for (const key of ["backbone", "model"] as const) {
      const asked = overrides[key]
      if (asked !== undefined && asked !== base[key]) {
        return yield* new CheckpointError({
          path: f.resume.value,
          reason: `it was trained with --${key} ${base[key] ?? "(the default)"}, not ${String(asked)}`,
          fix: `resume without --${key} (the checkpoint's model is used), or start a new run without --resume to train on ${String(asked)}`
        })
      }
    }
    const merged = deepMerge(base, overrides)
    const config = yield* Schema.decodeUnknownEffect(TrainConfig)(merged).pipe(
      Effect.mapError((e) => invalidConfig(e, fromFlags, `${f.resume.pipe(Option.getOrElse(() => ""))} (stored configuration)`))
    )
    return { config, resume: { path: f.resume.value, snapshot } }
  }
  const backbone = (overrides.backbone ?? "toy") as TrainConfig["backbone"]
  if (overrides.image === undefined) return yield* new UsageError({ message: "--image is missing: the run needs its training image. Fix: give --image FILE (a PNG or JPEG), or \"image\" in --config" })
  if (overrides.prompt === undefined) {
    return yield* new UsageError({ message: '--prompt is missing: the run needs the image\'s caption. Fix: give --prompt with a modifier before each class word, e.g. --prompt "<v1> cat and <v2> dog"' })
  }
  const base = defaultTrainConfig({ backbone, image: String(overrides.image), prompt: String(overrides.prompt) })
  const config = yield* Schema.decodeUnknownEffect(TrainConfig)(deepMerge(base, overrides)).pipe(
    Effect.mapError((e) => invalidConfig(e, fromFlags, f.config.pipe(Option.getOrElse(() => "command-line flags"))))
  )
  return { config, resume: undefined }
})

/**
 * The backbone as plain data where a worker thread can build the same one (the built-in model and the
 * fake; Stable Diffusion stays in one thread).
 */
export const backboneSpec = (config: TrainConfig, modifiers: ReadonlyArray<string>): BackboneSpec | undefined => {
  const classWords = modifiers.map((m) => config.prompt.split(/\s+/)[config.prompt.split(/\s+/).indexOf(m) + 1] ?? "")
  switch (config.backbone) {
    case "fake":
      return { kind: "fake", options: { modifiers, trainable: config.trainable } }
    case "toy":
      // --model, if given, is a built-in-model weights file (default: the committed one)
      return { kind: "toy", options: { modifiers, trainable: config.trainable, modifierInit: config.modifierInit, classWords, weights: config.model ?? undefined } }
    case "sd":
      return undefined
  }
}

/** The services a run needs, for its backbone and configuration. */
export const backboneLayer = (config: TrainConfig, modifiers: ReadonlyArray<string>): Layer.Layer<Backbone, UsageError | ModelError | OutOfMemory, TensorRuntime> => {
  const spec = backboneSpec(config, modifiers)
  if (spec !== undefined) return backboneSpecLayer(spec)
  const classWords = modifiers.map((m) => config.prompt.split(/\s+/)[config.prompt.split(/\s+/).indexOf(m) + 1] ?? "")
  return config.model === null
    ? Layer.unwrap(Effect.fail(new UsageError({ message: "--backbone sd: no --model given. Fix: give --model DIR, a diffusers Stable Diffusion 1.x folder" })))
    : StableDiffusion.layer({ modifiers, trainable: config.trainable, modifierInit: config.modifierInit, classWords, model: config.model, batchSize: config.batchSize })
}

export const trainingLayer = (config: TrainConfig, modifiers: ReadonlyArray<string>) => {
  const backbone = backboneLayer(config, modifiers)
  return Layer.merge(backbone, Trainer.trainingServices(config))
}

/** A built-in-model weights file's header and metadata, read before the model is built. */
const checkToyWeights = Effect.fn("train.checkToyWeights")(function*(file: string) {
  // a missing file gets the built-in model's advice (how such a file is made), not only "check the path"
  yield* Effect.tryPromise({ try: () => fs.access(file), catch: () => ToyBackbone.missingWeights(file) })
  const header = yield* Safetensors.readSafetensorsHeader(file)
  for (const key of ["size", "recipe", "pretrain_config"]) {
    const text = header.metadata[key]
    if (text === undefined) continue
    yield* Effect.try({
      try: () => JSON.parse(text) as unknown,
      catch: () =>
        new ModelError({
          path: file,
          reason: `its __metadata__ field "${key}" is not JSON`,
          fix: "use a weights file written by `disendiff export-builtin` (or leave --model out for the built-in model)"
        })
    })
  }
})

const checkpointName = /^checkpoint(-step\d+)?\.msgpack$/

/**
 * Another run's checkpoints in the output folder are never replaced silently: the run refuses, unless it
 * resumes or `--overwrite` is given, which moves them aside as `NAME.bak-TIME`.
 */
const keepEarlierRun = Effect.fn("train.keepEarlierRun")(function*(out: string, flag: string, overwrite: boolean) {
  const names = (yield* Effect.promise(() => fs.readdir(out).catch(() => [] as Array<string>))).filter((n) => checkpointName.test(n)).sort()
  if (names.length === 0) return
  if (!overwrite) {
    return yield* new OutputError({
      flag: "out",
      path: flag,
      reason: `it holds another run's checkpoint (${names.join(", ")})`,
      fix: `continue that run with --resume ${path.join(flag, names.includes("checkpoint.msgpack") ? "checkpoint.msgpack" : names[0]!)}, choose another --out, or give --overwrite to start anew (the old files are kept aside)`
    })
  }
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z")
  for (const n of names) {
    const from = path.join(out, n)
    const to = `${from}.bak-${stamp}`
    yield* Effect.tryPromise({
      try: () => fs.rename(from, to),
      catch: (e) => new OutputError({ flag: "out", path: flag, reason: `cannot move ${n} aside (${(e as NodeJS.ErrnoException).code ?? String(e)})`, fix: "check the folder's permissions" })
    })
  }
})

export const train = Command.make("train", flags, (f) =>
  Effect.gen(function*() {
    const { config, resume } = yield* resolveConfig(f)
    // preflight before any compute: the image decodes, the prompt's layout, the weights file's header, the
    // output folder is writable and holds no other run; then the backend starts and the prompt is tokenized
    yield* readImage(config.image)
    yield* checkPromptWords(config.prompt)
    if (config.backbone === "toy" && config.model !== null) yield* checkToyWeights(config.model)
    const out = yield* outputFolder("out", f.out)
    if (resume === undefined) yield* keepEarlierRun(out, f.out, f.overwrite)
    // temporary files of checkpoint writes that a killed run left behind
    yield* CheckpointFile.removeStaleTemporaries(out)
    const modifiers = [...new Set(config.prompt.match(/<[^<>\s]+>/g) ?? [])]
    // micro-batches on worker threads: only a step of several has work to share
    const threads = Option.getOrElse(f.threads, defaultThreads)
    const count = Math.min(yield* workerCount(f.workers, f.backend, threads), config.gradientAccumulation)
    const spec = backboneSpec(config, modifiers)
    const workers = count > 1 && spec !== undefined
      ? (yield* makeWorkerPool({ count, backend: f.backend, threads: Math.max(1, Math.floor(threads / count)) })).train(spec)
      : undefined
    const reporter = f.json ? jsonReporter : textReporter()
    yield* Trainer.train({ config, out: f.out, resume, onInterrupted: reporter.interrupted, workers }).pipe(
      Stream.runForEach(reporter.report),
      Effect.ensuring(reporter.close),
      Effect.provide(trainingLayer(config, modifiers).pipe(Layer.provideMerge(backendLayer(f.backend, { threads }))))
    )
  }).pipe(Effect.scoped)).pipe(Command.withDescription("personalise a model on one image holding several concepts (DisenDiff)"))
