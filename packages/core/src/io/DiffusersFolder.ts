/**
 * A Stable Diffusion model folder in the diffusers on-disk layout (what `save_pretrained` writes and
 * the Hugging Face downloads hold): `unet/`, `vae/`, `text_encoder/` (transformers layout),
 * `scheduler/`, optionally `tokenizer/` and `model_index.json` (not needed). Each config is decoded
 * with the upstream defaults for missing keys (diffusers `UNet2DConditionModel` and `AutoencoderKL`,
 * transformers `CLIPTextConfig`, `DDIMScheduler`, as of diffusers 0.27 / transformers 4.40); unknown
 * keys are ignored. Configs that need features this implementation does not run (SDXL addition
 * embeddings, class embeddings, other block types, ...) are refused naming the file and the key.
 * Weights are only ever read from safetensors: pickles (`.bin`, `.ckpt`) can run code when loaded.
 */
import { Effect, Schema } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { ModelError } from "../backbone/Backbone.js"
import type { SamplingOptions } from "../schedule/Schedulers.js"
import type { NoiseScheduleConfig } from "../schedule/NoiseSchedule.js"

const withDefault = <S extends Schema.Top>(schema: S, value: S["Encoded"]) =>
  schema.pipe(Schema.withDecodingDefaultKey(Effect.succeed(value)))

const PositiveInt = Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))
const NonNegativeInt = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
const IntOrInts = Schema.Union([PositiveInt, Schema.Array(PositiveInt)])
const NullableString = Schema.NullOr(Schema.String)
const NullableInt = Schema.NullOr(PositiveInt)
const Size = Schema.Union([PositiveInt, Schema.Array(PositiveInt)])

/** `unet/config.json`: diffusers `UNet2DConditionModel`. */
export const UNetConfig = Schema.Struct({
  _class_name: Schema.optionalKey(Schema.String),
  sample_size: withDefault(Schema.NullOr(Size), null),
  in_channels: withDefault(PositiveInt, 4),
  out_channels: withDefault(PositiveInt, 4),
  center_input_sample: withDefault(Schema.Boolean, false),
  flip_sin_to_cos: withDefault(Schema.Boolean, true),
  freq_shift: withDefault(Schema.Finite, 0),
  down_block_types: withDefault(Schema.Array(Schema.String), [
    "CrossAttnDownBlock2D",
    "CrossAttnDownBlock2D",
    "CrossAttnDownBlock2D",
    "DownBlock2D"
  ]),
  mid_block_type: withDefault(NullableString, "UNetMidBlock2DCrossAttn"),
  up_block_types: withDefault(Schema.Array(Schema.String), [
    "UpBlock2D",
    "CrossAttnUpBlock2D",
    "CrossAttnUpBlock2D",
    "CrossAttnUpBlock2D"
  ]),
  only_cross_attention: withDefault(Schema.Union([Schema.Boolean, Schema.Array(Schema.Boolean)]), false),
  block_out_channels: withDefault(Schema.Array(PositiveInt), [320, 640, 1280, 1280]),
  layers_per_block: withDefault(IntOrInts, 2),
  downsample_padding: withDefault(NonNegativeInt, 1),
  mid_block_scale_factor: withDefault(Schema.Finite, 1),
  dropout: withDefault(Schema.Finite, 0),
  act_fn: withDefault(Schema.String, "silu"),
  norm_num_groups: withDefault(NullableInt, 32),
  norm_eps: withDefault(Schema.Finite, 1e-5),
  cross_attention_dim: withDefault(IntOrInts, 1280),
  transformer_layers_per_block: withDefault(IntOrInts, 1),
  reverse_transformer_layers_per_block: withDefault(Schema.NullOr(Schema.Array(Schema.Unknown)), null),
  encoder_hid_dim: withDefault(NullableInt, null),
  encoder_hid_dim_type: withDefault(NullableString, null),
  /** With `num_attention_heads` null this is the NUMBER of heads (a diffusers naming quirk). */
  attention_head_dim: withDefault(IntOrInts, 8),
  num_attention_heads: withDefault(Schema.NullOr(IntOrInts), null),
  dual_cross_attention: withDefault(Schema.Boolean, false),
  use_linear_projection: withDefault(Schema.Boolean, false),
  class_embed_type: withDefault(NullableString, null),
  addition_embed_type: withDefault(NullableString, null),
  num_class_embeds: withDefault(NullableInt, null),
  upcast_attention: withDefault(Schema.Boolean, false),
  resnet_time_scale_shift: withDefault(Schema.String, "default"),
  resnet_skip_time_act: withDefault(Schema.Boolean, false),
  resnet_out_scale_factor: withDefault(Schema.Finite, 1),
  time_embedding_type: withDefault(Schema.String, "positional"),
  time_embedding_dim: withDefault(NullableInt, null),
  time_embedding_act_fn: withDefault(NullableString, null),
  timestep_post_act: withDefault(NullableString, null),
  time_cond_proj_dim: withDefault(NullableInt, null),
  conv_in_kernel: withDefault(PositiveInt, 3),
  conv_out_kernel: withDefault(PositiveInt, 3),
  attention_type: withDefault(Schema.String, "default"),
  mid_block_only_cross_attention: withDefault(Schema.NullOr(Schema.Boolean), null),
  cross_attention_norm: withDefault(NullableString, null)
})
export type UNetConfig = typeof UNetConfig.Type

