/**
 * `disendiff serve` as a user starts it (one process, SQLite in its data folder, token from the
 * environment), with one job on the built-in model through HTTP: its checkpoint's digest and its
 * sample are the same as `disendiff train` and `disendiff sample` give for the same settings and seeds.
 */
import { World } from "@disendiff/builtin"
import { encodePng } from "@disendiff/core"
import { spawn } from "node:child_process"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { digestOf, disendiff, freePort, root, tempDir } from "./cli.js"

const token = "serve-builtin-token"
const prompt = "a <v1> circle and a <v2> square on a gray background"
const samplePrompt = "a <v1> circle on a white background"
let dir = ""
let image = ""

beforeAll(async () => {
  dir = await tempDir()
  image = path.join(dir, "two.png")
  await fs.writeFile(image, encodePng(World.conceptImage({ concepts: ["ring", "split"], background: "gray" }).image))
})

afterAll(async () => {
  if (dir !== "") await fs.rm(dir, { recursive: true, force: true })
})

describe("disendiff serve", () => {
  it("a job on the built-in model through HTTP ends with the CLI's checkpoint digest and sample", async () => {
    const port = await freePort()
    const data = path.join(dir, "data")
    const server = spawn(process.execPath, [path.join(root, "packages/cli/bin/disendiff.js"), "serve", "--data", data, "--port", String(port)], {
      cwd: root,
      env: { ...process.env, DISENDIFF_API_TOKEN: token },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stderr = ""
    server.stderr!.on("data", (d: Buffer) => (stderr += d))
    const exited = new Promise<number | null>((resolve) => server.on("close", (code) => resolve(code)))
    try {
      const base = `http://127.0.0.1:${port}`
      const auth = { authorization: `Bearer ${token}` }
      // up when it answers (the OpenAPI document needs no token)
      for (let i = 0; ; i++) {
        const up = await fetch(`${base}/openapi.json`).then((r) => r.ok, () => false)
        if (up) break
        if (i > 600) throw new Error(`serve did not start: ${stderr}`)
        await new Promise((r) => setTimeout(r, 200))
      }
      const settings = { steps: 3, seed: 5, batchSize: 1, gradientAccumulation: 1 }
      const form = new FormData()
      form.append("image", new Blob([await fs.readFile(image)], { type: "image/png" }), "two.png")
      form.append("config", JSON.stringify({ prompt, ...settings, samples: { prompts: [samplePrompt], n: 1, seed: 3, steps: 4, guidance: 6 } }))
      const submitted = await fetch(`${base}/jobs`, { method: "POST", headers: auth, body: form })
      expect(submitted.status, await submitted.clone().text()).toBe(201)
      const job = (await submitted.json()) as { id: string }
      // the events stream ends when the job does
      const events = await (await fetch(`${base}/jobs/${job.id}/events`, { headers: auth })).text()
      expect(events).toContain("Succeeded")
      const record = (await (await fetch(`${base}/jobs/${job.id}`, { headers: auth })).json()) as { status: string; digest: string; files: Array<string> }
      expect(record.status).toBe("succeeded")

      const out = path.join(dir, "cli")
      const trained = await disendiff(["train", "--backbone", "toy", "--image", image, "--prompt", prompt, "--steps", "3", "--seed", "5", "--batch-size", "1", "--gradient-accumulation", "1", "--out", out])
      expect(trained.code, trained.stderr).toBe(0)
      expect(record.digest).toBe(await digestOf(path.join(out, "checkpoint.msgpack")))

      const sampled = await disendiff(["sample", "--checkpoint", path.join(out, "checkpoint.msgpack"), "--prompt", samplePrompt, "--n", "1", "--seed", "3", "--steps", "4", "--guidance", "6", "--out", path.join(dir, "samples")])
      expect(sampled.code, sampled.stderr).toBe(0)
      const png = new Uint8Array(await (await fetch(`${base}/jobs/${job.id}/files/samples/000-seed3.png`, { headers: auth })).arrayBuffer())
      expect(png).toEqual(new Uint8Array(await fs.readFile(path.join(dir, "samples", "000-seed3.png"))))
      // the token is never printed
      expect(stderr).not.toContain(token)
    } finally {
      server.kill("SIGTERM")
      await exited
    }
  }, 600_000)
})
