/**
 * Safetensors files (format: https://github.com/huggingface/safetensors, README "Format"): an 8-byte
 * little-endian u64 header length N, N bytes of UTF-8 JSON `{name: {dtype, shape, data_offsets:
 * [begin, end]}, "__metadata__"?: {string: string}}` with offsets relative to the byte after the
 * header, then the raw little-endian tensor bytes.
 *
 * Reading validates the whole header before touching any data, then reads each tensor's byte range
 * from an open file handle straight into the array it is returned in (F32 and I32), or through a
 * small scratch buffer for dtypes that are converted, so a large file is never held twice in memory.
 * Float dtypes come back as `Float32Array` (F16/BF16 exactly, F64 rounded to nearest), integer and
 * bool dtypes as `Int32Array` (exact: an I64 value outside the int32 range is refused, not wrapped).
 * Typed-array views assume a little-endian host, as every platform Node supports is.
 */
import { Effect, Schema } from "effect"
import * as fs from "node:fs/promises"
import { ModelError } from "../backbone/Backbone.js"
import { writeAtomic } from "../checkpoint/Checkpoints.js"

export const dtypes = ["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL"] as const
export type DType = (typeof dtypes)[number]
export type FloatDType = "F64" | "F32" | "F16" | "BF16"
export type IntDType = Exclude<DType, FloatDType>

const itemSize: Record<DType, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 }

export interface SafetensorsEntry {
  readonly name: string
  readonly dtype: DType
  readonly shape: ReadonlyArray<number>
  /** Absolute byte range `[begin, end)` in the file. */
  readonly begin: number
  readonly end: number
}

export interface SafetensorsHeader {
  readonly file: string
  readonly fileBytes: number
  /** Absolute offset of the first data byte (8 + header length). */
  readonly dataStart: number
  /** In file order (ascending `begin`). */
  readonly entries: ReadonlyArray<SafetensorsEntry>
  readonly metadata: Readonly<Record<string, string>>
}

export interface StoredFloatTensor {
  readonly dtype: FloatDType
  readonly shape: ReadonlyArray<number>
  readonly data: Float32Array
}

export interface StoredIntTensor {
  readonly dtype: IntDType
  readonly shape: ReadonlyArray<number>
  readonly data: Int32Array
}

export type StoredTensor = StoredFloatTensor | StoredIntTensor

export const isFloatTensor = (t: StoredTensor): t is StoredFloatTensor => t.data instanceof Float32Array

// ---------------------------------------------------------------------------------------------------
// float16 / bfloat16 <-> float32, exact, round-to-nearest-even (IEEE 754-2008 binary16; bfloat16 is
// the top half of a binary32).

const f32 = new Float32Array(1)
const u32 = new Uint32Array(f32.buffer)

/** The value of binary16 bits `h` (exactly representable in float32). */
export const float16ToFloat32 = (h: number): number => {
  const sign = h & 0x8000 ? -1 : 1
  const exp = (h >>> 10) & 0x1f
  const mant = h & 0x3ff
  if (exp === 0) return sign * mant * 2 ** -24
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : NaN
  return sign * (1024 + mant) * 2 ** (exp - 25)
}

/** Binary16 bits of the float32 nearest to `x`, rounded to nearest even; NaN stays a (quiet) NaN. */
export const float32ToFloat16 = (x: number): number => {
  f32[0] = x
  const u = u32[0]!
  const sign = (u >>> 16) & 0x8000
  const exp = (u >>> 23) & 0xff
  const mant = u & 0x7fffff
  if (exp === 0xff) return sign | 0x7c00 | (mant === 0 ? 0 : 0x200 | (mant >>> 13))
  const e = exp - 112 // rebias 127 -> 15
  if (e >= 0x1f) return sign | 0x7c00
  if (e <= 0) {
    // subnormal half (or zero): shift the 24-bit significand down to units of 2^-24
    if (e < -10) return sign
    const m = mant | 0x800000
    const shift = 14 - e
    const half = m >>> shift
    const rem = m & ((1 << shift) - 1)
    const mid = 1 << (shift - 1)
    return sign | (rem > mid || (rem === mid && (half & 1) === 1) ? half + 1 : half)
  }
  const half = (e << 10) | (mant >>> 13)
  const rem = mant & 0x1fff
  // a carry out of the mantissa correctly bumps the exponent (up to infinity)
  return sign | (rem > 0x1000 || (rem === 0x1000 && (half & 1) === 1) ? half + 1 : half)
}