/** `vae/config.json`: diffusers `AutoencoderKL`. */
export const VaeConfig = Schema.Struct({
  _class_name: Schema.optionalKey(Schema.String),
  in_channels: withDefault(PositiveInt, 3),
  out_channels: withDefault(PositiveInt, 3),
  down_block_types: withDefault(Schema.Array(Schema.String), ["DownEncoderBlock2D"]),
  up_block_types: withDefault(Schema.Array(Schema.String), ["UpDecoderBlock2D"]),
  block_out_channels: withDefault(Schema.Array(PositiveInt), [64]),
  layers_per_block: withDefault(PositiveInt, 1),
  act_fn: withDefault(Schema.String, "silu"),
  latent_channels: withDefault(PositiveInt, 4),
  norm_num_groups: withDefault(PositiveInt, 32),
  sample_size: withDefault(Size, 32),
  scaling_factor: withDefault(Schema.Finite, 0.18215),
  shift_factor: withDefault(Schema.NullOr(Schema.Finite), null),
  latents_mean: withDefault(Schema.NullOr(Schema.Array(Schema.Finite)), null),
  latents_std: withDefault(Schema.NullOr(Schema.Array(Schema.Finite)), null),
  force_upcast: withDefault(Schema.Boolean, true),
  use_quant_conv: withDefault(Schema.Boolean, true),
  use_post_quant_conv: withDefault(Schema.Boolean, true),
  mid_block_add_attention: withDefault(Schema.Boolean, true)
})
export type VaeConfig = typeof VaeConfig.Type

/** `text_encoder/config.json`: transformers `CLIPTextConfig`. */
export const ClipTextConfig = Schema.Struct({
  model_type: Schema.optionalKey(Schema.String),
  vocab_size: withDefault(PositiveInt, 49408),
  hidden_size: withDefault(PositiveInt, 512),
  intermediate_size: withDefault(PositiveInt, 2048),
  projection_dim: withDefault(PositiveInt, 512),
  num_hidden_layers: withDefault(PositiveInt, 12),
  num_attention_heads: withDefault(PositiveInt, 8),
  max_position_embeddings: withDefault(PositiveInt, 77),
  hidden_act: withDefault(Schema.String, "quick_gelu"),
  layer_norm_eps: withDefault(Schema.Finite, 1e-5),
  attention_dropout: withDefault(Schema.Finite, 0),
  pad_token_id: withDefault(Schema.Int, 1),
  bos_token_id: withDefault(Schema.Int, 49406),
  /** 2 in SD 1.x configs: the legacy rule that pools at the argmax id instead of the first EOS. */
  eos_token_id: withDefault(Schema.Int, 49407)
})
export type ClipTextConfig = typeof ClipTextConfig.Type

/**
 * `scheduler/scheduler_config.json`: the keys DDIM, DDPM, PNDM and most other diffusers schedulers
 * share, with `DDIMScheduler`'s defaults (what `DDIMScheduler.from_config` would fill in).
 */
