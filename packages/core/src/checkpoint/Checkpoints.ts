/**
 * Checkpoint files: msgpack, two messages. The envelope names the format and version and carries the
 * payload's length and SHA-256; the payload holds the Schema-validated header and the tensors as raw
 * little-endian float32 bytes (`bin`, readable by any msgpack implementation). Files are written to a
 * temporary name, fsynced, renamed over the target and the directory fsynced, so a crash leaves
 * either the old file or the new one, never a torn one.
 */
import { Context, Effect, Layer, Schema } from "effect"
import { Packr } from "msgpackr"
import { randomBytes, createHash } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { formatVersion, type HostTensor, type Snapshot, SnapshotHeader } from "./Snapshot.js"

export const formatName = "disendiff-checkpoint"

export class CheckpointError extends Schema.TaggedError<CheckpointError>()("CheckpointError", {
  path: Schema.String,
  reason: Schema.String,
  fix: Schema.String
}) {
  override get message() {
    return `checkpoint ${this.path}: ${this.reason}. Fix: ${this.fix}`
  }
}

// useRecords off: plain maps any msgpack reader understands. moreTypes on: no typed array is ever
// silently truncated to bytes (tensor data itself goes as Buffer byte views, which stay `bin`).
const packr = new Packr({ useRecords: false, moreTypes: true })

const Envelope = Schema.Struct({
  format: Schema.Literal(formatName),
  version: Schema.Int,
  payloadBytes: Schema.Int,
  payloadSha256: Schema.String
})

const TensorEntry = Schema.Struct({
  group: Schema.Literals(["trainable", "adam.m", "adam.v", "ema"]),
  name: Schema.String,
  dtype: Schema.Literal("float32"),
  shape: Schema.Array(Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))),
  data: Schema.Uint8Array
})

const Payload = Schema.Struct({
  header: SnapshotHeader,
  optimizerStep: Schema.Int,
  tensors: Schema.Array(TensorEntry)
})

const bytesOf = (t: HostTensor) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)

export const encode = (s: Snapshot): Buffer => {
  const tensors = [
    ...[...s.trainable].map(([name, t]) => ({ group: "trainable", name, t })),
    ...[...s.optimizer.m].map(([name, t]) => ({ group: "adam.m", name, t })),
    ...[...s.optimizer.v].map(([name, t]) => ({ group: "adam.v", name, t })),
    ...[...(s.ema ?? [])].map(([name, t]) => ({ group: "ema", name, t }))
  ].map(({ group, name, t }) => ({ group, name, dtype: "float32", shape: [...t.shape], data: bytesOf(t) }))
  const payload = packr.pack({ header: s.header, optimizerStep: s.optimizer.step, tensors })
  const envelope = packr.pack({
    format: formatName,
    version: formatVersion,
    payloadBytes: payload.length,
    payloadSha256: createHash("sha256").update(payload).digest("hex")
  })
  return Buffer.concat([envelope, payload])
}

const corrupt = (file: string, reason: string) =>
  new CheckpointError({
    path: file,
    reason,
    fix: "the file is damaged or not a disendiff checkpoint; use an earlier checkpoint or retrain"
  })

export const decode = (file: string, buf: Uint8Array): Effect.Effect<Snapshot, CheckpointError> =>
  Effect.gen(function*() {
    let envelopeValue: unknown
    let envelopeEnd = 0
    yield* Effect.try({
      try: () =>
        packr.unpackMultiple(buf, (value, _start, end) => {
          envelopeValue = value
          envelopeEnd = end ?? 0
          return false
        }),
      catch: () => corrupt(file, "unreadable envelope (empty, truncated or not msgpack)")
    })
    const envelope = yield* Schema.decodeUnknownEffect(Envelope)(envelopeValue).pipe(
      Effect.mapError(() => corrupt(file, "not a disendiff checkpoint (bad envelope)"))
    )
    if (envelope.version !== formatVersion) {
      return yield* new CheckpointError({
        path: file,
        reason: `format version ${envelope.version}, this disendiff reads version ${formatVersion}`,
        fix: "use the disendiff version that wrote it, or retrain"
      })
    }
    const payload = buf.subarray(envelopeEnd)
    if (payload.length !== envelope.payloadBytes) {
      return yield* corrupt(file, `truncated: ${payload.length} of ${envelope.payloadBytes} payload bytes present`)
    }
    if (createHash("sha256").update(payload).digest("hex") !== envelope.payloadSha256) {
      return yield* corrupt(file, "content digest mismatch (the bytes changed after writing)")
    }
    const raw = yield* Effect.try({ try: () => packr.unpack(payload), catch: () => corrupt(file, "unreadable payload") })
    const p = yield* Schema.decodeUnknownEffect(Payload)(raw).pipe(
      Effect.mapError((e) => corrupt(file, `invalid header or tensor list: ${e.message}`))
    )
    const groups = {
      trainable: new Map<string, HostTensor>(),
      "adam.m": new Map<string, HostTensor>(),
      "adam.v": new Map<string, HostTensor>(),
      ema: new Map<string, HostTensor>()
    }
    for (const t of p.tensors) {
      const n = t.shape.reduce((a, b) => a * b, 1)
      if (t.data.byteLength !== 4 * n) {
        return yield* corrupt(file, `tensor ${t.group}/${t.name} has ${t.data.byteLength} bytes for shape [${t.shape}]`)
      }
      // copy: the view into the file buffer may be unaligned for a Float32Array
      const data = new Float32Array(n)
      new Uint8Array(data.buffer).set(t.data)
      groups[t.group].set(t.name, { shape: t.shape, data })
    }
    return {
      header: p.header,
      trainable: groups.trainable,
      optimizer: { step: p.optimizerStep, m: groups["adam.m"], v: groups["adam.v"] },
      ...(groups.ema.size > 0 ? { ema: groups.ema } : {})
    }
  })

