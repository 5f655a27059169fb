/**
 * The command line end to end on the fake backbone: exact resume through the CLI, Ctrl-C, typed errors
 * for bad input.
 */
import { encodePng } from "@disendiff/core"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { digestOf, disendiff, type LineHandler, tempDir } from "./cli.js"

let dir = ""
let image = ""
const prompt = "<v1> cat and <v2> dog"

beforeAll(async () => {
  dir = await tempDir()
  image = path.join(dir, "a.png")
  const w = 40
  const data = new Float32Array(w * w * 3).map((_, i) => ((i * 7919) % 255) / 255)
  await fs.writeFile(image, encodePng({ width: w, height: w, data }))
})

const train = (args: Array<string>, onStdoutLine?: LineHandler) =>
  disendiff(["train", "--backbone", "fake", "--image", image, "--prompt", prompt, ...args], { onStdoutLine })

describe("disendiff CLI", () => {
  it("--help lists the commands", async () => {
    const r = await disendiff(["--help"])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain("train")
    expect(r.stdout).toContain("checkpoint")
  })

  it("12 steps straight and 6 + resume to 12 give the same digest; another seed another", async () => {
    const a = await train(["--steps", "12", "--seed", "7", "--out", path.join(dir, "A")])
    expect(a.code, a.stderr).toBe(0)
    const b1 = await train(["--steps", "6", "--seed", "7", "--out", path.join(dir, "B")])
    expect(b1.code, b1.stderr).toBe(0)
    const b2 = await train(["--resume", path.join(dir, "B", "checkpoint.msgpack"), "--steps", "12", "--out", path.join(dir, "B")])
    expect(b2.code, b2.stderr).toBe(0)
    const c = await train(["--steps", "12", "--seed", "8", "--out", path.join(dir, "C")])
    expect(c.code, c.stderr).toBe(0)
    const [da, db, dc] = await Promise.all(["A", "B", "C"].map((d) => digestOf(path.join(dir, d, "checkpoint.msgpack"))))
    expect(db).toBe(da)
    expect(dc).not.toBe(da)
  })

  it("Ctrl-C saves a checkpoint at the current step, and resuming from it is exact", async () => {
    const out = path.join(dir, "S")
    let sent = false
    const r = await train(["--steps", "400", "--seed", "7", "--out", out, "--json"], (line, kill) => {
      if (!sent && line.includes('"step":5,')) {
        sent = true
        kill("SIGINT")
      }
    })
    expect(r.code).toBe(130)
    const last = JSON.parse(r.stdout.trim().split("\n").at(-1)!)
    expect(last._tag).toBe("Interrupted")
    expect(last.step).toBeGreaterThanOrEqual(5)
    expect(last.step).toBeLessThan(400)
    const inspected = JSON.parse((await disendiff(["checkpoint", "inspect", "--json", path.join(out, "checkpoint.msgpack")])).stdout)
    expect(inspected.step).toBe(last.step)
    const target = last.step + 3
    const resumed = await train(["--resume", path.join(out, "checkpoint.msgpack"), "--steps", String(target), "--out", out])
    expect(resumed.code, resumed.stderr).toBe(0)
    const straight = await train(["--steps", String(target), "--seed", "7", "--out", path.join(dir, "S2")])
    expect(straight.code).toBe(0)
    expect(await digestOf(path.join(out, "checkpoint.msgpack"))).toBe(await digestOf(path.join(dir, "S2", "checkpoint.msgpack")))
  })

  it("a truncated checkpoint fails inspect and resume with a message naming the file", async () => {
    const src = path.join(dir, "T0")
    expect((await train(["--steps", "2", "--out", src])).code).toBe(0)
    const bytes = await fs.readFile(path.join(src, "checkpoint.msgpack"))
    const truncated = path.join(dir, "truncated.msgpack")
    await fs.writeFile(truncated, bytes.subarray(0, bytes.length - 100))
    const inspect = await disendiff(["checkpoint", "inspect", truncated])
    expect(inspect.code).not.toBe(0)
    expect(inspect.stderr).toContain(truncated)
    const resume = await train(["--resume", truncated, "--steps", "4", "--out", path.join(dir, "T1")])
    expect(resume.code).not.toBe(0)
    expect(resume.stderr).toContain(truncated)
  })

  it("preflight: bad prompts, images and backends fail before any compute, saying what to fix", async () => {
    const noClass = await disendiff(["train", "--backbone", "fake", "--image", image, "--prompt", "a <v1> and <v2>", "--steps", "1", "--out", path.join(dir, "P")])
    expect(noClass.code).toBe(1)
    expect(noClass.stderr).toMatch(/<v1> is not followed by a class word|modifier <v2> is not followed/)
    const noModifier = await disendiff(["train", "--backbone", "fake", "--image", image, "--prompt", "a cat and a dog", "--steps", "1", "--out", path.join(dir, "P")])
    expect(noModifier.stderr).toContain("no modifier token")
    const missing = await disendiff(["train", "--backbone", "fake", "--image", path.join(dir, "nope.png"), "--prompt", prompt, "--steps", "1", "--out", path.join(dir, "P")])
    expect(missing.code).toBe(1)
    expect(missing.stderr).toContain("nope.png")
    const corrupt = path.join(dir, "corrupt.png")
    await fs.writeFile(corrupt, Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47]), Buffer.alloc(20)]))
    const bad = await disendiff(["train", "--backbone", "fake", "--image", corrupt, "--prompt", prompt, "--steps", "1", "--out", path.join(dir, "P")])
    expect(bad.code).toBe(1)
    expect(bad.stderr).toContain("corrupt.png")
    const gpu = await train(["--steps", "1", "--out", path.join(dir, "P"), "--backend", "node-gpu"])
    expect(gpu.code).toBe(1)
    expect(gpu.stderr).toContain("npm install @tensorflow/tfjs-node-gpu")
    await expect(fs.access(path.join(dir, "P", "checkpoint.msgpack"))).rejects.toThrow()
  })

  it("--config sets any TrainConfig field, flags override it, and invalid values are named", async () => {
    const good = path.join(dir, "good.json")
    await fs.writeFile(good, JSON.stringify({ backbone: "fake", image, prompt, steps: 3, seed: 11, gradientAccumulation: 1, calibration: { weight: 0.5 } }))
    const out = path.join(dir, "cfg")
    const r = await disendiff(["train", "--config", good, "--steps", "2", "--out", out, "--json"])
    expect(r.code, r.stderr).toBe(0)
    const inspected = JSON.parse((await disendiff(["checkpoint", "inspect", "--json", path.join(out, "checkpoint.msgpack")])).stdout)
    expect(inspected.step).toBe(2)
    expect(inspected.seed).toBe(11)
    expect(inspected.config.gradientAccumulation).toBe(1)
    expect(inspected.config.calibration.weight).toBe(0.5)
    expect(inspected.config.calibration.bind).toBe(true)
    const bad = path.join(dir, "bad.json")
    await fs.writeFile(bad, JSON.stringify({ backbone: "fake", image, prompt, calibration: { suppression: "thrice" } }))
    const b = await disendiff(["train", "--config", bad, "--out", path.join(dir, "cfg2")])
    expect(b.code).toBe(1)
    expect(b.stderr).toContain("bad.json")
    expect(b.stderr).toContain("suppression")
    const notJson = path.join(dir, "broken.json")
    await fs.writeFile(notJson, "{ steps: ")
    const n = await disendiff(["train", "--config", notJson, "--out", path.join(dir, "cfg3")])
    expect(n.code).toBe(1)
    expect(n.stderr).toContain("broken.json")
  })

  it("a diverging run stops at the first non-finite loss with a typed error and keeps the last good state", async () => {
    const out = path.join(dir, "nan")
    const r = await train(["--steps", "6", "--lr", "1e30", "--out", out])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/step \d+: the (loss|gradient) is not finite; the last good state is in .*checkpoint-step\d+\.msgpack\. Fix: lower the learning rate/)
    const saved = (await fs.readdir(out)).find((f) => f.startsWith("checkpoint-step"))!
    const inspected = JSON.parse((await disendiff(["checkpoint", "inspect", "--json", path.join(out, saved)])).stdout)
    expect(inspected.lastLoss === null || Number.isFinite(inspected.lastLoss.loss)).toBe(true)
  })
})
