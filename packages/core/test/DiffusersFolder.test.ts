import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import {
  noiseScheduleConfig,
  readDiffusersFolder,
  SchedulerConfig,
  UNetConfig,
  unetAttentionHeads
} from "../src/io/DiffusersFolder.js"
import { tempDir } from "./fixtures.js"

const folderA = path.resolve(fileURLToPath(import.meta.url), "../../../../fixtures/sd-tiny/A")

const weightFiles: Record<string, string> = {
  unet: "diffusion_pytorch_model.safetensors",
  vae: "diffusion_pytorch_model.safetensors",
  text_encoder: "model.safetensors"
}
const configFiles: Record<string, string> = {
  unet: "config.json",
  vae: "config.json",
  text_encoder: "config.json",
  scheduler: "scheduler_config.json"
}

/** A writable copy of fixture folder A: configs copied, weights symlinked. */
const copyOfA = (skip: ReadonlyArray<string> = []) =>
  Effect.promise(async () => {
    const root = path.join(await tempDir("disendiff-folder-"), "model")
    for (const [component, config] of Object.entries(configFiles)) {
      if (skip.includes(component)) continue
      await fs.mkdir(path.join(root, component), { recursive: true })
      await fs.copyFile(path.join(folderA, component, config), path.join(root, component, config))
      const weights = weightFiles[component]
      if (weights !== undefined) await fs.symlink(path.join(folderA, component, weights), path.join(root, component, weights))
    }
    return root
  })

const patchJson = (file: string, patch: Record<string, unknown>) =>
  Effect.promise(async () => {
    const json = JSON.parse(await fs.readFile(file, "utf8"))
    await fs.writeFile(file, JSON.stringify({ ...json, ...patch }))
  })

const modelError = <A>(eff: Effect.Effect<A, { readonly _tag: string; readonly message: string; readonly path?: string }>) =>
  Effect.map(Effect.flip(eff), (e) => {
    assert.strictEqual(e._tag, "ModelError")
    return e as unknown as { readonly message: string; readonly path: string; readonly reason: string; readonly fix: string }
  })

