/**
 * The HTTP server of `disendiff serve`: the handlers of `Api.ts` on the `Jobs` service, the bearer-token
 * check, and a layer that serves them with Node's HTTP server.
 *
 * Each service error becomes its HTTP answer here, with the CLI's one-line message: `JobRejected` 400,
 * `JobNotFound` and `JobFileNotFound` 404, an upload over the limit 413, and `SqlError` (or anything
 * else the server got wrong) 500 with a fixed line, the details going to the server's log only.
 */
import { NodeHttpServer } from "@effect/platform-node"
import { Effect, Layer, Redacted, Schema, SchemaIssue, Stream } from "effect"
import * as HttpPlatform from "effect/http/HttpPlatform"
import * as HttpRouter from "effect/http/HttpRouter"
import type { ServeError } from "effect/http/HttpServerError"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Multipart from "effect/http/Multipart"
import * as HttpApiBuilder from "effect/http-api/HttpApiBuilder"
import type { HttpApiSchemaError } from "effect/http-api/HttpApiError"
import * as HttpApiMiddleware from "effect/http-api/HttpApiMiddleware"
import type { SqlError } from "effect/sql/SqlError"
import type * as Types from "effect/Types"
import { createHash, timingSafeEqual } from "node:crypto"
import { createServer } from "node:http"
import * as path from "node:path"
import { Api, Authorization, BadRequest, NotFound, openapiPath, PayloadTooLarge, RequestErrors, ServerError, Unauthorized } from "./Api.js"
import { type JobFileNotFound, type JobNotFound, JobRejected } from "./JobErrors.js"
import { Jobs } from "./Jobs.js"

export interface ServeOptions {
  readonly host: string
  /** 0: any free port (the `HttpServer` service's `address` tells which). */
  readonly port: number
  /** The API token clients send as `Authorization: Bearer <token>`. */
  readonly token: Redacted.Redacted<string>
}

// ---------------------------------------------------------------------------------------------------
// errors to answers

const internalLine = "the server failed on this request. Fix: try again; the server's log has the details"

/** A server-side failure: logged in full, answered with a fixed line (no paths, no SQL). */
const internal = (operation: string) => (cause: unknown) =>
  Effect.logError(`${operation} failed`, cause).pipe(Effect.andThen(Effect.fail(new ServerError({ error: internalLine }))))

const notFound = (e: JobNotFound | JobFileNotFound) => Effect.fail(new NotFound({ error: e.message }))

/** The errors every read of the store may give. */
const storeErrors = (operation: string) => <A, R>(effect: Effect.Effect<A, JobNotFound | JobFileNotFound | SqlError, R>) =>
  effect.pipe(Effect.catchTags({ JobNotFound: notFound, JobFileNotFound: notFound, SqlError: internal(operation) }))

// ---------------------------------------------------------------------------------------------------
// the upload

/** Bytes of the `config` field, and of multipart framing besides the image, that an upload may have. */
const configAllowance = 1024 * 1024
const maxParts = 16

const configTooLarge = new PayloadTooLarge({ error: `config: over ${configAllowance} bytes. Fix: send one JSON object of train configuration fields` })

const tooLarge = (limit: number) =>
  new PayloadTooLarge({
    error: `image: over the server's limit of ${limit} bytes. Fix: send a smaller image (the model works at its own resolution anyway)`
  })

/** Reads a file part whole, failing as soon as it passes `limit` bytes (nothing more is read). */
const collect = (content: Stream.Stream<Uint8Array, Multipart.MultipartError>, limit: number, onOver: () => PayloadTooLarge) =>
  Effect.suspend(() => {
    let size = 0
    const chunks: Array<Uint8Array> = []
    return Stream.runForEach(content, (chunk) => {
      size += chunk.byteLength
      if (size > limit) return Effect.fail(onOver())
      chunks.push(chunk)
      return Effect.void
    }).pipe(Effect.map(() => concat(chunks, size)))
  })

const concat = (chunks: ReadonlyArray<Uint8Array>, size: number) => {
  const out = new Uint8Array(size)
  let at = 0
  for (const c of chunks) {
    out.set(c, at)
    at += c.byteLength
  }
  return out
}

/** The parts of `POST /jobs`: the `image` file's bytes and the `config` field's text. */
const readUpload = Effect.fn("Http.readUpload")(function*(parts: Stream.Stream<Multipart.Part, Multipart.MultipartError>, maxImageBytes: number) {
  let image: Uint8Array | undefined
  let config: string | undefined
  yield* Stream.runForEach(parts, (part) => {
    if (part._tag === "Field") {
      if (part.key === "config") config = part.value
      return Effect.void
    }
    if (part.key === "image") {
      return collect(part.content, maxImageBytes, () => tooLarge(maxImageBytes)).pipe(Effect.map((bytes) => void (image = bytes)))
    }
    // `curl -F config=@job.json` sends the config as a file part
    if (part.key === "config") {
      return collect(part.content, configAllowance, () => configTooLarge).pipe(
        Effect.map((bytes) => void (config = new TextDecoder().decode(bytes)))
      )
    }
    return Stream.runDrain(part.content)
  })
  return { image, config }
})

