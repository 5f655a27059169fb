/**
 * Separable resampling with a support that widens when downscaling (antialiasing), in the manner of
 * PIL's `Image.resize` with BICUBIC (cubic convolution a = -0.5) or BILINEAR. Used to bring user
 * photos of any size to the model's resolution without aliasing.
 */
import type { RgbImage } from "./Image.js"

export type Filter = "bicubic" | "bilinear"

const kernels: Record<Filter, { support: number; f: (x: number) => number }> = {
  bilinear: { support: 1, f: (x) => Math.max(0, 1 - Math.abs(x)) },
  bicubic: {
    support: 2,
    f: (x) => {
      const a = -0.5
      x = Math.abs(x)
      if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1
      if (x < 2) return (((x - 5) * x + 8) * x - 4) * a
      return 0
    }
  }
}

/** For each output index: the first input index and the normalised weights. */
const coefficients = (inSize: number, outSize: number, filter: Filter) => {
  const { support, f } = kernels[filter]
  const scale = inSize / outSize
  const fscale = Math.max(scale, 1)
  const radius = support * fscale
  return Array.from({ length: outSize }, (_, o) => {
    const center = (o + 0.5) * scale
    const lo = Math.max(0, Math.floor(center - radius))
    const hi = Math.min(inSize, Math.ceil(center + radius))
    const w = Array.from({ length: hi - lo }, (_, k) => f((lo + k - center + 0.5) / fscale))
    const sum = w.reduce((a, b) => a + b, 0)
    return { lo, w: w.map((v) => v / sum) }
  })
}

export const resize = (img: RgbImage, width: number, height: number, filter: Filter = "bicubic"): RgbImage => {
  if (img.width === width && img.height === height) return img
  const cx = coefficients(img.width, width, filter)
  const cy = coefficients(img.height, height, filter)
  const tmp = new Float32Array(img.height * width * 3)
  for (let y = 0; y < img.height; y++) {
    for (let x = 0; x < width; x++) {
      const { lo, w } = cx[x]!
      for (let c = 0; c < 3; c++) {
        let acc = 0
        for (let k = 0; k < w.length; k++) acc += w[k]! * img.data[(y * img.width + lo + k) * 3 + c]!
        tmp[(y * width + x) * 3 + c] = acc
      }
    }
  }
  const out = new Float32Array(height * width * 3)
  for (let y = 0; y < height; y++) {
    const { lo, w } = cy[y]!
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) {
        let acc = 0
        for (let k = 0; k < w.length; k++) acc += w[k]! * tmp[((lo + k) * width + x) * 3 + c]!
        // bicubic overshoots at edges; PIL clamps to the pixel range as well
        out[(y * width + x) * 3 + c] = Math.min(1, Math.max(0, acc))
      }
    }
  }
  return { width, height, data: out }
}
