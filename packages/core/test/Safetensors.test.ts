import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import {
  bfloat16ToFloat32,
  float16ToFloat32,
  float32ToBfloat16,
  float32ToFloat16,
  isFloatTensor,
  readSafetensors,
  readSafetensorsHeader,
  writeSafetensors
} from "../src/io/Safetensors.js"
import { tempDir } from "./fixtures.js"

const sdTiny = path.resolve(fileURLToPath(import.meta.url), "../../../../fixtures/sd-tiny")

interface ManifestTensor {
  readonly shape: ReadonlyArray<number>
  readonly dtype: string
  readonly max_abs_value?: number
}
interface Manifest {
  readonly scheduler_tables: { readonly file: string; readonly tensors: Record<string, ManifestTensor> }
  readonly configs: {
    readonly A: {
      readonly models: Record<string, { readonly weights?: string; readonly num_params?: number; readonly num_tensors?: number }>
      readonly fixtures: Record<string, { readonly file: string; readonly tensors: Record<string, ManifestTensor> }>
    }
  }
}
const manifest = async (): Promise<Manifest> => JSON.parse(await fs.readFile(path.join(sdTiny, "manifest.json"), "utf8"))

/** A safetensors file from a header (object or raw text) and data bytes, without any validation. */
const rawFile = (header: string | object, data: Uint8Array = new Uint8Array(0), headerLength?: bigint) => {
  const json = Buffer.from(typeof header === "string" ? header : JSON.stringify(header))
  const prefix = Buffer.alloc(8)
  prefix.writeBigUInt64LE(headerLength ?? BigInt(json.length))
  return Buffer.concat([prefix, json, data])
}

const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength)

const modelError = <A>(eff: Effect.Effect<A, { readonly _tag: string; readonly message: string }>) =>
  Effect.map(Effect.flip(eff), (e) => {
    assert.strictEqual(e._tag, "ModelError")
    return e.message
  })

/** The float16 nearest to a float32 by search over all finite halves (ties to even bits): an oracle. */
const positiveHalves = Array.from({ length: 0x7c00 }, (_, h) => float16ToFloat32(h))
const nearestHalf = (x: number): number => {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0
  const a = Math.abs(x)
  if (a >= 65520) return sign | 0x7c00 // 65504 + half an ulp (2^4) rounds to infinity (ties to even)
  let lo = 0
  let hi = positiveHalves.length - 1
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1
    if (positiveHalves[mid]! <= a) lo = mid
    else hi = mid
  }
  const dl = a - positiveHalves[lo]!
  const dh = positiveHalves[hi]! - a
  return sign | (dl < dh ? lo : dh < dl ? hi : lo % 2 === 0 ? lo : hi)
}

