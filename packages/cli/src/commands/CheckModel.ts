/**
 * `disendiff check-model --fixtures DIR`: parity with the reference implementation on a fixture
 * folder (manifest.json format of fixtures/sd-tiny). Prints one row per tensor and exits
 * non-zero if any fails.
 */
import { type CheckRow, checkFixtures } from "@disendiff/core"
import { Console, Effect, Layer } from "effect"
import { Command, Flag } from "effect/cli"
import { backendLayer, backendNames, threadsFlag } from "../Backends.js"
import { UsageError } from "../Errors.js"

const fmt = (x: number) => (Number.isNaN(x) ? "NaN" : x === Infinity ? "inf" : x.toExponential(2))

export const formatRow = (r: CheckRow, width: number) =>
  `${`${r.config}/${r.fixture}`.padEnd(24)} ${r.tensor.padEnd(width)} ${fmt(r.maxAbsError).padStart(9)} ${fmt(r.allowed).padStart(9)}  ${r.pass ? "pass" : "FAIL"}${r.note === undefined ? "" : `  (${r.note})`}`

export const checkModel = Command.make(
  "check-model",
  {
    fixtures: Flag.String("fixtures").pipe(Flag.withDescription("fixture folder with a manifest.json (e.g. fixtures/sd-tiny)")),
    backend: Flag.Literals("backend", backendNames).pipe(Flag.withDescription("tensor backend"), Flag.withDefault("wasm" as const)),
    threads: threadsFlag,
    json: Flag.Boolean("json").pipe(Flag.withDescription("print the rows as one JSON object"), Flag.withDefault(false))
  },
  ({ fixtures, backend, threads, json }) =>
    Effect.gen(function*() {
      const width = 72
      if (!json) yield* Console.log(`${"fixture".padEnd(24)} ${"tensor".padEnd(width)} ${"max |err|".padStart(9)} ${"allowed".padStart(9)}  result`)
      const { rows } = yield* checkFixtures(fixtures, { onRow: (r) => (json ? Effect.void : Console.log(formatRow(r, width))) })
      const failed = rows.filter((r) => !r.pass)
      if (json) yield* Console.log(JSON.stringify({ backend, rows, failed: failed.length }))
      else yield* Console.log(`${rows.length} tensors checked on ${backend}: ${rows.length - failed.length} pass, ${failed.length} fail`)
      if (failed.length > 0) return yield* new UsageError({ message: `${failed.length} of ${rows.length} tensors are outside tolerance` })
    }).pipe(Effect.provide(Layer.mergeAll(backendLayer(backend, { threads }))))
).pipe(Command.withDescription("check parity with the reference implementation on a fixture folder"))
