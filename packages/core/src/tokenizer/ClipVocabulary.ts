/**
 * The vocabulary of CLIP's byte-level BPE: token strings with their ids, and the merges in rank order.
 *
 * Two on-disk forms hold it. OpenAI's `bpe_simple_vocab_16e6.txt.gz` lists only merges (after a version
 * line); the ids follow from them: the 256 byte characters, the same with `</w>`, one token per merge,
 * then `<|startoftext|>` and `<|endoftext|>` (49,408 ids). A diffusers folder's `tokenizer/vocab.json`
 * and `tokenizer/merges.txt` (the transformers files) hold the ids explicitly. Both readers keep the
 * first 49152 - 256 - 2 = 48,894 merges, as OpenAI's SimpleTokenizer and transformers' CLIPTokenizer do.
 */
import { Effect } from "effect"
import { gunzipSync } from "node:zlib"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { ModelError } from "../backbone/Backbone.js"

export interface ClipVocabulary {
  readonly encoder: ReadonlyMap<string, number>
  readonly merges: ReadonlyArray<readonly [string, string]>
}

export const startOfText = "<|startoftext|>"
export const endOfText = "<|endoftext|>"

const maxMerges = 49152 - 256 - 2

/**
 * The character that stands for each byte (GPT-2's reversible byte-to-unicode map): printable Latin-1
 * characters stand for themselves, the other 68 bytes take U+0100 onwards, so BPE never sees
 * whitespace or control characters.
 */
export const byteToUnicode: ReadonlyArray<string> = (() => {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)
  let next = 256
  return Array.from({ length: 256 }, (_, b) => String.fromCharCode(printable(b) ? b : next++))
})()

/** Byte characters in vocabulary order: the printable ones in byte order, then the remapped ones. */
const byteTokens = [
  ...byteToUnicode.filter((ch) => ch.charCodeAt(0) < 256),
  ...byteToUnicode.filter((ch) => ch.charCodeAt(0) >= 256)
]

const parseMerge = (line: string): readonly [string, string] | undefined => {
  const parts = line.trim().split(/\s+/)
  return parts.length === 2 ? [parts[0]!, parts[1]!] : undefined
}

/** The merges of a merges file: a line naming the version, then one "left right" pair per line. */
const parseMerges = (text: string, file: string): ReadonlyArray<readonly [string, string]> => {
  const lines = text.trim().split("\n")
  if (!lines[0]!.includes("#version")) {
    throw new Error(`${file} does not start with a "#version" line`)
  }
  return lines.slice(1, maxMerges + 1).map((line, i) => {
    const merge = parseMerge(line)
    if (merge === undefined) throw new Error(`line ${i + 2} of ${file} is not a pair of tokens: "${line}"`)
    return merge
  })
}

/** The vocabulary in OpenAI's gzipped merges file (`bpe_simple_vocab_16e6.txt.gz`). */
export const clipVocabularyFromBpeGz = (gz: Uint8Array): ClipVocabulary => {
  const merges = parseMerges(gunzipSync(gz).toString("utf8"), "the BPE file")
  const tokens = [
    ...byteTokens,
    ...byteTokens.map((t) => `${t}</w>`),
    ...merges.map(([a, b]) => a + b),
    startOfText,
    endOfText
  ]
  return { encoder: new Map(tokens.map((t, i) => [t, i])), merges }
}

const fail = (file: string, reason: string, fix: string) => new ModelError({ path: file, reason, fix })

/** OpenAI's `bpe_simple_vocab_16e6.txt.gz`. */
export const readOpenAiVocabulary = Effect.fn("ClipVocabulary.readOpenAi")(function*(file: string) {
  const gz = yield* Effect.tryPromise({
    try: () => fs.readFile(file),
    catch: () => fail(file, "cannot read the file", "give the path of CLIP's bpe_simple_vocab_16e6.txt.gz")
  })
  return yield* Effect.try({
    try: () => clipVocabularyFromBpeGz(gz),
    catch: (e) => fail(file, `not a gzipped CLIP BPE file (${String(e)})`, "use the original bpe_simple_vocab_16e6.txt.gz")
  })
})

