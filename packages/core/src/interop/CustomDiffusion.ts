/**
 * Trained deltas in the format of diffusers' Custom Diffusion example, so results load in Python tools
 * and back (method doc d): `pytorch_custom_diffusion_weights.safetensors` with one
 * `<layer>.processor.to_k_custom_diffusion.weight` / `to_v_custom_diffusion.weight` (and `to_q`,
 * `to_out_custom_diffusion.0` when trained) per cross-attention layer in PyTorch's `[out, in]` layout,
 * and one `<token>.safetensors` per new token holding its embedding row under the token's name.
 */
import { Effect } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { ModelError, modifierEmbeddingsName } from "../backbone/Backbone.js"
import type { HostTensor } from "../checkpoint/Snapshot.js"
import { readSafetensors, writeSafetensors } from "../io/Safetensors.js"
import { fromTensorData, toTensor } from "../models/Convert.js"
import { tf } from "../tensor/Tf.js"

export const weightsFile = "pytorch_custom_diffusion_weights.safetensors"

const toCustom = (name: string): string | undefined => {
  const m = /^unet\.(.*\.attn2)\.(to_[qkv]|to_out\.0)\.(weight|bias)$/.exec(name)
  if (m === null) return undefined
  const [, layer, proj, kind] = m
  const custom = proj === "to_out.0" ? "to_out_custom_diffusion.0" : `${proj}_custom_diffusion`
  return `${layer}.processor.${custom}.${kind}`
}

const fromCustom = (key: string): string | undefined => {
  const m = /^(.*\.attn2)\.processor\.(to_[qkv])_custom_diffusion\.(weight|bias)$/.exec(key) ??
    /^(.*\.attn2)\.processor\.(to_out)_custom_diffusion\.0\.(weight|bias)$/.exec(key)
  if (m === null) return undefined
  const [, layer, proj, kind] = m
  return `unet.${layer}.${proj === "to_out" ? "to_out.0" : proj}.${kind}`
}

/** Writes the trained tensors (our names and layouts) as Custom Diffusion deltas into `dir`. */
export const exportDeltas = Effect.fn("CustomDiffusion.export")(function*(
  dir: string,
  trained: ReadonlyMap<string, HostTensor>,
  modifiers: ReadonlyArray<string>
) {
  const unet = new Map<string, HostTensor>()
  for (const [name, t] of trained) {
    const key = toCustom(name)
    if (key !== undefined) unet.set(key, fromTensorData(name.replace(/^unet\./, ""), t.shape, t.data))
  }
  yield* writeSafetensors(path.join(dir, weightsFile), unet, { format: "pt", producer: "disendiff" })
  const rows = trained.get(modifierEmbeddingsName)
  if (rows !== undefined) {
    const d = rows.shape[1]!
    for (const [i, token] of modifiers.entries()) {
      yield* writeSafetensors(path.join(dir, `${token}.safetensors`), new Map([[token, { shape: [d], data: rows.data.slice(i * d, (i + 1) * d) }]]))
    }
  }
})

/** Reads Custom Diffusion deltas back as trained tensors in our names and layouts. */
export const importDeltas = Effect.fn("CustomDiffusion.import")(function*(dir: string, modifiers: ReadonlyArray<string>) {
  const file = path.join(dir, weightsFile)
  const stored = yield* readSafetensors(file)
  const out = new Map<string, tf.Tensor>()
  for (const [key, t] of stored) {
    const name = fromCustom(key)
    if (name === undefined) continue
    out.set(name, toTensor(name.replace(/^unet\./, ""), { shape: t.shape, data: Float32Array.from(t.data) }))
  }
  if (out.size === 0) return yield* new ModelError({ path: file, reason: "no Custom Diffusion attention weights in it", fix: `point at a folder written by diffusers' train_custom_diffusion.py or \`disendiff export\`` })
  const rows: Array<Float32Array> = []
  for (const token of modifiers) {
    const tokenFile = path.join(dir, `${token}.safetensors`)
    const exists = yield* Effect.promise(() => fs.access(tokenFile).then(() => true, () => false))
    if (!exists) return yield* new ModelError({ path: tokenFile, reason: `no embedding for ${token}`, fix: "export the deltas with their token files, or use the modifiers they were trained with" })
    const t = (yield* readSafetensors(tokenFile)).get(token)
    if (t === undefined) return yield* new ModelError({ path: tokenFile, reason: `no tensor named ${token}`, fix: "use the token files written with the deltas" })
    rows.push(Float32Array.from(t.data))
  }
  if (rows.length > 0) {
    const d = rows[0]!.length
    const data = new Float32Array(rows.length * d)
    rows.forEach((r, i) => data.set(r, i * d))
    out.set(modifierEmbeddingsName, tf.tensor(data, [rows.length, d]))
  }
  return out
})