export const SchedulerConfig = Schema.Struct({
  _class_name: Schema.optionalKey(Schema.String),
  num_train_timesteps: withDefault(PositiveInt, 1000),
  beta_start: withDefault(Schema.Finite, 0.0001),
  beta_end: withDefault(Schema.Finite, 0.02),
  beta_schedule: withDefault(Schema.String, "linear"),
  trained_betas: withDefault(Schema.NullOr(Schema.Array(Schema.Finite)), null),
  prediction_type: withDefault(Schema.String, "epsilon"),
  steps_offset: withDefault(NonNegativeInt, 0),
  set_alpha_to_one: withDefault(Schema.Boolean, true),
  clip_sample: withDefault(Schema.Boolean, true),
  clip_sample_range: withDefault(Schema.Finite, 1),
  thresholding: withDefault(Schema.Boolean, false),
  timestep_spacing: withDefault(Schema.String, "leading"),
  rescale_betas_zero_snr: withDefault(Schema.Boolean, false)
})
export type SchedulerConfig = typeof SchedulerConfig.Type

export interface DiffusersFolder {
  /** Absolute path of the folder. */
  readonly root: string
  readonly unet: { readonly config: UNetConfig; readonly weights: string }
  readonly vae: { readonly config: VaeConfig; readonly weights: string }
  readonly textEncoder: { readonly config: ClipTextConfig; readonly weights: string }
  readonly scheduler: { readonly config: SchedulerConfig }
  /** CLIP BPE files, or null when the folder has no `tokenizer/vocab.json` and `merges.txt`. */
  readonly tokenizer: { readonly vocab: string; readonly merges: string } | null
}

// ---------------------------------------------------------------------------------------------------
// Support checks: each names the key and why it cannot be run.

const downBlocks = ["CrossAttnDownBlock2D", "DownBlock2D"]
const upBlocks = ["CrossAttnUpBlock2D", "UpBlock2D"]

/** A per-block setting broadcast to `n` blocks (diffusers accepts one value for all). */
const perBlock = <A>(v: A | ReadonlyArray<A>, n: number): ReadonlyArray<A> =>
  Array.isArray(v) ? (v as ReadonlyArray<A>) : Array.from({ length: n }, () => v as A)

/** Attention heads of each down block (the mid block uses the last), resolving the naming quirk. */
export const unetAttentionHeads = (c: UNetConfig): ReadonlyArray<number> =>
  perBlock(c.num_attention_heads ?? c.attention_head_dim, c.down_block_types.length)

/** A support rule: the key it is about, whether the config passes, and why it must. */
type Check = readonly [key: string, ok: boolean, why: string]

const sdOnly = "Stable Diffusion 1.x/2.x UNets do not use it and this implementation does not run it"