const parseEncoder = (text: string): ReadonlyMap<string, number> => {
  const json: unknown = JSON.parse(text)
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new Error("it is not a JSON object of token: id")
  }
  const encoder = new Map<string, number>()
  for (const [token, id] of Object.entries(json)) {
    if (!Number.isSafeInteger(id) || id < 0) throw new Error(`token "${token}" has id ${JSON.stringify(id)}`)
    encoder.set(token, id)
  }
  const seen = new Set(encoder.values())
  if (seen.size !== encoder.size || Math.max(...seen) !== encoder.size - 1) {
    throw new Error(`its ${encoder.size} ids are not 0..${encoder.size - 1}, each once`)
  }
  for (const special of [startOfText, endOfText]) {
    if (!encoder.has(special)) throw new Error(`it has no ${special} token`)
  }
  return encoder
}

/** The files of a diffusers model folder's tokenizer, relative to the folder. */
export const tokenizerFiles = { vocab: path.join("tokenizer", "vocab.json"), merges: path.join("tokenizer", "merges.txt") }

/** `tokenizer/vocab.json` and `tokenizer/merges.txt` of a diffusers Stable Diffusion folder. */
export const readDiffusersVocabulary = Effect.fn("ClipVocabulary.readDiffusers")(function*(folder: string) {
  const read = (file: string) =>
    Effect.tryPromise({
      try: () => fs.readFile(file, "utf8"),
      catch: () =>
        fail(file, "cannot read the file", "give a diffusers Stable Diffusion 1.x folder with tokenizer/vocab.json and tokenizer/merges.txt")
    })
  const vocabFile = path.join(folder, tokenizerFiles.vocab)
  const mergesFile = path.join(folder, tokenizerFiles.merges)
  const vocabText = yield* read(vocabFile)
  const mergesText = yield* read(mergesFile)
  const encoder = yield* Effect.try({
    try: () => parseEncoder(vocabText),
    catch: (e) => fail(vocabFile, `invalid vocabulary: ${e instanceof Error ? e.message : String(e)}`, "restore the model's original vocab.json")
  })
  const merges = yield* Effect.try({
    try: () => parseMerges(mergesText, mergesFile),
    catch: (e) => fail(mergesFile, `invalid merges: ${e instanceof Error ? e.message : String(e)}`, "restore the model's original merges.txt")
  })
  return { encoder, merges } satisfies ClipVocabulary
})

/** The text of `vocab.json` (ids in order) and `merges.txt` (transformers' `#version: 0.2` header). */
export const clipVocabularyFiles = (v: ClipVocabulary): { readonly vocabJson: string; readonly mergesTxt: string } => ({
  vocabJson: `{${[...v.encoder].sort((a, b) => a[1] - b[1]).map(([t, id]) => `${JSON.stringify(t)}: ${id}`).join(", ")}}`,
  mergesTxt: ["#version: 0.2", ...v.merges.map(([a, b]) => `${a} ${b}`)].join("\n") + "\n"
})

/** Writes `tokenizer/vocab.json` and `tokenizer/merges.txt` into a model folder. */
export const writeDiffusersVocabulary = Effect.fn("ClipVocabulary.writeDiffusers")(function*(folder: string, v: ClipVocabulary) {
  const files = clipVocabularyFiles(v)
  const dir = path.join(folder, "tokenizer")
  yield* Effect.tryPromise({
    try: async () => {
      await fs.mkdir(dir, { recursive: true })
      await fs.writeFile(path.join(folder, tokenizerFiles.vocab), files.vocabJson)
      await fs.writeFile(path.join(folder, tokenizerFiles.merges), files.mergesTxt)
    },
    catch: (e) => fail(dir, `cannot write the tokenizer files (${String(e)})`, "check that the folder is writable")
  })
})
