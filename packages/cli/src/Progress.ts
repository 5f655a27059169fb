/**
 * How a run's events reach the terminal: one JSON object per line (`--json`), a live bar with loss and
 * ETA on a TTY, or plain periodic lines otherwise (logs, CI).
 */
import type { TrainEvent } from "@disendiff/core"
import { SingleBar } from "cli-progress"
import { Effect } from "effect"

export const formatSeconds = (s: number) => {
  if (!Number.isFinite(s)) return "?"
  const m = Math.floor(s / 60)
  const h = Math.floor(m / 60)
  return h > 0 ? `${h}h${String(m % 60).padStart(2, "0")}m` : m > 0 ? `${m}m${String(Math.round(s % 60)).padStart(2, "0")}s` : `${s.toFixed(1)}s`
}

const fmt = (x: number | null) => (x === null ? "-" : x.toPrecision(4))

export interface Reporter {
  readonly report: (e: TrainEvent) => Effect.Effect<void>
  readonly close: Effect.Effect<void>
  readonly interrupted: (step: number, checkpoint: string) => Effect.Effect<void>
}

export const jsonReporter: Reporter = {
  report: (e) => Effect.sync(() => process.stdout.write(`${JSON.stringify(e)}\n`)),
  close: Effect.void,
  interrupted: (step, checkpoint) =>
    Effect.sync(() => process.stdout.write(`${JSON.stringify({ _tag: "Interrupted", step, path: checkpoint })}\n`))
}

export const textReporter = (): Reporter => {
  const tty = process.stderr.isTTY === true
  let bar: SingleBar | undefined
  let lastLine = 0
  return {
    report: (e) =>
      Effect.sync(() => {
        switch (e._tag) {
          case "Started":
            process.stderr.write(
              `training ${e.baseModel} on ${e.backend}: ${e.trainableParameters} trainable parameters, lr ${e.learningRate}` +
                (e.resumedFrom === null ? "" : `, resuming ${e.resumedFrom} at step ${e.startStep}`) + "\n"
            )
            if (tty) {
              bar = new SingleBar({
                format: "step {value}/{total} |{bar}| loss {loss} bind {bind} s&s {sep} | {speed} | ETA {etaText}",
                stream: process.stderr,
                hideCursor: true
              })
              bar.start(e.totalSteps, e.startStep, { loss: "-", bind: "-", sep: "-", speed: "-", etaText: "?" })
            }
            return
          case "Preparing": {
            // no bar here: the step bar starts after; a line every 5 s and at the end
            if (e.fraction === 1 || Date.now() - lastLine > 5000) {
              lastLine = Date.now()
              process.stderr.write(`generating ${e.total} class images: ${Math.round(100 * e.fraction)}%${e.fraction < 1 ? ` ETA ${formatSeconds(e.etaSeconds)}` : ""}\n`)
            }
            return
          }
          case "Step": {
            const payload = { loss: fmt(e.loss), bind: fmt(e.bind), sep: fmt(e.separation), speed: `${e.stepSeconds.toFixed(2)}s/step`, etaText: formatSeconds(e.etaSeconds) }
            if (bar !== undefined) bar.update(e.step, payload)
            else if (e.step === e.totalSteps || Date.now() - lastLine > 5000) {
              lastLine = Date.now()
              process.stderr.write(`step ${e.step}/${e.totalSteps} loss ${payload.loss} bind ${payload.bind} s&s ${payload.sep} ${payload.speed} ETA ${payload.etaText}\n`)
            }
            return
          }
          case "CheckpointSaved":
            if (bar === undefined) process.stderr.write(`checkpoint at step ${e.step}: ${e.path}\n`)
            return
          case "Finished":
            bar?.stop()
            bar = undefined
            process.stderr.write(`done at step ${e.step}: ${e.path}\ndigest ${e.digest}\n`)
            return
        }
      }),
    close: Effect.sync(() => bar?.stop()),
    interrupted: (step, checkpoint) =>
      Effect.sync(() => {
        bar?.stop()
        process.stderr.write(`interrupted after step ${step}; checkpoint saved to ${checkpoint}\nresume with: --resume ${checkpoint}\n`)
      })
  }
}

/**
 * Sampling progress over all images (the sampler reports steps per batch): a bar with ETA on a TTY,
 * otherwise a line at every tenth.
 */
export const samplingProgress = (images: number, batchSize: number) => {
  const tty = process.stderr.isTTY === true
  const bar = tty ? new SingleBar({ format: "sampling [{bar}] {percentage}% | ETA {etaText}", hideCursor: true }) : undefined
  const started = Date.now()
  let lastTenth = -1
  // per chunk (its first image) the fraction of its steps done: chunks on worker threads run at once
  const chunks = new Map<number, number>()
  return {
    onStep: (done: number, total: number, first: number) =>
      Effect.sync(() => {
        chunks.set(first, done / total)
        let sum = 0
        for (const [f, part] of chunks) sum += Math.min(batchSize, images - f) * part
        const fraction = sum / images
        const eta = fraction > 0 ? ((Date.now() - started) / 1000) * (1 - fraction) / fraction : Number.POSITIVE_INFINITY
        if (bar !== undefined) {
          if (lastTenth === -1) bar.start(100, 0, { etaText: "?" })
          lastTenth = 0
          bar.update(Math.round(100 * fraction), { etaText: formatSeconds(eta) })
          return
        }
        const tenth = Math.floor(10 * fraction)
        if (tenth > lastTenth) {
          lastTenth = tenth
          process.stderr.write(`sampling ${Math.round(100 * fraction)}% ETA ${formatSeconds(eta)}\n`)
        }
      }),
    close: Effect.sync(() => bar?.stop())
  }
}
