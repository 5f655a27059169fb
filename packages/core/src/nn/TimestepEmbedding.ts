/**
 * Sinusoidal timestep features as diffusers' `Timesteps(flip_sin_to_cos=True, freq_shift=0)` makes
 * them for SD: `[cos(t w_i) | sin(t w_i)]`, `w_i = exp(-ln(10000) i / half)`, rounded to float32
 * like diffusers does (the fixtures' `inter.time_proj`).
 */
import { tf } from "../tensor/Tf.js"

export const timestepFeatures = (timesteps: ReadonlyArray<number>, dim: number, freqShift = 0): tf.Tensor => {
  const half = dim / 2
  const out = new Float32Array(timesteps.length * dim)
  const freqs = new Float32Array(half)
  for (let i = 0; i < half; i++) freqs[i] = Math.exp((-Math.log(10000) * i) / (half - freqShift))
  timesteps.forEach((t, r) => {
    for (let i = 0; i < half; i++) {
      const arg = Math.fround(Math.fround(t) * freqs[i]!)
      out[r * dim + i] = Math.cos(arg)
      out[r * dim + half + i] = Math.sin(arg)
    }
  })
  return tf.tensor(out, [timesteps.length, dim])
}
