/**
 * The token layout the method relies on: each modifier token directly precedes its class word, and the
 * class word is one token, so that "class position = modifier position + 1" (method doc f).
 */
import { Effect } from "effect"
import type { ConceptTokens } from "../loss/LossCalibrator.js"
import { PromptError, type Tokenizer } from "../tokenizer/Tokenizer.js"

const modifierPattern = /<[^<>\s]+>/g

/** Modifier tokens in order of first appearance: "<v1> cat and <v2> dog" -> ["<v1>", "<v2>"]. */
export const modifiersOf = (prompt: string): Array<string> => [...new Set(prompt.match(modifierPattern) ?? [])]

/** Where each of the tokenizer's modifiers (and the class word after it) sits in one encoded row. */
export const conceptTokens = (tokenizer: Tokenizer, ids: ReadonlyArray<number>): Array<ConceptTokens> =>
  tokenizer.modifiers.flatMap((m, concept) => {
    const modifiers = ids.flatMap((id, p) => (id === m.id && p + 1 < ids.length ? [p] : []))
    return modifiers.length === 0 ? [] : [{ concept, modifiers, classes: modifiers.map((p) => p + 1) }]
  })

/**
 * The checks of a training prompt that need no tokenizer: at least one modifier, each a word of its own,
 * followed by a class word, and each concept with its own modifier. Fails with a `PromptError`.
 */
export const checkPromptWords = (prompt: string) =>
  Effect.gen(function*() {
    const fail = (reason: string, fix: string) => new PromptError({ prompt, reason, fix })
    const modifiers = modifiersOf(prompt)
    if (modifiers.length === 0) {
      return yield* fail("it has no modifier token", 'put one modifier before each concept\'s class word, e.g. "<v1> cat and <v2> dog"')
    }
    const words = prompt.trim().split(/\s+/)
    const seen = new Set<string>()
    for (let i = 0; i < words.length; i++) {
      if (!modifierPattern.test(words[i]!)) continue
      modifierPattern.lastIndex = 0
      if (words[i]!.replace(modifierPattern, "") !== "") {
        return yield* fail(`"${words[i]}" glues a modifier to other text`, "separate each modifier from its class word with a space")
      }
      const next = words[i + 1]
      if (next === undefined || modifiersOf(next).length > 0) {
        return yield* fail(`modifier ${words[i]} is not followed by a class word`, `write the class word right after it, e.g. "${words[i]} cat"`)
      }
      if (seen.has(words[i]!)) {
        return yield* fail(
          `modifier ${words[i]} appears twice`,
          `give each concept its own modifier, e.g. "a <v1> cat and a <v2> dog" (${words[i]} names one concept)`
        )
      }
      seen.add(words[i]!)
    }
    modifierPattern.lastIndex = 0
    return modifiers
  })

/** Fails with a `PromptError` that says what to change when the prompt cannot be trained on. */
export const checkPrompt = (tokenizer: Tokenizer, prompt: string, caption: string = prompt) =>
  Effect.gen(function*() {
    const fail = (reason: string, fix: string) => new PromptError({ prompt, reason, fix })
    const modifiers = yield* checkPromptWords(prompt)
    const words = prompt.trim().split(/\s+/)
    for (let i = 0; i < words.length; i++) {
      if (!modifierPattern.test(words[i]!)) continue
      modifierPattern.lastIndex = 0
      const next = words[i + 1]!
      const pieces = yield* Effect.try({
        try: () => tokenizer.tokenize(next),
        catch: (e) => fail(`class word "${next}" cannot be tokenized (${e instanceof Error ? e.message : String(e)})`, "use a class word the model knows")
      })
      if (pieces.length !== 1) {
        return yield* fail(
          `class word "${next}" after ${words[i]} is ${pieces.length} tokens (${pieces.join(" ")})`,
          "use a class word that is a single token, e.g. cat, dog, toy, man"
        )
      }
    }
    modifierPattern.lastIndex = 0
    const encoded = yield* Effect.try({
      try: () => tokenizer.encode(caption),
      catch: (e) => fail(`cannot be tokenized (${e instanceof Error ? e.message : String(e)})`, "use words the model knows")
    })
    const found = conceptTokens(tokenizer, encoded.ids)
    for (const m of modifiers) {
      const known = tokenizer.modifiers.find((k) => k.token === m)
      if (known === undefined) return yield* fail(`modifier ${m} is not one of the model's added tokens`, "use the modifiers the backbone was built with")
      if (!found.some((c) => tokenizer.modifiers[c.concept]!.token === m)) {
        return yield* fail(`modifier ${m} falls beyond the ${tokenizer.maxLength}-token limit`, "shorten the prompt")
      }
    }
    if (encoded.length >= tokenizer.maxLength && found.some((c) => c.classes.some((p) => p >= encoded.length - 1))) {
      return yield* fail(`a class word falls beyond the ${tokenizer.maxLength}-token limit`, "shorten the prompt")
    }
  })
