/**
 * Parity with the reference implementation: runs every model a fixture manifest names on every
 * recorded input, and compares every recorded output, intermediate, attention map, gradient, scheduler
 * table and DDIM step with the manifest's tolerance `|ours - ref| <= atol + rtol |ref|`.
 * Shared by `disendiff check-model` and the test suite.
 */
import { Effect, Schema } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { makeClipTokenizer } from "../tokenizer/ClipTokenizer.js"
import { readOpenAiVocabulary } from "../tokenizer/ClipVocabulary.js"
import { ModelError } from "../backbone/Backbone.js"
import { type DiffusersFolder, noiseScheduleConfig, readDiffusersFolder, samplingOptions, SchedulerConfig } from "../io/DiffusersFolder.js"
import { readSafetensors, type StoredTensor } from "../io/Safetensors.js"
import * as Vae from "../models/AutoencoderKl.js"
import { clipTextForward, pooledOutput } from "../models/ClipTextModel.js"
import { clipTextConfig, unetConfig, vaeConfig } from "../models/Configs.js"
import { canonicalName, toTensor } from "../models/Convert.js"
import { unetForward } from "../models/Unet2dConditionModel.js"
import type { AttentionCall } from "../nn/Attention.js"
import { makeWeights } from "../nn/Weights.js"
import { addNoise, makeNoiseSchedule, type NoiseSchedule, trainingTarget } from "../schedule/NoiseSchedule.js"
import { ddimStep, ddpmStep, type SamplingOptions, timesteps as samplerTimesteps } from "../schedule/Schedulers.js"
import { TensorRuntime } from "../tensor/TensorRuntime.js"
import { tf } from "../tensor/Tf.js"
import { type FixtureFile, type Manifest, readManifest, type TensorSpec } from "./Manifest.js"

export interface CheckRow {
  readonly config: string
  readonly fixture: string
  readonly tensor: string
  readonly maxAbsError: number
  /** The tolerance at the worst element. */
  readonly allowed: number
  readonly pass: boolean
  readonly note?: string | undefined
}

/** Compares `ours` (already in the reference layout) with `ref` under the spec's tolerance. */
export const compare = (ours: ArrayLike<number>, ref: StoredTensor, spec: TensorSpec) => {
  if (ours.length !== ref.data.length) {
    return { maxAbsError: Infinity, allowed: 0, pass: false, note: `size ${ours.length}, expected ${ref.data.length}` }
  }
  let maxRef = 0
  for (let i = 0; i < ref.data.length; i++) maxRef = Math.max(maxRef, Math.abs(ref.data[i]!))
  const atol = spec.recommended_atol ?? 1e-5 * maxRef
  const rtol = spec.recommended_rtol ?? 1e-4
  let maxAbsError = 0
  let worstRatio = 0
  let allowed = atol
  for (let i = 0; i < ours.length; i++) {
    const err = Math.abs(ours[i]! - ref.data[i]!)
    const tol = atol + rtol * Math.abs(ref.data[i]!)
    if (!(err <= maxAbsError)) maxAbsError = err // NaN sticks
    if (err / tol > worstRatio) {
      worstRatio = err / tol
      allowed = tol
    }
  }
  return { maxAbsError, allowed, pass: !Number.isNaN(maxAbsError) && worstRatio <= 1, note: undefined }
}

/**
 * NHWC to NCHW (4-D), our `[in, out]` Linear weights to `[out, in]` (2-D), else unchanged; a new
 * tensor kept out of the enclosing `tidy`, read back (and disposed) by `readOutputs`.
 */
const toReference = (t: tf.Tensor, kind: "activation" | "linear-weight" = "activation"): tf.Tensor =>
  tf.keep(tf.tidy(() => {
    if (t.rank === 4 && kind === "activation") return tf.transpose(t, [0, 3, 1, 2])
    if (t.rank === 2 && kind === "linear-weight") return tf.transpose(t)
    return tf.clone(t)
  }))