/** The value of bfloat16 bits `b`. */
export const bfloat16ToFloat32 = (b: number): number => {
  u32[0] = (b & 0xffff) << 16
  return f32[0]!
}

/** Bfloat16 bits of the float32 nearest to `x`, rounded to nearest even; NaN stays a (quiet) NaN. */
export const float32ToBfloat16 = (x: number): number => {
  f32[0] = x
  const u = u32[0]!
  if ((u & 0x7f800000) === 0x7f800000 && (u & 0x7fffff) !== 0) return (u >>> 16) | 0x40
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff
}

let f16Table: Float32Array | undefined
const float16Table = () => (f16Table ??= Float32Array.from({ length: 65536 }, (_, h) => float16ToFloat32(h)))

// ---------------------------------------------------------------------------------------------------
// Header

/** The reference implementation's header size limit (safetensors `MAX_HEADER_SIZE`). */
const maxHeaderBytes = 100_000_000

const NonNegativeInt = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
const Entry = Schema.Struct({
  dtype: Schema.Literals(dtypes),
  shape: Schema.Array(NonNegativeInt),
  data_offsets: Schema.Tuple([NonNegativeInt, NonNegativeInt])
})
const Metadata = Schema.Record(Schema.String, Schema.String)

const damaged = (file: string, reason: string) =>
  new ModelError({
    path: file,
    reason,
    fix: "the file is damaged, incomplete (an interrupted download?) or not a safetensors file; download or export it again, and convert PyTorch pickles (.bin/.ckpt) to safetensors"
  })

const ioError = (file: string, action: string, e: unknown) => {
  const code = (e as NodeJS.ErrnoException).code
  return new ModelError({
    path: file,
    reason: code === "ENOENT" ? "no such file" : `${action} failed (${code ?? String(e)})`,
    fix: code === "ENOENT" ? "check the path" : "check the path, its permissions and the free disk space"
  })
}

const oneLine = (s: string) => s.replace(/\s*\n\s*/g, " ")

const useFile = <A>(file: string, use: (handle: fs.FileHandle) => Effect.Effect<A, ModelError>) =>
  Effect.acquireUseRelease(
    Effect.tryPromise({ try: () => fs.open(file, "r"), catch: (e) => ioError(file, "opening", e) }),
    use,
    (handle) => Effect.promise(() => handle.close().catch(() => undefined))
  )

/** Fills `dst` from `position`, looping over short reads and 1 GiB at most per call. */
const readInto = (handle: fs.FileHandle, file: string, dst: Uint8Array, position: number) =>
  Effect.tryPromise({
    try: async () => {
      let done = 0
      while (done < dst.length) {
        const { bytesRead } = await handle.read(dst, done, Math.min(dst.length - done, 1 << 30), position + done)
        if (bytesRead === 0) return false
        done += bytesRead
      }
      return true
    },
    catch: (e) => ioError(file, "reading", e)
  }).pipe(
    Effect.flatMap((complete) =>
      complete ? Effect.void : Effect.fail(damaged(file, `truncated: the file ends before byte ${position + dst.length}`))
    )
  )

const parseHeader = (file: string, fileBytes: number, headerBytes: number, json: Uint8Array) =>
  Effect.gen(function*() {
    const text = yield* Effect.try({
      try: () => new TextDecoder("utf-8", { fatal: true }).decode(json),
      catch: () => damaged(file, "the header is not UTF-8 text")
    })
    const raw: unknown = yield* Effect.try({
      try: () => JSON.parse(text),
      catch: (e) => damaged(file, `the header is not valid JSON (${(e as Error).message})`)
    })
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
      return yield* damaged(file, "the header is not a JSON object")
    }
    const dataStart = 8 + headerBytes
    const dataBytes = fileBytes - dataStart
    let metadata: Readonly<Record<string, string>> = {}
    const entries: Array<SafetensorsEntry> = []
    for (const [name, value] of Object.entries(raw)) {
      if (name === "__metadata__") {
        metadata = yield* Schema.decodeUnknownEffect(Metadata)(value).pipe(
          Effect.mapError((e) => damaged(file, `__metadata__ must map strings to strings: ${oneLine(e.message)}`))
        )
        continue
      }
      const entry = yield* Schema.decodeUnknownEffect(Entry)(value).pipe(
        Effect.mapError((e) => damaged(file, `tensor "${name}": ${oneLine(e.message)}`))
      )
      const [begin, end] = entry.data_offsets
      const bytes = entry.shape.reduce((a, b) => a * b, 1) * itemSize[entry.dtype]
      if (!Number.isSafeInteger(bytes) || end - begin !== bytes) {
        return yield* damaged(file, `tensor "${name}": data_offsets [${begin}, ${end}] hold ${end - begin} bytes, but ${entry.dtype} [${entry.shape}] needs ${bytes}`)
      }
      if (end > dataBytes) {
        return yield* damaged(file, `tensor "${name}": data_offsets end ${end} is past the end of the data (${dataBytes} bytes); the file is truncated`)
      }
      entries.push({ name, dtype: entry.dtype, shape: entry.shape, begin: dataStart + begin, end: dataStart + end })
    }
    entries.sort((a, b) => a.begin - b.begin || a.end - b.end)
    for (let i = 1; i < entries.length; i++) {
      const prev = entries[i - 1]!
      const cur = entries[i]!
      if (cur.begin < prev.end) {
        return yield* damaged(file, `tensors "${prev.name}" and "${cur.name}" overlap in the data region`)
      }
    }
    return { file, fileBytes, dataStart, entries, metadata } satisfies SafetensorsHeader
  })

