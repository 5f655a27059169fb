/**
 * What every backbone's tokenizer offers: fixed-length id sequences with start/end tokens, and the
 * modifier tokens (`<v1>`, `<v2>`, ...) added for personalisation.
 */
import { Schema } from "effect"

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
}

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
