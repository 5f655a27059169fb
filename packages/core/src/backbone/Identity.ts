/** SHA-256 identity of a base model: its config and every frozen tensor, in name order. */
import { createHash } from "node:crypto"
import type { tf } from "../tensor/Tf.js"

export const modelIdentity = (config: unknown, tensors: ReadonlyMap<string, tf.Tensor>): string => {
  const h = createHash("sha256")
  h.update(JSON.stringify(config))
  for (const name of [...tensors.keys()].sort()) {
    const t = tensors.get(name)!
    h.update(`${name}:${t.dtype}:${t.shape.join("x")};`)
    const data = t.dataSync()
    h.update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength))
  }
  return h.digest("hex")
}
