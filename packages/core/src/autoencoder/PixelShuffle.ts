/**
 * An exact, lossless autoencoder: 2x pixel-unshuffle `[B, H, W, C] -> [B, H/2, W/2, 4C]` (channel order
 * dy, dx, c) and its inverse. It gives a 32x32 image a 16x16 latent grid, the resolution at which the
 * method reads cross-attention, without a learned VAE.
 */
import { tf } from "../tensor/Tf.js"

export const unshuffle = (x: tf.Tensor): tf.Tensor => {
  const [B, H, W, C] = x.shape as [number, number, number, number]
  const y = tf.transpose(tf.reshape(x, [B * (H / 2), 2, W / 2, 2 * C]), [0, 2, 1, 3])
  return tf.reshape(y, [B, H / 2, W / 2, 4 * C])
}

export const shuffle = (z: tf.Tensor): tf.Tensor => {
  const [B, h, w, C4] = z.shape as [number, number, number, number]
  const y = tf.transpose(tf.reshape(z, [B * h, w, 2, C4 / 2]), [0, 2, 1, 3])
  return tf.reshape(y, [B, 2 * h, 2 * w, C4 / 4])
}
