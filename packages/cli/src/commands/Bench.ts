/**
 * `disendiff bench`: timing of a diffusers UNet (`--model DIR`: a full folder, its unet/ subfolder or
 * a UNet-only folder), optionally at 1, 2, 4, ... threads (`--scaling`), or the whole suite
 * (`--suite`, what `npm run bench` runs), which writes bench/results/<date>-<backend>.json and
 * regenerates the tables in docs/benchmarks.md between their markers.
 */
import { Bench } from "@disendiff/core"
import { BenchSuite } from "@disendiff/builtin"
import { Console, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { spawn } from "node:child_process"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { backendLayer, backendNames, defaultThreads, threadsFlag } from "../Backends.js"
import { UsageError } from "../Errors.js"

const begin = "<!-- bench:begin -->"
const end = "<!-- bench:end -->"

const machine = () => `${os.cpus().length} vCPU ${os.cpus()[0]?.model ?? ""}, Node ${process.version}`

/** `disendiff demo --threads N` in a child process, timed from start to exit (the demo's own output discarded). */
const demoSeconds = (threads: number) =>
  Effect.promise(async () => {
    const out = await fs.mkdtemp(path.join(os.tmpdir(), "disendiff-bench-demo-"))
    const bin = fileURLToPath(new URL("../bin.js", import.meta.url))
    const t0 = performance.now()
    const code = await new Promise<number | null>((resolve, reject) => {
      const child = spawn(process.execPath, [bin, "demo", "--out", out, "--threads", String(threads), "--json"], { stdio: ["ignore", "ignore", "inherit"] })
      child.on("error", reject)
      child.on("close", resolve)
    })
    const seconds = (performance.now() - t0) / 1000
    await fs.rm(out, { recursive: true, force: true })
    if (code !== 0) throw new Error(`the timed demo exited with code ${code}`)
    return seconds
  })

/** Runs a child process to its end: exit code and stdout (stderr passed through only when asked). */
const run = (command: string, args: ReadonlyArray<string>, stderr: "ignore" | "inherit") =>
  new Promise<{ code: number | null; stdout: string }>((resolve) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", stderr] })
    let stdout = ""
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()))
    child.on("error", () => resolve({ code: null, stdout }))
    child.on("close", (code) => resolve({ code, stdout }))
  })

/** The PyTorch peer script (bench/torch/unet_timing.py at the repository root). */
const peerScript = fileURLToPath(new URL("../../../../bench/torch/unet_timing.py", import.meta.url))

/**
 * The Python that runs the peer: `--torch auto` takes the first of python3, /usr/bin/python3 that imports
 * torch (Debian's python3-torch is torch 1.13, the reference's), `--torch none` none, else the given one.
 */
const torchPython = (choice: string) =>
  Effect.promise(async () => {
    if (choice === "none") return undefined
    for (const python of choice === "auto" ? ["python3", "/usr/bin/python3"] : [choice]) {
      if ((await run(python, ["-c", "import torch, numpy"], "ignore")).code === 0) return python
    }
    process.stderr.write(`bench: no Python with torch and numpy (${choice === "auto" ? "python3, /usr/bin/python3" : choice}); ratios use the stored reference (fixtures/sd-tiny/torch-cpu-timing.json). Debian: bash scripts/install-torch.sh\n`)
    return undefined
  })

/** PyTorch on a suite case in this run, on the same number of threads as ours. */
const torchPeer = (python: string, f: { fixtures: string; runs: number; threads: number }) => (c: BenchSuite.TorchCase) =>
  Effect.promise(async (): Promise<BenchSuite.TorchTiming | undefined> => {
    const r = await run(python, [peerScript, "--case", c, "--fixtures", f.fixtures, "--threads", String(f.threads), "--runs", String(f.runs), "--profile"], "inherit")
    const last = r.stdout.trim().split("\n").pop() ?? ""
    if (r.code !== 0 || !last.startsWith("{")) {
      process.stderr.write(`bench: the PyTorch peer failed on case ${c} (exit ${r.code}); that case uses the stored reference\n`)
      return undefined
    }
    const j = JSON.parse(last)
    return { forwardSeconds: j.forward.min_s, forwardBackwardSeconds: j.forward_backward.min_s, source: "side-by-side", threads: j.threads, version: j.torch, profileMs: j.profile_ms }
  })

