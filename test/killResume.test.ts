/**
 * Nothing is lost when a training run is killed (SIGKILL, no chance to clean up) at random moments,
 * checkpoint writes included: after each kill the checkpoint on disk is valid, resuming it reaches the
 * digest of the uninterrupted run exactly, and the resumed run leaves no temporary file behind. The
 * child is `node packages/cli/dist/bin.js` itself (not npx), so the signal reaches the trainer. The kill
 * moments come from a seeded generator; where each kill lands depends on the machine's speed, which is
 * the point.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { digestOf, root, tempDir } from "./cli.js"
import { encodePng } from "@disendiff/core"

const bin = path.join(root, "packages/cli/dist/bin.js")
const prompt = "<v1> cat and <v2> dog"
const steps = 40
let dir = ""
let image = ""

/** mulberry32: a small seeded generator, so the kill schedule is the same on every run. */
const generator = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = seed
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

interface Run {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly events: ReadonlyArray<{ readonly _tag: string; readonly step?: number; readonly digest?: string }>
  readonly stderr: string
}

/** `train` on the fake backbone with a checkpoint every step; killed with SIGKILL after `killAfter` stdout lines plus `delayMs`. */
const train = (args: ReadonlyArray<string>, kill?: { readonly killAfter: number; readonly delayMs: number }): Promise<Run> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, "train", "--backbone", "fake", "--image", image, "--prompt", prompt, "--seed", "7", "--steps", String(steps), "--checkpoint-every", "1", "--json", ...args], {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe"]
    })
    let pending = ""
    let stderr = ""
    let lines = 0
    let killing = false
    const events: Array<Run["events"][number]> = []
    child.stdout.on("data", (d: Buffer) => {
      pending += d
      const parts = pending.split("\n")
      pending = parts.pop()!
      for (const line of parts) {
        if (line.trim() === "") continue
        events.push(JSON.parse(line))
        lines++
        if (kill !== undefined && !killing && lines >= kill.killAfter) {
          killing = true
          // by the child's own pid: SIGKILL cannot be caught, no finalizer runs
          setTimeout(() => process.kill(child.pid!, "SIGKILL"), kill.delayMs)
        }
      }
    })
    child.stderr.on("data", (d: Buffer) => (stderr += d))
    child.on("error", reject)
    child.on("close", (code, signal) => resolve({ code, signal, events, stderr }))
  })

const temporaries = async (folder: string) => (await fs.readdir(folder).catch(() => [] as Array<string>)).filter((n) => n.endsWith(".tmp"))

beforeAll(async () => {
  dir = await tempDir()
  image = path.join(dir, "a.png")
  const w = 40
  await fs.writeFile(image, encodePng({ width: w, height: w, data: new Float32Array(w * w * 3).map((_, i) => ((i * 7919) % 255) / 255) }))
})

describe("SIGKILL during training", () => {
  it("at 10 seeded random moments: the checkpoint is valid, resuming reaches the uninterrupted digest, no temporary file remains", async () => {
    const reference = await train(["--out", path.join(dir, "reference")])
    expect(reference.code, reference.stderr).toBe(0)
    const expected = reference.events.find((e) => e._tag === "Finished")?.digest
    expect(expected).toMatch(/^[0-9a-f]{64}$/)
    expect(await digestOf(path.join(dir, "reference", "checkpoint.msgpack"))).toBe(expected)

    const random = generator(20261130)
    const out = path.join(dir, "killed")
    const checkpoint = path.join(out, "checkpoint.msgpack")
    let kills = 0
    let attempts = 0
    let leftovers = 0
    while (kills < 10) {
      attempts++
      expect(attempts, "too many runs finished before their kill").toBeLessThan(40)
      const exists = await fs.access(checkpoint).then(() => true, () => false)
      const finished = exists && (await digestOf(checkpoint)) === expected
      // continue the killed run; after a finished one, start anew over it (--overwrite keeps it aside)
      const args = exists && !finished ? ["--resume", checkpoint, "--out", out] : ["--out", out, ...(exists ? ["--overwrite"] : [])]
      const r = await train(args, { killAfter: 1 + Math.floor(random() * 30), delayMs: Math.floor(random() * 15) })
      if (r.signal !== "SIGKILL") {
        expect(r.code, r.stderr).toBe(0)
        continue
      }
      kills++
      leftovers += (await temporaries(out)).length
      if (!(await fs.access(checkpoint).then(() => true, () => false))) continue
      // valid: it reads back, at a step the run had reached
      const inspected = await digestOf(checkpoint)
      expect(inspected).toMatch(/^[0-9a-f]{64}$/)
      // exact: a copy resumed to the end has the uninterrupted digest, and its stale temporaries are gone
      const copy = path.join(dir, `resume-${kills}`)
      await fs.cp(out, copy, { recursive: true })
      const resumed = await train(["--resume", path.join(copy, "checkpoint.msgpack"), "--out", copy])
      expect(resumed.code, resumed.stderr).toBe(0)
      expect(resumed.events.find((e) => e._tag === "Finished")?.digest).toBe(expected)
      expect(await temporaries(copy)).toEqual([])
    }
    expect(kills).toBe(10)
    // the folder the kills went into: its last resume cleans up too
    const last = await train(await fs.access(checkpoint).then(() => ["--resume", checkpoint, "--out", out], () => ["--out", out]))
    expect(last.code, last.stderr).toBe(0)
    expect(last.events.find((e) => e._tag === "Finished")?.digest).toBe(expected)
    expect(await temporaries(out)).toEqual([])
    // how many kills caught a checkpoint write (informative: it depends on the machine's timing)
    console.log(`kill test: ${kills} kills in ${attempts} runs, ${leftovers} temporary files left by them`)
  }, 1_800_000)
})
