/** Deterministic parameter initialisation from the counter-based generator, one stream per name. */
import { stream } from "../random/Rng.js"
import { tf } from "../tensor/Tf.js"

/** Normal(0, std^2) values for parameter `name`, independent of every other name and of call order. */
export const normalInit = (seed: number, name: string, shape: Array<number>, std: number): tf.Tensor => {
  const n = shape.reduce((a, b) => a * b, 1)
  const v = stream(seed, 0, `init:${name}`).normals(n)
  for (let i = 0; i < n; i++) v[i] = v[i]! * std
  return tf.tensor(v, shape)
}

/** PyTorch's default fan-in scale for a weight whose fan-in is the product of all but the last axis. */
export const fanInInit = (seed: number, name: string, shape: Array<number>, gain = 1): tf.Tensor => {
  const fanIn = shape.slice(0, -1).reduce((a, b) => a * b, 1)
  return normalInit(seed, name, shape, gain / Math.sqrt(fanIn))
}
