/** A small Stable Diffusion folder for tests: fixture config A's models and a tokenizer made here. */
import { ClipVocabulary } from "@disendiff/core"
import { Effect } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { root } from "./cli.js"

export const fixtureA = path.resolve(root, "fixtures/sd-tiny/A")

/** Words the tests' captions use, each merged into one token (so class words are single tokens). */
const words = ["a", "photo", "of", "cat", "dog", "and", "far", "away", "very", "small", "zoomed", "in", "close", "up", "on", "the"]

/** Byte-level base vocabulary, merges that build each word left to right, then the special tokens. */
export const smallVocabulary = (): ClipVocabulary.ClipVocabulary => {
  const base = [...ClipVocabulary.byteToUnicode, ...ClipVocabulary.byteToUnicode.map((c) => `${c}</w>`)]
  const merges: Array<readonly [string, string]> = []
  const tokens = new Set(base)
  for (const w of words) {
    const pieces = [...w.slice(0, -1)].concat(`${w.slice(-1)}</w>`)
    let left = pieces[0]!
    for (const right of pieces.slice(1)) {
      const merged = left + right
      if (!tokens.has(merged)) {
        merges.push([left, right])
        tokens.add(merged)
      }
      left = merged
    }
  }
  const vocab = [...base, ...merges.map(([a, b]) => a + b), ClipVocabulary.startOfText, ClipVocabulary.endOfText]
  return { encoder: new Map(vocab.map((t, i) => [t, i])), merges }
}

/** Copies config A's model folders (weights linked) and writes the small tokenizer. */
export const makeSdFolder = async (dir: string): Promise<string> => {
  for (const part of ["unet", "vae", "text_encoder", "scheduler"]) {
    await fs.mkdir(path.join(dir, part), { recursive: true })
    for (const f of await fs.readdir(path.join(fixtureA, part))) {
      if (f.endsWith(".json")) await fs.copyFile(path.join(fixtureA, part, f), path.join(dir, part, f))
      else await fs.symlink(path.join(fixtureA, part, f), path.join(dir, part, f))
    }
  }
  await Effect.runPromise(ClipVocabulary.writeDiffusersVocabulary(dir, smallVocabulary()))
  return dir
}