/** Reference NCHW input to our NHWC tensor. */
const fromReference = (t: StoredTensor): tf.Tensor => {
  const x = tf.tensor(Float32Array.from(t.data), [...t.shape])
  return t.shape.length === 4 ? tf.tidy(() => tf.transpose(x, [0, 2, 3, 1])) : x
}

interface Models {
  readonly folder: DiffusersFolder
  readonly weights: Map<string, tf.Tensor>
}

const loadModels = (manifestDir: string, unetConfigPath: string) =>
  Effect.gen(function*() {
    const root = path.dirname(path.dirname(path.join(manifestDir, unetConfigPath)))
    const folder = yield* readDiffusersFolder(root)
    const weights = new Map<string, tf.Tensor>()
    for (const [prefix, file] of [["unet", folder.unet.weights], ["vae", folder.vae.weights], ["text", folder.textEncoder.weights]] as const) {
      const stored = yield* readSafetensors(file)
      for (const [name, t] of stored) {
        const canonical = canonicalName(name)
        weights.set(`${prefix}.${canonical}`, toTensor(canonical, { shape: t.shape, data: Float32Array.from(t.data) }))
      }
    }
    return { folder, weights } satisfies Models
  })

/** A runner's results: tensors still to read back, or values computed in JavaScript. */
type Outputs = Map<string, tf.Tensor | ArrayLike<number>>

const put = (out: Outputs, name: string, t: tf.Tensor, kind?: "activation" | "linear-weight") => out.set(name, toReference(t, kind))

/** Reads every output tensor back (asynchronously: GPU tensors have no synchronous read) and disposes it. */
const readOutputs = (out: Outputs) =>
  Effect.promise(async () => {
    try {
      const values = await Promise.all([...out].map(async ([name, v]) => [name, v instanceof tf.Tensor ? await v.data() : v] as const))
      return new Map<string, ArrayLike<number>>(values)
    } finally {
      tf.dispose([...out.values()].filter((v) => v instanceof tf.Tensor))
    }
  })

/** One fixture kind: computes the named outputs from the recorded inputs. */
type Runner = (m: Models, io: Map<string, StoredTensor>, schedule: NoiseSchedule) => Outputs

const ints = (t: StoredTensor) => Array.from(t.data, Number)

