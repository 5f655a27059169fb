/** The job service's typed errors: each one line naming the input and the fix, as the CLI's are. */
import { Schema } from "effect"

/** A submission the service refuses (HTTP 400): nothing is stored for it. */
export class JobRejected extends Schema.TaggedError<JobRejected>()("JobRejected", {
  input: Schema.String,
  reason: Schema.String,
  fix: Schema.String
}) {
  override get message() {
    return `${this.input}: ${this.reason}. Fix: ${this.fix}`
  }
}

/** No job with this id (HTTP 404). */
export class JobNotFound extends Schema.TaggedError<JobNotFound>()("JobNotFound", {
  jobId: Schema.String
}) {
  override get message() {
    return `job ${this.jobId}: no such job. Fix: list the jobs with GET /jobs`
  }
}

/** A job's file that does not exist (yet) (HTTP 404). */
export class JobFileNotFound extends Schema.TaggedError<JobFileNotFound>()("JobFileNotFound", {
  jobId: Schema.String,
  file: Schema.String
}) {
  override get message() {
    return `job ${this.jobId}: no file ${this.file} (yet). Fix: GET /jobs/${this.jobId} lists the files it has`
  }
}

/** A job that ended in failure: the run's own one-line message (stored with the job). */
export class JobFailed extends Schema.TaggedError<JobFailed>()("JobFailed", {
  jobId: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `job ${this.jobId} failed: ${this.reason}`
  }
}
