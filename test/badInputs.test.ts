/**
 * The catalogue of bad input at the command line: every case must exit non-zero with exactly one line on
 * stderr that names the input (the file, the flag or the prompt) and says what to do, and no stack trace.
 * Cases fail in the preflight (mostly on the fake backbone), so each takes about as long as the command
 * takes to start; they run as child processes, a few at a time.
 */
import { encodePng } from "@disendiff/core"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { disendiff, type Result, tempDir } from "./cli.js"

let dir = ""
const p = (...names: Array<string>) => path.join(dir, ...names)
let outputs = 0
/** An output folder no other case uses. */
const fresh = () => p(`out-${++outputs}`)
const prompt = "<v1> cat and <v2> dog"
const toyPrompt = "a <v1> circle and a <v2> square on a gray background"

/** A safetensors file from a header object (as JSON text) and a data section. */
const safetensors = (header: string, data: Buffer = Buffer.alloc(0)) => {
  const h = Buffer.from(header, "utf8")
  const n = Buffer.alloc(8)
  n.writeBigUInt64LE(BigInt(h.length))
  return Buffer.concat([n, h, data])
}

const png = (w: number, h: number) => encodePng({ width: w, height: h, data: new Float32Array(w * h * 3).map((_, i) => ((i * 7919) % 255) / 255) })

beforeAll(async () => {
  dir = await tempDir()
  await fs.writeFile(p("a.png"), png(40, 40))
  await fs.writeFile(p("world.png"), png(32, 32))
  await fs.writeFile(p("big.png"), png(48, 48))
  await fs.writeFile(p("empty.png"), Buffer.alloc(0))
  await fs.writeFile(p("corrupt.png"), Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47]), Buffer.alloc(20)]))
  await fs.writeFile(p("notes.jpg"), "these are not the pixels you are looking for\n")
  await fs.mkdir(p("folder.png"))
  await fs.writeFile(p("plain-file"), "x")

  // a finished fake run, and broken copies of its checkpoint
  const r = await disendiff(["train", "--backbone", "fake", "--image", p("a.png"), "--prompt", prompt, "--steps", "2", "--out", p("run")])
  if (r.code !== 0) throw new Error(`setup run failed: ${r.stderr}`)
  const ckpt = await fs.readFile(p("run", "checkpoint.msgpack"))
  await fs.writeFile(p("truncated.msgpack"), ckpt.subarray(0, ckpt.length - 100))
  await fs.writeFile(p("empty.msgpack"), Buffer.alloc(0))
  await fs.writeFile(p("garbage.msgpack"), Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 131) % 256)))
  await fs.writeFile(p("config.msgpack"), JSON.stringify({ step: 3 }))

  // configuration files
  await fs.writeFile(p("broken.json"), "{ steps: ")
  await fs.writeFile(p("array.json"), "[1, 2, 3]")
  await fs.writeFile(p("suppression.json"), JSON.stringify({ backbone: "fake", image: p("a.png"), prompt, calibration: { suppression: "thrice" } }))
  await fs.writeFile(p("negsteps.json"), JSON.stringify({ backbone: "fake", image: p("a.png"), prompt, steps: -3 }))
  await fs.writeFile(p("lrstring.json"), JSON.stringify({ backbone: "fake", image: p("a.png"), prompt, learningRate: "fast" }))
  await fs.writeFile(p("badbackbone.json"), JSON.stringify({ backbone: "giant", image: p("a.png"), prompt }))

  // built-in-model weights files with broken headers
  await fs.writeFile(p("meta.safetensors"), safetensors(JSON.stringify({ __metadata__: { size: "{not json" } })))
  await fs.writeFile(p("header-not-json.safetensors"), safetensors("{ this is not json"))
  await fs.writeFile(p("header-too-long.safetensors"), Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00]), Buffer.from("{}")]))
  await fs.writeFile(p("short.safetensors"), Buffer.from([1, 2, 3]))
  await fs.writeFile(
    p("offsets.safetensors"),
    safetensors(JSON.stringify({ w: { dtype: "F32", shape: [4], data_offsets: [0, 1600] } }), Buffer.alloc(16))
  )

  // Stable Diffusion model folders and files
  await fs.mkdir(p("sd-empty"))
  await fs.mkdir(p("sd-novae", "unet"), { recursive: true })
  await fs.mkdir(p("sd-novae", "text_encoder"))
  await fs.mkdir(p("sd-novae", "scheduler"))
  for (const c of ["unet", "vae", "text_encoder", "scheduler"]) await fs.mkdir(p("sd-badconfig", c), { recursive: true })
  await fs.writeFile(p("sd-badconfig", "unet", "config.json"), "{ not json")
  await fs.writeFile(p("weights.bin"), Buffer.concat([Buffer.from([0x50, 0x4b, 0x03, 0x04]), Buffer.alloc(60)]))
  await fs.writeFile(p("model.ckpt"), Buffer.alloc(64))
  await fs.mkdir(p("fixtures-empty"))
})

