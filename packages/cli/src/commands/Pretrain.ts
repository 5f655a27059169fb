/**
 * `disendiff pretrain --world shapes --out DIR`: trains the built-in model from scratch, resumable.
 * `disendiff export-builtin`: writes a pretraining checkpoint's EMA weights as the built-in model file.
 */
import { CheckpointFile, Checkpoints, Safetensors } from "@disendiff/core"
import { defaultPretrainConfig, ToyModel, PretrainConfig, Pretraining, type PretrainEvent } from "@disendiff/builtin"
import { Console, Effect, Layer, Option, Schema, Stream } from "effect"
import { Command, Flag } from "effect/cli"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import { backendLayer, backendNames, defaultThreads, threadsFlag } from "../Backends.js"
import { ConfigFileError, UsageError } from "../Errors.js"
import { makeWorkerPool } from "../WorkerPool.js"
import { formatSeconds } from "../Progress.js"

const pct = (x: number) => `${Math.round(100 * x)}%`

const report = (json: boolean) => (e: PretrainEvent) =>
  Effect.sync(() => {
    if (json) {
      process.stdout.write(`${JSON.stringify(e)}\n`)
      return
    }
    switch (e._tag) {
      case "Started":
        process.stderr.write(`pretraining ${e.parameters} parameters on ${e.backend} from step ${e.startStep} to ${e.totalSteps}\n`)
        return
      case "Step":
        if (e.step % 10 === 0 || e.step === e.totalSteps) {
          process.stderr.write(
            `step ${e.step}/${e.totalSteps} loss ${e.loss.toFixed(4)} lr ${e.lr.toExponential(1)} |g| ${e.gradNorm.toFixed(2)} ` +
              `${e.samplesPerSecond.toFixed(1)} samples/s ETA ${formatSeconds(e.etaSeconds)}\n`
          )
        }
        return
      case "Evaluated": {
        const { oneObject: o, twoObjects: t } = e.evaluation
        process.stderr.write(
          `eval at ${e.step}: one object all ${pct(o.allCorrect)} (count ${pct(o.count)} shape ${pct(o.shapes)} colour ${pct(o.colours)} bg ${pct(o.background)}); ` +
            `two objects all ${pct(t.allCorrect)} (count ${pct(t.count)} shape ${pct(t.shapes)} colour ${pct(t.colours)} bg ${pct(t.background)})\n`
        )
        return
      }
      case "CheckpointSaved":
        return
      case "Finished":
        process.stderr.write(`done at step ${e.step}: ${e.path}\ndigest ${e.digest}\n`)
    }
  })

/** The config file's fields over `base` (the defaults; when resuming, the run's own configuration). */
const readConfig = (file: Option.Option<string>, base: PretrainConfig = defaultPretrainConfig) =>
  Effect.gen(function*() {
    if (Option.isNone(file)) return base
    const raw = yield* Effect.tryPromise({
      try: async () => JSON.parse(await fs.readFile(file.value, "utf8")) as Record<string, unknown>,
      catch: (e) => new ConfigFileError({ path: file.value, reason: e instanceof SyntaxError ? `invalid JSON (${e.message})` : "cannot read the file" })
    })
    return yield* Schema.decodeUnknownEffect(PretrainConfig)({ ...base, ...raw }).pipe(
      Effect.mapError((e) => new ConfigFileError({ path: file.value, reason: e.message }))
    )
  })

