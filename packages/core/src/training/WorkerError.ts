/** A worker thread (one of the CLI's `WorkerPool`) failed or exited while computing part of a step. */
import { Schema } from "effect"

export class WorkerError extends Schema.TaggedError<WorkerError>()("WorkerError", {
  reason: Schema.String
}) {
  override get message() {
    return `a worker thread failed: ${this.reason}. Fix: run again with --workers 1 (a checkpoint resumes exactly, and the result is the same)`
  }
}
