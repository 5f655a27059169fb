/** SHA-256 identity of a base model: its config and every frozen tensor, in name order. */
import { Effect } from "effect"
import { createHash } from "node:crypto"
import type { tf } from "../tensor/Tf.js"

/** Reads the tensors back one at a time (asynchronously, as GPU backends need), so only one is copied out at once. */
export const modelIdentity = (config: unknown, tensors: ReadonlyMap<string, tf.Tensor>): Effect.Effect<string> =>
  Effect.promise(async () => {
    const h = createHash("sha256")
    h.update(JSON.stringify(config))
    for (const name of [...tensors.keys()].sort()) {
      const t = tensors.get(name)!
      h.update(`${name}:${t.dtype}:${t.shape.join("x")};`)
      const data = await t.data()
      h.update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength))
    }
    return h.digest("hex")
  })
