import { beforeAll, describe, expect, it } from "vitest"
import { CpuBackend, tf } from "../src/index.js"
import { useRuntime } from "./numeric.js"

beforeAll(() => useRuntime(CpuBackend.layer))

describe("Tf", () => {
  it("has gradients registered for the ops the models use", () => {
    const x = tf.tensor([0.5, -1, 2])
    // d/dx sum(softmax(x) * [1,2,3]) and d/dx sum(erf(x)) have closed forms
    const s = tf.softmax(x).dataSync()
    const gs = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(tf.softmax(a), tf.tensor([1, 2, 3]))))(x).dataSync()
    const mean = s[0]! * 1 + s[1]! * 2 + s[2]! * 3
    for (let i = 0; i < 3; i++) expect(gs[i]).toBeCloseTo(s[i]! * (i + 1 - mean), 6)
    const ge = tf.grad((a: tf.Tensor) => tf.sum(tf.erf(a)))(x).dataSync()
    for (let i = 0; i < 3; i++) {
      const v = [0.5, -1, 2][i]!
      expect(ge[i]).toBeCloseTo((2 / Math.sqrt(Math.PI)) * Math.exp(-v * v), 5)
    }
  })

  it("tfjs's MirrorPad gradient ignores the reflected cells (why the loss pads by hand)", () => {
    const g = tf.grad((a: tf.Tensor) =>
      tf.sum(tf.square(tf.mirrorPad(tf.reshape(a, [1, 3]), [[0, 0], [1, 1]], "reflect")))
    )(tf.tensor([1, 2, 3]))
    // The true gradient of 2^2 + 1^2 + 2^2 + 3^2 + 2^2 is [2, 12, 6].
    expect(Array.from(g.dataSync())).toEqual([2, 4, 6])
  })
})
