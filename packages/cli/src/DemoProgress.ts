/**
 * How the demo's events reach the terminal: one JSON object per line (`--json`), a live bar with the
 * current phase and the time left on a TTY, or plain lines every few seconds otherwise (logs, CI).
 */
import type { DemoEvent } from "@disendiff/builtin/demo"
import { SingleBar } from "cli-progress"
import { Effect } from "effect"
import { formatSeconds } from "./Progress.js"

export const jsonDemoReporter = (e: DemoEvent) => Effect.sync(() => process.stdout.write(`${JSON.stringify(e)}\n`))

/** Plain progress lines at most this often (ms) when stderr is not a terminal. */
const LINE_EVERY = 5000

export const textDemoReporter = () => {
  const tty = process.stderr.isTTY === true
  let bar: SingleBar | undefined
  let lastLine = 0
  const stopBar = () => {
    bar?.stop()
    bar = undefined
  }
  const report = (e: DemoEvent) =>
    Effect.sync(() => {
      switch (e._tag) {
        case "Started":
          process.stderr.write(`demo, seed ${e.seed}${e.quick ? " (quick)" : ""}, on ${e.backend}, weights ${e.weights}, writing to ${e.out}\n`)
          return
        case "Phase":
          stopBar()
          process.stderr.write(`${e.description}\n`)
          return
        case "Progress": {
          const payload = { detail: e.detail, eta: formatSeconds(e.etaSeconds) }
          const percent = Math.round(100 * e.fraction)
          if (tty) {
            bar ??= new SingleBar({ format: "{percentage}% |{bar}| {detail} | ETA {eta}", stream: process.stderr, hideCursor: true })
            if (!bar.isActive) bar.start(100, percent, payload)
            bar.update(percent, payload)
          } else if (Date.now() - lastLine > LINE_EVERY) {
            lastLine = Date.now()
            process.stderr.write(`${percent}% ${e.phase} ${e.method}: ${e.detail}, ETA ${payload.eta}\n`)
          }
          return
        }
        case "Finished":
          stopBar()
          process.stderr.write(`done in ${formatSeconds(e.seconds)}\n`)
      }
    })
  return { report, close: Effect.sync(stopBar) }
}
