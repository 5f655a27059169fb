/**
 * The HTTP API of `disendiff serve` (issue 15), as an `HttpApi`: the schemas of requests and answers,
 * the errors with their HTTP statuses, and the bearer-token security. The handlers are in `Http.ts`;
 * the OpenAPI document derived from this definition is served at `GET /openapi.json`.
 *
 * Every error answer has the body `{ "_tag": ..., "error": "<one line>" }`, the line being the same
 * message the CLI prints for the same mistake.
 */
import { Schema } from "effect"
import * as Multipart from "effect/http/Multipart"
import * as HttpApi from "effect/http-api/HttpApi"
import * as HttpApiEndpoint from "effect/http-api/HttpApiEndpoint"
import * as HttpApiGroup from "effect/http-api/HttpApiGroup"
import * as HttpApiMiddleware from "effect/http-api/HttpApiMiddleware"
import * as HttpApiSchema from "effect/http-api/HttpApiSchema"
import * as HttpApiSecurity from "effect/http-api/HttpApiSecurity"
import * as OpenApi from "effect/http-api/OpenApi"
import { JobRecord } from "./JobStore.js"

/** Where the OpenAPI document is served (without a token: it describes the API, holds no data). */
export const openapiPath = "/openapi.json" as const

// The error answers: one class per status, each carrying the one-line message.

/** A request the service refuses: bad config, corrupt image, malformed request (400). */
export class BadRequest extends Schema.TaggedError<BadRequest>()("BadRequest", { error: Schema.String }, { httpApiStatus: 400 }) {
  override get message() {
    return this.error
  }
}

/** No token, or not the server's token (401). */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", { error: Schema.String }, { httpApiStatus: 401 }) {
  override get message() {
    return this.error
  }
}

/** No such job, or no such file of a job (404). */
export class NotFound extends Schema.TaggedError<NotFound>()("NotFound", { error: Schema.String }, { httpApiStatus: 404 }) {
  override get message() {
    return this.error
  }
}

/** An upload over the server's size limit (413): refused before anything is stored. */
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()("PayloadTooLarge", { error: Schema.String }, { httpApiStatus: 413 }) {
  override get message() {
    return this.error
  }
}

/** The server failed (500): the details go to the server's log, not to the client. */
export class ServerError extends Schema.TaggedError<ServerError>()("ServerError", { error: Schema.String }, { httpApiStatus: 500 }) {
  override get message() {
    return this.error
  }
}

/** `Authorization: Bearer <token>` on every endpoint of the `jobs` group. */
export class Authorization extends HttpApiMiddleware.Service<Authorization>()("@disendiff/cli/serve/Authorization", {
  error: Unauthorized,
  security: { bearer: HttpApiSecurity.bearer }
}) {}

/** Turns the framework's empty 400 for an undecodable path, query or header into a one-line `BadRequest`. */
export class RequestErrors extends HttpApiMiddleware.Service<RequestErrors>()("@disendiff/cli/serve/RequestErrors", {
  error: BadRequest
}) {}

/** A job's record and the relative paths of its files (checkpoint, deltas, samples) so far. */
export const JobDetail = Schema.Struct({
  ...JobRecord.fields,
  files: Schema.Array(Schema.String)
})
export type JobDetail = typeof JobDetail.Type

/**
 * The upload of `POST /jobs` as `multipart/form-data`: the training image as the file field `image`
 * and the job's configuration as the field `config`, one JSON object of `train`'s configuration fields
 * plus `samples` (see `JobRequest.ts`). The handler reads the parts itself, so that it can count the
 * image's bytes against the limit and answer each mistake with its own message.
 */
export const SubmitPayload = Schema.Struct({
  image: Multipart.SingleFileSchema.annotate({ description: "the training image, PNG or JPEG" }),
  config: Schema.String.annotate({
    description: "one JSON object of train's configuration fields plus \"samples\", e.g. {\"prompt\": \"<v1> cat and <v2> dog\", \"steps\": 200, \"samples\": {\"prompts\": [\"<v1> cat\"]}}"
  })
})

/**
 * One event of a job as Server-Sent Events: `id` is the event's sequence number (send it back as
 * `Last-Event-ID` or `?after=` to continue after it), `data` the event as JSON `{ seq, at, event }`.
 * A failure of the server mid-stream ends the stream with an event named `error` (data `{ error }`,
 * no id); an event named `ping` every 15 s keeps proxies from closing a quiet stream.
 */
export const JobEventSse = Schema.Struct({
  id: Schema.optional(Schema.String),
  /** "message" (SSE's default type, not written out), "ping" or "error". */
  event: Schema.String,
  data: Schema.String
})

const jobId = { id: Schema.String }

export class JobsGroup extends HttpApiGroup.make("jobs").add(
  HttpApiEndpoint.post("submit", "/jobs", {
    payload: SubmitPayload.pipe(HttpApiSchema.asMultipartStream()),
    success: JobRecord.pipe(HttpApiSchema.status(201)),
    error: [BadRequest, PayloadTooLarge, ServerError]
  }).annotate(OpenApi.Description, "Submit a job: the upload is checked (the same checks and messages as `disendiff train`), then the job is queued."),
  HttpApiEndpoint.get("list", "/jobs", {
    success: Schema.Array(JobRecord),
    error: ServerError
  }).annotate(OpenApi.Description, "Every job, oldest first."),
  HttpApiEndpoint.get("get", "/jobs/:id", {
    params: jobId,
    success: JobDetail,
    error: [NotFound, ServerError]
  }).annotate(OpenApi.Description, "A job's record and its files so far."),
  HttpApiEndpoint.get("events", "/jobs/:id/events", {
    params: jobId,
    query: { after: Schema.optional(Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))) },
    headers: { "last-event-id": Schema.optional(Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))) },
    success: HttpApiSchema.StreamSse({ events: JobEventSse }),
    error: [NotFound, ServerError]
  }).annotate(
    OpenApi.Description,
    "A job's events as Server-Sent Events, from the first (or after `Last-Event-ID` / `?after=`) until the job has ended."
  ),
  HttpApiEndpoint.post("cancel", "/jobs/:id/cancel", {
    params: jobId,
    success: JobRecord,
    error: [NotFound, ServerError]
  }).annotate(OpenApi.Description, "Ask a job to stop at its next step boundary; it saves a checkpoint first and ends `cancelled`."),
  HttpApiEndpoint.get("file", "/jobs/:id/files/*", {
    params: { ...jobId, "*": Schema.String },
    success: HttpApiSchema.StreamUint8Array({ contentType: ["application/octet-stream", "image/png", "application/json"] }),
    error: [NotFound, ServerError]
  }).annotate(
    OpenApi.Description,
    "Download one of a job's files, by the relative path `GET /jobs/{id}` lists: checkpoint.msgpack, deltas/*.safetensors, samples/*.png."
  )
).middleware(RequestErrors).middleware(Authorization) {}

export class Api extends HttpApi.make("disendiff").add(JobsGroup).annotate(OpenApi.Title, "disendiff serve").annotate(
  OpenApi.Description,
  "Personalisation jobs (Custom Diffusion training, then sampling) as durable workflows. Every endpoint needs `Authorization: Bearer <token>`."
) {}