const runners: Record<string, Runner> = {
  clip: (m, io) => {
    const out: Outputs = new Map()
    tf.tidy(() => {
      const cfg = clipTextConfig(m.folder.textEncoder.config)
      const idsRef = io.get("input_ids")!
      const ids = tf.tensor2d(Int32Array.from(idsRef.data), [idsRef.shape[0]!, idsRef.shape[1]!], "int32")
      const w = makeWeights(m.weights).scope("text")
      const r = clipTextForward(cfg, w, ids, undefined, (name, t) => put(out, name, t))
      put(out, "last_hidden_state", r.lastHiddenState)
      const rows = Array.from({ length: idsRef.shape[0]! }, (_, b) => ints(idsRef).slice(b * idsRef.shape[1]!, (b + 1) * idsRef.shape[1]!))
      put(out, "pooler_output", pooledOutput(cfg, r.lastHiddenState, rows))
    })
    return out
  },
  unet: (m, io) => {
    const out: Outputs = new Map()
    tf.tidy(() => {
      const cfg = unetConfig(m.folder.unet.config)
      const w = makeWeights(m.weights).scope("unet")
      const ehs = fromReference(io.get("encoder_hidden_states")!)
      const main = unetForward(cfg, w, {
        latents: fromReference(io.get("sample")!),
        timesteps: ints(io.get("timestep")!),
        context: ehs,
        trace: (name, t) => put(out, `inter.${name}`, t)
      })
      put(out, "out", main)
      if (io.has("extra_sample")) {
        const x = fromReference(io.get("extra_sample")!)
        const t = ints(io.get("extra_timestep")!)
        const extra = unetForward(cfg, w, {
          latents: x,
          timesteps: Array.from({ length: x.shape[0]! }, () => t[0]!),
          context: tf.slice(ehs, [0, 0, 0], [x.shape[0]!, -1, -1])
        })
        put(out, "extra_out", extra)
      }
    })
    return out
  },
  attn_probs: (m, io, _s) => {
    // attention maps of the unet_io forward: the inputs live in that fixture's file
    void io
    return attentionOutputs(m)
  },
  unet_grads: (m, io) => {
    const out: Outputs = new Map()
    tf.tidy(() => {
      const cfg = unetConfig(m.folder.unet.config)
      const unetIo = ioCache.get(m)!
      const names = [...m.weights.keys()].filter((k) => /^unet\..*attn2\.to_[kv]\.weight$/.test(k))
      const f = (ehs: tf.Tensor, ...kv: Array<tf.Tensor>) => {
        const w = makeWeights(m.weights, new Map(names.map((n, i) => [n, kv[i]!]))).scope("unet")
        const pred = unetForward(cfg, w, { latents: fromReference(unetIo.get("sample")!), timesteps: ints(unetIo.get("timestep")!), context: ehs })
        return tf.mean(tf.square(tf.sub(pred, fromReference(io.get("target")!))))
      }
      const ehs = fromReference(unetIo.get("encoder_hidden_states")!)
      const { value, grads } = tf.valueAndGrads(f)([ehs, ...names.map((n) => m.weights.get(n)!)])
      put(out, "loss", value)
      put(out, "encoder_hidden_states", grads[0]!)
      names.forEach((n, i) => put(out, `grad.${n.slice("unet.".length)}`, grads[i + 1]!, "linear-weight"))
    })
    return out
  },
  vae: (m, io) => {
    const out: Outputs = new Map()
    tf.tidy(() => {
      const cfg = vaeConfig(m.folder.vae.config)
      const w = makeWeights(m.weights).scope("vae")
      const first = (name: string, t: tf.Tensor) => put(out, `inter.${name}`, tf.slice(t, [0, 0, 0, 0], [1, -1, -1, -1]))
      const p = Vae.encode(cfg, w, fromReference(io.get("image")!), first)
      put(out, "posterior_mean", p.mean)
      put(out, "posterior_logvar", p.logvar)
      put(out, "posterior_std", p.std)
      put(out, "decoded", Vae.decode(cfg, w, fromReference(io.get("z")!), first))
    })
    return out
  },
  ddim: (m, io, schedule) => {
    const out: Outputs = new Map()
    const cfg = unetConfig(m.folder.unet.config)
    const o = samplingOptions(m.folder.scheduler.config)
    const n = io.get("timesteps")!.data.length
    const ts = samplerTimesteps(schedule.config.numTrainTimesteps, n, o)
    out.set("timesteps", ts)
    const w = makeWeights(m.weights).scope("unet")
    const guidance = 6 // the fixture's guidance_scale (see its description)
    let latents = fromReference(io.get("init_latents")!)
    const context = tf.concat([fromReference(io.get("ehs_uncond")!), fromReference(io.get("ehs_cond")!)], 0)
    for (let i = 0; i < n; i++) {
      const t = ts[i]!
      const next = tf.tidy(() => {
        const input = tf.concat([latents, latents], 0)
        put(out, `step${i}.unet_input`, input)
        const eps = unetForward(cfg, w, { latents: input, timesteps: [t, t], context })
        const [u, c] = tf.split(eps, 2, 0)
        put(out, `step${i}.eps_uncond`, u!)
        put(out, `step${i}.eps_text`, c!)
        const guided = tf.add(u!, tf.mul(tf.sub(c!, u!), guidance))
        put(out, `step${i}.eps_guided`, guided)
        const r = ddimStep(schedule, o, guided, t, t - Math.floor(schedule.config.numTrainTimesteps / n), latents, 0)
        put(out, `step${i}.pred_original_sample`, r.predOriginalSample)
        put(out, `step${i}.latents_out`, r.prevSample)
        return r.prevSample
      })
      latents.dispose()
      latents = next
    }
    put(out, "final_latents", latents)
    tf.tidy(() => {
      const vcfg = vaeConfig(m.folder.vae.config)
      put(out, "decoded_image", Vae.decode(vcfg, makeWeights(m.weights).scope("vae"), tf.div(latents, vcfg.scalingFactor)))
    })
    tf.dispose([latents, context])
    return out
  }
}