// Every rule is evaluated, in order; the first failing one is reported. Rules after a length rule may
// see inconsistent lengths but never throw, and are not reported when an earlier rule fails.
const unetChecks = (c: UNetConfig): ReadonlyArray<Check> => {
  const n = c.down_block_types.length
  const heads = unetAttentionHeads(c)
  const attentionBlocks = [...c.down_block_types.flatMap((t, i) => (t === "CrossAttnDownBlock2D" ? [i] : [])), n - 1]
  const perBlockKeys = ["layers_per_block", "attention_head_dim", "num_attention_heads", "cross_attention_dim", "transformer_layers_per_block", "only_cross_attention"] as const
  return [
    ["_class_name", c._class_name === undefined || c._class_name === "UNet2DConditionModel", "not a UNet2DConditionModel"],
    ["down_block_types", n > 0 && c.down_block_types.every((t) => downBlocks.includes(t)), `supported down blocks: ${downBlocks.join(", ")}`],
    ["up_block_types", c.up_block_types.every((t) => upBlocks.includes(t)), `supported up blocks: ${upBlocks.join(", ")}`],
    ["up_block_types", c.up_block_types.length === n, `needs as many entries as down_block_types (${n})`],
    ["block_out_channels", c.block_out_channels.length === n, `needs as many entries as down_block_types (${n})`],
    ["mid_block_type", c.mid_block_type === "UNetMidBlock2DCrossAttn", "only UNetMidBlock2DCrossAttn is supported"],
    ...perBlockKeys.map((key): Check => [key, !Array.isArray(c[key]) || (c[key] as ReadonlyArray<unknown>).length === n, `a list needs one entry per down block (${n})`]),
    ["time_embedding_type", c.time_embedding_type === "positional", "only sinusoidal (positional) timestep embeddings are supported"],
    ["class_embed_type", c.class_embed_type === null, `class embeddings: ${sdOnly}`],
    ["num_class_embeds", c.num_class_embeds === null, `class embeddings: ${sdOnly}`],
    ["addition_embed_type", c.addition_embed_type === null, `added (SDXL-style) conditioning embeddings: ${sdOnly}`],
    ["encoder_hid_dim_type", c.encoder_hid_dim_type === null, `an encoder projection: ${sdOnly}`],
    ["encoder_hid_dim", c.encoder_hid_dim === null, `an encoder projection: ${sdOnly}`],
    ["time_cond_proj_dim", c.time_cond_proj_dim === null, `guidance-distilled (LCM) timestep conditioning: ${sdOnly}`],
    ["time_embedding_act_fn", c.time_embedding_act_fn === null, sdOnly],
    ["timestep_post_act", c.timestep_post_act === null, sdOnly],
    ["act_fn", c.act_fn === "silu", "only silu is supported"],
    ["resnet_time_scale_shift", c.resnet_time_scale_shift === "default", "only \"default\" (additive) time conditioning is supported"],
    ["resnet_skip_time_act", !c.resnet_skip_time_act, sdOnly],
    ["resnet_out_scale_factor", c.resnet_out_scale_factor === 1, "only 1 is supported"],
    ["mid_block_scale_factor", c.mid_block_scale_factor === 1, "only 1 is supported"],
    ["dual_cross_attention", !c.dual_cross_attention, sdOnly],
    ["attention_type", c.attention_type === "default", `gated (GLIGEN) attention: ${sdOnly}`],
    ["cross_attention_norm", c.cross_attention_norm === null, sdOnly],
    ["only_cross_attention", perBlock(c.only_cross_attention, n).every((b) => !b), sdOnly],
    ["mid_block_only_cross_attention", c.mid_block_only_cross_attention !== true, sdOnly],
    ["reverse_transformer_layers_per_block", c.reverse_transformer_layers_per_block === null, sdOnly],
    ["dropout", c.dropout === 0, "training with dropout is not supported; set it to 0"],
    ["norm_num_groups", c.norm_num_groups !== null && c.block_out_channels.every((ch) => ch % c.norm_num_groups! === 0), "must be set and divide every block_out_channels entry"],
    ["conv_in_kernel", c.conv_in_kernel % 2 === 1, "must be odd (same padding)"],
    ["conv_out_kernel", c.conv_out_kernel % 2 === 1, "must be odd (same padding)"],
    [
      c.num_attention_heads === null ? "attention_head_dim" : "num_attention_heads",
      attentionBlocks.every((i) => c.block_out_channels[i]! % heads[i]! === 0),
      "the number of heads must divide the channels of every attention block"
    ]
  ]
}

const vaeChecks = (c: VaeConfig): ReadonlyArray<Check> => [
  ["_class_name", c._class_name === undefined || c._class_name === "AutoencoderKL", "not an AutoencoderKL"],
  ["down_block_types", c.down_block_types.every((t) => t === "DownEncoderBlock2D"), "only DownEncoderBlock2D is supported"],
  ["up_block_types", c.up_block_types.every((t) => t === "UpDecoderBlock2D"), "only UpDecoderBlock2D is supported"],
  ["down_block_types", c.down_block_types.length === c.block_out_channels.length, "needs one entry per block_out_channels entry"],
  ["up_block_types", c.up_block_types.length === c.block_out_channels.length, "needs one entry per block_out_channels entry"],
  ["act_fn", c.act_fn === "silu", "only silu is supported"],
  ["norm_num_groups", c.block_out_channels.every((ch) => ch % c.norm_num_groups === 0), "must divide every block_out_channels entry"],
  ["shift_factor", c.shift_factor === null, "latent shifting (SD3/Flux autoencoders) is not supported"],
  ["latents_mean", c.latents_mean === null, "per-channel latent statistics are not supported"],
  ["latents_std", c.latents_std === null, "per-channel latent statistics are not supported"],
  ["use_quant_conv", c.use_quant_conv, "an autoencoder without quant_conv is not supported"],
  ["use_post_quant_conv", c.use_post_quant_conv, "an autoencoder without post_quant_conv is not supported"],
  ["mid_block_add_attention", c.mid_block_add_attention, "a mid block without attention is not supported"]
]

