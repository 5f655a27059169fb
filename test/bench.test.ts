/**
 * `disendiff bench` on UNet-only folders (its help promises a diffusers folder, its unet/ subfolder or a
 * UNet-only folder) and the scaling table's thread counts. No timing is asserted: speed is recorded in
 * docs/benchmarks.md, not tested.
 */
import { BenchSuite } from "@disendiff/builtin"
import { spawnSync } from "node:child_process"
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

  it("the table names where PyTorch's numbers come from and divides by the right ones", () => {
    const unet = (threads: number, fwd: number, fb: number) => ({
      backend: "wasm", threads, parameters: 1, forwardSeconds: fwd, forwardBackwardSeconds: fb, forwardGflop: 1, forwardBackwardGflop: 3,
      gflops: 1, forwardGflops: 1, matmulGflops: 10, peakBytes: 2 ** 20, forwardRuns: [fwd, fwd * 2], forwardBackwardRuns: [fb * 2, fb]
    })
    const row = (torch: BenchSuite.TorchTiming): BenchSuite.CaseResult => ({
      name: "fixture A (all)", description: "", unet: { ...unet(2, 0.2, 0.6), batch: 2, size: "16x16", grads: "all" }, torch,
      scaling: [unet(1, 0.3, 0.9), unet(2, 0.2, 0.6)]
    })
    const meta = { date: "2026-12-01", backend: "wasm", machine: "test", threads: 2 }
    const side = BenchSuite.markdownTable([row({ forwardSeconds: 0.1, forwardBackwardSeconds: 0.2, source: "side-by-side", threads: 2, version: "1.13.0a0" })], meta)
    expect(side).toContain("| 0.100 / 0.200 | 2.00x, 3.00x |")
    expect(side).toContain("PyTorch: timed side by side in this run (bench/torch/unet_timing.py, torch 1.13.0a0, 2 threads).")
    expect(side).toContain("| fixture A | 1 | 0.300 | 0.900 / 0.900 | 1.00x | 10.0 | 4.50x |")
    // with both profiles: products, transposes and the rest on our side, products and the rest on PyTorch's
    const kernels = [{ name: "BatchMatMul", count: 3, ms: 300 }, { name: "Conv2D", count: 2, ms: 100 }, { name: "Transpose", count: 4, ms: 50 }, { name: "Add", count: 5, ms: 25 }]
    const profiled = row({ forwardSeconds: 0.1, forwardBackwardSeconds: 0.2, source: "side-by-side", threads: 2, profileMs: { "aten::bmm": 60, "aten::convolution_backward": 40, "aten::_softmax": 30 } })
    const split = BenchSuite.markdownTable([{ ...profiled, unet: { ...profiled.unet!, kernels } }], meta)
    expect(split).toContain("| fixture A | 400 / 50 / 25, 14 | 100 / 30 | 2.00x |")
    expect(side).not.toContain("Where one forward+backward's time goes")
    const stored = BenchSuite.markdownTable([row({ forwardSeconds: 0.1, forwardBackwardSeconds: 0.3, source: "reference", threads: 2, version: "1.13.0a0" })], meta)
    expect(stored).toContain("the stored reference of another machine and day")
    expect(stored).toContain("| 2.00x, 2.00x |")
  })

  // The peer needs torch (Debian's python3-torch, scripts/install-torch.sh): skipped without it unless
  // DISENDIFF_REQUIRE_TORCH is set, as CI sets it.
  const python = ["python3", "/usr/bin/python3"].find((p) => spawnSync(p, ["-c", "import torch, numpy"]).status === 0)
  const required = (process.env["DISENDIFF_REQUIRE_TORCH"] ?? "") !== ""
  it.skipIf(python === undefined && !required)("the PyTorch peer is diffusers' UNet: fixture A's weights load strictly and its output matches", () => {
    if (python === undefined) throw new Error("no python3 with torch and numpy and DISENDIFF_REQUIRE_TORCH is set: run scripts/install-torch.sh")
    const r = spawnSync(python!, [path.join(root, "bench/torch/unet_timing.py"), "--check", path.join(root, "fixtures/sd-tiny/A")], { encoding: "utf8" })
    expect(r.status, r.stderr).toBe(0)
    const j = JSON.parse(r.stdout.trim().split("\n").pop()!)
    expect(j.parameters).toBe(1106212)
    // float32 against diffusers' float32 output (fixtures/sd-tiny/README.md: tolerances)
    expect(j.max_abs_error).toBeLessThan(1e-4)
  })

  it("scaling counts: 1, 2, 4, 8 up to the maximum, and the maximum", () => {
    expect(BenchSuite.scalingCounts(1)).toEqual([1])
    expect(BenchSuite.scalingCounts(2)).toEqual([1, 2])
    expect(BenchSuite.scalingCounts(6)).toEqual([1, 2, 4, 6])
    expect(BenchSuite.scalingCounts(8)).toEqual([1, 2, 4, 8])
  })
})
