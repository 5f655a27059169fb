/**
 * `disendiff train --backbone toy` (the built-in model) on small stand-in weights: it trains on a world
 * image, and bad input (words outside the world, more modifiers than the model reserves, an image of
 * the wrong size or format, a missing weights file) fails before any training with a message that
 * names the input and the fix.
 */
import { encodePng } from "@disendiff/core"
import { World } from "@disendiff/builtin"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { tempDir } from "../packages/core/test/fixtures.js"
import { writeToyWeights } from "../packages/builtin/test/fixtures.js"
import { disendiff } from "./cli.js"

let dir = ""
let weights = ""
let image = ""
const prompt = "a <v1> circle and a <v2> square on a gray background"

beforeAll(async () => {
  dir = await tempDir()
  weights = await writeToyWeights(path.join(dir, "tiny.safetensors"))
  image = path.join(dir, "two.png")
  await fs.writeFile(image, encodePng(World.conceptImage({ concepts: ["ring", "split"], background: "gray" }).image))
})

const train = (args: { prompt?: string; image?: string; weights?: string }, out: string) =>
  disendiff([
    "train",
    "--backbone",
    "toy",
    "--model",
    args.weights ?? weights,
    "--image",
    args.image ?? image,
    "--prompt",
    args.prompt ?? prompt,
    "--steps",
    "2",
    "--out",
    path.join(dir, out)
  ])

/** Failed with exit code 1 before writing a checkpoint. */
const refused = async (r: Awaited<ReturnType<typeof train>>, out: string) => {
  expect(r.code).toBe(1)
  await expect(fs.access(path.join(dir, out, "checkpoint.msgpack"))).rejects.toThrow()
  return r.stderr
}

describe("train --backbone toy", () => {
  it("trains on a world image and its caption", async () => {
    const r = await train({}, "ok")
    expect(r.code, r.stderr).toBe(0)
    await fs.access(path.join(dir, "ok", "checkpoint.msgpack"))
  })

  it("a class word outside the world's vocabulary: names the word and lists the vocabulary", async () => {
    const e = await refused(await train({ prompt: "a <v1> cat and a <v2> square on a gray background" }, "cat"), "cat")
    expect(e).toContain('unknown word "cat"')
    expect(e).toContain("circle, square, triangle, diamond")
    const grammar = await refused(await train({ prompt: "<v1> circle and <v2> square" }, "grammar"), "grammar")
    expect(grammar).toContain('expected "a" to begin an object')
  })

  it("more modifiers than the model reserves, or more objects than an image holds", async () => {
    const five = "a <v1> circle and a <v2> square and a <v3> triangle and a <v4> diamond and a <v5> circle"
    const e = await refused(await train({ prompt: five }, "five"), "five")
    expect(e).toContain("reserves 4 modifier tokens, but 5 were asked for")
    expect(e).toContain("at most 4 concepts")
    const four = await refused(await train({ prompt: "a <v1> circle and a <v2> square and a <v3> triangle and a <v4> diamond" }, "four"), "four")
    expect(four).toContain("it names 4 objects")
  })

  it("an image of the wrong size or format: names the file and says what to give", async () => {
    const big = path.join(dir, "big.png")
    await fs.writeFile(big, encodePng({ width: 40, height: 40, data: new Float32Array(40 * 40 * 3).fill(0.5) }))
    const size = await refused(await train({ image: big }, "big"), "big")
    expect(size).toContain(big)
    expect(size).toContain("40x40")
    expect(size).toContain("give a 32x32 PNG")
    const text = path.join(dir, "notes.png")
    await fs.writeFile(text, "not an image")
    const format = await refused(await train({ image: text }, "text"), "text")
    expect(format).toContain(text)
    expect(format).toContain("give a readable PNG or JPEG image")
  })

  it("a missing weights file", async () => {
    const missing = path.join(dir, "missing.safetensors")
    const e = await refused(await train({ weights: missing }, "missing"), "missing")
    expect(e).toContain(missing)
    expect(e).toContain("disendiff export-builtin")
  })
})