const clipChecks = (c: ClipTextConfig): ReadonlyArray<Check> => [
  ["model_type", c.model_type === undefined || c.model_type === "clip_text_model", "expected a CLIP text model (clip_text_model); save the text encoder alone with CLIPTextModel.save_pretrained"],
  ["hidden_act", ["quick_gelu", "gelu"].includes(c.hidden_act), "supported: quick_gelu (SD 1.x), gelu (SD 2.x)"],
  ["num_attention_heads", c.hidden_size % c.num_attention_heads === 0, "must divide hidden_size"]
]

const schedulerChecks = (c: SchedulerConfig): ReadonlyArray<Check> => [
  ["beta_schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"].includes(c.beta_schedule), "supported: linear, scaled_linear, squaredcos_cap_v2"],
  ["trained_betas", c.trained_betas === null, "explicit beta tables are not supported; the betas are computed from beta_schedule"],
  ["prediction_type", ["epsilon", "v_prediction", "sample"].includes(c.prediction_type), "supported: epsilon, v_prediction, sample"],
  ["timestep_spacing", ["leading", "trailing", "linspace"].includes(c.timestep_spacing), "supported: leading, trailing, linspace"],
  ["thresholding", !c.thresholding, "dynamic thresholding is not supported"]
]

/** How a scheduler config samples: timestep spacing, offsets, x0 clipping. */
export const samplingOptions = (c: SchedulerConfig): SamplingOptions => ({
  spacing: c.timestep_spacing as SamplingOptions["spacing"],
  stepsOffset: c.steps_offset,
  setAlphaToOne: c.set_alpha_to_one,
  clipSample: c.clip_sample ? c.clip_sample_range : null,
  useClippedModelOutput: false
})

/** The training noise schedule a scheduler config describes. */
export const noiseScheduleConfig = (c: SchedulerConfig): NoiseScheduleConfig => ({
  numTrainTimesteps: c.num_train_timesteps,
  betaStart: c.beta_start,
  betaEnd: c.beta_end,
  betaSchedule: c.beta_schedule as NoiseScheduleConfig["betaSchedule"],
  predictionType: c.prediction_type as NoiseScheduleConfig["predictionType"],
  rescaleZeroTerminalSnr: c.rescale_betas_zero_snr
})

// ---------------------------------------------------------------------------------------------------
// Reading

const modelFix = "use a Stable Diffusion 1.x/2.x model in the diffusers layout (e.g. a download of stable-diffusion-v1-5)"

const oneLine = (s: string) => s.replace(/\s*\n\s*/g, " ")

const readConfig = <A>(
  file: string,
  decode: (raw: unknown) => Effect.Effect<A, Schema.SchemaError>,
  checks: (config: A) => ReadonlyArray<Check>
) =>
  Effect.gen(function*() {
    const text = yield* Effect.tryPromise({
      try: () => fs.readFile(file, "utf8"),
      catch: (e) =>
        new ModelError({
          path: file,
          reason: (e as NodeJS.ErrnoException).code === "ENOENT" ? "missing" : `cannot read (${String(e)})`,
          fix: `restore the file from the model download; ${modelFix}`
        })
    })
    const raw = yield* Effect.try({
      try: (): unknown => JSON.parse(text),
      catch: (e) => new ModelError({ path: file, reason: `not valid JSON (${(e as Error).message})`, fix: "restore the file from the model download" })
    })
    const config = yield* decode(raw).pipe(
      Effect.mapError((e) => new ModelError({ path: file, reason: `invalid config: ${oneLine(e.message)}`, fix: "restore the file from the model download" }))
    )
    const failed = checks(config).find(([, ok]) => !ok)
    if (failed !== undefined) {
      const [key, , why] = failed
      return yield* new ModelError({
        path: file,
        reason: `unsupported "${key}": ${JSON.stringify((config as Record<string, unknown>)[key])} (${why})`,
        fix: modelFix
      })
    }
    return config
  })

