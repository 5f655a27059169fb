/**
 * `disendiff builtin-report`: the built-in model's training curve (from a pretraining checkpoint) and
 * its quality gate (`--gate`), written between markers into docs/built-in-model.md.
 */
import { BuiltinGate, ToyBackbone } from "@disendiff/builtin"
import { Console, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { backendLayer, backendNames, threadsFlag } from "../Backends.js"
import { checkSections, replaceBetween } from "../Markdown.js"

export const builtinReport = Command.make(
  "builtin-report",
  {
    checkpoint: Flag.String("checkpoint").pipe(Flag.withDescription("a pretraining checkpoint: its training curve"), Flag.optional),
    gate: Flag.Boolean("gate").pipe(Flag.withDescription("measure the quality gate of --weights"), Flag.withDefault(false)),
    weights: Flag.String("weights").pipe(Flag.withDescription("built-in model weights (default: the committed file)"), Flag.withDefault(ToyBackbone.builtinWeightsPath)),
    n: Flag.Int("n").pipe(Flag.withDescription("held-out prompts per group"), Flag.withDefault(100)),
    samples: Flag.Int("samples").pipe(Flag.withDescription("samples of the training caption after personalisation"), Flag.withDefault(40)),
    steps: Flag.Int("steps").pipe(Flag.withDescription("sampling steps"), Flag.withDefault(50)),
    guidance: Flag.Finite("guidance").pipe(Flag.withDescription("guidance scale"), Flag.withDefault(4)),
    docs: Flag.String("docs").pipe(Flag.withDescription("the markdown file to update"), Flag.withDefault("docs/built-in-model.md")),
    backend: Flag.Literals("backend", backendNames).pipe(Flag.withDescription("tensor backend"), Flag.withDefault("wasm" as const)),
    threads: threadsFlag,
    json: Flag.Boolean("json").pipe(Flag.withDescription("print the gate's numbers as JSON"), Flag.withDefault(false))
  },
  (f) =>
    Effect.gen(function*() {
      yield* checkSections("docs", f.docs, [...(Option.isSome(f.checkpoint) ? ["curve"] : []), "weights", ...(f.gate ? ["gate"] : [])])
      if (Option.isSome(f.checkpoint)) {
        const curve = yield* BuiltinGate.curveMarkdown(f.checkpoint.value)
        yield* Effect.promise(() => replaceBetween(f.docs, "curve", curve))
        yield* Console.log(curve)
      }
      const weights = yield* BuiltinGate.weightsMarkdown(f.weights)
      yield* Effect.promise(() => replaceBetween(f.docs, "weights", weights))
      if (f.gate) {
        const options = { weights: f.weights, n: f.n, steps: f.steps, guidance: f.guidance, personalisationSamples: f.samples }
        const g = yield* BuiltinGate.runGate(options)
        const md = BuiltinGate.gateMarkdown(g, { ...options, date: new Date().toISOString().slice(0, 10), backend: f.backend })
        yield* Effect.promise(() => replaceBetween(f.docs, "gate", md))
        yield* Console.log(f.json ? JSON.stringify(g) : md)
      }
    }).pipe(Effect.provide(backendLayer(f.backend, { threads: f.threads })))
).pipe(Command.withDescription("the built-in model's training curve and quality gate, into docs/built-in-model.md"))
