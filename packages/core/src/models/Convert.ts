/**
 * PyTorch state_dict tensors to this project's layouts: Conv2d `[out, in, kh, kw]` to HWIO
 * `[kh, kw, in, out]`, Linear `[out, in]` to `[in, out]`; embeddings, norms and biases unchanged.
 * Legacy VAE attention names (query/key/value/proj_attn, sometimes stored as 1x1 convs) are mapped to
 * the current ones, as diffusers does on load.
 */
import { tf } from "../tensor/Tf.js"

export interface HostTensor {
  readonly shape: ReadonlyArray<number>
  readonly data: Float32Array
}

const legacyAttention: Array<[RegExp, string]> = [
  [/\.query\.(weight|bias)$/, ".to_q.$1"],
  [/\.key\.(weight|bias)$/, ".to_k.$1"],
  [/\.value\.(weight|bias)$/, ".to_v.$1"],
  [/\.proj_attn\.(weight|bias)$/, ".to_out.0.$1"]
]

export const canonicalName = (name: string): string =>
  name.includes("attentions.") ? legacyAttention.reduce((n, [re, to]) => n.replace(re, to), name) : name

const isEmbedding = (name: string) => /embedding\.weight$/.test(name)
const isAttentionLinear = (name: string) => /\.(to_q|to_k|to_v|to_out\.0)\.weight$/.test(name)

/** One tensor in our layout (a new tf tensor). */
export const toTensor = (name: string, t: HostTensor): tf.Tensor => {
  const shape = [...t.shape]
  const x = tf.tensor(t.data, shape)
  if (shape.length === 4 && isAttentionLinear(name) && shape[2] === 1 && shape[3] === 1) {
    return tf.tidy(() => tf.transpose(tf.reshape(x, [shape[0]!, shape[1]!])))
  }
  if (shape.length === 4) return tf.tidy(() => tf.transpose(x, [2, 3, 1, 0]))
  if (shape.length === 2 && !isEmbedding(name)) return tf.tidy(() => tf.transpose(x, [1, 0]))
  return x
}

/** Our layout back to PyTorch's, for export. */
export const fromTensorData = (name: string, shape: ReadonlyArray<number>, data: Float32Array): HostTensor => {
  if (shape.length === 2 && !isEmbedding(name)) {
    const [r, c] = shape as [number, number]
    const out = new Float32Array(data.length)
    for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = data[i * c + j]!
    return { shape: [c, r], data: out }
  }
  if (shape.length === 4) {
    const [kh, kw, ci, co] = shape as [number, number, number, number]
    const out = new Float32Array(data.length)
    for (let a = 0; a < kh; a++) {
      for (let b = 0; b < kw; b++) {
        for (let i = 0; i < ci; i++) for (let o = 0; o < co; o++) out[((o * ci + i) * kh + a) * kw + b] = data[((a * kw + b) * ci + i) * co + o]!
      }
    }
    return { shape: [co, ci, kh, kw], data: out }
  }
  return { shape, data }
}