const pickle = /\.(bin|ckpt|pt|pth|pkl)$/i

const convertHint = (root: string) =>
  `convert it to safetensors with diffusers: DiffusionPipeline.from_pretrained("${root}").save_pretrained(OUT, safe_serialization=True); ` +
  `for a single .ckpt file use StableDiffusionPipeline.from_single_file("model.ckpt").save_pretrained(OUT, safe_serialization=True) ` +
  `(or diffusers' scripts/convert_original_stable_diffusion_to_diffusers.py --to_safetensors)`

const listDir = (dir: string) =>
  Effect.tryPromise({
    try: () => fs.readdir(dir),
    catch: (e) =>
      new ModelError({
        path: dir,
        reason: `cannot read the folder (${(e as NodeJS.ErrnoException).code ?? String(e)})`,
        fix: "check the folder's permissions"
      })
  })

const isDirectory = (p: string) => Effect.promise(() => fs.stat(p).then((s) => s.isDirectory(), () => false))

const components = ["unet", "vae", "text_encoder", "scheduler"]

/** The weights file of one component: `BASE.safetensors`, else `BASE.fp16.safetensors`, else another variant. */
const findWeights = (root: string, component: string, base: string) =>
  Effect.gen(function*() {
    const dir = path.join(root, component)
    const files = (yield* listDir(dir)).sort()
    const variants = files.filter((f) => f.startsWith(`${base}.`) && f.endsWith(".safetensors"))
    const preferred = [`${base}.safetensors`, `${base}.fp16.safetensors`, ...variants].find((f) => files.includes(f))
    if (preferred !== undefined) return path.join(dir, preferred)
    const index = files.find((f) => f.startsWith(base) && f.endsWith(".safetensors.index.json"))
    if (index !== undefined) {
      return yield* new ModelError({
        path: path.join(dir, index),
        reason: "sharded weights are not supported",
        fix: `re-save the model in one file per component: DiffusionPipeline.from_pretrained("${root}").save_pretrained(OUT, safe_serialization=True, max_shard_size="100GB")`
      })
    }
    const pickles = files.filter((f) => pickle.test(f))
    if (pickles.length > 0) {
      return yield* new ModelError({
        path: path.join(dir, pickles[0]!),
        reason: "only PyTorch pickle weights here; disendiff reads safetensors only, as loading a pickle can run arbitrary code",
        fix: convertHint(root)
      })
    }
    return yield* new ModelError({
      path: dir,
      reason: `no ${base}.safetensors (the folder holds: ${files.length > 0 ? files.join(", ") : "nothing"})`,
      fix: `restore the weights from the model download; ${modelFix}`
    })
  })

const exists = (p: string) => Effect.promise(() => fs.access(p).then(() => true, () => false))

const findTokenizer = (root: string) =>
  Effect.gen(function*() {
    const vocab = path.join(root, "tokenizer", "vocab.json")
    const merges = path.join(root, "tokenizer", "merges.txt")
    const [hasVocab, hasMerges] = [yield* exists(vocab), yield* exists(merges)]
    if (hasVocab && hasMerges) return { vocab, merges }
    if (!hasVocab && !hasMerges) return null
    return yield* new ModelError({
      path: hasVocab ? merges : vocab,
      reason: "missing: the CLIP tokenizer needs both vocab.json and merges.txt",
      fix: "restore the tokenizer folder from the model download, or remove it to use the built-in CLIP vocabulary"
    })
  })

const mismatch = (file: string, key: string, value: unknown, why: string) =>
  new ModelError({ path: file, reason: `"${key}": ${JSON.stringify(value)} ${why}`, fix: modelFix })

/**
 * Only the UNet of a diffusers folder (what `bench` times): `dir/unet/`, or `dir` itself when it holds
 * the UNet's config.json (a UNet-only folder). Config parsed and checked, weights located; the other
 * components are neither needed nor read. The cross-attention width stands in for the text encoder's.
 */
export const readUnetFolder = Effect.fn("DiffusersFolder.readUnet")(function*(dir: string) {
  const resolved = path.resolve(dir)
  const own = yield* exists(path.join(resolved, "config.json"))
  const [root, component] = own ? [path.dirname(resolved), path.basename(resolved)] : [resolved, "unet"]
  const file = path.join(root, component, "config.json")
  const config = yield* readConfig(file, Schema.decodeUnknownEffect(UNetConfig), unetChecks)
  const contextDim = perBlock(config.cross_attention_dim, config.down_block_types.length)[0]!
  return { config, weights: yield* findWeights(root, component, "diffusion_pytorch_model"), contextDim }
})