const multipartError = (e: Multipart.MultipartError, maxImageBytes: number): Effect.Effect<never, BadRequest | PayloadTooLarge | ServerError> => {
  switch (e.reason._tag) {
    case "FileTooLarge":
    case "BodyTooLarge":
      return Effect.fail(tooLarge(maxImageBytes))
    case "FieldTooLarge":
      return Effect.fail(configTooLarge)
    case "TooManyParts":
      return Effect.fail(new PayloadTooLarge({ error: `upload: more than ${maxParts} parts. Fix: send only the file field "image" and the field "config"` }))
    case "Parse":
      return Effect.fail(
        new BadRequest({
          error: `upload: not a readable multipart/form-data body. Fix: send the image as the file field "image" and the configuration as the field "config", e.g. curl -F image=@photo.png -F config='{"prompt": "<v1> cat and <v2> dog"}'`
        })
      )
    case "InternalError":
      return internal("reading the upload")(e)
  }
}

// ---------------------------------------------------------------------------------------------------
// the handlers

const contentTypeOf = (file: string) => {
  switch (path.extname(file).toLowerCase()) {
    case ".png":
      return "image/png"
    case ".json":
      return "application/json"
    default:
      return "application/octet-stream"
  }
}

/** An event named `ping` every 15 s of a job's events (EventSource's onmessage does not see it). */
const keepAlive = Stream.tick("15 seconds").pipe(Stream.drop(1), Stream.as({ event: "ping", data: "{}" }))

/** The `jobs` group on the `Jobs` service. */
export const JobsHandlers = HttpApiBuilder.group(Api, "jobs", (handlers) =>
  Effect.gen(function*() {
    const jobs = yield* Jobs
    const platform = yield* HttpPlatform.HttpPlatform
    const maxImageBytes = jobs.limits.maxUploadBytes
    const parserLimits = Multipart.limitsServices({
      // backstops: `readUpload` counts the image's bytes itself, to answer with the limit
      maxFileSize: maxImageBytes + configAllowance,
      maxTotalSize: maxImageBytes + 2 * configAllowance,
      maxFieldSize: configAllowance,
      maxParts
    })
    return handlers
      .handle(
        "submit",
        Effect.fn("Http.submit")(function*({ payload, request }) {
          // refuse an announced oversize body before reading any of it
          const announced = Number(request.headers["content-length"])
          if (Number.isFinite(announced) && announced > maxImageBytes + 2 * configAllowance) return yield* tooLarge(maxImageBytes)
          const upload = yield* readUpload(Stream.provideContext(payload, parserLimits), maxImageBytes).pipe(
            Effect.catchTag("MultipartError", (e) => multipartError(e, maxImageBytes))
          )
          if (upload.config === undefined) {
            const missing = new JobRejected({ input: "config", reason: "no configuration in the upload", fix: "send the job's configuration as the multipart field \"config\", one JSON object of train configuration fields" })
            return yield* new BadRequest({ error: missing.message })
          }
          // a client that hangs up now must not leave a job half stored (folder without record)
          return yield* Effect.uninterruptible(jobs.submit(upload.config, upload.image)).pipe(
            Effect.catchTags({
              // "storage" is the server's folder failing, not the request
              JobRejected: (e) => e.input === "storage" ? internal("storing a job")(e) : Effect.fail(new BadRequest({ error: e.message })),
              SqlError: internal("storing a job")
            })
          )
        })
      )
      .handle("list", () => jobs.list.pipe(Effect.catchTag("SqlError", internal("listing jobs"))))
      .handle(
        "get",
        Effect.fn("Http.get")(function*({ params }) {
          const record = yield* jobs.get(params.id)
          const files = yield* jobs.files(params.id)
          return { ...record, files }
        }, storeErrors("reading a job"))
      )
      .handle(
        "events",
        Effect.fn("Http.events")(function*({ headers, params, query }) {
          // an unknown job gets its 404 before the stream's 200 goes out
          yield* jobs.get(params.id)
          // a reconnecting EventSource sends Last-Event-ID: it is newer than the URL's ?after=
          const after = headers["last-event-id"] ?? query.after ?? 0
          return jobs.events(params.id, after).pipe(
            // "message" is SSE's default type: the encoder leaves it out, so EventSource's onmessage sees them
            Stream.map((e) => ({ id: String(e.seq), event: "message", data: JSON.stringify({ seq: e.seq, at: e.at, event: e.event }) })),
            // the answer has started: end it with an `error` event, without an id so that a client
            // resuming with Last-Event-ID continues after the last real event
            Stream.catchCause((cause) =>
              Stream.fromEffect(
                Effect.logError("following a job's events failed", cause).pipe(
                  Effect.as({ event: "error", data: JSON.stringify({ error: internalLine }) })
                )
              )
            ),
            // a queued job can be silent for long: proxies close SSE answers that send nothing
            Stream.merge(keepAlive, { haltStrategy: "left" })
          )
        }, storeErrors("reading a job's events"))
      )
      .handle("cancel", ({ params }) => jobs.cancel(params.id).pipe(storeErrors("cancelling a job")))
      .handle("file", ({ params }) =>
        jobs.file(params.id, params["*"]).pipe(
          storeErrors("reading a job's file"),
          Effect.flatMap((file) =>
            HttpServerResponse.file(file, { contentType: contentTypeOf(file) }).pipe(
              Effect.provideService(HttpPlatform.HttpPlatform, platform),
              Effect.catchTag("PlatformError", internal("sending a job's file"))
            )
          )
        ))
  }))

