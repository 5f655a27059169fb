/**
 * Parity with diffusers/transformers on fixtures/sd-tiny (vendored, see fixtures/README.md) through `disendiff check-model`,
 * on wasm and on the independent cpu backend, and proof that the check fails when a reference output
 * is wrong.
 */
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { disendiff, root, tempDir } from "./cli.js"

const fixtures = path.resolve(root, "fixtures/sd-tiny")

describe("check-model", () => {
  for (const backend of ["wasm", "cpu"]) {
    it(`passes every tensor of the sd-tiny fixtures on ${backend}`, async () => {
      const r = await disendiff(["check-model", "--fixtures", fixtures, "--backend", backend, "--json"])
      expect(r.code, r.stderr).toBe(0)
      const report = JSON.parse(r.stdout)
      expect(report.failed).toBe(0)
      expect(report.rows.length).toBeGreaterThanOrEqual(125)
      const fixtureKinds = new Set(report.rows.map((row: { fixture: string }) => row.fixture))
      for (const kind of ["clip", "unet", "attn_probs", "unet_grads", "vae", "ddim", "scheduler_tables.safetensors"]) expect(fixtureKinds).toContain(kind)
    }, 400_000)
  }

  it("fails, naming the tensor, when a reference output disagrees", async () => {
    // same layout as fixtures/, so that the manifest's ../data/ vocabulary resolves
    const top = await tempDir()
    const dir = path.join(top, "sd-tiny")
    await fs.cp(fixtures, dir, { recursive: true })
    await fs.symlink(path.resolve(fixtures, "../data"), path.join(top, "data"))
    await fs.chmod(path.join(dir, "A"), 0o755)
    const file = path.join(dir, "A", "unet_io.safetensors")
    await fs.chmod(file, 0o644)
    const bytes = await fs.readFile(file)
    const n = Number(bytes.readBigUInt64LE(0))
    const entries = JSON.parse(bytes.subarray(8, 8 + n).toString("utf8"))
    const begin = 8 + n + entries.out.data_offsets[0]
    bytes.writeFloatLE(bytes.readFloatLE(begin + 40) + 0.01, begin + 40) // one element of `out`
    await fs.writeFile(file, bytes)
    const r = await disendiff(["check-model", "--fixtures", dir, "--backend", "wasm"])
    expect(r.code).toBe(1)
    expect(r.stdout).toMatch(/A\/unet\s+out\s+1\.00e-2\s+\S+\s+FAIL/)
    expect(r.stdout).toMatch(/\d+ pass, 1 fail/)
  }, 200_000)
})
