/** Files the tests make for themselves. */
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { encodePng, type RgbImage } from "../src/image/Image.js"

/** A `width x height` picture of two coloured discs on grey: a stand-in for "a cat and a dog". */
export const twoConceptImage = (width = 48, height = 40): RgbImage => {
  const data = new Float32Array(width * height * 3)
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3
      const inA = (x - width * 0.3) ** 2 + (y - height * 0.5) ** 2 < (height * 0.2) ** 2
      const inB = (x - width * 0.72) ** 2 + (y - height * 0.45) ** 2 < (height * 0.18) ** 2
      const rgb = inA ? [0.9, 0.4, 0.1] : inB ? [0.2, 0.3, 0.9] : [0.5, 0.5, 0.5]
      data.set(rgb, i)
    }
  }
  return { width, height, data }
}

export const tempDir = (prefix = "disendiff-test-") => fs.mkdtemp(path.join(os.tmpdir(), prefix))

export const writeTestImage = async (dir: string, name = "a.png") => {
  const file = path.join(dir, name)
  await fs.writeFile(file, encodePng(twoConceptImage()))
  return file
}