const readHeaderFrom = (handle: fs.FileHandle, file: string) =>
  Effect.gen(function*() {
    const stat = yield* Effect.tryPromise({ try: () => handle.stat(), catch: (e) => ioError(file, "stat", e) })
    const fileBytes = stat.size
    if (fileBytes < 8) return yield* damaged(file, `truncated: ${fileBytes} bytes, less than the 8-byte header length`)
    const prefix = new Uint8Array(8)
    yield* readInto(handle, file, prefix, 0)
    const n = Buffer.from(prefix.buffer).readBigUInt64LE(0)
    if (n > BigInt(fileBytes - 8)) {
      return yield* damaged(file, `the header length ${n} runs past the end of the file (${fileBytes} bytes)`)
    }
    if (n > BigInt(maxHeaderBytes)) return yield* damaged(file, `the header length ${n} exceeds the ${maxHeaderBytes}-byte limit`)
    const json = new Uint8Array(Number(n))
    yield* readInto(handle, file, json, 8)
    return yield* parseHeader(file, fileBytes, Number(n), json)
  })

/** Reads and validates the header of a safetensors file (not its data). */
export const readSafetensorsHeader = Effect.fn("Safetensors.readHeader")(function*(file: string) {
  return yield* useFile(file, (handle) => readHeaderFrom(handle, file))
})

// ---------------------------------------------------------------------------------------------------
// Data

/** Scratch size for dtypes that are converted on the way in (a multiple of every item size). */
const scratchBytes = 1 << 22

const isFloatDType = (d: DType): d is FloatDType => d === "F64" || d === "F32" || d === "F16" || d === "BF16"

const readTensor = (handle: fs.FileHandle, file: string, e: SafetensorsEntry, scratch: () => Uint8Array) =>
  Effect.gen(function*() {
    const n = e.shape.reduce((a, b) => a * b, 1)
    const tensor: StoredTensor = isFloatDType(e.dtype)
      ? { dtype: e.dtype, shape: e.shape, data: new Float32Array(n) }
      : { dtype: e.dtype, shape: e.shape, data: new Int32Array(n) }
    if (e.dtype === "F32" || e.dtype === "I32") {
      yield* readInto(handle, file, new Uint8Array(tensor.data.buffer), e.begin)
      return tensor
    }
    const size = itemSize[e.dtype]
    const buf = scratch()
    for (let at = 0; at < n;) {
      const count = Math.min(n - at, scratchBytes / size)
      const bytes = buf.subarray(0, count * size)
      yield* readInto(handle, file, bytes, e.begin + at * size)
      const bad = convert(e.dtype, bytes, count, tensor.data, at)
      if (bad !== undefined) {
        return yield* new ModelError({
          path: file,
          reason: `tensor "${e.name}": I64 value ${bad.value} at element ${bad.index} does not fit in int32`,
          fix: "integer tensors are read as int32; store token ids and timesteps, the integers this reads, in range"
        })
      }
      at += count
    }
    return tensor
  })

