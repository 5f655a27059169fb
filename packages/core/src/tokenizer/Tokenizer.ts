/**
 * What every backbone's tokenizer offers: fixed-length id sequences with start/end tokens, and the
 * modifier tokens (`<v1>`, `<v2>`, ...) added for personalisation.
 */
import { Effect, Schema } from "effect"

export interface TokenizedText {
  /** Exactly `maxLength` ids: start token, text tokens (truncated), end token, padding. */
  readonly ids: ReadonlyArray<number>
  /** A readable form of each id (for attention-map file names and error messages). */
  readonly tokens: ReadonlyArray<string>
  /** Number of ids before the padding, start and end tokens included. */
  readonly length: number
}

export interface Tokenizer {
  readonly maxLength: number
  readonly encode: (text: string) => TokenizedText
  /** Text tokens of `text` alone, without start/end/padding and without truncation. */
  readonly tokenize: (text: string) => ReadonlyArray<string>
  /** The added modifier tokens, in order, and their ids. */
  readonly modifiers: ReadonlyArray<{ readonly token: string; readonly id: number }>
  /** The words it knows, when that is a short closed list (word-level tokenizers). */
  readonly vocabulary?: ReadonlyArray<string> | undefined
}

/** Encodes a prompt, or fails with a `PromptError` that says which words the model knows. */
export const encodePrompt = (tokenizer: Tokenizer, prompt: string) =>
  Effect.try({
    try: () => tokenizer.encode(prompt),
    catch: (e) =>
      new PromptError({
        prompt,
        reason: e instanceof Error ? e.message : String(e),
        fix: tokenizer.vocabulary === undefined
          ? "use text the tokenizer accepts"
          : `use only these words: ${tokenizer.vocabulary.join(", ")} (and the modifiers ${tokenizer.modifiers.map((m) => m.token).join(", ") || "you trained"})`
      })
  })

/** The prompt breaks the method's token layout: each modifier must precede its one-token class word. */
export class PromptError extends Schema.TaggedError<PromptError>()("PromptError", {
  prompt: Schema.String,
  reason: Schema.String,
  fix: Schema.String
}) {
  override get message() {
    return `prompt "${this.prompt}": ${this.reason}. Fix: ${this.fix}`
  }
}
