/**
 * The built-in model's pretraining: exact resume over a short horizon, the exported weights file, and
 * a toy backbone built from it.
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { digestOf, disendiff, tempDir } from "./cli.js"

const tiny = {
  size: { channels: [16, 32], layersPerBlock: 1, heads: 2, normGroups: 4, textHidden: 32, textLayers: 1, textHeads: 2 },
  batchSize: 4,
  gradientAccumulation: 2,
  warmupSteps: 2,
  evalEvery: 0,
  checkpointEvery: 0
}

/** A fresh folder holding `tiny.json`: the tiny configuration with `fields` over it. */
const tinyConfig = async (fields: Record<string, unknown> = {}) => {
  const dir = await tempDir()
  const config = path.join(dir, "tiny.json")
  await fs.writeFile(config, JSON.stringify({ ...tiny, ...fields }))
  return { dir, config }
}

describe("pretrain", () => {
  it("4 steps straight equal 2 steps, stop, resume to 4 (same digest); the EMA exports as a model file", async () => {
    const { dir, config } = await tinyConfig()
    const a = await disendiff(["pretrain", "--world", "shapes", "--out", path.join(dir, "a"), "--config", config, "--steps", "4"])
    expect(a.code, a.stderr).toBe(0)
    const b1 = await disendiff(["pretrain", "--out", path.join(dir, "b"), "--config", config, "--steps", "2"])
    expect(b1.code, b1.stderr).toBe(0)
    const b2 = await disendiff(["pretrain", "--out", path.join(dir, "b"), "--resume", path.join(dir, "b", "checkpoint.msgpack"), "--steps", "4"])
    expect(b2.code, b2.stderr).toBe(0)
    expect(await digestOf(path.join(dir, "b", "checkpoint.msgpack"))).toBe(await digestOf(path.join(dir, "a", "checkpoint.msgpack")))

    const weights = path.join(dir, "tiny.safetensors")
    const e = await disendiff(["export-builtin", "--checkpoint", path.join(dir, "a", "checkpoint.msgpack"), "--out", weights])
    expect(e.code, e.stderr).toBe(0)
    // float16: about 2 bytes per parameter
    const inspected = JSON.parse((await disendiff(["checkpoint", "inspect", "--json", path.join(dir, "a", "checkpoint.msgpack")])).stdout)
    expect((await fs.stat(weights)).size).toBeLessThan(2.1 * inspected.trainableParameters + 100_000)
    const s = await disendiff(["sample", "--backbone", "toy", "--model", weights, "--prompt", "a red circle on a black background", "--n", "1", "--steps", "3", "--out", path.join(dir, "s")])
    expect(s.code, s.stderr).toBe(0)
    expect((await fs.readdir(path.join(dir, "s"))).filter((f) => f.endsWith(".png"))).toHaveLength(1)
  })

  it("a config file given on resume changes only the fields it names, and not the model's size", async () => {
    const { dir, config } = await tinyConfig()
    const a = await disendiff(["pretrain", "--world", "shapes-v2", "--out", path.join(dir, "a"), "--config", config, "--steps", "2"])
    expect(a.code, a.stderr).toBe(0)
    const schedule = path.join(dir, "decay.json")
    await fs.writeFile(schedule, JSON.stringify({ decay: "cosine", decaySteps: 3, minLearningRate: 1e-5 }))
    const resumed = await disendiff(["pretrain", "--out", path.join(dir, "a"), "--resume", path.join(dir, "a", "checkpoint.msgpack"), "--config", schedule, "--steps", "4"])
    expect(resumed.code, resumed.stderr).toBe(0)
    const stored = JSON.parse((await disendiff(["checkpoint", "inspect", "--json", path.join(dir, "a", "checkpoint.msgpack")])).stdout)
    // the run's own world and batch stay (not the defaults: shapes, 32); the schedule is the file's (cosine to 1e-5 at step 3)
    expect([stored.config.world, stored.config.batchSize, stored.lastLoss.step, stored.lastLoss.lr]).toEqual(["shapes-v2", tiny.batchSize, 4, 1e-5])
    const resized = path.join(dir, "resized.json")
    await fs.writeFile(resized, JSON.stringify({ size: { ...tiny.size, channels: [8, 16] } }))
    const refused = await disendiff(["pretrain", "--out", path.join(dir, "a"), "--resume", path.join(dir, "a", "checkpoint.msgpack"), "--config", resized, "--steps", "5"])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toContain(`configuration ${resized}: "size" differs from the resumed run's`)
    expect(refused.stderr).toContain("--init")
    expect(refused.stderr.trim().split("\n")).toHaveLength(1)
  })

  it("micro-batches on worker threads give the same digest as in one thread (uneven split: 3 over 2)", async () => {
    const { dir, config } = await tinyConfig({ gradientAccumulation: 3 })
    const one = await disendiff(["pretrain", "--out", path.join(dir, "one"), "--config", config, "--steps", "3", "--workers", "1"])
    expect(one.code, one.stderr).toBe(0)
    const two = await disendiff(["pretrain", "--out", path.join(dir, "two"), "--config", config, "--steps", "3", "--workers", "2"])
    expect(two.code, two.stderr).toBe(0)
    expect(await digestOf(path.join(dir, "two", "checkpoint.msgpack"))).toBe(await digestOf(path.join(dir, "one", "checkpoint.msgpack")))
    const zero = await disendiff(["pretrain", "--out", path.join(dir, "zero"), "--config", config, "--steps", "1", "--workers", "0"])
    expect(zero.code).toBe(1)
    expect(zero.stderr).toContain("--workers 0: use 1 or more")
  })

  it("Ctrl-C with worker threads saves a checkpoint that resumes to the uninterrupted run's digest", async () => {
    const { dir, config } = await tinyConfig()
    let sent = false
    const r = await disendiff(["pretrain", "--out", path.join(dir, "i"), "--config", config, "--steps", "400", "--workers", "2", "--json"], {
      onStdoutLine: (line, kill) => {
        if (!sent && line.includes('"step":2,')) {
          sent = true
          kill("SIGINT")
        }
      }
    })
    expect(r.code).toBe(130)
    const stopped = Number(/interrupted after step (\d+)/.exec(r.stderr)?.[1])
    expect(stopped).toBeGreaterThanOrEqual(2)
    expect(stopped).toBeLessThan(400)
    const target = String(stopped + 2)
    const resumed = await disendiff(["pretrain", "--out", path.join(dir, "i"), "--resume", path.join(dir, "i", "checkpoint.msgpack"), "--steps", target])
    expect(resumed.code, resumed.stderr).toBe(0)
    const straight = await disendiff(["pretrain", "--out", path.join(dir, "s"), "--config", config, "--steps", target, "--workers", "1"])
    expect(straight.code, straight.stderr).toBe(0)
    expect(await digestOf(path.join(dir, "i", "checkpoint.msgpack"))).toBe(await digestOf(path.join(dir, "s", "checkpoint.msgpack")))
  })

  it("builtin-report writes the weights' digest, the training curve and the gate into the docs' markers (a world v2 model seeded from v1)", async () => {
    const dir = await tempDir()
    await fs.writeFile(path.join(dir, "tiny.json"), JSON.stringify({ ...tiny, evalEvery: 2, evalSamples: 2, evalSteps: 2 }))
    const v1 = await disendiff(["pretrain", "--out", path.join(dir, "v1"), "--config", path.join(dir, "tiny.json"), "--steps", "2"])
    expect(v1.code, v1.stderr).toBe(0)
    const run = await disendiff([
      "pretrain", "--world", "shapes-v2", "--init", path.join(dir, "v1", "checkpoint.msgpack"), "--out", path.join(dir, "a"), "--config", path.join(dir, "tiny.json"), "--steps", "2"
    ])
    expect(run.code, run.stderr).toBe(0)
    const weights = path.join(dir, "w.safetensors")
    await disendiff(["export-builtin", "--checkpoint", path.join(dir, "a", "checkpoint.msgpack"), "--out", weights])
    const docs = path.join(dir, "doc.md")
    const markers = ["weights", "curve", "gate"].map((m) => `<!-- ${m}:begin -->\n<!-- ${m}:end -->`).join("\n\nKEEP-ME\n\n")
    await fs.writeFile(docs, markers)
    const r = await disendiff([
      "builtin-report", "--checkpoint", path.join(dir, "a", "checkpoint.msgpack"), "--weights", weights, "--gate",
      "--n", "2", "--samples", "2", "--steps", "2", "--docs", docs
    ])
    expect(r.code, r.stderr).toBe(0)
    const text = await fs.readFile(docs, "utf8")
    const sha = createHash("sha256").update(await fs.readFile(weights)).digest("hex")
    expect(text).toContain(`SHA-256 \`${sha}\``)
    expect(text).toContain("pretraining step 2")
    expect(text).toMatch(/\| 2 \| 16 \| \d\.\d{4} \|/)
    expect(text).toMatch(/\| one object all correct \| 80% \| \d+% \| (pass|FAIL) \|/)
    // world v2: the model is read with v2's words, and its unnamed variation is measured
    expect(text).toContain("(world shapes-v2)")
    // sampled without guidance (the model's own distribution), in the gate and in pretraining's evaluations
    expect(text).toMatch(/\| colourless objects drawn two-tone \(samples \d+% at guidance 1, renders \d+%, \d+ objects\) \| within 15% \| -?\d+ points \| (pass|FAIL) \|/)
    expect(text).toMatch(/\| two-tone \|/)
    expect(text).toMatch(/\| \d+% \/ \d+% \(g 1\) \|/)
    expect(text).toMatch(/both novel concepts in samples of "a <v1> circle and a <v2> square/)
    // each concept alone on each background
    for (const prompt of ["a <v1> circle on a black background", "a <v2> square on a white background"]) {
      expect(text).toMatch(new RegExp(`\\| the concept in samples of "${prompt}" \\(1 samples\\) \\| 60% \\| \\d+% \\| (pass|FAIL) \\|`))
    }
    expect(text.split("KEEP-ME")).toHaveLength(3)
  }, 600_000)

  it("the built-in model rejects words outside its world, naming the word", async () => {
    const dir = await tempDir()
    await fs.writeFile(path.join(dir, "tiny.json"), JSON.stringify(tiny))
    await disendiff(["pretrain", "--out", path.join(dir, "a"), "--config", path.join(dir, "tiny.json"), "--steps", "1"])
    const weights = path.join(dir, "w.safetensors")
    await disendiff(["export-builtin", "--checkpoint", path.join(dir, "a", "checkpoint.msgpack"), "--out", weights])
    const s = await disendiff(["sample", "--backbone", "toy", "--model", weights, "--prompt", "a photo of a cat", "--n", "1", "--steps", "2", "--out", path.join(dir, "s")])
    expect(s.code).toBe(1)
    expect(s.stderr).toContain("unknown word 'photo'")
    expect(s.stderr).toContain("use only these words: a, and, on, background, circle")
  })

  it("recipe-search trains each variant once at equal samples, reuses finished runs, and writes both tables", async () => {
    const dir = await tempDir()
    const docs = path.join(dir, "doc.md")
    await fs.writeFile(docs, "# t\n<!-- recipes:begin -->\nold\n<!-- recipes:end -->\nmiddle\n<!-- samplers:begin -->\n<!-- samplers:end -->\n")
    const args = ["recipe-search", "--out", path.join(dir, "runs"), "--steps", "2", "--batch", "2", "--n", "1", "--only", "base,batch-x2", "--docs", docs]
    const first = await disendiff(args)
    expect(first.code, first.stderr).toBe(0)
    expect(first.stderr).toContain("base: training")
    const inspect = async (name: string) =>
      JSON.parse((await disendiff(["checkpoint", "inspect", "--json", path.join(dir, "runs", name, "checkpoint.msgpack")])).stdout)
    // equal compute: batch-x2 takes half the steps at twice the batch
    expect((await inspect("base")).step).toBe(2)
    expect((await inspect("batch-x2")).step).toBe(1)
    const again = await disendiff([...args, "--sampler-checkpoint", path.join(dir, "runs", "base", "checkpoint.msgpack")])
    expect(again.code, again.stderr).toBe(0)
    expect(again.stderr).not.toContain("training")
    expect(again.stderr).not.toContain("evaluating")
    const text = await fs.readFile(docs, "utf8")
    expect(text).not.toContain("old")
    expect(text).toContain("middle")
    expect(text.match(/^\| (base|batch-x2) \|/gm)).toHaveLength(2)
    expect(text).toContain("| x0 not clipped |")
    expect(text).toContain("| guidance 7.5 |")
  }, 600_000) // two short pretraining runs, their evaluations and a rerun: over 2 minutes on a loaded 2-core machine
})