/** Opens and validates a diffusers-layout Stable Diffusion folder (configs parsed, weights located). */
export const readDiffusersFolder = Effect.fn("DiffusersFolder.read")(function*(dir: string) {
  const root = path.resolve(dir)
  const stat = yield* Effect.tryPromise({
    try: () => fs.stat(root),
    catch: () => new ModelError({ path: root, reason: "no such folder", fix: `check the path; ${modelFix}` })
  })
  if (!stat.isDirectory()) {
    // PyTorch's own format (torch.save) is a zip of pickles, whatever the file is called
    const head = yield* Effect.promise(() =>
      fs.open(root, "r").then(async (h) => {
        const buf = Buffer.alloc(4)
        await h.read(buf, 0, 4, 0).finally(() => h.close())
        return buf
      }, () => Buffer.alloc(4))
    )
    const isPickle = pickle.test(root) || head.equals(Buffer.from([0x50, 0x4b, 0x03, 0x04]))
    return yield* new ModelError({
      path: root,
      reason: isPickle
        ? "a single PyTorch pickle file, not a diffusers model folder; disendiff reads safetensors only, as loading a pickle can run arbitrary code"
        : "a single file, not a diffusers model folder",
      fix: /\.(ckpt|safetensors)$/i.test(root) || isPickle
        ? `convert it to a diffusers folder of safetensors: StableDiffusionPipeline.from_single_file("${root}").save_pretrained(OUT, safe_serialization=True), then give OUT`
        : modelFix
    })
  }
  const missing = yield* Effect.filter(components, (c) => Effect.map(isDirectory(path.join(root, c)), (d) => !d))
  if (missing.length > 0) {
    return yield* new ModelError({
      path: path.join(root, missing[0]!),
      reason: `missing: a diffusers Stable Diffusion folder has ${components.map((c) => `${c}/`).join(", ")} (this one lacks ${missing.map((c) => `${c}/`).join(", ")})`,
      fix: `give the whole model folder, or ${modelFix}`
    })
  }
  const unetFile = path.join(root, "unet", "config.json")
  const unet = { config: yield* readConfig(unetFile, Schema.decodeUnknownEffect(UNetConfig), unetChecks), weights: yield* findWeights(root, "unet", "diffusion_pytorch_model") }
  const vaeFile = path.join(root, "vae", "config.json")
  const vae = { config: yield* readConfig(vaeFile, Schema.decodeUnknownEffect(VaeConfig), vaeChecks), weights: yield* findWeights(root, "vae", "diffusion_pytorch_model") }
  const textEncoder = {
    config: yield* readConfig(path.join(root, "text_encoder", "config.json"), Schema.decodeUnknownEffect(ClipTextConfig), clipChecks),
    weights: yield* findWeights(root, "text_encoder", "model")
  }
  const scheduler = { config: yield* readConfig(path.join(root, "scheduler", "scheduler_config.json"), Schema.decodeUnknownEffect(SchedulerConfig), schedulerChecks) }

  const hidden = textEncoder.config.hidden_size
  const latent = vae.config.latent_channels
  if (!perBlock(unet.config.cross_attention_dim, unet.config.down_block_types.length).every((d) => d === hidden)) {
    return yield* mismatch(unetFile, "cross_attention_dim", unet.config.cross_attention_dim, `does not match the text encoder's hidden_size ${hidden}`)
  }
  if (unet.config.in_channels !== latent) {
    return yield* mismatch(unetFile, "in_channels", unet.config.in_channels, `differs from the VAE's latent_channels ${latent} (inpainting and other extra-input UNets are not supported)`)
  }
  if (unet.config.out_channels !== latent) {
    return yield* mismatch(unetFile, "out_channels", unet.config.out_channels, `differs from the VAE's latent_channels ${latent}`)
  }
  return { root, unet, vae, textEncoder, scheduler, tokenizer: yield* findTokenizer(root) } satisfies DiffusersFolder
})
