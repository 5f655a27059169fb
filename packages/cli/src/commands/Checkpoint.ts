/** `disendiff checkpoint inspect FILE`: what a checkpoint holds, and its digest. */
import { CheckpointFile, CustomDiffusion, modifiersOf, snapshotDigest, type TrainConfig } from "@disendiff/core"
import { Console, Effect } from "effect"
import { Argument, Command, Flag } from "effect/cli"

export const summarize = (file: string) =>
  Effect.map(CheckpointFile.load(file), (s) => {
    const h = s.header
    const config = h.config as Record<string, unknown>
    const tensors = [
      ...[...s.trainable].map(([name, t]) => ({ group: "trainable", name, shape: t.shape })),
      ...[...s.optimizer.m].map(([name, t]) => ({ group: "adam.m", name, shape: t.shape })),
      ...[...s.optimizer.v].map(([name, t]) => ({ group: "adam.v", name, shape: t.shape }))
    ]
    const last = h.lossHistory.at(-1)
    return {
      path: file,
      formatVersion: h.formatVersion,
      step: h.step,
      optimizerStep: s.optimizer.step,
      seed: h.rng.seed,
      dataCursor: h.dataCursor,
      baseModel: h.baseModel,
      config: {
        backbone: config.backbone,
        prompt: config.prompt,
        // pretraining checkpoints have a world instead of a prompt
        world: (config as { world?: string }).world,
        steps: config.steps,
        batchSize: config.batchSize,
        gradientAccumulation: config.gradientAccumulation,
        learningRate: config.learningRate,
        calibration: config.calibration
      },
      lastLoss: last ?? null,
      trainableParameters: [...s.trainable.values()].reduce((a, t) => a + t.data.length, 0),
      tensors,
      digest: snapshotDigest(s)
    }
  })

const inspect = Command.make(
  "inspect",
  {
    file: Argument.String("file").pipe(Argument.withDescription("a checkpoint.msgpack")),
    json: Flag.Boolean("json").pipe(Flag.withDescription("print one JSON object"), Flag.withDefault(false))
  },
  ({ file, json }) =>
    Effect.gen(function*() {
      const s = yield* summarize(file)
      if (json) return yield* Console.log(JSON.stringify(s))
      const lines = [
        `checkpoint ${s.path} (format ${s.formatVersion})`,
        `step ${s.step} (seed ${s.seed}, micro-batches ${s.dataCursor})`,
        `base model ${s.baseModel.kind} ${s.baseModel.name} ${s.baseModel.identity.slice(0, 16)}`,
        `${s.config.prompt === undefined ? `pretraining on world ${String(s.config.world)}` : `prompt "${String(s.config.prompt)}"`}, ${String(s.config.steps)} steps, batch ${String(s.config.batchSize)} x ${String(s.config.gradientAccumulation)}, lr ${String(s.config.learningRate)}`,
        s.lastLoss === null ? "no steps yet" : `last loss ${s.lastLoss.loss.toPrecision(5)} (base ${s.lastLoss.base.toPrecision(5)}, bind ${s.lastLoss.bind?.toPrecision(5) ?? "-"}, s&s ${s.lastLoss.separation?.toPrecision(5) ?? "-"})`,
        `${s.trainableParameters} trainable parameters in ${s.tensors.filter((t) => t.group === "trainable").length} tensors:`,
        ...s.tensors.filter((t) => t.group === "trainable").map((t) => `  ${t.name} [${t.shape.join(", ")}]`),
        `digest ${s.digest}`
      ]
      yield* Console.log(lines.join("\n"))
    })
).pipe(Command.withDescription("show a checkpoint's step, configuration, tensors and digest"))

const exportDeltas = Command.make(
  "export",
  {
    file: Argument.String("file").pipe(Argument.withDescription("a checkpoint.msgpack from `disendiff train`")),
    out: Flag.String("out").pipe(Flag.withDescription("folder for pytorch_custom_diffusion_weights.safetensors and <token>.safetensors"))
  },
  ({ file, out }) =>
    Effect.gen(function*() {
      const s = yield* CheckpointFile.load(file)
      const modifiers = modifiersOf((s.header.config as TrainConfig).prompt)
      yield* CustomDiffusion.exportDeltas(out, s.trainable, modifiers)
      yield* Console.log(`wrote Custom Diffusion deltas for ${modifiers.join(", ")} to ${out}`)
    })
).pipe(Command.withDescription("export trained weights in diffusers' Custom Diffusion format"))

export const checkpoint = Command.make("checkpoint").pipe(
  Command.withDescription("work with checkpoint files"),
  Command.withSubcommands([inspect, exportDeltas])
)
