import { assert, describe, expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { rareTokenInitRows, makeClipTokenizer } from "../src/tokenizer/ClipTokenizer.js"
import {
  clipVocabularyFiles,
  clipVocabularyFromBpeGz,
  readDiffusersVocabulary,
  readOpenAiVocabulary,
  writeDiffusersVocabulary
} from "../src/tokenizer/ClipVocabulary.js"
import { fixText } from "../src/tokenizer/FixText.js"
import { tempDir } from "./fixtures.js"

const fixtures = fileURLToPath(new URL("../../../fixtures/", import.meta.url))
const bpeFile = path.join(fixtures, "data/bpe_simple_vocab_16e6.txt.gz")
const oracle = JSON.parse(fs.readFileSync(path.join(fixtures, "sd-tiny/tokenizer/tokenizer_cases.json"), "utf8")) as {
  readonly cases: ReadonlyArray<{
    readonly text: string
    readonly category: string
    readonly ftfy_fix_text: string
    readonly hf_slow_bpe_ids: ReadonlyArray<number>
    readonly hf_slow_input_ids_77: ReadonlyArray<number>
  }>
}

const vocabulary = clipVocabularyFromBpeGz(fs.readFileSync(bpeFile))
const tokenizer = makeClipTokenizer({ vocabulary, modifiers: [] })
const idsOf = (tokens: ReadonlyArray<string>) => tokens.map((t) => vocabulary.encoder.get(t) ?? -1)
const tokenOf = new Map([...vocabulary.encoder].map(([t, id]) => [id, t]))
// The byte tokens, the first 100 merges and the specials, renumbered.
const smallVocabulary = {
  encoder: new Map(
    [...vocabulary.encoder].filter(([, id]) => id < 612 || id >= 49406).map(([t], i) => [t, i] as const)
  ),
  merges: vocabulary.merges.slice(0, 100)
}
const padded = (ids: ReadonlyArray<number>) => [...ids, ...Array<number>(77 - ids.length).fill(49407)]

const failure = <A, E>(eff: Effect.Effect<A, E>) =>
  Effect.map(Effect.exit(eff), (exit) => {
    assert.isTrue(Exit.isFailure(exit))
    return Exit.isFailure(exit) ? String(exit.cause) : ""
  })

describe("ClipVocabulary", () => {
  it("reads OpenAI's BPE file: 256 bytes, 256 end-of-word bytes, 48,894 merges, two specials", () => {
    expect(vocabulary.encoder.size).toBe(49408)
    expect(vocabulary.merges.length).toBe(48894)
    expect(vocabulary.merges[0]).toEqual(["i", "n"])
    expect(vocabulary.encoder.get("!")).toBe(0)
    expect(vocabulary.encoder.get("!</w>")).toBe(256)
    expect(vocabulary.encoder.get("in")).toBe(512)
    expect(vocabulary.encoder.get("<|startoftext|>")).toBe(49406)
    expect(vocabulary.encoder.get("<|endoftext|>")).toBe(49407)
  })

  it("has the method's init rows as ktn, pll and ucd</w> (method doc a.1.3)", () => {
    expect([42170, 47629, 43514].map((id) => tokenOf.get(id))).toEqual(["ktn", "pll", "ucd</w>"])
  })

  it.effect("round-trips through vocab.json and merges.txt with identical tokenisation", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.promise(() => tempDir())
      yield* writeDiffusersVocabulary(dir, vocabulary)
      const back = yield* readDiffusersVocabulary(dir)
      expect(back.encoder.size).toBe(49408)
      expect(clipVocabularyFiles(back)).toEqual(clipVocabularyFiles(vocabulary))
      const again = makeClipTokenizer({ vocabulary: back, modifiers: ["<v1>"] })
      const first = makeClipTokenizer({ vocabulary, modifiers: ["<v1>"] })
      for (const c of oracle.cases) assert.deepStrictEqual(again.encode(c.text), first.encode(c.text))
      const files = clipVocabularyFiles(vocabulary)
      expect(files.mergesTxt.startsWith("#version: 0.2\ni n\nt h\n")).toBe(true)
      expect(files.vocabJson.startsWith("{\"!\": 0, \"\\\"\": 1, ")).toBe(true)
    }))

  it.effect("names the missing or invalid tokenizer file", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.promise(() => tempDir())
      const missing = yield* failure(readDiffusersVocabulary(dir))
      expect(missing).toContain("ModelError")
      expect(missing).toContain(path.join(dir, "tokenizer", "vocab.json"))
      yield* writeDiffusersVocabulary(dir, smallVocabulary)
      expect(yield* readDiffusersVocabulary(dir)).toEqual(smallVocabulary)
      yield* Effect.promise(() => fsp.writeFile(path.join(dir, "tokenizer", "merges.txt"), "i n\nt h\n"))
      const invalid = yield* failure(readDiffusersVocabulary(dir))
      expect(invalid).toContain(path.join(dir, "tokenizer", "merges.txt"))
      expect(invalid).toContain("#version")
      const notGz = yield* failure(readOpenAiVocabulary(path.join(dir, "tokenizer", "merges.txt")))
      expect(notGz).toContain("not a gzipped CLIP BPE file")
    }))
})