interface Case {
  readonly name: string
  readonly args: () => ReadonlyArray<string>
  /** What the one line must contain: the input it names (and, where useful, the fix). */
  readonly names: () => ReadonlyArray<string>
  /** Checked after the run (e.g. nothing was written). */
  readonly after?: () => Promise<void>
}

// a step count unless the case sets one: a case that wrongly passes must not train for minutes
const withSteps = (args: Array<string>, steps: string) => (args.includes("--steps") ? args : ["--steps", steps, ...args])
const fake = (...args: Array<string>) => ["train", "--backbone", "fake", "--image", p("a.png"), "--prompt", prompt, ...withSteps(args, "1")]
const fakeOut = (...args: Array<string>) => [...fake(...args), "--out", p("out-never")]
const sampleFake = (...args: Array<string>) => ["sample", "--backbone", "fake", "--prompt", prompt, ...withSteps(args.includes("--n") ? args : ["--n", "1", ...args], "2")]
const attentionFake = (...args: Array<string>) => ["attention", "--backbone", "fake", "--prompt", prompt, "--image", p("a.png"), ...withSteps(args, "2")]
const absent = (file: string) => async () => {
  await expect(fs.access(file)).rejects.toThrow()
}

const cases: ReadonlyArray<Case> = [
  // flags the parser rejects: one line, not the help screen
  { name: "train --steps abc", args: () => fakeOut("--steps", "abc"), names: () => ["--steps", "abc"] },
  { name: "train --lr abc", args: () => fakeOut("--lr", "abc"), names: () => ["--lr", "abc"] },
  { name: "train --seed 1.5", args: () => fakeOut("--seed", "1.5"), names: () => ["--seed"] },
  { name: "train --backbone giant", args: () => ["train", "--backbone", "giant", "--image", p("a.png"), "--prompt", prompt, "--steps", "1", "--out", fresh()], names: () => ["--backbone", "giant"] },
  { name: "train --backend tpu", args: () => fakeOut("--backend", "tpu"), names: () => ["--backend", "tpu"] },
  { name: "train --ablation none", args: () => fakeOut("--ablation", "none"), names: () => ["--ablation", "none"] },
  { name: "train --trainable all", args: () => fakeOut("--trainable", "all"), names: () => ["--trainable", "all"] },
  { name: "train --modifier-init random", args: () => fakeOut("--modifier-init", "random"), names: () => ["--modifier-init", "random"] },
  { name: "train --stepz 3 (unknown flag)", args: () => fakeOut("--stepz", "3"), names: () => ["--stepz"] },
  { name: "train without --out", args: () => fake(), names: () => ["--out"] },
  { name: "train --prompt without a value", args: () => ["train", "--backbone", "fake", "--image", p("a.png"), "--steps", "1", "--out", fresh(), "--prompt"], names: () => ["--prompt"] },
  { name: "sample --guidance high", args: () => [...sampleFake("--guidance", "high"), "--out", p("s")], names: () => ["--guidance", "high"] },
  { name: "disendiff trian (unknown command)", args: () => ["trian", "--out", fresh()], names: () => ["trian"] },
  // flag values out of range: the flag named, not the configuration field
  { name: "train --lr -1", args: () => fakeOut("--lr", "-1"), names: () => ["--lr -1"] },
  { name: "train --lr 0", args: () => fakeOut("--lr", "0"), names: () => ["--lr 0"] },
  { name: "train --steps 0", args: () => fakeOut("--steps", "0"), names: () => ["--steps 0"] },
  { name: "train --seed -1", args: () => fakeOut("--seed", "-1"), names: () => ["--seed -1"] },
  { name: "train --batch-size 0", args: () => fakeOut("--batch-size", "0"), names: () => ["--batch-size 0"] },
  { name: "train --gradient-accumulation 0", args: () => fakeOut("--gradient-accumulation", "0"), names: () => ["--gradient-accumulation 0"] },
  { name: "train --checkpoint-every -1", args: () => fakeOut("--checkpoint-every", "-1"), names: () => ["--checkpoint-every -1"] },
  { name: "train --generate-regularization -2", args: () => fakeOut("--generate-regularization", "-2"), names: () => ["--generate-regularization -2"] },
  { name: "sample --steps 0", args: () => [...sampleFake("--steps", "0"), "--out", p("s0")], names: () => ["--steps 0"], after: absent(p("s0")) },
  { name: "sample --steps 5000", args: () => [...sampleFake("--steps", "5000"), "--out", p("s5000")], names: () => ["--steps 5000"] },
  { name: "sample --n 0", args: () => [...sampleFake("--n", "0"), "--out", p("sn0")], names: () => ["--n 0"], after: absent(p("sn0")) },
  { name: "sample --n -1", args: () => [...sampleFake("--n", "-1"), "--out", p("sn1")], names: () => ["--n -1"] },
  { name: "sample --batch 0", args: () => [...sampleFake("--batch", "0"), "--out", p("sb0")], names: () => ["--batch 0"] },
  { name: "attention --timestep 5000", args: () => [...attentionFake("--timestep", "5000"), "--out", p("m1")], names: () => ["--timestep 5000", "999"] },
  { name: "attention --timestep -1", args: () => [...attentionFake("--timestep", "-1"), "--out", p("m2")], names: () => ["--timestep -1"] },
  { name: "attention --layers bogus", args: () => [...attentionFake("--layers", "bogus"), "--out", p("m3")], names: () => ["--layers bogus", "16x16"] },
  { name: "attention --steps 0 (sampled)", args: () => ["attention", "--backbone", "fake", "--prompt", prompt, "--steps", "0", "--out", p("m4")], names: () => ["--steps 0"] },
  // missing inputs
  { name: "train without --image", args: () => ["train", "--backbone", "fake", "--prompt", prompt, "--steps", "1", "--out", fresh()], names: () => ["--image"] },
  { name: "train without --prompt", args: () => ["train", "--backbone", "fake", "--image", p("a.png"), "--steps", "1", "--out", fresh()], names: () => ["--prompt"] },
  { name: "train --backbone sd without --model", args: () => ["train", "--backbone", "sd", "--image", p("a.png"), "--prompt", prompt, "--steps", "1", "--out", p("o-sd")], names: () => ["--model"] },
  { name: "sample --inpaint without --mask", args: () => [...sampleFake("--inpaint", p("a.png")), "--out", p("si")], names: () => ["--mask"] },
  // images
  { name: "image that does not exist", args: () => ["train", "--backbone", "fake", "--image", p("nope.png"), "--prompt", prompt, "--steps", "1", "--out", fresh()], names: () => [p("nope.png")] },
  { name: "image of zero bytes", args: () => ["train", "--backbone", "fake", "--image", p("empty.png"), "--prompt", prompt, "--steps", "1", "--out", fresh()], names: () => [p("empty.png")] },
  { name: "image with a corrupt PNG body", args: () => ["train", "--backbone", "fake", "--image", p("corrupt.png"), "--prompt", prompt, "--steps", "1", "--out", fresh()], names: () => [p("corrupt.png")] },
  { name: "image that is a text file", args: () => ["train", "--backbone", "fake", "--image", p("notes.jpg"), "--prompt", prompt, "--steps", "1", "--out", fresh()], names: () => [p("notes.jpg")] },
  { name: "image that is a folder", args: () => ["train", "--backbone", "fake", "--image", p("folder.png"), "--prompt", prompt, "--steps", "1", "--out", fresh()], names: () => [p("folder.png")] },
  { name: "built-in model: image not 32x32", args: () => ["train", "--image", p("big.png"), "--prompt", toyPrompt, "--steps", "1", "--out", p("o-big")], names: () => [p("big.png"), "32x32"] },
  { name: "attention --image missing", args: () => ["attention", "--backbone", "fake", "--prompt", prompt, "--image", p("nope.png"), "--out", p("m5")], names: () => [p("nope.png")] },
  { name: "sample --mask missing", args: () => [...sampleFake("--inpaint", p("a.png"), "--mask", p("nomask.png")), "--out", p("sm")], names: () => [p("nomask.png")] },
  // prompts
  { name: "prompt without a modifier", args: () => ["train", "--backbone", "fake", "--image", p("a.png"), "--prompt", "a cat and a dog", "--steps", "1", "--out", fresh()], names: () => ["a cat and a dog", "no modifier"] },
  { name: "modifier without a class word", args: () => ["train", "--backbone", "fake", "--image", p("a.png"), "--prompt", "a <v1> <v2> dog", "--steps", "1", "--out", fresh()], names: () => ["<v1>", "class word"] },
  { name: "modifier at the end", args: () => ["train", "--backbone", "fake", "--image", p("a.png"), "--prompt", "a cat and a dog <v1>", "--steps", "1", "--out", fresh()], names: () => ["<v1>"] },
  { name: "modifier glued to its class word", args: () => ["train", "--backbone", "fake", "--image", p("a.png"), "--prompt", "<v1>cat and <v2> dog", "--steps", "1", "--out", fresh()], names: () => ["<v1>cat"] },
  { name: "same modifier twice (fake)", args: () => ["train", "--backbone", "fake", "--image", p("a.png"), "--prompt", "<v1> cat and <v1> dog", "--steps", "1", "--out", p("o-dup")], names: () => ["<v1>", "twice"], after: absent(p("o-dup", "checkpoint.msgpack")) },
  { name: "same modifier twice (built-in)", args: () => ["train", "--image", p("world.png"), "--prompt", "a <v1> circle and a <v1> square on a gray background", "--steps", "1", "--out", p("o-dup2")], names: () => ["<v1>", "twice"] },
  { name: "built-in model: unknown word", args: () => ["train", "--image", p("world.png"), "--prompt", "a <v1> photo of <v2> dog", "--steps", "1", "--out", p("o-word")], names: () => ["photo"] },
  { name: "built-in model: five modifiers", args: () => ["train", "--image", p("world.png"), "--prompt", "a <v1> circle and a <v2> square and a <v3> triangle and a <v4> diamond and a <v5> circle", "--steps", "1", "--out", p("o-five")], names: () => ["<v5>"] },
  // configuration files
  { name: "--config that does not exist", args: () => ["train", "--config", p("nope.json"), "--steps", "1", "--out", fresh()], names: () => [p("nope.json")] },
  { name: "--config that is not JSON", args: () => ["train", "--config", p("broken.json"), "--steps", "1", "--out", fresh()], names: () => [p("broken.json"), "JSON"] },
  { name: "--config that is a JSON array", args: () => ["train", "--config", p("array.json"), "--steps", "1", "--out", fresh()], names: () => [p("array.json")] },
  { name: "--config with an unknown suppression", args: () => ["train", "--config", p("suppression.json"), "--steps", "1", "--out", fresh()], names: () => [p("suppression.json"), "suppression"] },
  { name: "--config with steps -3", args: () => ["train", "--config", p("negsteps.json"), "--out", fresh()], names: () => [p("negsteps.json"), "steps"] },
  { name: "--config with a learningRate string", args: () => ["train", "--config", p("lrstring.json"), "--steps", "1", "--out", fresh()], names: () => [p("lrstring.json"), "learningRate"] },
  { name: "--config with an unknown backbone", args: () => ["train", "--config", p("badbackbone.json"), "--steps", "1", "--out", fresh()], names: () => [p("badbackbone.json"), "backbone"] },
  { name: "--config that is a folder", args: () => ["train", "--config", p("folder.png"), "--steps", "1", "--out", fresh()], names: () => [p("folder.png")] },
  // checkpoints
  { name: "--resume of a missing checkpoint", args: () => ["train", "--resume", p("nope.msgpack"), "--out", fresh()], names: () => [p("nope.msgpack")] },
  { name: "--resume of a truncated checkpoint", args: () => ["train", "--resume", p("truncated.msgpack"), "--steps", "4", "--out", fresh()], names: () => [p("truncated.msgpack")] },
  { name: "--resume of an empty file", args: () => ["train", "--resume", p("empty.msgpack"), "--out", fresh()], names: () => [p("empty.msgpack")] },
  { name: "--resume of random bytes", args: () => ["train", "--resume", p("garbage.msgpack"), "--out", fresh()], names: () => [p("garbage.msgpack")] },
  { name: "--resume of a JSON file", args: () => ["train", "--resume", p("config.msgpack"), "--out", fresh()], names: () => [p("config.msgpack")] },
  { name: "--resume of a folder", args: () => ["train", "--resume", p("run"), "--out", fresh()], names: () => [p("run")] },
  { name: "--resume of a fake checkpoint on the built-in model", args: () => ["train", "--resume", p("run", "checkpoint.msgpack"), "--backbone", "toy", "--out", p("run")], names: () => [p("run", "checkpoint.msgpack"), "fake"] },
  { name: "--resume with another --model", args: () => ["train", "--resume", p("run", "checkpoint.msgpack"), "--model", p("meta.safetensors"), "--out", p("run")], names: () => [p("run", "checkpoint.msgpack"), "--model"] },
  { name: "checkpoint inspect of a missing file", args: () => ["checkpoint", "inspect", p("nope.msgpack")], names: () => [p("nope.msgpack")] },
  { name: "checkpoint inspect of a truncated file", args: () => ["checkpoint", "inspect", p("truncated.msgpack")], names: () => [p("truncated.msgpack")] },
  { name: "sample --checkpoint of random bytes", args: () => ["sample", "--checkpoint", p("garbage.msgpack"), "--prompt", prompt, "--out", p("sg")], names: () => [p("garbage.msgpack")] },
  { name: "sample --deltas folder missing", args: () => [...sampleFake("--deltas", p("nodeltas")), "--out", p("sd")], names: () => [p("nodeltas")] },
  // built-in-model weights files (safetensors headers)
  { name: "--model weights with non-JSON __metadata__", args: () => ["train", "--model", p("meta.safetensors"), "--image", p("world.png"), "--prompt", toyPrompt, "--steps", "1", "--out", p("o-meta")], names: () => [p("meta.safetensors"), "__metadata__"] },
  { name: "--model weights whose header is not JSON", args: () => ["train", "--model", p("header-not-json.safetensors"), "--image", p("world.png"), "--prompt", toyPrompt, "--steps", "1", "--out", fresh()], names: () => [p("header-not-json.safetensors")] },
  { name: "--model weights whose header length is huge", args: () => ["train", "--model", p("header-too-long.safetensors"), "--image", p("world.png"), "--prompt", toyPrompt, "--steps", "1", "--out", fresh()], names: () => [p("header-too-long.safetensors")] },
  { name: "--model weights of 3 bytes", args: () => ["train", "--model", p("short.safetensors"), "--image", p("world.png"), "--prompt", toyPrompt, "--steps", "1", "--out", fresh()], names: () => [p("short.safetensors")] },
  { name: "--model weights with offsets past the end", args: () => ["train", "--model", p("offsets.safetensors"), "--image", p("world.png"), "--prompt", toyPrompt, "--steps", "1", "--out", fresh()], names: () => [p("offsets.safetensors")] },
  { name: "--model weights file missing", args: () => ["train", "--model", p("nope.safetensors"), "--image", p("world.png"), "--prompt", toyPrompt, "--steps", "1", "--out", fresh()], names: () => [p("nope.safetensors")] },
  // Stable Diffusion model folders
  { name: "sd --model folder missing", args: () => ["train", "--backbone", "sd", "--model", p("no-sd"), "--image", p("a.png"), "--prompt", prompt, "--steps", "1", "--out", fresh()], names: () => ["no-sd"] },
  { name: "sd --model folder empty", args: () => ["train", "--backbone", "sd", "--model", p("sd-empty"), "--image", p("a.png"), "--prompt", prompt, "--steps", "1", "--out", fresh()], names: () => ["sd-empty"] },
  { name: "sd --model folder without vae/", args: () => ["train", "--backbone", "sd", "--model", p("sd-novae"), "--image", p("a.png"), "--prompt", prompt, "--steps", "1", "--out", fresh()], names: () => ["sd-novae", "vae"] },
  { name: "sd --model with a non-JSON unet config", args: () => ["train", "--backbone", "sd", "--model", p("sd-badconfig"), "--image", p("a.png"), "--prompt", prompt, "--steps", "1", "--out", fresh()], names: () => ["sd-badconfig", "config.json"] },
  { name: "sd --model weights.bin (PyTorch zip)", args: () => ["train", "--backbone", "sd", "--model", p("weights.bin"), "--image", p("a.png"), "--prompt", prompt, "--steps", "1", "--out", fresh()], names: () => ["weights.bin", "safetensors"] },
  { name: "sd --model model.ckpt", args: () => ["train", "--backbone", "sd", "--model", p("model.ckpt"), "--image", p("a.png"), "--prompt", prompt, "--steps", "1", "--out", fresh()], names: () => ["model.ckpt", "safetensors"] },
  { name: "check-model --fixtures missing", args: () => ["check-model", "--fixtures", p("no-fixtures")], names: () => ["no-fixtures"] },
  { name: "check-model --fixtures without a manifest", args: () => ["check-model", "--fixtures", p("fixtures-empty")], names: () => ["fixtures-empty"] },
  // output paths: found before any work
  { name: "train --out is a file", args: () => fake("--out", p("plain-file")), names: () => [p("plain-file"), "file"] },
  { name: "train --out under a file", args: () => fake("--out", p("plain-file", "run")), names: () => [p("plain-file"), "file"] },
  { name: "train --out in a read-only place", args: () => fake("--out", "/proc/disendiff-out"), names: () => ["/proc/disendiff-out"] },
  { name: "train --out holding another run", args: () => fake("--out", p("run")), names: () => [p("run"), "--resume", "--overwrite"] },
  { name: "sample --out under a file", args: () => [...sampleFake(), "--out", p("plain-file", "samples")], names: () => [p("plain-file")] },
  { name: "sample --out in a read-only place", args: () => [...sampleFake(), "--out", "/proc/disendiff-samples"], names: () => ["/proc/disendiff-samples"] },
  { name: "attention --out is a file", args: () => [...attentionFake(), "--out", p("plain-file")], names: () => [p("plain-file")] },
  { name: "builtin-report --docs that does not exist", args: () => ["builtin-report", "--gate", "--docs", p("nope.md")], names: () => [p("nope.md"), "--docs"] },
  { name: "builtin-report --docs without the gate's markers", args: () => ["builtin-report", "--gate", "--docs", p("plain-file")], names: () => [p("plain-file"), "<!-- weights:begin -->"] },
  { name: "recipe-search --docs that does not exist", args: () => ["recipe-search", "--out", fresh(), "--docs", p("nope.md")], names: () => [p("nope.md")] },
  { name: "checkpoint export --out is a file", args: () => ["checkpoint", "export", p("run", "checkpoint.msgpack"), "--out", p("plain-file")], names: () => [p("plain-file")] }
]

