/**
 * The one training loop, shared by personalisation (`Trainer`) and the built-in model's pretraining, so
 * that the two cannot drift apart. Each step:
 *
 * 1. `compute` accumulates the step's micro-batches in micro-batch order (`sumInOrder`: the same sum bit
 *    for bit wherever they were computed) and reads the loss and the gradient norm;
 * 2. both must be finite, checked before anything changes: otherwise the state of the last good step is
 *    written to `checkpoint-step<N>.msgpack` beside the run's checkpoint and the run fails with a
 *    `NumericalError` that names that file;
 * 3. `apply` takes the optimizer step (and whatever else follows the weights, such as an EMA);
 * 4. `after` records and reports the step, then a checkpoint is written every `checkpointEvery` steps
 *    and at the end. An interrupted run (Ctrl-C) writes one of its last completed step.
 */
import { Effect, Schema } from "effect"
import * as path from "node:path"
import { tf } from "../tensor/Tf.js"

/** The loss or gradients stopped being finite: the step was not applied. */
export class NumericalError extends Schema.TaggedError<NumericalError>()("NumericalError", {
  step: Schema.Int,
  quantity: Schema.String,
  checkpoint: Schema.String,
  fix: Schema.String
}) {
  override get message() {
    return `step ${this.step}: ${this.quantity} is not finite; the last good state is in ${this.checkpoint}. Fix: ${this.fix}`
  }
}

export type CheckpointEvent =
  | { readonly _tag: "CheckpointSaved"; readonly step: number; readonly path: string; readonly digest: string }
  | { readonly _tag: "Finished"; readonly step: number; readonly path: string; readonly digest: string }

export interface ComputedStep<X> {
  /** Summed gradients in the order of the trainable names (the loop disposes of them). */
  readonly grads: ReadonlyArray<tf.Tensor>
  readonly loss: number
  readonly gradNorm: number
  /** Whatever else the caller read for this step (loss terms). */
  readonly extra: X
}

export interface LoopOptions<X, E, R> {
  readonly startStep: number
  readonly totalSteps: number
  readonly checkpointEvery: number
  /** The run's checkpoint, `out/checkpoint.msgpack`. */
  readonly checkpoint: string
  /** Advice in a `NumericalError`. */
  readonly numericalFix: string
  readonly compute: (step: number) => Effect.Effect<ComputedStep<X>, E, R>
  readonly apply: (grads: ReadonlyArray<tf.Tensor>, step: number) => Effect.Effect<void, E, R>
  /** Called with the number of completed steps after each applied step. */
  readonly after: (completed: number, computed: ComputedStep<X>) => Effect.Effect<void, E, R>
  /** Writes the state of the last applied step to a file and returns its digest. */
  readonly save: (file: string) => Effect.Effect<string, E, R>
  readonly emit: (e: CheckpointEvent) => Effect.Effect<unknown>
  readonly onInterrupted?: ((step: number, checkpoint: string) => Effect.Effect<void>) | undefined
}

/** Sums per-micro-batch gradient lists in the order given, disposing of the parts. */
export const sumInOrder = (parts: ReadonlyArray<ReadonlyArray<tf.Tensor>>): Array<tf.Tensor> => {
  let acc: Array<tf.Tensor> = [...parts[0]!]
  for (const grads of parts.slice(1)) {
    const next = acc.map((g, i) => tf.add(g, grads[i]!))
    tf.dispose([...acc, ...grads])
    acc = next
  }
  return acc
}

export const runLoop = <X, E, R>(o: LoopOptions<X, E, R>): Effect.Effect<number, E | NumericalError, R> => {
  let step = o.startStep
  const loop = Effect.gen(function*() {
    while (step < o.totalSteps) {
      // let the event loop run between steps: signal handlers (Ctrl-C) and other fibers get their turn
      yield* Effect.yieldNow
      const computed = yield* o.compute(step)
      if (!Number.isFinite(computed.loss) || !Number.isFinite(computed.gradNorm)) {
        tf.dispose([...computed.grads])
        const file = path.join(path.dirname(o.checkpoint), `checkpoint-step${step}.msgpack`)
        yield* o.save(file)
        return yield* new NumericalError({
          step: step + 1,
          quantity: Number.isFinite(computed.loss) ? "the gradient" : "the loss",
          checkpoint: file,
          fix: o.numericalFix
        })
      }
      yield* o.apply(computed.grads, step)
      tf.dispose([...computed.grads])
      step++
      yield* o.after(step, computed)
      if (o.checkpointEvery > 0 && step % o.checkpointEvery === 0 && step < o.totalSteps) {
        const digest = yield* o.save(o.checkpoint)
        yield* o.emit({ _tag: "CheckpointSaved", step, path: o.checkpoint, digest })
      }
    }
    const digest = yield* o.save(o.checkpoint)
    yield* o.emit({ _tag: "Finished", step, path: o.checkpoint, digest })
    return step
  })
  return loop.pipe(
    Effect.onInterrupt(() =>
      o.save(o.checkpoint).pipe(
        Effect.andThen(o.onInterrupted?.(step, o.checkpoint) ?? Effect.void),
        Effect.ignore
      )
    )
  )
}
