/**
 * A training snapshot in host memory: everything a run needs to continue exactly where it stopped.
 * Tensors are plain float32 arrays, so a snapshot is independent of the tensor backend.
 */
import { Schema } from "effect"
import { createHash } from "node:crypto"

export interface HostTensor {
  readonly shape: ReadonlyArray<number>
  readonly data: Float32Array
}

export const LossRecord = Schema.Struct({
  step: Schema.Int,
  loss: Schema.Finite,
  base: Schema.Finite,
  bind: Schema.NullOr(Schema.Finite),
  separation: Schema.NullOr(Schema.Finite),
  lr: Schema.Finite,
  gradNorm: Schema.Finite
})
export type LossRecord = typeof LossRecord.Type

export const formatVersion = 1

export const SnapshotHeader = Schema.Struct({
  formatVersion: Schema.Literal(formatVersion),
  /** What produced it: a personalisation run or the built-in model's pretraining. */
  kind: Schema.optionalKey(Schema.Literals(["train", "pretrain"])),
  /** Optimizer steps completed. */
  step: Schema.Int.check(Schema.isGreaterThanOrEqualTo(0)),
  /** The run's configuration (decoded again by the trainer's own schema on resume). */
  config: Schema.Unknown,
  rng: Schema.Struct({ algorithm: Schema.Literal("philox4x32-10"), seed: Schema.Int }),
  /** Micro-batches consumed; the data order is a pure function of it and the seed. */
  dataCursor: Schema.Int.check(Schema.isGreaterThanOrEqualTo(0)),
  baseModel: Schema.Struct({ kind: Schema.String, name: Schema.String, identity: Schema.String }),
  lossHistory: Schema.Array(LossRecord),
  /** Pretraining's own record: evaluations over time and training seconds (kept through resumes). */
  pretraining: Schema.optionalKey(Schema.Unknown)
})
export type SnapshotHeader = typeof SnapshotHeader.Type

export interface Snapshot {
  readonly header: SnapshotHeader
  readonly trainable: ReadonlyMap<string, HostTensor>
  readonly optimizer: {
    readonly step: number
    readonly m: ReadonlyMap<string, HostTensor>
    readonly v: ReadonlyMap<string, HostTensor>
  }
  /** Exponential moving average of the trainable tensors (pretraining keeps one). */
  readonly ema?: ReadonlyMap<string, HostTensor> | undefined
}

/** SHA-256 over the trainable tensors and the optimizer state, in a canonical order. */
export const snapshotDigest = (s: Snapshot): string => {
  const h = createHash("sha256")
  const add = (group: string, tensors: ReadonlyMap<string, HostTensor>) => {
    for (const name of [...tensors.keys()].sort()) {
      const t = tensors.get(name)!
      h.update(`${group}/${name}:${t.shape.join("x")};`)
      h.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength))
    }
  }
  add("trainable", s.trainable)
  h.update(`adam.step:${s.optimizer.step};`)
  add("adam.m", s.optimizer.m)
  add("adam.v", s.optimizer.v)
  if (s.ema !== undefined) add("ema", s.ema)
  return h.digest("hex")
}
