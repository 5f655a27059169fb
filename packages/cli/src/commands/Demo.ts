/**
 * `disendiff demo`: DisenDiff beside the Custom Diffusion baseline on the built-in model, end to end,
 * with figures, `metrics.json` and `report.html` in `--out`. The plan (seed, steps, prompts) is fixed in
 * `@disendiff/builtin/demo`'s `DemoPlan`; `--seeds 1,2,3 --summary FILE` runs it once per seed (into
 * OUT/seed-S) and writes the markdown table of means with bootstrap intervals and the paired difference.
 */
import { type DemoMetrics, DemoOutputError, demoPlan, run, seedTable } from "@disendiff/builtin/demo"
import { Console, Effect, Option, Stream } from "effect"
import { Command, Flag } from "effect/cli"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { seedList } from "../Preflight.js"
import { backendLayer, backendNames, defaultThreads, threadsFlag } from "../Backends.js"
import { makeWorkerPool, workerCount, workersFlag } from "../WorkerPool.js"
import { jsonDemoReporter, textDemoReporter } from "../DemoProgress.js"
import { UsageError } from "../Errors.js"

const flags = {
  out: Flag.String("out").pipe(Flag.withDescription("output folder (report.html, metrics.json, figures/, the checkpoints)"), Flag.withDefault("demo")),
  quick: Flag.Boolean("quick").pipe(Flag.withDescription("fewer training steps, sampling steps and seeds"), Flag.withDefault(false)),
  seed: Flag.Int("seed").pipe(Flag.withDescription("the demo's seed (default: the plan's fixed seed)"), Flag.optional),
  seeds: Flag.String("seeds").pipe(Flag.withDescription("run once per seed, e.g. 1,2,3 (needs --summary)"), Flag.optional),
  summary: Flag.String("summary").pipe(Flag.withDescription("with --seeds: the markdown file for the table of means, intervals and paired differences"), Flag.optional),
  weights: Flag.String("weights").pipe(Flag.withDescription("a built-in model weights file (default: the installed one)"), Flag.optional),
  backend: Flag.Literals("backend", backendNames).pipe(Flag.withDescription("tensor backend"), Flag.withDefault("wasm" as const)),
  threads: threadsFlag,
  workers: workersFlag,
  json: Flag.Boolean("json").pipe(Flag.withDescription("print one JSON event per line"), Flag.withDefault(false))
}

export const demo = Command.make("demo", flags, (f) =>
  Effect.gen(function*() {
    if (Option.isSome(f.seeds) && Option.isSome(f.seed)) return yield* new UsageError({ message: "give either --seed or --seeds, not both" })
    if (Option.isSome(f.seeds) !== Option.isSome(f.summary)) return yield* new UsageError({ message: "--seeds and --summary go together: --seeds 1,2,3 --summary demo-seeds.md" })
    const seeds = Option.isSome(f.seeds) ? yield* seedList("--seeds", f.seeds.value) : [Option.getOrUndefined(f.seed)]
    const weights = Option.getOrUndefined(f.weights)
    const threads = Option.getOrElse(f.threads, defaultThreads)
    const count = yield* workerCount(f.workers, f.backend, threads)
    // the threads are shared out: each worker's backend gets its part (at least one)
    const workers = count > 1 ? yield* makeWorkerPool({ count, backend: f.backend, threads: Math.max(1, Math.floor(threads / count)) }) : undefined
    const runs: Array<DemoMetrics> = []
    for (const seed of seeds) {
      const plan = demoPlan({ seed, quick: f.quick })
      const out = Option.isSome(f.seeds) ? path.join(f.out, `seed-${plan.seed}`) : f.out
      const text = textDemoReporter()
      yield* run({ plan, out, weights, workers }).pipe(
        Stream.runForEach(f.json ? jsonDemoReporter : text.report),
        Effect.ensuring(text.close),
        Effect.provide(backendLayer(f.backend, { threads }))
      )
      runs.push(JSON.parse(yield* Effect.promise(() => fs.readFile(path.join(out, "metrics.json"), "utf8"))) as DemoMetrics)
      if (!f.json) yield* Console.log(`report: ${path.join(out, "report.html")}`)
    }
    if (Option.isSome(f.summary)) {
      const table = seedTable(runs)
      const file = f.summary.value
      yield* Effect.tryPromise({
        try: () => fs.writeFile(file, table),
        catch: (e) => new DemoOutputError({ path: file, reason: `cannot write (${String(e)})`, fix: "check the path and its folder" })
      })
      if (!f.json) yield* Console.log(`${table}\nwrote ${file}`)
    }
  }).pipe(Effect.scoped)).pipe(Command.withDescription("DisenDiff beside the Custom Diffusion baseline on the built-in model: figures, metrics and an HTML report"))