describe("Safetensors", () => {
  it.effect("reads every sd-tiny fixture file: names, dtypes and shapes as in the manifest, values spot-checked", () =>
    Effect.gen(function*() {
      const m = yield* Effect.promise(manifest)
      const files = [m.scheduler_tables, ...Object.values(m.configs.A.fixtures)]
      assert.strictEqual(files.length, 7)
      for (const f of files) {
        const file = path.join(sdTiny, f.file)
        const header = yield* readSafetensorsHeader(file)
        assert.strictEqual(header.dataStart % 8, 0)
        const tensors = yield* readSafetensors(file)
        assert.deepStrictEqual([...tensors.keys()].sort(), Object.keys(f.tensors).sort(), f.file)
        for (const [name, spec] of Object.entries(f.tensors)) {
          const t = tensors.get(name)!
          assert.strictEqual(t.dtype, spec.dtype, `${f.file} ${name}`)
          assert.deepStrictEqual(t.shape, spec.shape, `${f.file} ${name}`)
          assert.strictEqual(t.data.length, spec.shape.reduce((a, b) => a * b, 1))
          if (spec.max_abs_value !== undefined) {
            // the manifest's max |x| is the float32 value itself: equal exactly when every byte landed right
            assert.strictEqual(Array.from(t.data).reduce((a, v) => Math.max(a, Math.abs(v)), 0), spec.max_abs_value, `${f.file} ${name}`)
          }
        }
      }
      const tables = yield* readSafetensors(path.join(sdTiny, "scheduler_tables.safetensors"))
      const betas = tables.get("betas")!.data
      assert.closeTo(betas[0]!, 0.00085, 1e-9)
      assert.closeTo(betas[999]!, 0.012, 1e-9)
      assert.closeTo(tables.get("alphas_cumprod")!.data[0]!, 1 - 0.00085, 1e-7)
      const ddim10 = tables.get("ddim_timesteps_10")!
      assert.strictEqual(ddim10.dtype, "I64")
      assert.instanceOf(ddim10.data, Int32Array)
      assert.deepStrictEqual([...ddim10.data], [901, 801, 701, 601, 501, 401, 301, 201, 101, 1])
      const unetIo = yield* readSafetensors(path.join(sdTiny, "A/unet_io.safetensors"))
      assert.deepStrictEqual([...unetIo.get("timestep")!.data], [999, 37])
      assert.deepStrictEqual(unetIo.get("extra_timestep")!.shape, [])
      const ids = (yield* readSafetensors(path.join(sdTiny, "A/clip_io.safetensors"))).get("input_ids")!
      assert.strictEqual(ids.data[0], 998) // BOS of the tiny vocabulary
      assert.strictEqual(ids.data[2 * 77], 998)
      assert.strictEqual(ids.data[2 * 77 + 1], 999) // the empty prompt: BOS then EOS/pad
    }))

  it.effect("reads the model weights: tensor and parameter counts as in the manifest, all float32", () =>
    Effect.gen(function*() {
      const m = yield* Effect.promise(manifest)
      for (const model of ["unet", "vae", "text_encoder"]) {
        const spec = m.configs.A.models[model]!
        const tensors = yield* readSafetensors(path.join(sdTiny, spec.weights!))
        assert.strictEqual(tensors.size, spec.num_tensors)
        assert.strictEqual([...tensors.values()].reduce((a, t) => a + t.data.length, 0), spec.num_params)
        assert.isTrue([...tensors.values()].every((t) => t.dtype === "F32" && isFloatTensor(t)))
      }
      const unet = yield* readSafetensors(path.join(sdTiny, "A/unet/diffusion_pytorch_model.safetensors"), {
        names: (n) => n.endsWith("attn2.to_k.weight")
      })
      // A's cross-attention layers: 2 in down_blocks.0, 1 in the mid block, 3 in up_blocks.1
      assert.strictEqual(unet.size, 6)
      assert.isTrue([...unet.keys()].every((n) => n.endsWith("attn2.to_k.weight")))
      const k = unet.get("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight")!
      assert.deepStrictEqual(k.shape, [32, 32]) // [out = channels, in = cross_attention_dim]
    }))

  it("float16: every bit pattern round-trips; rounding is to nearest even, matching a search oracle", () => {
    for (let h = 0; h < 0x10000; h++) {
      const v = float16ToFloat32(h)
      if (Number.isNaN(v)) {
        const back = float32ToFloat16(v)
        assert.isTrue((back & 0x7c00) === 0x7c00 && (back & 0x3ff) !== 0, `NaN ${h}`)
      } else {
        assert.strictEqual(float32ToFloat16(v), h, `bits ${h.toString(16)}`)
      }
    }
    assert.strictEqual(float16ToFloat32(0x0001), 2 ** -24) // smallest subnormal
    assert.strictEqual(float16ToFloat32(0x03ff), 1023 * 2 ** -24) // largest subnormal
    assert.strictEqual(float16ToFloat32(0x7bff), 65504)
    assert.strictEqual(float16ToFloat32(0xfc00), -Infinity)
    assert.isTrue(Object.is(float16ToFloat32(0x8000), -0))
    const cases: Array<[number, number]> = [
      [1 + 2 ** -11, 0x3c00], // tie -> even
      [1 + 3 * 2 ** -11, 0x3c02], // tie -> even (up)
      [1 + 2 ** -11 + 2 ** -20, 0x3c01],
      [65519, 0x7bff],
      [65520, 0x7c00], // tie between 65504 and 2^16 -> even -> infinity
      [1e6, 0x7c00],
      [2 ** -25, 0x0000], // tie between 0 and the smallest subnormal -> 0
      [2 ** -25 * 1.0001, 0x0001],
      [3 * 2 ** -25, 0x0002], // tie -> even
      [1023.5 * 2 ** -24, 0x0400], // largest subnormal + half -> smallest normal
      [-0, 0x8000],
      [2 ** -30, 0x0000],
      [-(2 ** -30), 0x8000],
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00]
    ]
    for (const [x, bits] of cases) assert.strictEqual(float32ToFloat16(x), bits, `${x}`)
    // random float32 bit patterns over the whole half range (and beyond) against the oracle
    let s = 12345
    const f = new Float32Array(1)
    const u = new Uint32Array(f.buffer)
    for (let i = 0; i < 20000; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0
      u[0] = (s & 0x80000000) | ((0x30000000 + (s % 0x18000000)) >>> 0) // exponents ~2^-31 .. 2^17
      assert.strictEqual(float32ToFloat16(f[0]!), nearestHalf(f[0]!), `${f[0]}`)
    }
  })

  it("bfloat16: every bit pattern round-trips; rounding is to nearest even", () => {
    for (let b = 0; b < 0x10000; b++) {
      const v = bfloat16ToFloat32(b)
      if (Number.isNaN(v)) assert.isTrue(Number.isNaN(bfloat16ToFloat32(float32ToBfloat16(v))))
      else assert.strictEqual(float32ToBfloat16(v), b, `bits ${b.toString(16)}`)
    }
    assert.strictEqual(float32ToBfloat16(1 + 2 ** -8), 0x3f80) // tie -> even
    assert.strictEqual(float32ToBfloat16(1 + 3 * 2 ** -8), 0x3f82) // tie -> even (up)
    assert.strictEqual(float32ToBfloat16(1 + 2 ** -8 + 2 ** -20), 0x3f81)
    assert.strictEqual(float32ToBfloat16(3.4028234663852886e38), 0x7f80) // float32 max -> infinity
    assert.strictEqual(float32ToBfloat16(2 ** -133), 0x0001) // float32 subnormal stays a bf16 subnormal
    assert.strictEqual(bfloat16ToFloat32(0x0001), 2 ** -133)
    assert.strictEqual(bfloat16ToFloat32(0xff80), -Infinity)
  })

  it.effect("reads F16, BF16, F64 and integer dtypes exactly (subnormals, infinities, NaN, I64)", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.promise(() => tempDir())
      const values = [0, -0, 1, -2.5, 65504, 2 ** -24, 1023 * 2 ** -24, 2 ** -14, Infinity, -Infinity, NaN, 0.1]
      const f16 = Uint16Array.from(values, float32ToFloat16)
      const bf16 = Uint16Array.from(values, float32ToBfloat16)
      const f64 = Float64Array.from([0.1, 1 / 3, -1e-310, 1e39, 1 + 2 ** -24, NaN])
      const i64 = BigInt64Array.from([0n, -1n, 2147483647n, -2147483648n, 49407n])
      const i16 = Int16Array.from([-32768, 32767, 5])
      const i8 = Int8Array.from([-128, 127])
      const u8 = Uint8Array.from([0, 255])
      const bool = Uint8Array.from([0, 1, 1])
      const parts: Array<[string, string, ReadonlyArray<number>, Uint8Array]> = [
        ["bf16", "BF16", [3, 4], bytesOf(bf16)],
        ["bool", "BOOL", [3], bool],
        ["f16", "F16", [12], bytesOf(f16)],
        ["f64", "F64", [2, 3], bytesOf(f64)],
        ["i16", "I16", [3], bytesOf(i16)],
        ["i64", "I64", [5], bytesOf(i64)],
        ["i8", "I8", [2], bytesOf(i8)],
        ["u8", "U8", [2], u8]
      ]
      const header: Record<string, unknown> = { __metadata__: { format: "pt" } }
      let offset = 0
      for (const [name, dtype, shape, bytes] of parts) {
        header[name] = { dtype, shape, data_offsets: [offset, offset + bytes.length] }
        offset += bytes.length
      }
      const file = path.join(dir, "mixed.safetensors")
      yield* Effect.promise(() => fs.writeFile(file, rawFile(header, Buffer.concat(parts.map((p) => p[3])))))
      const h = yield* readSafetensorsHeader(file)
      assert.deepStrictEqual(h.metadata, { format: "pt" })
      assert.deepStrictEqual(h.entries.map((e) => e.name), parts.map((p) => p[0]))
      const t = yield* readSafetensors(file)
      const same = (got: ArrayLike<number>, want: ArrayLike<number>, what: string) =>
        assert.isTrue(Array.from(want).every((w, i) => Object.is(got[i], w)), `${what}: ${Array.from(got)} vs ${Array.from(want)}`)
      same(t.get("f16")!.data, values.map((v) => (v === 0.1 ? float16ToFloat32(float32ToFloat16(0.1)) : v)), "F16")
      // bfloat16 keeps float32's range: 65504 and the half subnormals round; the rest is exact
      same(t.get("bf16")!.data, Array.from(bf16, bfloat16ToFloat32), "BF16")
      same(t.get("bf16")!.data.subarray(0, 5), [0, -0, 1, -2.5, 65536], "BF16")
      same(t.get("bf16")!.data.subarray(8, 11), [Infinity, -Infinity, NaN], "BF16")
      same(t.get("f64")!.data, Array.from(f64, Math.fround), "F64")
      assert.isTrue(isFloatTensor(t.get("f64")!))
      same(t.get("i64")!.data, [0, -1, 2147483647, -2147483648, 49407], "I64")
      assert.instanceOf(t.get("i64")!.data, Int32Array)
      same(t.get("i16")!.data, [-32768, 32767, 5], "I16")
      same(t.get("i8")!.data, [-128, 127], "I8")
      same(t.get("u8")!.data, [0, 255], "U8")
      same(t.get("bool")!.data, [0, 1, 1], "BOOL")
      // an I64 outside int32 is refused rather than wrapped
      const big = BigInt64Array.from([1n, 2n ** 40n])
      yield* Effect.promise(() => fs.writeFile(file, rawFile({ t: { dtype: "I64", shape: [2], data_offsets: [0, 16] } }, bytesOf(big))))
      assert.include(yield* modelError(readSafetensors(file)), "1099511627776")
    }))

  it.effect("write -> read round-trips float32 bits, metadata and sorted, aligned layout", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.promise(() => tempDir())
      const file = path.join(dir, "delta.safetensors")
      const tensors = new Map([
        ["z.to_v.weight", { shape: [2, 3], data: Float32Array.from([1.5, -0, NaN, Infinity, 1e-45, -3.4e38]) }],
        ["a.scalar", { shape: [], data: Float32Array.from([Math.PI]) }],
        ["m.empty", { shape: [0, 4], data: new Float32Array(0) }],
        ["b.view", { shape: [2], data: new Float32Array([9, 7, 8, 6]).subarray(1, 3) }]
      ])
      yield* writeSafetensors(file, tensors, { format: "pt", method: "disendiff" })
      assert.deepStrictEqual(yield* Effect.promise(() => fs.readdir(dir)), ["delta.safetensors"])
      const h = yield* readSafetensorsHeader(file)
      assert.strictEqual(h.dataStart % 8, 0)
      assert.deepStrictEqual(h.metadata, { format: "pt", method: "disendiff" })
      assert.deepStrictEqual(h.entries.filter((e) => e.end > e.begin).map((e) => e.name), ["a.scalar", "b.view", "z.to_v.weight"])
      assert.strictEqual(h.entries.find((e) => e.name === "a.scalar")!.begin, h.dataStart)
      assert.strictEqual(h.fileBytes, h.dataStart + 4 * (1 + 2 + 6))
      const bytes = yield* Effect.promise(() => fs.readFile(file))
      const headerText = bytes.subarray(8, h.dataStart).toString("utf8")
      assert.match(headerText, /^\{.*\} *$/)
      const back = yield* readSafetensors(file)
      for (const [name, t] of tensors) {
        const got = back.get(name)!
        assert.strictEqual(got.dtype, "F32")
        assert.deepStrictEqual(got.shape, t.shape)
        assert.deepStrictEqual([...new Uint32Array(got.data.buffer)], [...new Uint32Array(t.data.slice().buffer)], name)
      }
      // the wrong number of values for a shape is refused, and nothing is written
      const wrong = new Map([["x", { shape: [3], data: new Float32Array(2) }]])
      assert.include(yield* modelError(writeSafetensors(path.join(dir, "bad.safetensors"), wrong)), "2 values for shape [3]")
      assert.deepStrictEqual(yield* Effect.promise(() => fs.readdir(dir)), ["delta.safetensors"])
    }))

  it.effect("truncated files, bad header lengths, corrupt JSON and bad offsets are ModelErrors naming the file", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.promise(() => tempDir())
      const file = path.join(dir, "x.safetensors")
      yield* writeSafetensors(file, new Map([["a", { shape: [4], data: new Float32Array(4) }], ["b", { shape: [2], data: new Float32Array(2) }]]))
      const good = yield* Effect.promise(() => fs.readFile(file))
      const expectError = (bytes: Uint8Array, fragment: string) =>
        Effect.gen(function*() {
          yield* Effect.promise(() => fs.writeFile(file, bytes))
          const message = yield* modelError(readSafetensors(file))
          assert.include(message, file)
          assert.include(message, fragment)
          assert.include(message, "Fix:")
        })
      for (const keep of [0, 5, 8, 20, good.length - 9, good.length - 1]) {
        yield* expectError(good.subarray(0, keep), keep < 8 ? "truncated" : keep < 8 + good.readUInt32LE(0) ? "past the end of the file" : "truncated")
      }
      const d = new Uint8Array(24)
      yield* expectError(rawFile({ a: { dtype: "F32", shape: [2] } }, d, 10n ** 12n), "header length 1000000000000 runs past the end")
      yield* expectError(rawFile('{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]', d), "not valid JSON")
      yield* expectError(rawFile("[1, 2]", d), "not a JSON object")
      yield* expectError(rawFile({ a: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, b: { dtype: "F32", shape: [2], data_offsets: [4, 12] } }, d), "overlap")
      yield* expectError(rawFile({ a: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, d), "needs 12")
      yield* expectError(rawFile({ a: { dtype: "F32", shape: [8], data_offsets: [0, 32] } }, d), "past the end of the data")
      yield* expectError(rawFile({ a: { dtype: "Q4", shape: [2], data_offsets: [0, 8] } }, d), "tensor \"a\"")
      yield* expectError(rawFile({ a: { dtype: "F32", shape: [-2], data_offsets: [0, 8] } }, d), "tensor \"a\"")
      yield* expectError(rawFile({ a: { dtype: "F32", shape: [2], data_offsets: [8, 0] } }, d), "hold -8 bytes")
      yield* expectError(rawFile({ __metadata__: { n: 1 } }, d), "__metadata__")
      const missing = yield* modelError(readSafetensorsHeader(path.join(dir, "missing.safetensors")))
      assert.include(missing, "missing.safetensors: no such file")
    }))
})
