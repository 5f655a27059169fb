/** Errors of the command line itself (its own input), beside the library's typed errors. */
import { Schema } from "effect"

export class UsageError extends Schema.TaggedError<UsageError>()("UsageError", {
  message: Schema.String
}) {}

export class ConfigFileError extends Schema.TaggedError<ConfigFileError>()("ConfigFileError", {
  path: Schema.String,
  reason: Schema.String,
  fix: Schema.optional(Schema.String)
}) {
  override get message() {
    return `configuration ${this.path}: ${this.reason}. Fix: ${this.fix ?? "correct that field (docs/cli.md lists the commands' flags; the file takes the same fields as the configuration that `disendiff checkpoint inspect --json` prints)"}`
  }
}

/** A flag's value that the command cannot use (out of range, unknown choice). */
export class FlagError extends Schema.TaggedError<FlagError>()("FlagError", {
  flag: Schema.String,
  value: Schema.String,
  reason: Schema.String,
  fix: Schema.String
}) {
  override get message() {
    return `--${this.flag} ${this.value}: ${this.reason}. Fix: ${this.fix}`
  }
}

/** An output folder that cannot be written, or whose contents would be lost. */
export class OutputError extends Schema.TaggedError<OutputError>()("OutputError", {
  flag: Schema.String,
  path: Schema.String,
  reason: Schema.String,
  fix: Schema.String
}) {
  override get message() {
    return `--${this.flag} ${this.path}: ${this.reason}. Fix: ${this.fix}`
  }
}
