/**
 * The `disendiff` executable. Typed failures print one line naming the input and the fix, and exit 1;
 * Ctrl-C interrupts the running command, whose finalizers (e.g. the trainer's checkpoint) run first.
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Cause, Effect } from "effect"
import { run } from "./Cli.js"

const program = run.pipe(
  Effect.provide(NodeServices.layer),
  Effect.catchCause((cause) => {
    if (Cause.hasInterruptsOnly(cause)) return Effect.failCause(cause)
    const failure = Cause.findErrorOption(cause)
    const message = failure._tag === "Some" && failure.value instanceof Error
      ? failure.value.message
      : Cause.pretty(cause)
    return Effect.sync(() => {
      process.stderr.write(`error: ${message}\n`)
      process.exitCode = 1
    })
  })
)

NodeRuntime.runMain(program, { disableErrorReporting: true })