/** At most this many children at once: the suite runs on a loaded 2-core machine. */
const concurrency = Math.max(2, Math.min(4, os.availableParallelism()))
let running = 0
const waiting: Array<() => void> = []
const limited = async <A>(f: () => Promise<A>): Promise<A> => {
  if (running >= concurrency) await new Promise<void>((resolve) => waiting.push(resolve))
  running++
  try {
    return await f()
  } finally {
    running--
    waiting.shift()?.()
  }
}

const stackTrace = /^\s+at\s.+(:\d+|\(native\)|<anonymous>)/m

describe("bad input: one line naming the input and the fix, exit code non-zero, no stack trace", () => {
  it("the catalogue has at least 60 cases with distinct names", () => {
    expect(cases.length).toBeGreaterThanOrEqual(60)
    expect(new Set(cases.map((c) => c.name)).size).toBe(cases.length)
  })

  for (const c of cases) {
    it.concurrent(c.name, async () => {
      const args = c.args()
      const r: Result = await limited(() => disendiff(args))
      const context = `${args.join(" ")}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`
      expect(r.code, context).not.toBe(0)
      expect(r.code, context).not.toBe(null)
      expect(r.stderr, context).not.toMatch(stackTrace)
      const lines = r.stderr.split("\n").filter((l) => l.trim() !== "")
      expect(lines, context).toHaveLength(1)
      expect(lines[0], context).toMatch(/^error: /)
      expect(lines[0], context).toMatch(/Fix: |fix: |--help/)
      for (const n of c.names()) expect(lines[0], context).toContain(n)
      // no help screen on stdout either
      expect(r.stdout, context).not.toContain("USAGE")
      await c.after?.()
    }, 600_000)
  }
})
