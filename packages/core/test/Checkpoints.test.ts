import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { CheckpointFile, type Snapshot, snapshotDigest } from "../src/index.js"
import { tempDir } from "./fixtures.js"

const snapshot = (): Snapshot => ({
  header: {
    formatVersion: 1,
    step: 3,
    config: { anything: "json" },
    rng: { algorithm: "philox4x32-10", seed: 7 },
    dataCursor: 12,
    baseModel: { kind: "fake", name: "fake", identity: "abc" },
    lossHistory: [{ step: 1, loss: 0.5, base: 0.4, bind: 1.2, separation: null, lr: 1e-3, gradNorm: 2 }],
    // pretraining's record must survive a round trip (resumed runs keep their evaluations and time)
    pretraining: { evaluations: [{ step: 1, scores: [0.5] }], seconds: 12.5 }
  },
  trainable: new Map([["w", { shape: [2, 3], data: new Float32Array([1.5, -2.25, 300.125, 1e-30, -0, Math.PI]) }]]),
  optimizer: {
    step: 3,
    m: new Map([["w", { shape: [2, 3], data: new Float32Array(6).fill(0.1) }]]),
    v: new Map([["w", { shape: [2, 3], data: new Float32Array(6).fill(0.2) }]])
  }
})

const failure = <A, E extends { message: string }>(eff: Effect.Effect<A, E>) =>
  Effect.map(Effect.exit(eff), (exit) => {
    assert.isTrue(Exit.isFailure(exit))
    return Exit.isFailure(exit) ? String(exit.cause) : ""
  })

describe("Checkpoints", () => {
  it.effect("round-trips float32 bits, header and digest", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.promise(() => tempDir())
      const file = path.join(dir, "c.msgpack")
      const s = snapshot()
      yield* CheckpointFile.save(file, s)
      const back = yield* CheckpointFile.load(file)
      assert.deepStrictEqual(Array.from(back.trainable.get("w")!.data), Array.from(s.trainable.get("w")!.data))
      assert.isTrue(Object.is(back.trainable.get("w")!.data[4], -0))
      assert.deepStrictEqual(back.header, s.header)
      assert.strictEqual(snapshotDigest(back), snapshotDigest(s))
      // no temporary files are left behind
      assert.deepStrictEqual(yield* Effect.promise(() => fs.readdir(dir)), ["c.msgpack"])
    }))

  it.effect("a truncated file is refused with an error naming it", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.promise(() => tempDir())
      const file = path.join(dir, "c.msgpack")
      yield* CheckpointFile.save(file, snapshot())
      const bytes = yield* Effect.promise(() => fs.readFile(file))
      for (const keep of [bytes.length - 1, Math.floor(bytes.length / 2), 10, 0]) {
        yield* Effect.promise(() => fs.writeFile(file, bytes.subarray(0, keep)))
        const message = yield* failure(CheckpointFile.load(file))
        assert.include(message, file)
      }
    }))

  it.effect("flipped bytes, another format version, or a non-checkpoint are refused", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.promise(() => tempDir())
      const file = path.join(dir, "c.msgpack")
      yield* CheckpointFile.save(file, snapshot())
      const bytes = yield* Effect.promise(() => fs.readFile(file))
      const flipped = Buffer.from(bytes)
      flipped[bytes.length - 5]! ^= 0xff
      yield* Effect.promise(() => fs.writeFile(file, flipped))
      assert.include(yield* failure(CheckpointFile.load(file)), "digest mismatch")
      const envelopeV2 = Buffer.from(bytes)
      const at = envelopeV2.indexOf(Buffer.from("version"))
      envelopeV2[at + 7] = 2 // the positive fixint right after the key
      yield* Effect.promise(() => fs.writeFile(file, envelopeV2))
      assert.include(yield* failure(CheckpointFile.load(file)), "format version 2")
      yield* Effect.promise(() => fs.writeFile(file, "hello, I am not a checkpoint"))
      assert.include(yield* failure(CheckpointFile.load(file)), file)
      assert.include(yield* failure(CheckpointFile.load(path.join(dir, "missing.msgpack"))), "missing.msgpack")
    }))
})
