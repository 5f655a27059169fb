/**
 * Regularisation images from a folder: each image with a caption, from `name.txt` beside it or from
 * the lines of `captions.txt` in file-name order (the layout Custom Diffusion's retrieval writes).
 */
import { Effect } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { ImageError, readImage } from "../image/Image.js"
import type { Item } from "./Data.js"

const imagePattern = /\.(png|jpe?g)$/i

export const readRegularizationFolder = Effect.fn("Regularization.read")(function*(dir: string) {
  const fail = (reason: string) =>
    new ImageError({ path: dir, reason, fix: "give a folder of PNG/JPEG images with a caption for each (name.txt or captions.txt)" })
  const entries = yield* Effect.tryPromise({ try: () => fs.readdir(dir), catch: () => fail("cannot read the folder") })
  const images = entries.filter((e) => imagePattern.test(e)).sort()
  if (images.length === 0) return yield* fail("no images in the folder")
  const listed = entries.includes("captions.txt")
    ? (yield* Effect.tryPromise({ try: () => fs.readFile(path.join(dir, "captions.txt"), "utf8"), catch: () => fail("cannot read captions.txt") }))
      .split("\n").map((l) => l.trim()).filter((l) => l.length > 0)
    : undefined
  if (listed !== undefined && listed.length < images.length) {
    return yield* fail(`captions.txt has ${listed.length} lines for ${images.length} images`)
  }
  return yield* Effect.forEach(images, (name, i) =>
    Effect.gen(function*() {
      const image = yield* readImage(path.join(dir, name))
      const caption = listed !== undefined
        ? listed[i]!
        : (yield* Effect.tryPromise({
          try: () => fs.readFile(path.join(dir, name.replace(imagePattern, ".txt")), "utf8"),
          catch: () => fail(`no caption for ${name} (expected ${name.replace(imagePattern, ".txt")} or captions.txt)`)
        })).trim()
      return { image, caption, isTarget: false } satisfies Item
    }))
})