// ---------------------------------------------------------------------------------------------------
// security and request errors

const sha256 = (s: string) => createHash("sha256").update(s, "utf8").digest()

/**
 * The bearer-token check. Both sides are hashed first, so that the compare is constant-time whatever
 * the lengths; an empty credential (no `Authorization` header) never matches.
 */
export const authorizationLayer = (token: Redacted.Redacted<string>) =>
  Layer.sync(Authorization, () => {
    const expected = sha256(Redacted.value(token))
    const refused = new Unauthorized({
      error: "unauthorized: no API token, or not this server's. Fix: send the header \"Authorization: Bearer <token>\" with the token the server was started with"
    })
    return {
      bearer: (effect, { credential }) =>
        Effect.suspend((): Effect.Effect<HttpServerResponse.HttpServerResponse, Types.unhandled | Unauthorized> => {
          const given = Redacted.value(credential)
          return given !== "" && timingSafeEqual(sha256(given), expected) ? effect : Effect.fail(refused)
        })
    }
  })

const formatter = SchemaIssue.makeFormatterStandardSchemaV1()

/** A path, query or header the schemas refuse, as one line naming it. */
const describeSchemaError = (e: HttpApiSchemaError) => {
  const first = formatter(e.cause.issue).issues[0]
  const where = [e.kind.toLowerCase(), ...(first?.path ?? []).map((k) => String(typeof k === "object" && k !== null && "key" in k ? k.key : k))].join(".")
  const reason = (first?.message ?? e.cause.message).replace(/\s*\n\s*/g, " ")
  return `${where}: ${reason}. Fix: correct it (GET ${openapiPath} describes every endpoint)`
}

export const requestErrorsLayer = HttpApiMiddleware.layerSchemaErrorTransform(RequestErrors, (e) =>
  // a response that does not encode is the server's fault, and stays a 500
  e.kind === "Body" || e.kind === "ResponseHeaders" ? Effect.fail(e) : Effect.fail(new BadRequest({ error: describeSchemaError(e) })))

// ---------------------------------------------------------------------------------------------------
// serving

/** The server could not listen (port taken, no permission, an address not of this machine). */
export class ServeFailed extends Schema.TaggedError<ServeFailed>()("ServeFailed", {
  host: Schema.String,
  port: Schema.Number,
  reason: Schema.String,
  fix: Schema.String
}) {
  override get message() {
    return `cannot serve on ${this.host}:${this.port} (${this.reason}). Fix: ${this.fix}`
  }
}

const serveFailed = (options: ServeOptions, e: ServeError) => {
  const code = typeof e.cause === "object" && e.cause !== null && "code" in e.cause ? String(e.cause.code) : ""
  const reason = e.cause instanceof Error ? e.cause.message : String(e.cause)
  const fix = code === "EADDRINUSE"
    ? "stop the process that holds this port, or choose another --port"
    : code === "EACCES"
    ? "ports below 1024 need privileges: choose a --port above 1024"
    : code === "EADDRNOTAVAIL" || code === "ENOTFOUND"
    ? "give a --host that is an address of this machine (127.0.0.1, or 0.0.0.0 for every interface)"
    : "check --host and --port"
  return new ServeFailed({ host: options.host, port: options.port, reason, fix })
}

/** Node's HTTP server at `host:port`, its failure to listen as one line. */
const nodeServer = (options: ServeOptions) => {
  const server = NodeHttpServer.layer(createServer, { host: options.host, port: options.port })
  return server.pipe(
    Layer.catchTag("ServeError", (e) => Layer.effectContext<Layer.Success<typeof server>, ServeFailed, never>(Effect.fail(serveFailed(options, e))))
  )
}

/** The API's routes (and the OpenAPI document at `/openapi.json`) on an `HttpRouter`. */
export const routes = (token: Redacted.Redacted<string>) =>
  HttpApiBuilder.layer(Api, { openapiPath }).pipe(
    Layer.provide(JobsHandlers),
    Layer.provide(authorizationLayer(token)),
    Layer.provide(requestErrorsLayer)
  )

/**
 * Serves the API with Node's HTTP server and keeps its services: `HttpServer`'s `address` tells the
 * port chosen for port 0 (tests).
 */
export const layerServer = (options: ServeOptions) =>
  HttpRouter.serve(routes(options.token)).pipe(
    Layer.provideMerge(nodeServer(options))
  )

/** Serves the API with Node's HTTP server at `host:port` until the layer's scope closes. */
export const layer = (options: ServeOptions): Layer.Layer<never, ServeFailed, Jobs> =>
  HttpRouter.serve(routes(options.token)).pipe(Layer.provide(nodeServer(options)))