describe("DiffusersFolder", () => {
  it.effect("the sd-tiny fixture folder A parses with its configs and weights", () =>
    Effect.gen(function*() {
      const f = yield* readDiffusersFolder(folderA)
      assert.strictEqual(f.root, folderA)
      assert.strictEqual(f.unet.weights, path.join(folderA, "unet/diffusion_pytorch_model.safetensors"))
      assert.strictEqual(f.vae.weights, path.join(folderA, "vae/diffusion_pytorch_model.safetensors"))
      assert.strictEqual(f.textEncoder.weights, path.join(folderA, "text_encoder/model.safetensors"))
      assert.isNull(f.tokenizer)
      const u = f.unet.config
      assert.deepStrictEqual(u.down_block_types, ["CrossAttnDownBlock2D", "DownBlock2D"])
      assert.deepStrictEqual(u.up_block_types, ["UpBlock2D", "CrossAttnUpBlock2D"])
      assert.deepStrictEqual(u.block_out_channels, [32, 64])
      assert.strictEqual(u.layers_per_block, 2)
      assert.strictEqual(u.cross_attention_dim, 32)
      assert.strictEqual(u.norm_num_groups, 32)
      assert.strictEqual(u.flip_sin_to_cos, true)
      assert.strictEqual(u.freq_shift, 0)
      // "attention_head_dim": 8 means 8 heads: head sizes 32/8 = 4 and (mid) 64/8 = 8
      assert.deepStrictEqual(unetAttentionHeads(u), [8, 8])
      assert.strictEqual(f.vae.config.scaling_factor, 0.18215)
      assert.strictEqual(f.vae.config.latent_channels, 4)
      assert.deepStrictEqual(f.vae.config.block_out_channels, [32, 64])
      const t = f.textEncoder.config
      assert.deepStrictEqual([t.hidden_size, t.num_hidden_layers, t.num_attention_heads, t.intermediate_size], [32, 2, 4, 64])
      assert.deepStrictEqual([t.hidden_act, t.layer_norm_eps, t.max_position_embeddings], ["quick_gelu", 1e-5, 77])
      assert.deepStrictEqual([t.bos_token_id, t.eos_token_id, t.pad_token_id], [0, 2, 1])
      const s = f.scheduler.config
      assert.deepStrictEqual([s.steps_offset, s.set_alpha_to_one, s.clip_sample, s.timestep_spacing], [1, false, false, "leading"])
      assert.deepStrictEqual(noiseScheduleConfig(s), {
        numTrainTimesteps: 1000,
        betaStart: 0.00085,
        betaEnd: 0.012,
        betaSchedule: "scaled_linear",
        predictionType: "epsilon",
        rescaleZeroTerminalSnr: false
      })
    }))

  it("missing keys take the upstream defaults (SD 1.5's short configs), extra keys are ignored", () => {
    // the keys an early-diffusers SD 1.5 unet/config.json has
    const u = Schema.decodeUnknownSync(UNetConfig)({
      _class_name: "UNet2DConditionModel",
      act_fn: "silu",
      attention_head_dim: 8,
      block_out_channels: [320, 640, 1280, 1280],
      center_input_sample: false,
      cross_attention_dim: 768,
      down_block_types: ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
      downsample_padding: 1,
      flip_sin_to_cos: true,
      freq_shift: 0,
      in_channels: 4,
      layers_per_block: 2,
      mid_block_scale_factor: 1,
      norm_eps: 1e-5,
      norm_num_groups: 32,
      out_channels: 4,
      sample_size: 64,
      up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
      some_future_key: { anything: true }
    })
    assert.strictEqual(u.mid_block_type, "UNetMidBlock2DCrossAttn")
    assert.strictEqual(u.use_linear_projection, false)
    assert.strictEqual(u.upcast_attention, false)
    assert.strictEqual(u.transformer_layers_per_block, 1)
    assert.strictEqual(u.time_embedding_type, "positional")
    assert.isNull(u.num_attention_heads)
    assert.isNull(u.addition_embed_type)
    assert.notProperty(u, "some_future_key")
    assert.deepStrictEqual(unetAttentionHeads(u), [8, 8, 8, 8])
    // SD 2.x: per-block head counts under the same misnamed key
    const sd2 = Schema.decodeUnknownSync(UNetConfig)({ attention_head_dim: [5, 10, 20, 20], use_linear_projection: true })
    assert.deepStrictEqual(unetAttentionHeads(sd2), [5, 10, 20, 20])
    assert.deepStrictEqual(unetAttentionHeads(Schema.decodeUnknownSync(UNetConfig)({ num_attention_heads: 4 })), [4, 4, 4, 4])
    // SD 1.5 ships a PNDMScheduler config; missing DDIM keys take DDIM's defaults
    const s = Schema.decodeUnknownSync(SchedulerConfig)({
      _class_name: "PNDMScheduler",
      beta_end: 0.012,
      beta_schedule: "scaled_linear",
      beta_start: 0.00085,
      num_train_timesteps: 1000,
      set_alpha_to_one: false,
      skip_prk_steps: true,
      steps_offset: 1,
      trained_betas: null,
      clip_sample: false
    })
    assert.deepStrictEqual([s.prediction_type, s.timestep_spacing, s.rescale_betas_zero_snr, s.set_alpha_to_one], ["epsilon", "leading", false, false])
  })

  it.effect("a copy without unet/ fails naming the missing folder", () =>
    Effect.gen(function*() {
      const root = yield* copyOfA(["unet"])
      const e = yield* modelError(readDiffusersFolder(root))
      assert.strictEqual(e.path, path.join(root, "unet"))
      assert.include(e.reason, "lacks unet/")
      const noScheduler = yield* copyOfA(["scheduler", "vae"])
      const e2 = yield* modelError(readDiffusersFolder(noScheduler))
      assert.strictEqual(e2.path, path.join(noScheduler, "vae"))
      assert.include(e2.reason, "lacks vae/, scheduler/")
      const e3 = yield* modelError(readDiffusersFolder(path.join(root, "nowhere")))
      assert.include(e3.message, "nowhere: no such folder")
    }))

  it.effect("pickle-only or sharded weights are refused with how to convert them; fp16 variants are found", () =>
    Effect.gen(function*() {
      const root = yield* copyOfA()
      const unetDir = path.join(root, "unet")
      yield* Effect.promise(async () => {
        await fs.rm(path.join(unetDir, "diffusion_pytorch_model.safetensors"))
        await fs.writeFile(path.join(unetDir, "diffusion_pytorch_model.bin"), "not really a pickle")
      })
      const e = yield* modelError(readDiffusersFolder(root))
      assert.strictEqual(e.path, path.join(unetDir, "diffusion_pytorch_model.bin"))
      assert.include(e.reason, "pickle")
      assert.include(e.fix, `DiffusionPipeline.from_pretrained("${root}").save_pretrained(OUT, safe_serialization=True)`)
      assert.include(e.fix, "from_single_file")
      // a safetensors variant beside the pickle is used instead
      yield* Effect.promise(() =>
        fs.symlink(path.join(folderA, "unet", weightFiles.unet!), path.join(unetDir, "diffusion_pytorch_model.fp16.safetensors"))
      )
      const f = yield* readDiffusersFolder(root)
      assert.strictEqual(f.unet.weights, path.join(unetDir, "diffusion_pytorch_model.fp16.safetensors"))
      // sharded weights are named, not guessed at
      const textDir = path.join(root, "text_encoder")
      yield* Effect.promise(async () => {
        await fs.rm(path.join(textDir, "model.safetensors"))
        await fs.writeFile(path.join(textDir, "model-00001-of-00002.safetensors"), "")
        await fs.writeFile(path.join(textDir, "model.safetensors.index.json"), "{}")
      })
      const sharded = yield* modelError(readDiffusersFolder(root))
      assert.strictEqual(sharded.path, path.join(textDir, "model.safetensors.index.json"))
      assert.include(sharded.reason, "sharded")
      // nothing at all
      yield* Effect.promise(() => fs.rm(path.join(root, "vae", weightFiles.vae!)))
      const none = yield* modelError(readDiffusersFolder(root))
      assert.strictEqual(none.path, path.join(root, "vae"))
      assert.include(none.reason, "no diffusion_pytorch_model.safetensors (the folder holds: config.json)")
    }))

  it.effect("a single-file checkpoint is refused with the from_single_file conversion", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.promise(() => tempDir())
      const ckpt = path.join(dir, "v1-5-pruned.ckpt")
      yield* Effect.promise(() => fs.writeFile(ckpt, "x"))
      const e = yield* modelError(readDiffusersFolder(ckpt))
      assert.strictEqual(e.path, ckpt)
      assert.include(e.fix, `StableDiffusionPipeline.from_single_file("${ckpt}")`)
    }))

  it.effect("configs this implementation cannot run are refused naming the file and the key", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<[string, Record<string, unknown>, string]> = [
        ["unet/config.json", { addition_embed_type: "text_time", addition_time_embed_dim: 256 }, "addition_embed_type"],
        ["unet/config.json", { class_embed_type: "timestep" }, "class_embed_type"],
        ["unet/config.json", { time_embedding_type: "fourier" }, "time_embedding_type"],
        ["unet/config.json", { down_block_types: ["SimpleCrossAttnDownBlock2D", "DownBlock2D"] }, "down_block_types"],
        ["unet/config.json", { up_block_types: ["UpBlock2D"] }, "up_block_types"],
        ["unet/config.json", { attention_head_dim: [8, 8, 8] }, "attention_head_dim"],
        ["unet/config.json", { attention_head_dim: 3 }, "attention_head_dim"],
        ["unet/config.json", { mid_block_type: null }, "mid_block_type"],
        ["unet/config.json", { resnet_time_scale_shift: "scale_shift" }, "resnet_time_scale_shift"],
        ["unet/config.json", { time_cond_proj_dim: 256 }, "time_cond_proj_dim"],
        ["unet/config.json", { in_channels: "four" }, "in_channels"],
        ["unet/config.json", { cross_attention_dim: 48 }, "cross_attention_dim"],
        ["unet/config.json", { in_channels: 9 }, "inpainting"],
        ["vae/config.json", { latents_mean: [0, 0, 0, 0] }, "latents_mean"],
        ["vae/config.json", { down_block_types: ["DownEncoderBlock2D", "AttnDownEncoderBlock2D"] }, "down_block_types"],
        ["text_encoder/config.json", { hidden_act: "relu" }, "hidden_act"],
        ["scheduler/scheduler_config.json", { trained_betas: [0.1, 0.2] }, "trained_betas"],
        ["scheduler/scheduler_config.json", { beta_schedule: "sigmoid" }, "beta_schedule"]
      ]
      for (const [file, patch, key] of cases) {
        const root = yield* copyOfA()
        yield* patchJson(path.join(root, file), patch)
        const e = yield* modelError(readDiffusersFolder(root))
        assert.strictEqual(e.path, path.join(root, file), JSON.stringify(patch))
        assert.include(e.reason, key, JSON.stringify(patch))
      }
      // use_linear_projection and upcast_attention are flags this implementation runs
      const root = yield* copyOfA()
      yield* patchJson(path.join(root, "unet/config.json"), { use_linear_projection: true, upcast_attention: true })
      const f = yield* readDiffusersFolder(root)
      assert.isTrue(f.unet.config.use_linear_projection && f.unet.config.upcast_attention)
    }))

  it.effect("broken config JSON is refused naming the file", () =>
    Effect.gen(function*() {
      const root = yield* copyOfA()
      const file = path.join(root, "vae/config.json")
      yield* Effect.promise(() => fs.writeFile(file, "{ \"in_channels\": 3,"))
      const e = yield* modelError(readDiffusersFolder(root))
      assert.strictEqual(e.path, file)
      assert.include(e.reason, "not valid JSON")
    }))

  it.effect("a tokenizer folder is returned when complete and refused when half there", () =>
    Effect.gen(function*() {
      const root = yield* copyOfA()
      const tok = path.join(root, "tokenizer")
      yield* Effect.promise(async () => {
        await fs.mkdir(tok)
        await fs.writeFile(path.join(tok, "vocab.json"), "{}")
      })
      const e = yield* modelError(readDiffusersFolder(root))
      assert.strictEqual(e.path, path.join(tok, "merges.txt"))
      yield* Effect.promise(() => fs.writeFile(path.join(tok, "merges.txt"), "#version: 0.2\n"))
      const f = yield* readDiffusersFolder(root)
      assert.deepStrictEqual(f.tokenizer, { vocab: path.join(tok, "vocab.json"), merges: path.join(tok, "merges.txt") })
    }))
})
