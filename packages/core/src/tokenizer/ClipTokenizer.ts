/**
 * Stable Diffusion 1.x's text tokenizer: CLIP's byte-level BPE exactly as transformers' slow
 * CLIPTokenizer applies it with ftfy installed, which is what diffusers' SD pipelines and the official
 * DisenDiff code use.
 *
 * Added tokens (`<|startoftext|>`, `<|endoftext|>` and the modifier tokens) are cut out of the raw text
 * first, by exact match, leftmost and then longest first. Every other piece of text is fixed with ftfy
 * (FixText.ts), its whitespace runs made single spaces and trimmed, lower-cased and split by CLIP's
 * pattern into the contractions 's 't 're 've 'm 'll 'd, runs of letters, single digits and runs of
 * other non-space characters. Each part is written one character per UTF-8 byte, and BPE merges its
 * adjacent pair of lowest rank until no pair is a merge, the last character carrying `</w>`. Pieces
 * missing from the vocabulary become `<|endoftext|>` (transformers' unknown token).
 */
import type { TokenizedText, Tokenizer } from "./Tokenizer.js"
import { byteToUnicode, type ClipVocabulary, endOfText, startOfText } from "./ClipVocabulary.js"
import { fixText } from "./FixText.js"

export interface ClipTokenizerOptions {
  readonly vocabulary: ClipVocabulary
  /** New tokens such as `<v1>`, `<v2>`: ids `vocabulary size + i` in this order. */
  readonly modifiers: ReadonlyArray<string>
  /** Length of `encode`'s id sequences, start and end tokens included (SD 1.x: 77). */
  readonly maxLength?: number
}

export interface ClipTokenizer extends Tokenizer {
  /** Number of ids: the vocabulary's, then one per modifier (the text encoder's embedding rows). */
  readonly vocabSize: number
  readonly startId: number
  readonly endId: number
}

// Unicode White_Space: Python's `\s` in the `regex` module that transformers uses.
const whiteSpace = "\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
// str.isspace adds the information separators U+1C-U+1F (ftfy has removed them by now).
const trimmed = new RegExp(`^[${whiteSpace}\\x1c-\\x1f]+|[${whiteSpace}\\x1c-\\x1f]+$`, "g")
const spaceRuns = new RegExp(`[${whiteSpace}]+`, "g")
// CLIP's pattern, matched case-insensitively upstream: on lower-cased text that only lets 'ſ' stand for
// 's', and it makes U+0345 (which case-folds to a Greek letter) match none of the classes, so it drops out.
const s = "[sſ]"
const pattern = new RegExp(
  `<\\|${s}tartoftext\\|>|<\\|endoftext\\|>|'${s}|'t|'re|'ve|'m|'ll|'d|\\p{L}+|\\p{N}|[^${whiteSpace}\\p{L}\\p{N}\\u0345]+`,
  "gu"
)

const utf8 = new TextEncoder()
// Upstream's BPE cache is unbounded; this one is emptied when it grows past this many words.
const cacheLimit = 100_000

/**
 * Row ids copied into the new tokens' embedding rows, in token order, as the official DisenDiff code
 * does it (method doc a.1.3; DisenDiff `src/custom_modules.py` `add_token`): the last token gets row
 * 42170 (`ktn`); with exactly two tokens the first gets 47629 (`pll`); with exactly three the first gets
 * 43514 (`ucd</w>`) and the middle one none. `undefined` marks a row that upstream leaves as the resized
 * embedding initialised it (the method doc's "second-to-last ← 47629 if 2 or 3 tokens" is not what
 * the code does for three).
 */
export const rareTokenInitRows = (count: number): ReadonlyArray<number | undefined> => {
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`need at least one new token, got ${count}`)
  const rows: Array<number | undefined> = Array.from({ length: count }, () => undefined)
  rows[count - 1] = 42170
  if (count === 2) rows[0] = 47629
  if (count === 3) rows[0] = 43514
  return rows
}