/** Converts `count` items from `src` into `dst[at..]`; reports an I64 value out of the int32 range. */
const convert = (
  dtype: Exclude<DType, "F32" | "I32">,
  src: Uint8Array,
  count: number,
  dst: Float32Array | Int32Array,
  at: number
): { value: bigint; index: number } | undefined => {
  const buffer = src.buffer
  switch (dtype) {
    case "F16": {
      const table = float16Table()
      const h = new Uint16Array(buffer, 0, count)
      for (let i = 0; i < count; i++) dst[at + i] = table[h[i]!]!
      return
    }
    case "BF16": {
      const b = new Uint16Array(buffer, 0, count)
      const out = new Uint32Array(dst.buffer, at * 4, count)
      for (let i = 0; i < count; i++) out[i] = b[i]! << 16
      return
    }
    case "F64":
      // typed-array `set` converts with ToFloat32: round to nearest even
      dst.set(new Float64Array(buffer, 0, count), at)
      return
    case "I64": {
      const v = new BigInt64Array(buffer, 0, count)
      for (let i = 0; i < count; i++) {
        const x = v[i]!
        if (x < -2147483648n || x > 2147483647n) return { value: x, index: at + i }
        dst[at + i] = Number(x)
      }
      return
    }
    case "I16":
      dst.set(new Int16Array(buffer, 0, count), at)
      return
    case "I8":
      dst.set(new Int8Array(buffer, 0, count), at)
      return
    case "U8":
      dst.set(src.subarray(0, count), at)
      return
    case "BOOL":
      for (let i = 0; i < count; i++) dst[at + i] = src[i] === 0 ? 0 : 1
      return
  }
}

export interface ReadOptions {
  /** Read only the tensors this accepts (the whole header is still validated). */
  readonly names?: (name: string) => boolean
}

/**
 * Reads the tensors of a safetensors file, in file order: floats as `Float32Array`, integers and
 * bools as `Int32Array` (see the module comment).
 */
export const readSafetensors = Effect.fn("Safetensors.read")(function*(file: string, options?: ReadOptions) {
  return yield* useFile(file, (handle) =>
    Effect.gen(function*() {
      const header = yield* readHeaderFrom(handle, file)
      let buf: Uint8Array | undefined
      const scratch = () => (buf ??= new Uint8Array(scratchBytes))
      const out = new Map<string, StoredTensor>()
      for (const e of header.entries) {
        if (options?.names !== undefined && !options.names(e.name)) continue
        out.set(e.name, yield* readTensor(handle, file, e, scratch))
      }
      return out
    }))
})

// ---------------------------------------------------------------------------------------------------
// Writing

export interface WritableTensor {
  readonly shape: ReadonlyArray<number>
  readonly data: Float32Array
}

/**
 * Writes float32 tensors as a safetensors file: tensors in sorted-name order without gaps, the header
 * padded with spaces so that the data starts 8-byte aligned, written atomically.
 */
export const writeSafetensors = Effect.fn("Safetensors.write")(function*(
  file: string,
  tensors: ReadonlyMap<string, WritableTensor>,
  metadata?: Readonly<Record<string, string>>,
  /** F32 as given, or F16 rounded to nearest even (half the size, e.g. for shipped weights). */
  dtype: "F32" | "F16" = "F32"
) {
  const invalid = (reason: string) => new ModelError({ path: file, reason, fix: "pass float32 tensors whose data length matches their shape" })
  const names = [...tensors.keys()].sort()
  const fields: Array<string> = []
  if (metadata !== undefined) fields.push(`"__metadata__":${JSON.stringify(metadata)}`)
  const chunks: Array<Uint8Array> = []
  let offset = 0
  for (const name of names) {
    const t = tensors.get(name)!
    if (name === "__metadata__") return yield* invalid(`"__metadata__" is reserved and cannot name a tensor`)
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) return yield* invalid(`tensor "${name}" has shape [${t.shape}]`)
    const n = t.shape.reduce((a, b) => a * b, 1)
    if (t.data.length !== n) return yield* invalid(`tensor "${name}" has ${t.data.length} values for shape [${t.shape}]`)
    const size = dtype === "F32" ? 4 : 2
    const entry = { dtype, shape: [...t.shape], data_offsets: [offset, offset + size * n] }
    fields.push(`${JSON.stringify(name)}:${JSON.stringify(entry)}`)
    if (dtype === "F32") chunks.push(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength))
    else {
      const half = new Uint16Array(n)
      for (let i = 0; i < n; i++) half[i] = float32ToFloat16(t.data[i]!)
      chunks.push(new Uint8Array(half.buffer))
    }
    offset += size * n
  }
  const json = Buffer.from(`{${fields.join(",")}}`, "utf8")
  const header = Buffer.alloc(Math.ceil(json.length / 8) * 8, 0x20)
  json.copy(header)
  const prefix = Buffer.alloc(8)
  prefix.writeBigUInt64LE(BigInt(header.length))
  yield* writeAtomic(file, [prefix, header, ...chunks]).pipe(
    Effect.mapError((e) => new ModelError({ path: file, reason: e.reason, fix: e.fix }))
  )
})
