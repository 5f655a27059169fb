import { CpuBackend, Safetensors } from "@disendiff/core"
import { Effect } from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { readToyWeights, worldOfWeights } from "../src/backbone/ToyBackbone.js"
import { tinyToySize, writeToyWeights } from "./fixtures.js"

describe("built-in weights files", () => {
  it("refuse metadata that is not JSON with a ModelError naming the file and field", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "disendiff-toy-"))
    const file = path.join(dir, "bad.safetensors")
    const tensor = { shape: [1], data: new Float32Array([0]) }
    await Effect.runPromise(Safetensors.writeSafetensors(file, new Map([["x", tensor]]), { size: "{not json" }))
    const error = await Effect.runPromise(Effect.flip(readToyWeights(file)).pipe(Effect.provide(CpuBackend.layer)))
    expect(error._tag).toBe("ModelError")
    expect(error.message).toContain(file)
    expect(error.message).toContain(`"size" is not JSON`)
  })

  it("know their world: files without a pretraining configuration are v1's", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "disendiff-toy-"))
    const file = await writeToyWeights(path.join(dir, "tiny.safetensors"), tinyToySize)
    expect(await Effect.runPromise(worldOfWeights(file))).toBe("shapes")
  })
})