export const makeClipTokenizer = (options: ClipTokenizerOptions): ClipTokenizer => {
  const { vocabulary, modifiers: modifierTokens } = options
  const maxLength = options.maxLength ?? 77
  if (!Number.isInteger(maxLength) || maxLength < 2) {
    throw new RangeError(`maxLength ${maxLength} leaves no room for the start and end tokens; use 77 for SD 1.x`)
  }
  const encoder = vocabulary.encoder
  const vocabularySize = encoder.size
  const startId = encoder.get(startOfText)
  const endId = encoder.get(endOfText)
  if (startId === undefined || endId === undefined) {
    throw new Error(`the vocabulary has no ${startOfText} or ${endOfText} token; load CLIP's own vocabulary`)
  }
  modifierTokens.forEach((token, i) => {
    if (token.length === 0 || encoder.has(token) || modifierTokens.indexOf(token) !== i) {
      throw new Error(`modifier token "${token}" is empty, a vocabulary token or repeated; use new strings such as <v1>, <v2>`)
    }
  })
  const modifiers = modifierTokens.map((token, i) => ({ token, id: vocabularySize + i }))
  const addedIds = new Map<string, number>([[startOfText, startId], [endOfText, endId], ...modifiers.map((m) => [m.token, m.id] as const)])
  const added = [...addedIds.keys()].sort((a, b) => b.length - a.length)

  const names: Array<string> = []
  for (const [token, id] of encoder) names[id] = token
  for (const m of modifiers) names[m.id] = m.token

  // (a repeated merge keeps its last rank, as a Python dict built from the list does)
  const ranks = new Map(vocabulary.merges.map(([a, b], rank) => [`${a} ${b}`, rank]))

  const cache = new Map<string, ReadonlyArray<string>>()
  const bpe = (word: string): ReadonlyArray<string> => {
    if (word === startOfText || word === endOfText) return [word]
    const hit = cache.get(word)
    if (hit !== undefined) return hit
    let parts = [...word]
    parts[parts.length - 1] += "</w>"
    while (parts.length > 1) {
      let best = -1
      let bestRank = Infinity
      for (let i = 0; i + 1 < parts.length; i++) {
        const rank = ranks.get(`${parts[i]} ${parts[i + 1]}`)
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank
          best = i
        }
      }
      if (best < 0) break
      const first = parts[best]!
      const second = parts[best + 1]!
      const merged: Array<string> = []
      for (let i = 0; i < parts.length; i++) {
        if (parts[i] === first && parts[i + 1] === second && i + 1 < parts.length) {
          merged.push(first + second)
          i++
        } else {
          merged.push(parts[i]!)
        }
      }
      parts = merged
    }
    if (cache.size >= cacheLimit) cache.clear()
    cache.set(word, parts)
    return parts
  }

  const textPieces = (text: string, out: Array<readonly [string, number]>) => {
    const clean = fixText(text).replace(spaceRuns, " ").replace(trimmed, "").toLowerCase()
    for (const [part] of clean.matchAll(pattern)) {
      let word = ""
      for (const byte of utf8.encode(part)) word += byteToUnicode[byte]
      for (const token of bpe(word)) out.push([token, encoder.get(token) ?? endId])
    }
  }

  /** Tokens with their ids, added tokens cut out first. */
  const pieces = (text: string): Array<readonly [string, number]> => {
    const out: Array<readonly [string, number]> = []
    let from = 0
    for (let i = 0; i < text.length;) {
      const token = added.find((t) => text.startsWith(t, i))
      if (token === undefined) {
        i++
        continue
      }
      if (i > from) textPieces(text.slice(from, i), out)
      out.push([token, addedIds.get(token)!])
      i += token.length
      from = i
    }
    if (from < text.length) textPieces(text.slice(from), out)
    return out
  }

  const encode = (text: string): TokenizedText => {
    const ids = [startId, ...pieces(text).slice(0, maxLength - 2).map(([, id]) => id), endId]
    const length = ids.length
    while (ids.length < maxLength) ids.push(endId)
    return { ids, tokens: ids.map((id) => names[id]!), length }
  }

  const tokenize = (text: string) => pieces(text).map(([token]) => token)

  return { maxLength, encode, tokenize, modifiers, vocabSize: vocabularySize + modifiers.length, startId, endId }
}
