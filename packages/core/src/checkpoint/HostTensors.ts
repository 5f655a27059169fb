/** Named tensors between the backend and host memory (what snapshots hold). */
import { Effect } from "effect"
import { tf } from "../tensor/Tf.js"
import type { HostTensor } from "./Snapshot.js"

/** Reads every tensor back to host memory (asynchronous on GPU backends). */
export const toHost = (m: ReadonlyMap<string, tf.Tensor>): Effect.Effect<Map<string, HostTensor>> =>
  Effect.promise(async () => new Map(await Promise.all([...m].map(async ([k, t]) => [k, { shape: [...t.shape], data: (await t.data()) as Float32Array }] as const))))

/** Backend tensors of host tensors; the caller disposes them. */
export const toTensors = (m: ReadonlyMap<string, HostTensor>): Map<string, tf.Tensor> => new Map([...m].map(([k, h]) => [k, tf.tensor(h.data, [...h.shape])]))
