/**
 * The wasm kernel overrides (packages/backend-wasm: BatchMatMul, Identity, Transpose, Reverse, Sum,
 * Mean) against the cpu backend's independent kernels, over shapes, permutations and axes.
 */
import { WasmBackend } from "@disendiff/backend-wasm"
import { CpuBackend, nn, type TensorRuntime, tf } from "@disendiff/core"
import { Effect, Layer } from "effect"
import { describe, expect, it } from "vitest"

const use = (layer: Layer.Layer<TensorRuntime>) => Effect.runPromise(Effect.scoped(Layer.build(layer)))

const data = (n: number, seed: number) => {
  let s = seed
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s / 2 ** 31 - 1
  })
}

/** Runs `f` on both backends with the same inputs; returns both outputs' values and shapes. */
const both = async (shapes: Array<Array<number>>, f: (...xs: Array<tf.Tensor>) => tf.Tensor) => {
  const run = async (layer: Layer.Layer<TensorRuntime>) => {
    await use(layer)
    const xs = shapes.map((s, i) => tf.tensor(data(s.reduce((a, b) => a * b, 1), 7 + i), s))
    const y = f(...xs)
    const out = { shape: y.shape, values: Array.from(await y.data()) }
    tf.dispose([...xs, y])
    return out
  }
  return { cpu: await run(CpuBackend.layer), wasm: await run(WasmBackend.layer) }
}

const close = (r: Awaited<ReturnType<typeof both>>, tol = 1e-5) => {
  expect(r.wasm.shape).toEqual(r.cpu.shape)
  const scale = Math.max(1, ...r.cpu.values.map(Math.abs))
  r.cpu.values.forEach((v, i) => expect(Math.abs(r.wasm.values[i]! - v)).toBeLessThanOrEqual(tol * scale))
}

describe("wasm kernel overrides match the cpu backend", () => {
  it("Transpose for ranks 2-6 and assorted permutations", async () => {
    const cases: Array<[Array<number>, Array<number>]> = [
      [[7, 5], [1, 0]],
      [[3, 4, 5], [2, 0, 1]],
      [[2, 3, 4, 5], [0, 2, 1, 3]],
      [[2, 3, 4, 5], [3, 2, 1, 0]],
      [[2, 1, 4, 5], [1, 3, 0, 2]],
      [[2, 3, 2, 3, 2], [4, 0, 3, 1, 2]],
      [[2, 2, 3, 2, 2, 3], [5, 4, 3, 2, 1, 0]]
    ]
    for (const [shape, perm] of cases) {
      const r = await both([shape], (x) => tf.transpose(x, perm))
      expect(r.wasm).toEqual(r.cpu)
    }
  })

  it("Reverse over any axes, Sum and Mean over any axes", async () => {
    for (const axes of [[0], [1], [0, 1], [2, 3], [0, 3]]) close(await both([[3, 3, 4, 5]], (x) => tf.reverse(x, axes)), 0)
    for (const axes of [[0], [1], [0, 2], [1, 3], [0, 1, 2], [3], undefined]) {
      close(await both([[2, 3, 4, 5]], (x) => tf.sum(x, axes)))
      close(await both([[2, 3, 4, 5]], (x) => tf.mean(x, axes, true)))
    }
  })

  it("Concat along the last axis (two and three inputs) and along others", async () => {
    close(await both([[2, 3, 4, 5], [2, 3, 4, 2]], (a, b) => tf.concat([a!, b!], 3)), 0)
    close(await both([[6, 5], [6, 1], [6, 3]], (a, b, c) => tf.concat([a!, b!, c!], -1)), 0)
    close(await both([[2, 3, 4], [1, 3, 4]], (a, b) => tf.concat([a!, b!], 0)), 0)
  })

  it("batched and broadcast matMuls, and a clone that shares its data safely", async () => {
    close(await both([[6, 5, 7], [6, 7, 3]], (a, b) => tf.matMul(a, b)))
    close(await both([[6, 5, 7], [1, 7, 3]], (a, b) => tf.matMul(a, b)))
    close(await both([[2, 3, 5, 7], [2, 3, 7, 4]], (a, b) => tf.matMul(a, b)))
    close(await both([[6, 7, 5], [6, 7, 3]], (a, b) => tf.matMul(a, b, true, false)))
    close(await both([[4, 5]], (x) => {
      const c = tf.clone(x)
      x.dispose() // the clone keeps the shared data alive
      return tf.add(c, 1)
    }))
  })

  it("fused GroupNorm and LayerNorm kernels: values and gradients (x, gamma, beta)", async () => {
    const gn = (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => nn.groupNorm(nn.makeWeights(new Map(), new Map([["weight", g], ["bias", b]])), x, 4, 1e-5)
    const ln = (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => nn.layerNorm(nn.makeWeights(new Map(), new Map([["weight", g], ["bias", b]])), x, 1e-5)
    for (const [norm, shape] of [[gn, [2, 5, 3, 8]], [ln, [3, 7, 8]]] as const) {
      close(await both([[...shape], [8], [8]], (x, g, b) => norm(x!, g!, b!)))
      for (const i of [0, 1, 2]) {
        close(await both([[...shape], [8], [8], [...shape]], (x, g, b, r) =>
          tf.grads((x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(norm(x, g, b), r!)))([x!, g!, b!])[i]!), 2e-5)
      }
    }
  })
})
