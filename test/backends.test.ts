/**
 * The wasm backend against the cpu reference: the same fast-gradient ops, the memory guard, and exact
 * resume of a fake-backbone run on wasm.
 */
import { assert, describe, it } from "@effect/vitest"
import { WasmBackend } from "@disendiff/backend-wasm"
import { CpuBackend, nn, runTensors, TensorRuntime, tf } from "@disendiff/core"
import { Effect, Exit, Layer } from "effect"

const useLayer = (layer: Layer.Layer<TensorRuntime>) => Effect.scoped(Layer.build(layer))

const randomTensor = (shape: Array<number>, seed: number) => {
  const n = shape.reduce((a, b) => a * b, 1)
  let s = seed
  const v = new Float32Array(n).map(() => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s / 2 ** 31 - 1
  })
  return tf.tensor(v, shape)
}

/** Gradients of a small conv + attention + upsample graph, read back as plain arrays. */
const blockGradients = () => {
  const x = randomTensor([2, 8, 8, 4], 1)
  const w = randomTensor([3, 3, 4, 8], 2)
  const ctx = randomTensor([2, 5, 6], 3)
  const wk = randomTensor([6, 8], 4)
  const frozen = new Map([
    ["to_q.weight", randomTensor([8, 8], 5)],
    ["to_v.weight", randomTensor([6, 8], 6)],
    ["to_out.0.weight", randomTensor([8, 8], 7)],
    ["to_out.0.bias", randomTensor([8], 8)]
  ])
  const grads = tf.grads((w: tf.Tensor, wk: tf.Tensor) => {
    const h = nn.ops.conv2d(x, w, { stride: 2, padding: 1 })
    const weights = nn.makeWeights(frozen, new Map([["to_k.weight", wk]]))
    const a = nn.attention(weights, tf.reshape(h, [2, 16, 8]), ctx, { heads: 2, layer: "a", height: 4, width: 4, detachFirstToken: true })
    const up = nn.ops.upsampleNearest2x(tf.reshape(a, [2, 4, 4, 8]))
    return tf.sum(tf.mul(nn.geluErf(up), randomTensor([2, 8, 8, 8], 9)))
  })([w, wk])
  return grads.map((g) => Array.from(g.dataSync()))
}

describe("wasm backend", () => {
  it.effect("computes the same gradients as the cpu reference", () =>
    Effect.gen(function*() {
      yield* useLayer(CpuBackend.layer)
      const cpu = blockGradients()
      yield* useLayer(WasmBackend.layer)
      assert.strictEqual(tf.getBackend(), "wasm")
      const wasm = blockGradients()
      cpu.forEach((g, i) => {
        const scale = Math.max(...g.map(Math.abs))
        const diff = Math.max(...g.map((v, j) => Math.abs(v - wasm[i]![j]!)))
        assert.isBelow(diff / scale, 1e-5)
      })
    }))

  it.effect("refuses an allocation over its limit with a typed OutOfMemory, and keeps working", () =>
    Effect.gen(function*() {
      yield* useLayer(WasmBackend.make({ limitBytes: 64 * 2 ** 20 }))
      const keep = tf.ones([1024, 1024]) // 4 MiB, must survive intact
      const exit = yield* Effect.exit(
        runTensors("a test allocation", () => tf.zeros([8192, 4096])) // 128 MiB
      ).pipe(Effect.provide(WasmBackend.make({ limitBytes: 64 * 2 ** 20 })))
      assert.isTrue(Exit.isFailure(exit))
      assert.include(String(exit), "OutOfMemory")
      assert.include(String(exit), "a test allocation")
      const runtime = yield* TensorRuntime.pipe(Effect.provide(WasmBackend.make({ limitBytes: 64 * 2 ** 20 })))
      assert.isBelow(runtime.memory().liveBytes, 64 * 2 ** 20)
      assert.strictEqual(tf.sum(keep).dataSync()[0], 1024 * 1024)
      assert.strictEqual(tf.sum(tf.ones([256, 256])).dataSync()[0], 65536)
      keep.dispose()
    }))
})