// attn_probs and unet_grads reuse the unet fixture's inputs
const ioCache = new WeakMap<Models, Map<string, StoredTensor>>()

const attentionOutputs = (m: Models): Outputs => {
  const out: Outputs = new Map()
  const io = ioCache.get(m)!
  tf.tidy(() => {
    const calls: Array<AttentionCall> = []
    unetForward(unetConfig(m.folder.unet.config), makeWeights(m.weights).scope("unet"), {
      latents: fromReference(io.get("sample")!),
      timesteps: ints(io.get("timestep")!),
      context: fromReference(io.get("encoder_hidden_states")!),
      hook: (c) => calls.push(c)
    })
    for (const c of calls) out.set(c.layer, tf.keep(tf.clone(c.probs)))
  })
  return out
}

/** Scheduler tables shared by all configurations. */
const schedulerRows = (table: FixtureFile, io: Map<string, StoredTensor>, sd: NoiseSchedule) => {
  const out: Outputs = new Map()
  out.set("betas", Float32Array.from(sd.betas))
  out.set("alphas_cumprod", Float32Array.from(sd.alphasCumprod))
  for (const n of [10, 20, 50]) out.set(`ddim_timesteps_${n}`, samplerTimesteps(1000, n, { spacing: "leading", stepsOffset: 1 }))
  tf.tidy(() => {
    const x0 = fromReference(io.get("x0")!)
    const noise = fromReference(io.get("noise")!)
    const t = ints(io.get("t")!)
    put(out, "ddpm_add_noise", addNoise(sd, x0, noise, t))
    put(out, "ddpm_velocity", trainingTarget({ ...sd, config: { ...sd.config, predictionType: "v_prediction" } }, x0, noise, t))
    const o: SamplingOptions = { spacing: "leading", stepsOffset: 0, setAlphaToOne: false, clipSample: null, useClippedModelOutput: false }
    for (const step of [999, 500, 1, 0]) {
      const r = ddpmStep(sd, o, fromReference(io.get("ddpm_step_model_output")!), step, step - 1, fromReference(io.get("ddpm_step_sample")!), fromReference(io.get("ddpm_step_variance_noise")!))
      put(out, `ddpm_step_t${step}`, r.prevSample)
    }
  })
  return readOutputs(out).pipe(Effect.map((read) => rowsFor("shared", path.basename(table.file), table, io, read)))
}

const rowsFor = (config: string, fixture: string, file: FixtureFile, io: Map<string, StoredTensor>, out: Map<string, ArrayLike<number>>): Array<CheckRow> =>
  Object.entries(file.tensors)
    .filter(([, spec]) => spec.role !== "input")
    .map(([name, spec]) => {
      const ours = out.get(name)
      const ref = io.get(name)
      if (ours === undefined || ref === undefined) {
        return { config, fixture, tensor: name, maxAbsError: NaN, allowed: 0, pass: false, note: ref === undefined ? "not in the fixture file" : "not computed" }
      }
      return { config, fixture, tensor: name, ...compare(ours, ref, spec) }
    })

export interface CheckOptions {
  /** Called with each row as it is computed (progress for the CLI). */
  readonly onRow?: ((row: CheckRow) => Effect.Effect<void>) | undefined
  /** Extra checks (e.g. the tokenizer cases) appended by the caller. */
}

