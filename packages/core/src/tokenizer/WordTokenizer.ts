/**
 * A word-level tokenizer for small vocabularies (the built-in model's world, the fake backbone).
 * Ids: 0 padding, 1 start, 2 end, then the vocabulary words, then the modifier tokens.
 * Text is lower-cased and split on whitespace and punctuation; `<...>` modifiers stay whole.
 */
import { purposeId } from "../random/Rng.js"
import type { TokenizedText, Tokenizer } from "./Tokenizer.js"

export const PAD = 0
export const START = 1
export const END = 2
const specials = ["<pad>", "<start>", "<end>"]

export interface WordTokenizerOptions {
  /** Known words. Unknown words are an error unless `hashBuckets` is set. */
  readonly words: ReadonlyArray<string>
  /** Other spellings of known words, mapped to their ids (e.g. "an" to "a"). */
  readonly aliases?: Readonly<Record<string, string>> | undefined
  /** Map unknown words to one of this many extra ids by hashing (any text is accepted). */
  readonly hashBuckets?: number
  readonly modifiers: ReadonlyArray<string>
  readonly maxLength: number
  /** Id of the first modifier (default: right after the words and hash buckets). */
  readonly modifierBase?: number
}

export class UnknownWord extends Error {
  constructor(readonly word: string, readonly text: string) {
    super(`unknown word '${word}' in "${text}"`)
  }
}

export const splitWords = (text: string): Array<string> =>
  text.toLowerCase().match(/<[^<>\s]+>|[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]/g) ?? []

export interface WordTokenizer extends Tokenizer {
  /** Ids in use, modifiers included. */
  readonly vocabSize: number
}

export const makeWordTokenizer = (o: WordTokenizerOptions): WordTokenizer => {
  const index = new Map<string, number>()
  o.words.forEach((w, i) => index.set(w, specials.length + i))
  const hashBase = specials.length + o.words.length
  const buckets = o.hashBuckets ?? 0
  const modifierBase = o.modifierBase ?? hashBase + buckets
  const modifiers = o.modifiers.map((token, i) => ({ token, id: modifierBase + i }))
  const modifierIndex = new Map(modifiers.map((m) => [m.token.toLowerCase(), m.id]))

  const idOf = (word: string, text: string): number => {
    const id = modifierIndex.get(word) ?? index.get(o.aliases?.[word] ?? word)
    if (id !== undefined) return id
    if (buckets > 0) return hashBase + (purposeId(word) % buckets)
    throw new UnknownWord(word, text)
  }

  const tokenize = (text: string) => splitWords(text)

  const encode = (text: string): TokenizedText => {
    const words = tokenize(text).slice(0, o.maxLength - 2)
    const ids = [START, ...words.map((w) => idOf(w, text)), END]
    const tokens = ["<start>", ...words, "<end>"]
    const length = ids.length
    while (ids.length < o.maxLength) {
      ids.push(PAD)
      tokens.push("<pad>")
    }
    return { ids, tokens, length }
  }

  return {
    maxLength: o.maxLength,
    encode,
    tokenize,
    modifiers,
    vocabSize: modifierBase + modifiers.length,
    ...(buckets > 0 ? {} : { vocabulary: o.words })
  }
}
