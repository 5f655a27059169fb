/**
 * transformers' CLIPTextModel as SD 1.x uses it: token + position embeddings, pre-LayerNorm encoder
 * layers with causal self-attention and an MLP, a final LayerNorm; the conditioning is the final
 * layer's normalised hidden states. Modifier tokens (ids past the vocabulary) take their embedding
 * from trainable rows, injected by a mask, so the frozen table needs no gather gradient and every
 * other position's embedding is detached (DisenDiff's text encoder, method doc a.1.4).
 */
import { activation, type ActivationName } from "../nn/Activation.js"
import { linear } from "../nn/Linear.js"
import { batchMatMul, matMul } from "../nn/fastOps.js"
import { layerNorm } from "../nn/Norm.js"
import type { Weights } from "../nn/Weights.js"
import { tf } from "../tensor/Tf.js"
import type { Trace } from "./Blocks.js"

export interface ClipTextConfig {
  readonly vocabSize: number
  readonly hiddenSize: number
  readonly heads: number
  readonly layers: number
  readonly maxPositions: number
  readonly act: ActivationName
  readonly layerNormEps: number
  /** transformers' pooler rule: eos id 2 means "argmax of the ids" (legacy), else the first eos. */
  readonly eosTokenId: number
}

/** Embeddings of `ids [B, L]`; ids at or past `vocabSize` are modifier rows `vocabSize + i`. */
export const embedTokens = (cfg: ClipTextConfig, w: Weights, ids: tf.Tensor, modifierRows?: tf.Tensor): tf.Tensor => {
  const table = w.get("token_embedding.weight")
  const isModifier = tf.cast(tf.greaterEqual(ids, cfg.vocabSize), "float32")
  // modifier positions look up row 0 of the table and are overwritten below
  const safeIds = tf.cast(tf.mul(ids, tf.cast(tf.less(ids, cfg.vocabSize), "int32")), "int32")
  // a trained table (pretraining) needs the lookup's gradient, which wasm lacks for gather
  // (no UnsortedSegmentSum): a one-hot product has one, and small tables make it cheap
  let h = w.trains("token_embedding.weight")
    ? (() => {
      const [B, L] = ids.shape as [number, number]
      const hot = tf.oneHot(tf.reshape(safeIds, [B * L]), cfg.vocabSize)
      return tf.reshape(matMul(tf.cast(hot, "float32"), table), [B, L, cfg.hiddenSize])
    })()
    : tf.gather(table, safeIds)
  if (modifierRows !== undefined) {
    const n = modifierRows.shape[0]!
    const [B, L] = ids.shape as [number, number]
    const hot = tf.oneHot(tf.reshape(tf.sub(tf.cast(ids, "int32"), tf.scalar(cfg.vocabSize, "int32")), [B * L]), n) // -ve ids: zero rows
    const rows = tf.reshape(tf.matMul(tf.cast(hot, "float32"), modifierRows), [B, L, cfg.hiddenSize])
    h = tf.add(tf.mul(h, tf.expandDims(tf.sub(1, isModifier), 2)), rows)
  }
  return h
}

/** Causal multi-head self-attention with biases (CLIPAttention). */
const selfAttention = (cfg: ClipTextConfig, w: Weights, x: tf.Tensor): tf.Tensor => {
  const [B, L, D] = x.shape as [number, number, number]
  const H = cfg.heads
  const d = D / H
  const split = (t: tf.Tensor) => tf.reshape(tf.transpose(tf.reshape(t, [B, L, H, d]), [0, 2, 1, 3]), [B * H, L, d])
  const q = split(tf.mul(linear(w.scope("q_proj"), x), 1 / Math.sqrt(d)))
  const k = split(linear(w.scope("k_proj"), x))
  const v = split(linear(w.scope("v_proj"), x))
  const causal = tf.linalg.bandPart(tf.ones([L, L]), -1, 0) // 1 on and below the diagonal
  const scores = tf.add(batchMatMul(q, tf.transpose(k, [0, 2, 1])), tf.mul(tf.sub(1, causal), -1e9))
  const out = batchMatMul(tf.softmax(scores), v)
  const merged = tf.reshape(tf.transpose(tf.reshape(out, [B, H, L, d]), [0, 2, 1, 3]), [B, L, D])
  return linear(w.scope("out_proj"), merged)
}

export interface ClipOutput {
  /** final_layer_norm(last hidden state): what SD's UNet is conditioned on. */
  readonly lastHiddenState: tf.Tensor
}

export const clipTextForward = (
  cfg: ClipTextConfig,
  w: Weights,
  ids: tf.Tensor,
  modifierRows?: tf.Tensor,
  trace?: Trace
): ClipOutput => {
  const e = w.scope("text_model.embeddings")
  const L = ids.shape[1]!
  let h = tf.add(embedTokens(cfg, e, ids, modifierRows), tf.slice(e.get("position_embedding.weight"), [0, 0], [L, cfg.hiddenSize]))
  trace?.("hidden_states.0", h)
  const act = activation(cfg.act)
  for (let i = 0; i < cfg.layers; i++) {
    const l = w.scope(`text_model.encoder.layers.${i}`)
    h = tf.add(h, selfAttention(cfg, l.scope("self_attn"), layerNorm(l.scope("layer_norm1"), h, cfg.layerNormEps)))
    const m = l.scope("mlp")
    h = tf.add(h, linear(m.scope("fc2"), act(linear(m.scope("fc1"), layerNorm(l.scope("layer_norm2"), h, cfg.layerNormEps)))))
    trace?.(`hidden_states.${i + 1}`, h)
  }
  return { lastHiddenState: layerNorm(w.scope("text_model.final_layer_norm"), h, cfg.layerNormEps) }
}

/** transformers' pooled output: the hidden state at the end token (argmax of ids under the legacy eos id 2). */
export const pooledOutput = (cfg: ClipTextConfig, lastHiddenState: tf.Tensor, ids: ReadonlyArray<ReadonlyArray<number>>): tf.Tensor => {
  const rows = ids.map((row) => {
    const pos = cfg.eosTokenId === 2
      ? row.reduce((best, v, i) => (v > row[best]! ? i : best), 0)
      : Math.max(0, row.indexOf(cfg.eosTokenId))
    return pos
  })
  return tf.stack(rows.map((p, b) => tf.reshape(tf.slice(lastHiddenState, [b, p, 0], [1, 1, -1]), [-1])))
}