export const checkFixtures = Effect.fn("FixtureCheck.run")(function*(dir: string, options: CheckOptions = {}) {
  yield* TensorRuntime
  const manifest: Manifest = yield* readManifest(dir)
  const rows: Array<CheckRow> = []
  const emit = (r: Array<CheckRow>) =>
    Effect.gen(function*() {
      rows.push(...r)
      if (options.onRow !== undefined) for (const row of r) yield* options.onRow(row)
    })
  for (const [name, config] of Object.entries(manifest.configs)) {
    const models = yield* loadModels(dir, config.models.unet.config)
    const schedule = makeNoiseSchedule(noiseScheduleConfig(models.folder.scheduler.config))
    const files = new Map<string, Map<string, StoredTensor>>()
    for (const [kind, file] of Object.entries(config.fixtures)) files.set(kind, yield* readSafetensors(path.join(dir, file.file)))
    if (files.has("unet")) ioCache.set(models, files.get("unet")!)
    for (const [kind, file] of Object.entries(config.fixtures)) {
      const runner = runners[kind]
      const io = files.get(kind)!
      if (runner === undefined || (kind !== "unet" && ["attn_probs", "unet_grads"].includes(kind) && !files.has("unet"))) {
        yield* emit([{ config: name, fixture: kind, tensor: "*", maxAbsError: NaN, allowed: 0, pass: false, note: `no runner for fixture kind '${kind}'` }])
        continue
      }
      const out = yield* readOutputs(yield* Effect.sync(() => runner(models, io, schedule)))
      yield* emit(rowsFor(name, kind, file, io, out))
      yield* Effect.yieldNow
    }
    tf.dispose([...models.weights.values()])
  }
  if (manifest.scheduler_tables !== undefined) {
    const io = yield* readSafetensors(path.join(dir, manifest.scheduler_tables.file))
    const config = yield* Schema.decodeUnknownEffect(SchedulerConfig)(manifest.sd_scheduler_config ?? {}).pipe(
      Effect.mapError((e) => new ModelError({ path: path.join(dir, "manifest.json"), reason: `sd_scheduler_config: ${e.message}`, fix: "restore the manifest" }))
    )
    yield* emit(yield* schedulerRows(manifest.scheduler_tables, io, makeNoiseSchedule(noiseScheduleConfig(config))))
  }
  if (manifest.tokenizer !== undefined) yield* emit(yield* tokenizerRows(dir, manifest.tokenizer.file, manifest.tokenizer.vocab_file))
  return { manifest, rows }
})

/**
 * The tokenizer oracle: every case's `hf_slow_input_ids_77` (what diffusers' SD pipelines feed the
 * text encoder), one row per category; the error is the number of ids that differ.
 */
const tokenizerRows = (dir: string, file: string, vocabFile: string) =>
  Effect.gen(function*() {
    const casesFile = path.join(dir, file)
    const text = yield* Effect.tryPromise({
      try: () => fs.readFile(casesFile, "utf8"),
      catch: () => new ModelError({ path: casesFile, reason: "missing or unreadable", fix: "restore the fixture folder" })
    })
    const oracle = JSON.parse(text) as {
      max_length: number
      cases: Array<{ id: number; category: string; text: string; hf_slow_input_ids_77: Array<number> }>
    }
    // the manifest names the vocabulary relative to itself
    const vocabulary = yield* readOpenAiVocabulary(path.resolve(dir, vocabFile))
    const tokenizer = makeClipTokenizer({ vocabulary, modifiers: [], maxLength: oracle.max_length })
    const byCategory = new Map<string, { n: number; wrong: number; first?: number }>()
    for (const c of oracle.cases) {
      const ids = tokenizer.encode(c.text).ids
      const wrong = c.hf_slow_input_ids_77.filter((id, i) => ids[i] !== id).length
      const e = byCategory.get(c.category) ?? { n: 0, wrong: 0 }
      byCategory.set(c.category, { n: e.n + 1, wrong: e.wrong + wrong, ...(e.first === undefined && wrong > 0 ? { first: c.id } : e.first === undefined ? {} : { first: e.first }) })
    }
    return [...byCategory].map(([category, e]): CheckRow => ({
      config: "tokenizer",
      fixture: path.basename(file),
      tensor: `hf_slow_input_ids_77: ${category} (${e.n} cases)`,
      maxAbsError: e.wrong,
      allowed: 0,
      pass: e.wrong === 0,
      note: e.first === undefined ? undefined : `case ${e.first} differs`
    }))
  })

export { ModelError }
