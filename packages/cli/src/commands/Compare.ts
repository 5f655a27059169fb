/**
 * `disendiff compare`: the paper's comparison on the built-in model in one command. A grid of methods x
 * seeds on the demo's training image (`@disendiff/builtin/compare`), cells on `--jobs` worker threads,
 * one progress bar with ETA over the grid; finished cells in `--out` are reused, so rerunning with more
 * seeds or methods only runs what is new and Ctrl-C leaves every cell resumable. Writes results.json,
 * figures/ and report.html.
 */
import { comparePlan, type CompareEvent, run } from "@disendiff/builtin/compare"
import { cellName } from "@disendiff/core/compare/Grid.js"
import { parseMethods } from "@disendiff/core/compare/Methods.js"
import { SingleBar } from "cli-progress"
import { Console, Effect, Option, Stream } from "effect"
import { Command, Flag } from "effect/cli"
import * as os from "node:os"
import { seedList } from "../Preflight.js"
import { backendLayer, backendNames, threadsFlag } from "../Backends.js"
import { makeCompareWorkers } from "../CompareWorkerPool.js"
import { UsageError } from "../Errors.js"
import { formatSeconds } from "../Progress.js"

const flags = {
  out: Flag.String("out").pipe(Flag.withDescription("output folder (results.json, report.html, figures/, runs/<method>/seed-<s>/)"), Flag.withDefault("compare")),
  methods: Flag.String("methods").pipe(
    Flag.withDescription("comma-separated: disendiff, custom-diffusion, textual-inversion, dreambooth, an ablation, trainable-qkv, trainable-attn2, dreambooth-disendiff (DreamBooth's setup with DisenDiff's attention terms), or all (default: the four methods); textual-inversion-lr<rate> / dreambooth-lr<rate> (written as 4e-5, 1.25e-4) change only that method's learning rate: its sweep"),
    Flag.optional
  ),
  ablations: Flag.String("ablations").pipe(Flag.withDescription("add the paper's ablations: all, or some of no-bind,no-separation,separate-only,no-suppression,twice-suppression,no-gaussian,all-resolutions"), Flag.optional),
  trainable: Flag.String("trainable").pipe(Flag.withDescription("add DisenDiff with other trainable sets: all, or qkv,attn2"), Flag.optional),
  calibrationWeights: Flag.String("calibration-weights").pipe(
    Flag.withDescription("add DisenDiff once per attention-term weight (IoU_alpha, official 0.01), e.g. 0.01,0.1,1: the calibration-strength sweep"),
    Flag.optional
  ),
  seeds: Flag.String("seeds").pipe(Flag.withDescription("training seeds, e.g. 1,2,3 (default 1,2,3)"), Flag.optional),
  quick: Flag.Boolean("quick").pipe(Flag.withDescription("the demo's quick settings: fewer steps and samples"), Flag.withDefault(false)),
  jobs: Flag.Int("jobs").pipe(Flag.withDescription("cells at once, each on its own worker thread (default: one per core); results are the same for any N"), Flag.optional),
  weights: Flag.String("weights").pipe(Flag.withDescription("a built-in model weights file (default: the installed one)"), Flag.optional),
  backend: Flag.Literals("backend", backendNames).pipe(Flag.withDescription("tensor backend"), Flag.withDefault("wasm" as const)),
  threads: threadsFlag,
  json: Flag.Boolean("json").pipe(Flag.withDescription("print one JSON event per line"), Flag.withDefault(false))
}

const textReporter = () => {
  const tty = process.stderr.isTTY === true
  let bar: SingleBar | undefined
  let lastLine = 0
  return {
    report: (e: CompareEvent) =>
      Effect.sync(() => {
        switch (e._tag) {
          case "Prepared":
            process.stderr.write(`comparing ${e.methods.join(", ")} over seeds ${e.seeds.join(", ")}: ${e.cells} runs in ${e.out}\n`)
            return
          case "GridStarted":
            process.stderr.write(`${e.reused} finished runs reused, ${e.cells.length - e.reused} to run, ${e.jobs} at a time\n`)
            if (tty && e.reused < e.cells.length) {
              bar = new SingleBar({ format: "grid |{bar}| {percentage}% | {finished}/{total} runs | {detail} | ETA {eta_text}", stream: process.stderr, hideCursor: true })
              bar.start(1000, 0, { finished: e.reused, total: e.cells.length, detail: "", eta_text: "?" })
            }
            return
          case "GridProgress": {
            const payload = { finished: e.finished, total: e.total, detail: `${cellName(e.cell)} ${e.detail}`, eta_text: formatSeconds(e.etaSeconds) }
            if (bar !== undefined) bar.update(Math.round(e.fraction * 1000), payload)
            else if (Date.now() - lastLine > 10_000) {
              lastLine = Date.now()
              process.stderr.write(`${(100 * e.fraction).toFixed(1)}% ${e.finished}/${e.total} runs; ${payload.detail}; ETA ${payload.eta_text}\n`)
            }
            return
          }
          case "CellFinished":
            if (!e.reused && bar === undefined) process.stderr.write(`finished ${cellName(e.cell)} in ${formatSeconds(e.seconds)}\n`)
            return
          case "GridFinished":
            bar?.stop()
            bar = undefined
            return
          case "Written":
            process.stderr.write(`results: ${e.results}\nreport: ${e.report}\n`)
            return
          default:
            return
        }
      }),
    close: Effect.sync(() => bar?.stop())
  }
}

export const compare = Command.make("compare", flags, (f) =>
  Effect.gen(function*() {
    const parsed = parseMethods({
      methods: Option.getOrUndefined(f.methods),
      ablations: Option.getOrUndefined(f.ablations),
      trainable: Option.getOrUndefined(f.trainable),
      weights: Option.getOrUndefined(f.calibrationWeights)
    })
    if (!parsed.ok) return yield* new UsageError({ message: `no method "${parsed.unknown}": choose from ${parsed.choices.join(", ")}` })
    const seeds = Option.isSome(f.seeds) ? yield* seedList("--seeds", f.seeds.value) : undefined
    const cores = Math.max(1, os.availableParallelism())
    const jobs = Option.getOrElse(f.jobs, () => cores)
    if (!(jobs >= 1 && jobs <= 64)) return yield* new UsageError({ message: `--jobs ${jobs}: give 1 to 64 worker threads` })
    const plan = comparePlan({ methods: parsed.ids, seeds, quick: f.quick })
    const weights = Option.getOrUndefined(f.weights)
    // each worker's wasm backend gets its share of the cores unless --threads says otherwise
    const threads = Option.getOrElse(f.threads, () => Math.max(1, Math.floor(cores / jobs)))
    const text = textReporter()
    yield* Effect.scoped(Effect.gen(function*() {
      const runner = jobs > 1 ? yield* makeCompareWorkers({ count: jobs, backend: f.backend, threads }) : undefined
      yield* run({ plan, out: f.out, weights, jobs, runner }).pipe(
        Stream.runForEach((e) => (f.json ? Effect.sync(() => process.stdout.write(`${JSON.stringify(e._tag === "Written" ? { ...e, summary: undefined } : e._tag === "GridFinished" ? { _tag: e._tag, seconds: e.seconds } : e)}\n`)) : text.report(e))),
        Effect.ensuring(text.close),
        Effect.provide(backendLayer(f.backend, { threads }))
      )
    }))
    if (!f.json) yield* Console.log(`report: ${f.out}/report.html`)
  })).pipe(Command.withDescription("the paper's comparison on the built-in model: methods x seeds with intervals, figures and an HTML report"))