const runSuite = (f: { fixtures: string; runs: number; backend: (typeof backendNames)[number]; threads: number; scaling: boolean; demo: boolean; medium: boolean; conditions: Option.Option<string>; torch: string }) =>
  Effect.gen(function*() {
    const wasm = f.backend === "wasm"
    const python = yield* torchPython(f.torch)
    const results = yield* BenchSuite.runSuite(f.fixtures, {
      ...(python === undefined ? {} : { torchPeer: torchPeer(python, { fixtures: f.fixtures, runs: f.runs, threads: wasm ? f.threads : 1 }) }),
      runs: f.runs,
      skipMedium: !f.medium,
      onCase: (name) => Effect.sync(() => process.stderr.write(`bench: ${name}\n`)),
      ...(wasm
        ? {
          threads: f.threads,
          withThreads: (n: number) => Effect.provide(backendLayer("wasm", { threads: n })),
          scaling: f.scaling ? BenchSuite.scalingCounts(f.threads) : []
        }
        : {}),
      ...(f.demo ? { demoSeconds: demoSeconds(f.threads) } : {})
    })
    const date = new Date().toISOString().slice(0, 10)
    const meta = { date, backend: f.backend, machine: machine(), threads: wasm ? f.threads : 1, ...(Option.isSome(f.conditions) ? { conditions: f.conditions.value } : {}) }
    const table = BenchSuite.markdownTable(results, meta)
    yield* Effect.promise(async () => {
      await fs.mkdir("bench/results", { recursive: true })
      await fs.writeFile(path.join("bench/results", `${date}-${f.backend}.json`), JSON.stringify({ ...meta, results }, null, 2))
      const docs = "docs/benchmarks.md"
      const text = await fs.readFile(docs, "utf8").catch(() => `# Benchmarks\n\n${begin}\n${end}\n`)
      const [before, rest] = text.split(begin)
      const after = rest?.split(end)[1] ?? ""
      await fs.writeFile(docs, `${before}${begin}\n${table}\n${end}${after}`)
    })
    yield* Console.log(table)
  })

