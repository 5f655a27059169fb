/**
 * Checks of a command's own input that run before any work: flag ranges and output folders. Each
 * failure names the flag and its value, and says what to do instead.
 */
import { Effect } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { FlagError, OutputError, UsageError } from "./Errors.js"

/** An integer flag in [min, max]. */
export const intInRange = (flag: string, value: number, min: number, max: number = Number.POSITIVE_INFINITY, fix?: string) =>
  value >= min && value <= max
    ? Effect.void
    : Effect.fail(
      new FlagError({
        flag,
        value: String(value),
        reason: max === Number.POSITIVE_INFINITY ? `must be at least ${min}` : `must be between ${min} and ${max}`,
        fix: fix ?? (max === Number.POSITIVE_INFINITY ? `give --${flag} ${min} or more` : `give --${flag} a value from ${min} to ${max}`)
      })
    )

/** A flag that takes one of a few words. */
export const oneOf = <const A extends string>(flag: string, value: string, choices: ReadonlyArray<A>): Effect.Effect<A, FlagError> =>
  (choices as ReadonlyArray<string>).includes(value)
    ? Effect.succeed(value as A)
    : Effect.fail(new FlagError({ flag, value, reason: `not one of ${choices.join(", ")}`, fix: `give --${flag} ${choices.join(" or ")}` }))

const statOf = (p: string) => fs.stat(p).then((s) => s, () => undefined)

/**
 * The folder a command writes into: created if missing, and proved writable by writing and removing a
 * probe file, so that a bad `--out` fails before the work rather than after it.
 */
export const outputFolder = Effect.fn("preflight.outputFolder")(function*(flag: string, dir: string) {
  const abs = path.resolve(dir)
  const fail = (reason: string, fix: string) => new OutputError({ flag, path: dir, reason, fix })
  // the nearest part of the path that exists must be a folder
  let p = abs
  const missing: Array<string> = []
  for (;;) {
    const st = yield* Effect.promise(() => statOf(p))
    if (st !== undefined) {
      if (!st.isDirectory()) {
        return yield* fail(
          p === abs ? "it is a file, not a folder" : `${p} is a file, so no folder can be made under it`,
          "give the path of a folder (new or existing), not of a file"
        )
      }
      break
    }
    missing.unshift(p)
    const parent = path.dirname(p)
    if (parent === p) break
    p = parent
  }
  // one level at a time: a recursive mkdir can loop forever on some file systems (e.g. under /proc)
  yield* Effect.tryPromise({
    try: async () => {
      for (const d of missing) {
        await fs.mkdir(d).catch((e: NodeJS.ErrnoException) => {
          if (e.code !== "EEXIST") throw e
        })
      }
    },
    catch: (e) => fail(`cannot create the folder (${(e as NodeJS.ErrnoException).code ?? String(e)})`, "give a folder in a place you can write to")
  })
  const probe = path.join(abs, `.disendiff-write-test-${process.pid}`)
  yield* Effect.tryPromise({
    try: async () => {
      await fs.writeFile(probe, "")
      await fs.rm(probe, { force: true })
    },
    catch: (e) => fail(`cannot write in the folder (${(e as NodeJS.ErrnoException).code ?? String(e)})`, "give a folder in a place you can write to")
  })
  return abs
})

/** A `--seeds 1,2,3` list: distinct non-negative integers (a seed twice would run the same run twice). */
export const seedList = (flag: string, text: string) =>
  Effect.gen(function*() {
    const seeds = text.split(",").map((s) => s.trim())
    if (seeds.length === 0 || !seeds.every((s) => /^\d+$/.test(s)) || new Set(seeds.map(Number)).size !== seeds.length) {
      return yield* new UsageError({ message: `${flag} "${text}": give distinct non-negative integers separated by commas, e.g. ${flag} 1,2,3` })
    }
    return seeds.map(Number)
  })
