/**
 * `disendiff bench`: timing of a diffusers UNet (`--model DIR`), or the whole suite (`--suite`, what
 * `npm run bench` runs), which writes bench/results/<date>.json and regenerates the table in
 * docs/benchmarks.md between its markers.
 */
import { Bench, BenchSuite } from "@disendiff/core"
import { Console, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { backendLayer, backendNames, threadsFlag } from "../Backends.js"
import { UsageError } from "../Errors.js"

const begin = "<!-- bench:begin -->"
const end = "<!-- bench:end -->"

const runSuite = (fixtures: string, runs: number, backend: string) =>
  Effect.gen(function*() {
    const results = yield* BenchSuite.runSuite(fixtures, { runs, onCase: (name) => Effect.sync(() => process.stderr.write(`bench: ${name}\n`)) })
    const date = new Date().toISOString().slice(0, 10)
    const machine = `${os.cpus().length} vCPU ${os.cpus()[0]?.model ?? ""}, Node ${process.version}`
    yield* Effect.promise(async () => {
      await fs.mkdir("bench/results", { recursive: true })
      await fs.writeFile(path.join("bench/results", `${date}-${backend}.json`), JSON.stringify({ date, machine, backend, results }, null, 2))
      const docs = "docs/benchmarks.md"
      const table = BenchSuite.markdownTable(results, { date, backend, machine })
      const text = await fs.readFile(docs, "utf8").catch(() => `# Benchmarks\n\n${begin}\n${end}\n`)
      const [before, rest] = text.split(begin)
      const after = rest?.split(end)[1] ?? ""
      await fs.writeFile(docs, `${before}${begin}\n${table}\n${end}${after}`)
    })
    yield* Console.log(BenchSuite.markdownTable(results, { date, backend, machine }))
  })

export const bench = Command.make(
  "bench",
  {
    model: Flag.String("model").pipe(Flag.withDescription("a diffusers folder (or its unet/ subfolder) to time"), Flag.optional),
    batch: Flag.Int("batch").pipe(Flag.withDescription("batch size"), Flag.withDefault(2)),
    size: Flag.String("size").pipe(Flag.withDescription("latent size HxW"), Flag.withDefault("16x16")),
    grads: Flag.Literals("grads", ["kv", "all"]).pipe(Flag.withDescription("kv: attn2 to_k/to_v and the conditioning; all: every parameter"), Flag.withDefault("kv" as const)),
    runs: Flag.Int("runs").pipe(Flag.withDescription("timed runs after the warm-up (median reported)"), Flag.withDefault(5)),
    backend: Flag.Literals("backend", backendNames).pipe(Flag.withDescription("tensor backend"), Flag.withDefault("wasm" as const)),
    threads: threadsFlag,
    json: Flag.Boolean("json").pipe(Flag.withDescription("print one JSON object"), Flag.withDefault(false)),
    suite: Flag.Boolean("suite").pipe(Flag.withDescription("run the benchmark suite and update docs/benchmarks.md"), Flag.withDefault(false)),
    fixtures: Flag.String("fixtures").pipe(Flag.withDescription("the sd-tiny fixture folder (suite)"), Flag.withDefault("fixtures/sd-tiny"))
  },
  (f) =>
    Effect.gen(function*() {
      if (f.suite) return yield* runSuite(f.fixtures, f.runs, f.backend)
      if (Option.isNone(f.model)) return yield* new UsageError({ message: "give --model DIR (a diffusers folder) or --suite" })
      const size = /^(\d+)x(\d+)$/.exec(f.size)
      if (size === null) return yield* new UsageError({ message: `--size must be HxW, e.g. 16x16 (got ${f.size})` })
      const { cfg, weights, contextDim } = yield* BenchSuite.loadUnet(f.model.value)
      const r = yield* Bench.benchUnet(cfg, weights, { batch: f.batch, height: Number(size[1]), width: Number(size[2]), grads: f.grads, runs: f.runs, contextDim })
      if (f.json) return yield* Console.log(JSON.stringify(r))
      yield* Console.log(
        `${f.model.value} (${r.parameters} parameters) on ${r.backend}, batch ${f.batch}, ${f.size}, grads ${f.grads}:\n` +
          `  forward ${r.forwardSeconds.toFixed(4)} s (${r.forwardGflops.toFixed(1)} GFLOP/s)\n` +
          `  forward+backward ${r.forwardBackwardSeconds.toFixed(4)} s (${r.forwardBackwardGflop.toFixed(2)} GFLOP, ${r.gflops.toFixed(1)} GFLOP/s)\n` +
          `  plain matMul ${r.matmulGflops.toFixed(1)} GFLOP/s; peak ${(r.peakBytes / 2 ** 20).toFixed(0)} MiB`
      )
    }).pipe(Effect.provide(backendLayer(f.backend, { threads: f.threads })))
).pipe(Command.withDescription("time UNet forward and backward passes, or run the benchmark suite"))
