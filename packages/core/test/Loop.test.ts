import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber } from "effect"
import { beforeAll } from "vitest"
import { CpuBackend, tf } from "../src/index.js"
import { type CheckpointEvent, NumericalError, runLoop, sumInOrder } from "../src/training/Loop.js"
import { useRuntime } from "./numeric.js"

beforeAll(() => useRuntime(CpuBackend.layer))

/** A loop over a scalar "weight" whose gradient is 1 each step, with the loss NaN at `badStep` (0-based). */
const scenario = (o: { totalSteps: number; checkpointEvery: number; badStep?: number; startStep?: number }) => {
  const log: Array<string> = []
  let weight = 0
  const loop = runLoop<null, never, never>({
    startStep: o.startStep ?? 0,
    totalSteps: o.totalSteps,
    checkpointEvery: o.checkpointEvery,
    checkpoint: "/run/checkpoint.msgpack",
    numericalFix: "lower it",
    compute: (s) => Effect.sync(() => ({ grads: [tf.scalar(1)], loss: s === o.badStep ? Number.NaN : 1, gradNorm: 1, extra: null })),
    apply: (_, s) => Effect.sync(() => void (weight += 1, log.push(`apply ${s}`))),
    after: (completed) => Effect.sync(() => void log.push(`after ${completed}`)),
    save: (file) => Effect.sync(() => (log.push(`save ${file} at weight ${weight}`), `digest-${weight}`)),
    emit: (e: CheckpointEvent) => Effect.sync(() => void log.push(`${e._tag} ${e.step}`))
  })
  return { loop, log }
}

describe("the training loop", () => {
  it.effect("applies, reports and checkpoints every K steps and at the end", () =>
    Effect.gen(function*() {
      const { loop, log } = scenario({ totalSteps: 4, checkpointEvery: 2 })
      assert.strictEqual(yield* loop, 4)
      assert.deepStrictEqual(log, [
        "apply 0", "after 1",
        "apply 1", "after 2", "save /run/checkpoint.msgpack at weight 2", "CheckpointSaved 2",
        "apply 2", "after 3",
        "apply 3", "after 4", "save /run/checkpoint.msgpack at weight 4", "Finished 4"
      ])
    }))

  it.effect("stops before applying a non-finite step and keeps the last good state in a file it names", () =>
    Effect.gen(function*() {
      const { loop, log } = scenario({ totalSteps: 5, checkpointEvery: 0, badStep: 2 })
      const exit = yield* Effect.exit(loop)
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? exit.cause : undefined
      assert.include(String(error), "NumericalError")
      assert.deepStrictEqual(log, ["apply 0", "after 1", "apply 1", "after 2", "save /run/checkpoint-step2.msgpack at weight 2"])
      const failure = yield* Effect.flip(scenario({ totalSteps: 5, checkpointEvery: 0, badStep: 2 }).loop)
      assert.instanceOf(failure, NumericalError)
      assert.strictEqual(failure.step, 3)
      assert.strictEqual(failure.checkpoint, "/run/checkpoint-step2.msgpack")
      assert.strictEqual(failure.quantity, "the loss")
    }))

  it.live("saves the last completed step when interrupted", () =>
    Effect.gen(function*() {
      const { loop, log } = scenario({ totalSteps: 1_000_000, checkpointEvery: 0 })
      const fiber = yield* Effect.forkChild(loop)
      yield* Effect.sleep("20 millis")
      yield* Fiber.interrupt(fiber)
      const applied = log.filter((l) => l.startsWith("apply")).length
      assert.isTrue(applied > 0)
      assert.strictEqual(log.at(-1), `save /run/checkpoint.msgpack at weight ${applied}`)
    }))

  it("sums gradients in the order given", () => {
    const parts = [[tf.scalar(1e8), tf.scalar(1)], [tf.scalar(1), tf.scalar(2)], [tf.scalar(-1e8), tf.scalar(3)]]
    const [a, b] = sumInOrder(parts)
    // float32: (1e8 + 1) - 1e8 = 0 in this order, not 1
    assert.strictEqual(a!.dataSync()[0], 0)
    assert.strictEqual(b!.dataSync()[0], 6)
  })
})
