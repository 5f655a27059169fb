/**
 * Stable Diffusion end to end on a small SD-layout folder (fixture A's models, a tokenizer made here):
 * training with calibration, sampling, attention maps, Custom Diffusion export, and loader errors.
 */
import { encodePng } from "@disendiff/core"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { PNG } from "pngjs"
import { beforeAll, describe, expect, it } from "vitest"
import { disendiff, tempDir } from "./cli.js"
import { makeSdFolder } from "./sdFolder.js"

let dir = ""
let model = ""
let image = ""
const prompt = "<v1> cat and <v2> dog"

beforeAll(async () => {
  dir = await tempDir()
  model = await makeSdFolder(path.join(dir, "sd"))
  image = path.join(dir, "cat-dog.png")
  const w = 48
  const data = new Float32Array(w * 40 * 3).map((_, i) => ((i * 37) % 200) / 255)
  await fs.writeFile(image, encodePng({ width: w, height: 40, data }))
})

const sd = ["--backbone", "sd", "--model"]

describe("Stable Diffusion backbone", () => {
  it("trains 5 steps with calibration, then samples the same bytes for the same seed", async () => {
    const out = path.join(dir, "train")
    const t = await disendiff(["train", ...sd, model, "--image", image, "--prompt", prompt, "--steps", "5", "--seed", "3", "--batch-size", "2", "--gradient-accumulation", "1", "--lr", "1e-3", "--modifier-init", "class", "--out", out, "--json"])
    expect(t.code, t.stderr).toBe(0)
    const steps = t.stdout.trim().split("\n").map((l) => JSON.parse(l)).filter((e) => e._tag === "Step")
    expect(steps).toHaveLength(5)
    for (const s of steps) {
      expect(Number.isFinite(s.loss)).toBe(true)
      expect(s.bind).not.toBeNull()
      expect(s.separation).not.toBeNull()
    }
    const inspected = JSON.parse((await disendiff(["checkpoint", "inspect", "--json", path.join(out, "checkpoint.msgpack")])).stdout)
    // 6 cross-attention layers (5 at 16x16, the mid block's at 8x8) x (to_k, to_v) + the token rows
    expect(inspected.tensors.filter((x: { group: string }) => x.group === "trainable")).toHaveLength(2 * 6 + 1)

    const sample = (o: string, extra: Array<string> = []) =>
      disendiff(["sample", ...sd, model, "--checkpoint", path.join(out, "checkpoint.msgpack"), "--prompt", "<v1> cat", "--n", "2", "--steps", "4", "--seed", "9", "--out", o, ...extra])
    const [a, b] = [await sample(path.join(dir, "s1")), await sample(path.join(dir, "s2"))]
    expect(a.code, a.stderr).toBe(0)
    expect(b.code).toBe(0)
    const files = (await fs.readdir(path.join(dir, "s1"))).filter((f) => f.endsWith(".png")).sort()
    expect(files).toHaveLength(2)
    for (const f of files) {
      const [x, y] = await Promise.all([fs.readFile(path.join(dir, "s1", f)), fs.readFile(path.join(dir, "s2", f))])
      expect(x.equals(y)).toBe(true)
      const png = PNG.sync.read(x)
      expect([png.width, png.height]).toEqual([32, 32])
    }
    const first = await fs.readFile(path.join(dir, "s1", files[0]!))
    const second = await fs.readFile(path.join(dir, "s1", files[1]!))
    expect(first.equals(second)).toBe(false) // different seeds

    // Custom Diffusion export, and sampling from the deltas gives the checkpoint's images
    const exported = await disendiff(["checkpoint", "export", path.join(out, "checkpoint.msgpack"), "--out", path.join(dir, "deltas")])
    expect(exported.code, exported.stderr).toBe(0)
    const deltaFiles = (await fs.readdir(path.join(dir, "deltas"))).sort()
    expect(deltaFiles).toEqual(["<v1>.safetensors", "<v2>.safetensors", "pytorch_custom_diffusion_weights.safetensors"])
    const viaDeltas = await disendiff(["sample", ...sd, model, "--deltas", path.join(dir, "deltas"), "--prompt", "<v1> cat", "--prompt", "<v2> dog", "--n", "1", "--steps", "4", "--seed", "9", "--out", path.join(dir, "s3")])
    expect(viaDeltas.code, viaDeltas.stderr).toBe(0)
    const d0 = await fs.readFile(path.join(dir, "s3", (await fs.readdir(path.join(dir, "s3"))).filter((f) => f.endsWith(".png")).sort()[0]!))
    expect(d0.equals(first)).toBe(true)
  })

  it("draws per-token attention maps over an image", async () => {
    const out = path.join(dir, "attn")
    const r = await disendiff(["attention", ...sd, model, "--prompt", "a photo of a cat", "--image", image, "--out", out])
    expect(r.code, r.stderr).toBe(0)
    const maps = JSON.parse(await fs.readFile(path.join(out, "maps.json"), "utf8"))
    expect([maps.height, maps.width]).toEqual([16, 16])
    expect(maps.layers).toHaveLength(5)
    const keys = Object.keys(maps.maps)
    expect(keys).toHaveLength(7) // start, a, photo, of, a, cat, end
    // each query's probabilities over all 77 tokens sum to 1, so these seven maps sum to at most 1 per cell
    const total = Array.from({ length: 256 }, (_, n) => keys.reduce((s, k) => s + maps.maps[k][n], 0))
    expect(Math.max(...total)).toBeLessThanOrEqual(1 + 1e-5)
    expect(Math.min(...total)).toBeGreaterThan(0)
    expect((await fs.readdir(out)).filter((f) => f.endsWith(".png"))).toHaveLength(9)
    // the grid's SVG labels every map with its token, in order, and the colour scale
    const svg = await fs.readFile(path.join(out, "attention.svg"), "utf8")
    const labels = [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1])
    expect(labels).toEqual(["image", "&lt;|startoftext|&gt;", "a", "photo", "of", "a", "cat", "&lt;|endoftext|&gt;", "max"])
  })

  it("loader errors name the path: truncated weights, a folder without unet/", async () => {
    const broken = await makeSdFolder(path.join(dir, "broken"))
    const unet = path.join(broken, "unet", "diffusion_pytorch_model.safetensors")
    const bytes = await fs.readFile(unet)
    await fs.rm(unet)
    await fs.writeFile(unet, bytes.subarray(0, bytes.length / 2))
    const t = await disendiff(["sample", ...sd, broken, "--prompt", "a cat", "--n", "1", "--steps", "2", "--out", path.join(dir, "x")])
    expect(t.code).toBe(1)
    expect(t.stderr).toContain(unet)
    const noUnet = await makeSdFolder(path.join(dir, "nounet"))
    await fs.rm(path.join(noUnet, "unet"), { recursive: true })
    const n = await disendiff(["sample", ...sd, noUnet, "--prompt", "a cat", "--n", "1", "--steps", "2", "--out", path.join(dir, "y")])
    expect(n.code).toBe(1)
    expect(n.stderr).toContain(path.join(noUnet, "unet"))
  })

  it("refuses full SD 1.5 on wasm before loading anything, suggesting another backend", async () => {
    const big = await makeSdFolder(path.join(dir, "sd15"))
    const write = (part: string, file: string, json: object) => fs.writeFile(path.join(big, part, file), JSON.stringify(json))
    await write("unet", "config.json", {
      _class_name: "UNet2DConditionModel", sample_size: 64, in_channels: 4, out_channels: 4, cross_attention_dim: 768,
      block_out_channels: [320, 640, 1280, 1280], layers_per_block: 2, attention_head_dim: 8,
      down_block_types: ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
      up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
    })
    await write("vae", "config.json", { _class_name: "AutoencoderKL", block_out_channels: [128, 256, 512, 512], layers_per_block: 2, latent_channels: 4, sample_size: 512,
      down_block_types: Array(4).fill("DownEncoderBlock2D"), up_block_types: Array(4).fill("UpDecoderBlock2D") })
    await write("text_encoder", "config.json", { hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12, vocab_size: 49408, eos_token_id: 2 })
    const r = await disendiff(["train", ...sd, big, "--image", image, "--prompt", prompt, "--steps", "1", "--out", path.join(dir, "big")])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain("over the 3.50 GiB limit")
    expect(r.stderr).toMatch(/--backend node, node-gpu or webgpu/)
  })

  it("inpaints from the command line with an image and a mask (exactness is tested with the exact autoencoder)", async () => {
    const maskFile = path.join(dir, "mask.png")
    const w = 32
    // generate the right half
    await fs.writeFile(maskFile, encodePng({ width: w, height: w, data: new Float32Array(w * w * 3).map((_, i) => (Math.floor(i / 3) % w >= 16 ? 1 : 0)) }))
    const out = path.join(dir, "inpaint")
    const r = await disendiff(["sample", ...sd, model, "--prompt", "a photo of a dog", "--n", "1", "--steps", "4", "--inpaint", image, "--mask", maskFile, "--out", out])
    expect(r.code, r.stderr).toBe(0)
    const png = PNG.sync.read(await fs.readFile(path.join(out, (await fs.readdir(out)).find((f) => f.endsWith(".png"))!)))
    expect([png.width, png.height]).toEqual([32, 32])
  })
})