const ioError = (file: string, action: string, e: unknown) =>
  new CheckpointError({
    path: file,
    reason: `${action} failed: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
    fix: (e as NodeJS.ErrnoException).code === "ENOENT"
      ? "check the path; `disendiff train` writes DIR/checkpoint.msgpack"
      : "check the path, its permissions and the free disk space"
  })

/**
 * Atomic write: temporary file in the same folder, fsync, rename, fsync the folder. `bytes` may be a
 * sequence of chunks, written in order, so a large file need not be assembled in memory first.
 */
export const writeAtomic = (file: string, bytes: Uint8Array | Iterable<Uint8Array>): Effect.Effect<void, CheckpointError> =>
  Effect.tryPromise({
    try: async () => {
      const dir = path.dirname(path.resolve(file))
      await fs.mkdir(dir, { recursive: true })
      const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`)
      const handle = await fs.open(tmp, "w")
      try {
        await handle.writeFile(bytes)
        await handle.sync()
      } finally {
        await handle.close()
      }
      try {
        await fs.rename(tmp, file)
      } catch (e) {
        await fs.rm(tmp, { force: true })
        throw e
      }
      const dirHandle = await fs.open(dir, "r")
      try {
        await dirHandle.sync()
      } finally {
        await dirHandle.close()
      }
    },
    catch: (e) => ioError(file, "writing", e)
  })

/** `writeAtomic`'s temporary files: `.NAME.PID.HEX.tmp`. */
const temporaryPattern = /^\.(.+)\.(\d+)\.[0-9a-f]+\.tmp$/

const isRunning = (pid: number) => {
  if (pid === process.pid) return true
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/**
 * Removes the temporary files that a killed writer left in `dir` (a process killed between writing and
 * renaming them), except those of processes still running. Returns the names removed.
 */
export const removeStaleTemporaries = (dir: string): Effect.Effect<ReadonlyArray<string>, CheckpointError> =>
  Effect.tryPromise({
    try: async () => {
      const names = await fs.readdir(dir).catch((e: NodeJS.ErrnoException) => {
        if (e.code === "ENOENT") return [] as Array<string>
        throw e
      })
      const stale = names.filter((n) => {
        const m = temporaryPattern.exec(n)
        return m !== null && !isRunning(Number(m[2]))
      })
      for (const n of stale) await fs.rm(path.join(dir, n), { force: true })
      return stale
    },
    catch: (e) => ioError(dir, "cleaning", e)
  })

export { snapshotDigest as digestOf } from "./Snapshot.js"

export const save = Effect.fn("Checkpoints.save")(function*(file: string, snapshot: Snapshot) {
  yield* writeAtomic(file, encode(snapshot))
})

export const load = Effect.fn("Checkpoints.load")(function*(file: string) {
  const buf = yield* Effect.tryPromise({ try: () => fs.readFile(file), catch: (e) => ioError(file, "reading", e) })
  return yield* decode(file, buf)
})

export class Checkpoints extends Context.Service<Checkpoints, {
  readonly save: (file: string, snapshot: Snapshot) => Effect.Effect<void, CheckpointError>
  readonly load: (file: string) => Effect.Effect<Snapshot, CheckpointError>
}>()("@disendiff/core/Checkpoints") {
  static readonly layer: Layer.Layer<Checkpoints> = Layer.succeed(Checkpoints, Checkpoints.of({ save, load }))
}