describe("ClipTokenizer", () => {
  it("encodes 'a photo of a cat' in SD 1.x's layout", () => {
    const e = tokenizer.encode("a photo of a cat")
    expect(e.ids).toEqual(padded([49406, 320, 1125, 539, 320, 2368, 49407]))
    expect(e.length).toBe(7)
    expect(e.tokens.slice(0, 8)).toEqual(["<|startoftext|>", "a</w>", "photo</w>", "of</w>", "a</w>", "cat</w>", "<|endoftext|>", "<|endoftext|>"])
    expect(tokenizer.tokenize("a photo of a cat")).toEqual(["a</w>", "photo</w>", "of</w>", "a</w>", "cat</w>"])
  })

  it(`matches transformers' slow CLIPTokenizer (with ftfy) on all ${oracle.cases.length} oracle cases`, () => {
    for (const c of oracle.cases) {
      const e = tokenizer.encode(c.text)
      expect({ text: c.text, ids: e.ids }).toEqual({ text: c.text, ids: c.hf_slow_input_ids_77 })
      expect({ text: c.text, bpe: idsOf(tokenizer.tokenize(c.text)) }).toEqual({ text: c.text, bpe: c.hf_slow_bpe_ids })
      expect(e.length).toBe(Math.min(c.hf_slow_bpe_ids.length, 75) + 2)
      expect({ text: c.text, fixed: fixText(c.text) }).toEqual({ text: c.text, fixed: c.ftfy_fix_text })
    }
  })

  it("truncates long prompts to start + 75 tokens + end", () => {
    const e = tokenizer.encode("a photo of a cat ".repeat(30))
    expect(e.length).toBe(77)
    expect(e.ids[76]).toBe(49407)
    expect(tokenizer.tokenize("a photo of a cat ".repeat(30)).length).toBe(150)
  })

  it("splits the text on modifier tokens, exact matches only, and gives them the ids after the vocabulary", () => {
    const t = makeClipTokenizer({ vocabulary, modifiers: ["<v1>", "<v2>"] })
    expect(t.modifiers).toEqual([{ token: "<v1>", id: 49408 }, { token: "<v2>", id: 49409 }])
    expect(t.vocabSize).toBe(49410)
    const e = t.encode("<v1> cat and <v2> dog")
    expect(e.ids.slice(0, 8)).toEqual([49406, 49408, 2368, 537, 49409, 1929, 49407, 49407])
    expect(e.tokens.slice(0, 7)).toEqual(["<|startoftext|>", "<v1>", "cat</w>", "and</w>", "<v2>", "dog</w>", "<|endoftext|>"])
    expect(t.tokenize("<v1>cat <V1> x<v2>")).toEqual(["<v1>", "cat</w>", "<</w>", "v</w>", "1</w>", "></w>", "x</w>", "<v2>"])
    expect(() => makeClipTokenizer({ vocabulary, modifiers: ["<v1>", "<v1>"] })).toThrow(/repeated/)
    expect(() => makeClipTokenizer({ vocabulary, modifiers: ["cat</w>"] })).toThrow(/vocabulary token/)
  })

  it("assigns the official init rows to 1, 2 or 3 new tokens", () => {
    expect(rareTokenInitRows(1)).toEqual([42170])
    expect(rareTokenInitRows(2)).toEqual([47629, 42170])
    expect(rareTokenInitRows(3)).toEqual([43514, undefined, 42170])
    expect(() => rareTokenInitRows(0)).toThrow(RangeError)
  })
})

describe("fixText (ftfy 6.3.1 fix_text)", () => {
  // Expected values are ftfy 6.3.1's own outputs.
  const cases: ReadonlyArray<readonly [string, string]> = [
    ["cafÃ©", "café"],
    ["voilÃ le travail", "voilà le travail"],
    ["Ã la mode", "à la mode"],
    ["â€œquotedâ€\ufffd text", "\"quoted\ufffd text"],
    ["ÐŸÑ€Ð¸Ð²ÐµÑ‚", "Привет"],
    ["naÃ¯ve Ã©tÃ© ðŸ˜€", "naïve été 😀"],
    ["Ã­Â\u00a0Â½Ã­Â¸Â\u0080", "😀"],
    ["sÃ³ 1Â½ cups", "só 1½ cups"],
    ["Ã\u0081rvÃ\u00adztÅ±rÅ‘", "Árvíztűrő"],
    ["bullet â€¢ list", "bullet • list"],
    ["Ł\u0081", "ف"],
    ["\u0093smart\u0094 \u0085", "\"smart\" …"],
    ["&EACUTE;TÉ &SZLIG; &NOTIN; &GTRDOT;", "ÉTÉ SS ∉ &GTRDOT;"],
    ["&#x1F600; &#128512; &#59; &#0; &#x80; &#127;", "😀 😀 &#59; \ufffd € "],
    ["&amp;\n<b>&amp;</b>", "&\n<b>&amp;</b>"],
    ["a\r\nb\u2028c", "a\nb\nc"],
    ["\u001b[31mred\u001b[0m", "red"],
    ["zero\u200bwidth\ufeff", "zero\u200bwidth"],
    ["ǅ ﬁ ﬃ ﬅ", "Dž fi ffi ſt"],
    ["ｈｅｌｌｏ　ｗｏｒｌｄ", "hello world"],
    ["e\u0301te\u0301", "été"]
  ]
  it("repairs mojibake, entities, widths, ligatures, controls and line breaks as ftfy does", () => {
    for (const [text, fixed] of cases) expect({ text, fixed: fixText(text) }).toEqual({ text, fixed })
  })
})
