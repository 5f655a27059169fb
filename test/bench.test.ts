/**
 * `disendiff bench` on UNet-only folders (its help promises a diffusers folder, its unet/ subfolder or a
 * UNet-only folder) and the scaling table's thread counts. No timing is asserted: speed is recorded in
 * docs/benchmarks.md, not tested.
 */
import { BenchSuite } from "@disendiff/builtin"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { disendiff, root, tempDir } from "./cli.js"

describe("bench", () => {
  it("times a UNet-only folder (the folder itself or its parent holding only unet/), with its thread count", async () => {
    const dir = await tempDir()
    await fs.cp(path.join(root, "fixtures/sd-tiny/A/unet"), path.join(dir, "only", "unet"), { recursive: true })
    for (const model of [path.join(dir, "only", "unet"), path.join(dir, "only")]) {
      const r = await disendiff(["bench", "--model", model, "--runs", "1", "--threads", "1", "--json"])
      expect(r.code, r.stderr).toBe(0)
      const j = JSON.parse(r.stdout)
      expect(j.parameters).toBe(1106212)
      expect(j.threads).toBe(1)
      expect(j.forwardBackwardRuns).toHaveLength(1)
    }
    const scaled = await disendiff(["bench", "--model", path.join(dir, "only", "unet"), "--runs", "1", "--threads", "2", "--scaling", "--json"])
    expect(scaled.code, scaled.stderr).toBe(0)
    expect(JSON.parse(scaled.stdout).scaling.map((r: { threads: number }) => r.threads)).toEqual([1, 2])
    const none = await disendiff(["bench", "--model", dir, "--runs", "1"])
    expect(none.code).toBe(1)
    expect(none.stderr).toMatch(/config\.json/)
  })

  it("scaling counts: 1, 2, 4, 8 up to the maximum, and the maximum", () => {
    expect(BenchSuite.scalingCounts(1)).toEqual([1])
    expect(BenchSuite.scalingCounts(2)).toEqual([1, 2])
    expect(BenchSuite.scalingCounts(6)).toEqual([1, 2, 4, 6])
    expect(BenchSuite.scalingCounts(8)).toEqual([1, 2, 4, 8])
  })
})
