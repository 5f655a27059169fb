import { Effect } from "effect"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { estimateTrainingBytes } from "../src/backbone/Memory.js"
import { readDiffusersFolder } from "../src/io/DiffusersFolder.js"
import { readSafetensors } from "../src/io/Safetensors.js"
import { clipTextConfig, unetConfig, vaeConfig } from "../src/models/Configs.js"
import { clipParameterShapes, parameterCount, type ParameterShape, unetParameterShapes, vaeParameterShapes } from "../src/models/Shapes.js"

const fixture = fileURLToPath(new URL("../../../fixtures/sd-tiny/A", import.meta.url))

/** Our layout of a PyTorch shape. */
const ours = (p: ParameterShape, torch: ReadonlyArray<number>) =>
  torch.length === 4 ? [torch[2], torch[3], torch[1], torch[0]] : torch.length === 2 && p.kind !== "embedding" ? [torch[1], torch[0]] : [...torch]

const expectSameParameters = async (shapes: Array<ParameterShape>, file: string) => {
  const stored = await Effect.runPromise(readSafetensors(file))
  expect(shapes.map((p) => p.name).sort()).toEqual([...stored.keys()].sort())
  for (const p of shapes) expect(p.shape).toEqual(ours(p, stored.get(p.name)!.shape))
}

describe("parameter shapes from configs", () => {
  it("enumerate exactly the fixture's UNet, VAE and CLIP tensors", async () => {
    const folder = await Effect.runPromise(readDiffusersFolder(fixture))
    const t = folder.textEncoder.config
    const unet = unetParameterShapes(unetConfig(folder.unet.config), t.hidden_size)
    await expectSameParameters(unet, folder.unet.weights)
    expect(parameterCount(unet)).toBe(1106212) // manifest num_params
    const vae = vaeParameterShapes(vaeConfig(folder.vae.config))
    await expectSameParameters(vae, folder.vae.weights)
    expect(parameterCount(vae)).toBe(658375)
    const clip = clipParameterShapes({ vocabSize: t.vocab_size, hiddenSize: t.hidden_size, intermediateSize: t.intermediate_size, layers: t.num_hidden_layers, maxPositions: t.max_position_embeddings })
    await expectSameParameters(clip, folder.textEncoder.weights)
    expect(parameterCount(clip)).toBe(51616)
    void clipTextConfig
  })

  it("give SD 1.5's parameter counts (860M UNet, 84M VAE, 123M text encoder)", () => {
    const sd15 = unetConfig({
      in_channels: 4, out_channels: 4, block_out_channels: [320, 640, 1280, 1280], layers_per_block: 2,
      down_block_types: ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
      up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
      attention_head_dim: 8, num_attention_heads: null, mid_block_type: "UNetMidBlock2DCrossAttn", norm_num_groups: 32, norm_eps: 1e-5,
      use_linear_projection: false, freq_shift: 0
    } as unknown as Parameters<typeof unetConfig>[0])
    expect(parameterCount(unetParameterShapes(sd15, 768))).toBe(859520964)
    expect(parameterCount(vaeParameterShapes({ blockOutChannels: [128, 256, 512, 512], layersPerBlock: 2, latentChannels: 4 }))).toBe(83653863)
    expect(parameterCount(clipParameterShapes({ vocabSize: 49408, hiddenSize: 768, intermediateSize: 3072, layers: 12, maxPositions: 77 }))).toBe(123060480)
    // and training it at 512 px does not fit a 4 GiB wasm heap even at batch 1
    expect(estimateTrainingBytes(sd15, 64, 1) + 4 * 859520964).toBeGreaterThan(4 * 2 ** 30)
  })
})

describe("non-square latents", () => {
  it("the fixture UNet runs on 16x24 and 10x14 latents (odd sizes upsample to their skip's size)", async () => {
    const { CpuBackend, tf, nn } = await import("../src/index.js")
    const { unetForward } = await import("../src/models/Unet2dConditionModel.js")
    const { toTensor } = await import("../src/models/Convert.js")
    await Effect.runPromise(Effect.scoped((await import("effect")).Layer.build(CpuBackend.layer)))
    const folder = await Effect.runPromise(readDiffusersFolder(fixture))
    const stored = await Effect.runPromise(readSafetensors(folder.unet.weights))
    const weights = new Map([...stored].map(([k, t]) => [k, toTensor(k, { shape: t.shape, data: Float32Array.from(t.data) })]))
    const cfg = unetConfig(folder.unet.config)
    for (const [h, w] of [[16, 24], [10, 14]] as const) {
      const out = unetForward(cfg, nn.makeWeights(weights), { latents: tf.ones([1, h, w, 4]), timesteps: [10], context: tf.ones([1, 77, 32]) })
      expect(out.shape).toEqual([1, h, w, 4])
      expect(Number.isFinite(tf.sum(out).dataSync()[0]!)).toBe(true)
    }
  })
})
