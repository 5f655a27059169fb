/**
 * The `disendiff` executable. Typed failures print one line naming the input and the fix, and exit 1;
 * Ctrl-C interrupts the running command, whose finalizers (e.g. the trainer's checkpoint) run first.
 * A flag the parser rejects prints one line (not the whole help screen). An unexpected
 * failure (a bug) prints one line too; DISENDIFF_DEBUG=1 prints its full cause with stack traces.
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Cause, Effect } from "effect"
import { CliError, CliOutput } from "effect/cli"
import { run } from "./Cli.js"

const oneLine = (s: string) => s.replace(/\s*\n\s*/g, " ").trim()

/** Help and version as usual; an invalid invocation as one line, pointing at the command's help. */
const presenter = CliOutput.layerPresenter({
  present: (event) =>
    event._tag === "InvalidInvocation"
      ? Effect.sync(() => {
        const help = `\`${event.commandPath.join(" ")} --help\``
        // the first problem only: one line, fixed one at a time
        const e = event.errors[0]
        if (e !== undefined) process.stderr.write(`error: ${oneLine(e.message)}. Fix: see ${help} for the flags and their values\n`)
      })
      : CliOutput.defaultPresenter.present(event)
})

const program = run.pipe(
  Effect.provide(NodeServices.layer),
  Effect.provide(presenter),
  Effect.catchCause((cause) => {
    if (Cause.hasInterruptsOnly(cause)) return Effect.failCause(cause)
    const failure = Cause.findErrorOption(cause)
    return Effect.sync(() => {
      process.exitCode = 1
      // the presenter has shown the help or the invalid invocation already
      if (failure._tag === "Some" && CliError.isCliError(failure.value) && failure.value._tag === "ShowHelp") return
      const message = failure._tag === "Some" && failure.value instanceof Error
        ? oneLine(failure.value.message)
        : process.env["DISENDIFF_DEBUG"]
        ? Cause.pretty(cause)
        : `unexpected failure: ${oneLine(String(Cause.squash(cause)))} (a bug; DISENDIFF_DEBUG=1 shows where it happened)`
      process.stderr.write(`error: ${message}\n`)
    })
  })
)

NodeRuntime.runMain(program, { disableErrorReporting: true })
