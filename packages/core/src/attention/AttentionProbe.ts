/**
 * Records cross-attention probabilities during a forward pass and aggregates them into one map per
 * (row, token): the plain mean over the selected layers and their heads (method doc a.3, c).
 *
 * Selection is by query count, as the official code selects `A.shape[1] == 256` (the 16x16 level of
 * SD at 512 px), optionally narrowed to named layers; `"all"` takes every layer and bicubic-resizes
 * each map to the largest grid first (the paper's "average of all scales" ablation).
 */
import { Context, Layer } from "effect"
import type { AttentionCall, AttentionHook } from "../nn/Attention.js"
import { tf } from "../tensor/Tf.js"
import { resizeBicubic } from "./Bicubic.js"

export interface ProbeSelection {
  /** Number of query positions of the layers to record (256 = a 16x16 grid), or every layer. */
  readonly queries: number | "all"
  /** Only these layer names, when given. */
  readonly layers?: ReadonlyArray<string> | undefined
}

export const defaultSelection: ProbeSelection = { queries: 256 }

export interface Recording {
  readonly hook: AttentionHook
  readonly calls: () => ReadonlyArray<AttentionCall>
}

/** Per-row, per-token maps `[B, H*W, T]` on a `H x W` grid, still on the gradient tape. */
export interface AggregatedMaps {
  readonly maps: tf.Tensor
  readonly height: number
  readonly width: number
  readonly layers: ReadonlyArray<string>
}

export class NoAttentionRecorded extends Error {
  constructor(readonly selection: ProbeSelection) {
    super(`no cross-attention layer matched the probe selection ${JSON.stringify(selection)}`)
  }
}

export const selects = (s: ProbeSelection, call: { layer: string; height: number; width: number }) =>
  (s.queries === "all" || call.height * call.width === s.queries) &&
  (s.layers === undefined || s.layers.includes(call.layer))

export const record = (s: ProbeSelection): Recording => {
  const calls: Array<AttentionCall> = []
  return {
    hook: (call) => {
      if (selects(s, call)) calls.push(call)
    },
    calls: () => calls
  }
}

/** Mean over all recorded (layer, head) maps; maps of other grids are resized to the largest first. */
export const aggregate = (calls: ReadonlyArray<AttentionCall>, s: ProbeSelection): AggregatedMaps => {
  if (calls.length === 0) throw new NoAttentionRecorded(s)
  const target = calls.reduce((a, c) => (c.height * c.width > a.height * a.width ? c : a))
  const [H, W] = [target.height, target.width]
  let sum: tf.Tensor | undefined
  let count = 0
  for (const c of calls) {
    const [BH, N, T] = c.probs.shape as [number, number, number]
    const B = BH / c.heads
    // sum over heads: [B, heads, N, T] -> [B, N, T]
    let m = tf.sum(tf.reshape(c.probs, [B, c.heads, N, T]), 1)
    if (c.height !== H || c.width !== W) {
      const grids = tf.reshape(tf.transpose(m, [0, 2, 1]), [B * T, c.height, c.width])
      m = tf.transpose(tf.reshape(resizeBicubic(grids, H, W), [B, T, H * W]), [0, 2, 1])
    }
    sum = sum === undefined ? m : tf.add(sum, m)
    count += c.heads
  }
  return { maps: tf.div(sum!, count), height: H, width: W, layers: calls.map((c) => c.layer) }
}

/** The `[H, W]` map of token position `p` in row `r`. */
export const tokenMap = (a: AggregatedMaps, r: number, p: number): tf.Tensor =>
  tf.reshape(tf.slice(a.maps, [r, 0, p], [1, a.height * a.width, 1]), [a.height, a.width])

export class AttentionProbe extends Context.Service<AttentionProbe, {
  readonly selection: ProbeSelection
  readonly record: () => Recording
  readonly aggregate: (calls: ReadonlyArray<AttentionCall>) => AggregatedMaps
}>()("@disendiff/core/AttentionProbe") {
  static readonly make = (selection: ProbeSelection = defaultSelection) =>
    AttentionProbe.of({ selection, record: () => record(selection), aggregate: (calls) => aggregate(calls, selection) })

  static readonly layer = (selection: ProbeSelection = defaultSelection): Layer.Layer<AttentionProbe> =>
    Layer.succeed(AttentionProbe, AttentionProbe.make(selection))
}
