/**
 * RGB images in memory as float32 HWC in [0, 1], read from PNG or JPEG and written as PNG.
 * Decoding uses pngjs and jpeg-js (pure JS, no native code).
 */
import { Effect, Schema } from "effect"
import jpeg from "jpeg-js"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { PNG } from "pngjs"

export interface RgbImage {
  readonly width: number
  readonly height: number
  /** `height * width * 3` values in [0, 1], row-major, RGB. */
  readonly data: Float32Array
}

export class ImageError extends Schema.TaggedError<ImageError>()("ImageError", {
  path: Schema.String,
  reason: Schema.String,
  fix: Schema.String
}) {
  override get message() {
    return `image ${this.path}: ${this.reason}. Fix: ${this.fix}`
  }
}

const fromRgba = (width: number, height: number, rgba: Uint8Array): RgbImage => {
  const data = new Float32Array(width * height * 3)
  for (let i = 0; i < width * height; i++) {
    // composite transparent pixels over white, as most viewers show them
    const a = rgba[4 * i + 3]! / 255
    for (let c = 0; c < 3; c++) data[3 * i + c] = (rgba[4 * i + c]! / 255) * a + (1 - a)
  }
  return { width, height, data }
}

const isPng = (b: Uint8Array) => b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47
const isJpeg = (b: Uint8Array) => b[0] === 0xff && b[1] === 0xd8

/** Decodes PNG or JPEG bytes (recognised by their signature, not the file name). */
export const decodeImage = (file: string, bytes: Uint8Array): Effect.Effect<RgbImage, ImageError> =>
  Effect.try({
    try: () => {
      if (isPng(bytes)) {
        const png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))
        return fromRgba(png.width, png.height, png.data)
      }
      if (isJpeg(bytes)) {
        const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxMemoryUsageInMB: 2048 })
        return fromRgba(img.width, img.height, img.data)
      }
      throw new Error("not a PNG or JPEG file")
    },
    catch: (e) =>
      new ImageError({
        path: file,
        reason: `cannot decode (${e instanceof Error ? e.message : String(e)})`,
        fix: "give a readable PNG or JPEG image"
      })
  })

export const readImage = Effect.fn("Image.read")(function*(file: string) {
  const bytes = yield* Effect.tryPromise({
    try: () => fs.readFile(file),
    catch: (e) =>
      new ImageError({
        path: file,
        reason: (e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : `cannot read (${String(e)})`,
        fix: "check the path to the image"
      })
  })
  return yield* decodeImage(file, bytes)
})

export const encodePng = (img: RgbImage): Buffer => {
  const png = new PNG({ width: img.width, height: img.height })
  for (let i = 0; i < img.width * img.height; i++) {
    for (let c = 0; c < 3; c++) png.data[4 * i + c] = Math.round(Math.min(1, Math.max(0, img.data[3 * i + c]!)) * 255)
    png.data[4 * i + 3] = 255
  }
  return PNG.sync.write(png)
}

export const writePng = Effect.fn("Image.writePng")(function*(file: string, img: RgbImage) {
  yield* Effect.tryPromise({
    try: async () => {
      await fs.mkdir(path.dirname(path.resolve(file)), { recursive: true })
      await fs.writeFile(file, encodePng(img))
    },
    catch: (e) => new ImageError({ path: file, reason: `cannot write (${String(e)})`, fix: "check the output folder" })
  })
})

/** The largest centred square, as the official data pipeline crops (method doc a.2). */
export const centerCrop = (img: RgbImage): RgbImage => {
  const s = Math.min(img.width, img.height)
  const x0 = Math.floor((img.width - s) / 2)
  const y0 = Math.floor((img.height - s) / 2)
  const data = new Float32Array(s * s * 3)
  for (let y = 0; y < s; y++) data.set(img.data.subarray(((y0 + y) * img.width + x0) * 3, ((y0 + y) * img.width + x0 + s) * 3), y * s * 3)
  return { width: s, height: s, data }
}

export const flipHorizontal = (img: RgbImage): RgbImage => {
  const data = new Float32Array(img.data.length)
  for (let y = 0; y < img.height; y++) {
    for (let x = 0; x < img.width; x++) {
      const src = (y * img.width + x) * 3
      const dst = (y * img.width + (img.width - 1 - x)) * 3
      data[dst] = img.data[src]!
      data[dst + 1] = img.data[src + 1]!
      data[dst + 2] = img.data[src + 2]!
    }
  }
  return { width: img.width, height: img.height, data }
}
