/** Errors of the command line itself (its own input), beside the library's typed errors. */
import { Schema } from "effect"

export class UsageError extends Schema.TaggedError<UsageError>()("UsageError", {
  message: Schema.String
}) {}

export class ConfigFileError extends Schema.TaggedError<ConfigFileError>()("ConfigFileError", {
  path: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `configuration ${this.path}: ${this.reason}`
  }
}
