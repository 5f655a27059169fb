/**
 * The training data pipeline of the method (method doc a.2): the target image centre-cropped and resized
 * to the model's resolution, optional regularisation images, a random horizontal flip for every row, and
 * Custom Diffusion's scale augmentation of target rows (shrink and paste on mid-grey with a caption
 * prefix and a loss mask, or enlarge and crop). Every random choice is drawn from the counter-based
 * generator keyed by the row's global index, so the data of step k never depends on earlier steps.
 */
import { centerCrop, flipHorizontal, type RgbImage } from "../image/Image.js"
import { resize } from "../image/Resize.js"
import { stream } from "../random/Rng.js"
import type { BackboneShape } from "../backbone/Backbone.js"
import type { AugmentConfig } from "./TrainConfig.js"

export interface Item {
  readonly image: RgbImage
  readonly caption: string
  readonly isTarget: boolean
}

export interface Row {
  /** `size * size * 3` pixels in [-1, 1]. */
  readonly pixels: Float32Array
  readonly caption: string
  /** `latent * latent` loss mask. */
  readonly mask: Float32Array
  readonly isTarget: boolean
}

/** A source image made square and brought to the training size. */
export const prepareImage = (img: RgbImage, size: number): RgbImage => resize(centerCrop(img), size, size, "bicubic")

/**
 * Which item feeds global row `k`. With R regularisation items the dataset is R copies of the target
 * plus the R items, reshuffled every epoch (the official mix, without its off-by-one); without any,
 * every row is the target.
 */
export const itemForRow = (seed: number, k: number, regularization: number): { isTarget: boolean; index: number } => {
  if (regularization === 0) return { isTarget: true, index: 0 }
  const n = 2 * regularization
  const epoch = Math.floor(k / n)
  const slot = stream(seed, epoch, "data-order").permutation(n)[k % n]!
  return slot < regularization ? { isTarget: true, index: 0 } : { isTarget: false, index: slot - regularization }
}

/** Scale augmentation, with the official 512-px numbers scaled to `size`. */
const scaleAugment = (
  img: RgbImage,
  size: number,
  latentFactor: number,
  aug: AugmentConfig,
  rnd: ReturnType<typeof stream>
): { image: RgbImage; mask: Float32Array; prefix: string } => {
  const at = (v: number) => Math.round((v * size) / 512)
  const h = size / latentFactor
  const ones = () => new Float32Array(h * h).fill(1)
  let s = rnd.uniform() < 2 / 3 ? rnd.int(at(170), size) : rnd.int(at(614), at(715))
  if (s % 2 === 1) s += 1
  if (s < 0.6 * size) {
    const small = resize(img, s, s, "bicubic")
    const cx = rnd.int(s / 2, size - s / 2) // row of the centre
    const cy = rnd.int(s / 2, size - s / 2) // column
    const data = new Float32Array(size * size * 3).fill(0.5) // zero in [-1, 1]
    for (let y = 0; y < s; y++) {
      const row = cx - s / 2 + y
      data.set(small.data.subarray(y * s * 3, (y + 1) * s * 3), (row * size + cy - s / 2) * 3)
    }
    const mask = new Float32Array(h * h)
    const r0 = Math.floor((cx - s / 2) / latentFactor) + 1
    const r1 = Math.floor((cx + s / 2) / latentFactor) - 1
    const c0 = Math.floor((cy - s / 2) / latentFactor) + 1
    const c1 = Math.floor((cy + s / 2) / latentFactor) - 1
    for (let r = r0; r < r1; r++) for (let c = c0; c < c1; c++) mask[r * h + c] = 1
    const prefix = aug.smallPrefixes.length > 0 ? aug.smallPrefixes[rnd.int(0, aug.smallPrefixes.length - 1)]! : ""
    return { image: { width: size, height: size, data }, mask, prefix }
  }
  if (s > size) {
    const big = resize(img, s, s, "bicubic")
    const cx = rnd.int(size / 2, s - size / 2)
    const cy = rnd.int(size / 2, s - size / 2)
    const data = new Float32Array(size * size * 3)
    for (let y = 0; y < size; y++) {
      const row = cx - size / 2 + y
      data.set(big.data.subarray((row * s + cy - size / 2) * 3, (row * s + cy + size / 2) * 3), y * size * 3)
    }
    const prefix = aug.largePrefixes.length > 0 ? aug.largePrefixes[rnd.int(0, aug.largePrefixes.length - 1)]! : ""
    return { image: { width: size, height: size, data }, mask: ones(), prefix }
  }
  return { image: img, mask: ones(), prefix: "" }
}

export interface RowOptions {
  readonly seed: number
  /** Global row index: micro-batch index x batch size + row. */
  readonly k: number
  readonly size: number
  readonly latentFactor: number
  readonly augment: AugmentConfig
  readonly target: Item
  readonly regularization: ReadonlyArray<Item>
  /** The backbone's own augmentation of the target (`augment.world`). */
  readonly augmentTarget?: BackboneShape["augmentTarget"]
}

export const makeRow = (o: RowOptions): Row => {
  const which = itemForRow(o.seed, o.k, o.regularization.length)
  const item = which.isTarget ? o.target : o.regularization[which.index]!
  const rnd = stream(o.seed, o.k, "augment")
  let image = item.image
  let caption = item.caption
  if (item.isTarget && o.augment.world !== undefined && o.augmentTarget !== undefined) {
    const a = o.augmentTarget(image, caption, stream(o.seed, o.k, "augment-world"), o.augment.world)
    image = a.image
    caption = a.caption
  }
  if (o.augment.flip && rnd.uniform() < 0.5) image = flipHorizontal(image)
  const h = o.size / o.latentFactor
  let mask: Float32Array = new Float32Array(h * h).fill(1)
  if (item.isTarget && o.augment.scale) {
    const a = scaleAugment(image, o.size, o.latentFactor, o.augment, rnd)
    image = a.image
    mask = a.mask
    caption = a.prefix + caption
  }
  const pixels = new Float32Array(image.data.length)
  for (let i = 0; i < pixels.length; i++) pixels[i] = image.data[i]! * 2 - 1
  return { pixels, caption, mask, isTarget: item.isTarget }
}
