/**
 * Bicubic resizing as a differentiable linear map, matching PyTorch's `F.interpolate(mode="bicubic",
 * align_corners=False)` (cubic convolution with A = -0.75, edge indices clamped). Used by the
 * all-resolutions ablation, which resizes every attention map to one grid before averaging.
 */
import { tf } from "../tensor/Tf.js"

const A = -0.75
const cubic1 = (x: number) => ((A + 2) * x - (A + 3)) * x * x + 1 // |x| <= 1
const cubic2 = (x: number) => ((A * x - 5 * A) * x + 8 * A) * x - 4 * A // 1 < |x| < 2

/** `[out, in]` interpolation matrix for one axis. */
export const bicubicMatrix = (inSize: number, outSize: number): Float32Array => {
  const m = new Float32Array(outSize * inSize)
  const scale = inSize / outSize
  for (let o = 0; o < outSize; o++) {
    const src = (o + 0.5) * scale - 0.5
    const i0 = Math.floor(src)
    const t = src - i0
    const w = [cubic2(t + 1), cubic1(t), cubic1(1 - t), cubic2(2 - t)]
    for (let k = 0; k < 4; k++) {
      const i = Math.min(Math.max(i0 - 1 + k, 0), inSize - 1)
      m[o * inSize + i] += w[k]!
    }
  }
  return m
}

/** Resizes `[G, h, w]` maps to `[G, H, W]`. */
export const resizeBicubic = (maps: tf.Tensor, H: number, W: number): tf.Tensor => {
  const [G, h, w] = maps.shape as [number, number, number]
  if (h === H && w === W) return maps
  const my = tf.tensor(bicubicMatrix(h, H), [H, h])
  const mxT = tf.transpose(tf.tensor(bicubicMatrix(w, W), [W, w]))
  // rows: [H, h] @ [h, G*w] after moving G inside; columns: [G*H, w] @ [w, W]
  const byRows = tf.matMul(my, tf.reshape(tf.transpose(maps, [1, 0, 2]), [h, G * w]))
  const cols = tf.reshape(tf.transpose(tf.reshape(byRows, [H, G, w]), [1, 0, 2]), [G * H, w])
  return tf.reshape(tf.matMul(cols, mxT), [G, H, W])
}