export const pretrain = Command.make(
  "pretrain",
  {
    world: Flag.Literals("world", ["shapes", "shapes-v2"]).pipe(
      Flag.withDescription("the procedural world to learn (default: the config's, else shapes); shapes-v2 has unnamed variation"),
      Flag.optional
    ),
    init: Flag.String("init").pipe(
      Flag.withDescription("start from this pretraining checkpoint's EMA weights (same model size; e.g. a v1 model for shapes-v2) instead of fresh ones"),
      Flag.optional
    ),
    out: Flag.String("out").pipe(Flag.withDescription("output folder; the checkpoint is OUT/checkpoint.msgpack")),
    resume: Flag.String("resume").pipe(Flag.withDescription("continue from this checkpoint"), Flag.optional),
    steps: Flag.Int("steps").pipe(Flag.withDescription("total optimizer steps (the target, also when resuming)"), Flag.optional),
    config: Flag.String("config").pipe(Flag.withDescription("a JSON file with PretrainConfig fields"), Flag.optional),
    backend: Flag.Literals("backend", backendNames).pipe(Flag.withDescription("tensor backend"), Flag.withDefault("wasm" as const)),
    threads: threadsFlag,
    json: Flag.Boolean("json").pipe(Flag.withDescription("one JSON event per line"), Flag.withDefault(false)),
    workers: Flag.Int("workers").pipe(
      Flag.withDescription("threads computing micro-batches in parallel (default: one per core, up to the accumulation count, on wasm and cpu); the result is the same bit for bit"),
      Flag.optional
    )
  },
  (f) =>
    Effect.gen(function*() {
      const resume = Option.isSome(f.resume) ? { path: f.resume.value, snapshot: yield* CheckpointFile.load(f.resume.value) } : undefined
      const base = resume === undefined
        ? yield* readConfig(f.config)
        : yield* Schema.decodeUnknownEffect(PretrainConfig)(resume.snapshot.header.config).pipe(
          Effect.mapError((e) => new ConfigFileError({ path: resume.path, reason: `stored configuration is invalid: ${e.message}` }))
        )
      // when resuming, a config file may change the schedule (steps, learning rate, evaluation) of the run;
      // the fields it leaves out keep the run's values, and what the weights depend on cannot change
      const overrides = resume !== undefined && Option.isSome(f.config) ? yield* readConfig(f.config, base) : undefined
      if (resume !== undefined && overrides !== undefined) {
        for (const field of ["world", "size", "recipe"] as const) {
          if (JSON.stringify(overrides[field]) !== JSON.stringify(base[field])) {
            return yield* new ConfigFileError({
              path: Option.getOrElse(f.config, () => ""),
              reason: `"${field}" differs from the resumed run's (${JSON.stringify(base[field])}), which its weights depend on`,
              fix: `leave "${field}" out of the file, or start a new run from these weights with --init ${resume.path}`
            })
          }
        }
      }
      if (resume !== undefined && Option.isSome(f.init)) {
        return yield* new UsageError({ message: `--init ${f.init.value}: a resumed run already has its weights; give --resume or --init, not both` })
      }
      const seed = Option.isSome(f.init) ? yield* CheckpointFile.load(f.init.value) : undefined
      const seedConfig = seed === undefined ? undefined : yield* Schema.decodeUnknownEffect(PretrainConfig)(seed.header.config).pipe(
        Effect.mapError((e) => new ConfigFileError({ path: Option.getOrElse(f.init, () => ""), reason: `not a pretraining checkpoint: ${e.message}` }))
      )
      const config: PretrainConfig = {
        ...base,
        ...(overrides ?? {}),
        ...(Option.isSome(f.steps) ? { steps: f.steps.value } : {}),
        ...(Option.isSome(f.world) && resume === undefined ? { world: f.world.value } : {}),
        ...(seed === undefined ? {} : { initFrom: { checkpoint: Option.getOrElse(f.init, () => ""), digest: CheckpointFile.digestOf(seed), step: seed.header.step } })
      }
      if (resume !== undefined && Option.isSome(f.world) && f.world.value !== config.world) {
        return yield* new UsageError({ message: `--world ${f.world.value}: the checkpoint ${resume.path} learns ${config.world}; a resumed run keeps its world` })
      }
      const init = seed === undefined || seedConfig === undefined
        ? undefined
        : { weights: seed.ema ?? seed.trainable, words: ToyModel.toyModelConfig(seedConfig.size, seedConfig.recipe, seedConfig.world).words }
      const threaded = f.backend === "wasm" || f.backend === "cpu"
      const count = Option.getOrElse(f.workers, () => (threaded ? Math.min(config.gradientAccumulation, os.availableParallelism()) : 1))
      if (count < 1 || (count > 1 && !threaded)) {
        return yield* new UsageError({ message: `--workers ${count}: use 1 or more, and more than 1 only with --backend wasm or cpu (one device cannot be shared by threads)` })
      }
      // the threads are shared out: each worker's backend gets its part (at least one)
      const threads = Option.getOrElse(f.threads, defaultThreads)
      const workers = count > 1 ? (yield* makeWorkerPool({ count, backend: f.backend, threads: Math.max(1, Math.floor(threads / count)) })).pretrain(config) : undefined
      yield* Pretraining.pretrain({
        config,
        out: f.out,
        resume,
        init,
        workers,
        onInterrupted: (step, file) => Effect.sync(() => process.stderr.write(`interrupted after step ${step}; checkpoint saved to ${file}\n`))
      }).pipe(Stream.runForEach(report(f.json)), Effect.provide(Layer.merge(backendLayer(f.backend, { threads }), Checkpoints.layer)))
    }).pipe(Effect.scoped)
).pipe(Command.withDescription("train the built-in model from scratch on a procedural world (resumable)"))

export const exportBuiltin = Command.make(
  "export-builtin",
  {
    checkpoint: Flag.String("checkpoint").pipe(Flag.withDescription("a pretraining checkpoint")),
    out: Flag.String("out").pipe(Flag.withDescription("the weights file to write (.safetensors, float16)"))
  },
  ({ checkpoint, out }) =>
    Effect.gen(function*() {
      const s = yield* CheckpointFile.load(checkpoint)
      const config = s.header.config as PretrainConfig
      const weights = s.ema ?? s.trainable
      yield* Safetensors.writeSafetensors(out, weights, {
        size: JSON.stringify(config.size),
        recipe: JSON.stringify(config.recipe ?? ToyModel.defaultToyRecipe),
        step: String(s.header.step),
        checkpoint_digest: CheckpointFile.digestOf(s),
        pretrain_config: JSON.stringify(config)
      }, "F16")
      yield* Console.log(`wrote ${out}: EMA weights of step ${s.header.step}`)
    })
).pipe(Command.withDescription("write a pretraining checkpoint's EMA weights as a built-in model file"))