export const bench = Command.make(
  "bench",
  {
    model: Flag.String("model").pipe(Flag.withDescription("a diffusers folder, its unet/ subfolder, or a UNet-only folder (config.json + weights) to time"), Flag.optional),
    batch: Flag.Int("batch").pipe(Flag.withDescription("batch size"), Flag.withDefault(2)),
    size: Flag.String("size").pipe(Flag.withDescription("latent size HxW"), Flag.withDefault("16x16")),
    grads: Flag.Literals("grads", ["kv", "all"]).pipe(Flag.withDescription("kv: attn2 to_k/to_v and the conditioning; all: every parameter"), Flag.withDefault("kv" as const)),
    runs: Flag.Int("runs").pipe(Flag.withDescription("timed runs after the warm-up (median and minimum reported)"), Flag.withDefault(5)),
    backend: Flag.Literals("backend", backendNames).pipe(Flag.withDescription("tensor backend"), Flag.withDefault("wasm" as const)),
    threads: threadsFlag,
    scaling: Flag.Boolean("scaling").pipe(Flag.withDescription("also time 1, 2, 4, ... threads up to --threads (wasm): the scaling table"), Flag.withDefault(false)),
    json: Flag.Boolean("json").pipe(Flag.withDescription("print one JSON object"), Flag.withDefault(false)),
    suite: Flag.Boolean("suite").pipe(Flag.withDescription("run the benchmark suite (with --scaling) and update docs/benchmarks.md"), Flag.withDefault(false)),
    skipMedium: Flag.Boolean("skip-medium").pipe(Flag.withDescription("suite: leave out the medium UNet (minutes per thread count)"), Flag.withDefault(false)),
    skipDemo: Flag.Boolean("skip-demo").pipe(Flag.withDescription("suite: do not time the full demo (minutes)"), Flag.withDefault(false)),
    conditions: Flag.String("conditions").pipe(Flag.withDescription("suite: what else ran on the machine, written beside the tables"), Flag.optional),
    fixtures: Flag.String("fixtures").pipe(Flag.withDescription("the sd-tiny fixture folder (suite)"), Flag.withDefault("fixtures/sd-tiny")),
    torch: Flag.String("torch").pipe(
      Flag.withDescription("suite: the Python that times PyTorch on the same UNets in the same run (bench/torch/unet_timing.py; needs torch and numpy); auto: python3 or /usr/bin/python3 if either has torch; none: use the stored reference"),
      Flag.withDefault("auto")
    )
  },
  (f) =>
    Effect.gen(function*() {
      const threads = Option.getOrElse(f.threads, defaultThreads)
      if (f.scaling && f.backend !== "wasm") return yield* new UsageError({ message: `--scaling times the wasm backend's threads; --backend ${f.backend} sizes its own` })
      if (f.suite) {
        return yield* runSuite({ fixtures: f.fixtures, runs: f.runs, backend: f.backend, threads, scaling: f.scaling || f.backend === "wasm", demo: !f.skipDemo, medium: !f.skipMedium, conditions: f.conditions, torch: f.torch }).pipe(
          Effect.provide(backendLayer(f.backend, { threads }))
        )
      }
      if (Option.isNone(f.model)) return yield* new UsageError({ message: "give --model DIR (a diffusers folder, its unet/ subfolder or a UNet-only folder) or --suite" })
      const model = f.model.value
      const size = /^(\d+)x(\d+)$/.exec(f.size)
      if (size === null) return yield* new UsageError({ message: `--size must be HxW, e.g. 16x16 (got ${f.size})` })
      const options = { batch: f.batch, height: Number(size[1]), width: Number(size[2]), grads: f.grads, runs: f.runs }
      const once = (n: number | undefined) =>
        Effect.gen(function*() {
          const { cfg, weights, contextDim } = yield* BenchSuite.loadUnet(model)
          const r = yield* Bench.benchUnet(cfg, weights, { ...options, contextDim })
          for (const t of weights.values()) t.dispose()
          return r
        }).pipe(Effect.provide(backendLayer(f.backend, { threads: n })))
      const counts = f.scaling ? BenchSuite.scalingCounts(threads) : [Option.getOrUndefined(f.threads)]
      const results = []
      for (const n of counts) results.push(yield* once(n))
      if (f.json) return yield* Console.log(JSON.stringify(f.scaling ? { scaling: results } : results[0]))
      const min = (xs: ReadonlyArray<number>) => Math.min(...xs)
      for (const r of results) {
        yield* Console.log(
          `${model} (${r.parameters} parameters) on ${r.backend}, ${r.threads} thread${r.threads === 1 ? "" : "s"}, batch ${f.batch}, ${f.size}, grads ${f.grads}:\n` +
            `  forward ${r.forwardSeconds.toFixed(4)} s (${r.forwardGflops.toFixed(1)} GFLOP/s)\n` +
            `  forward+backward ${r.forwardBackwardSeconds.toFixed(4)} s, min ${min(r.forwardBackwardRuns).toFixed(4)} s (${r.forwardBackwardGflop.toFixed(2)} GFLOP, ${r.gflops.toFixed(1)} GFLOP/s)\n` +
            `  plain matMul ${r.matmulGflops.toFixed(1)} GFLOP/s; peak ${(r.peakBytes / 2 ** 20).toFixed(0)} MiB\n` +
            `  kernels of one profiled forward+backward: ${(r.kernels ?? []).slice(0, 6).map((k) => `${k.name} ${k.ms.toFixed(1)} ms x${k.count}`).join(", ")}`
        )
      }
      if (f.scaling) {
        const one = results.find((r) => r.threads === 1)!
        yield* Console.log("\nthreads | forward s | fwd+bwd s (median / min) | speed-up over 1 thread (min)")
        for (const r of results) {
          yield* Console.log(`${String(r.threads).padStart(7)} | ${r.forwardSeconds.toFixed(4).padStart(9)} | ${r.forwardBackwardSeconds.toFixed(4)} / ${min(r.forwardBackwardRuns).toFixed(4)} | ${(min(one.forwardBackwardRuns) / min(r.forwardBackwardRuns)).toFixed(2)}x`)
        }
      }
    })
).pipe(Command.withDescription("time UNet forward and backward passes (at several thread counts with --scaling), or run the benchmark suite"))
