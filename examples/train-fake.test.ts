import { CheckpointFile } from "@disendiff/core"
import { Effect } from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { expect, it } from "vitest"
import { program } from "./train-fake.js"

it("the library example trains and saves a loadable checkpoint", async () => {
  const out = await fs.mkdtemp(path.join(os.tmpdir(), "disendiff-example-"))
  const file = await Effect.runPromise(program(out))
  const snapshot = await Effect.runPromise(CheckpointFile.load(file))
  expect(snapshot.header.step).toBe(5)
  expect(snapshot.header.lossHistory.map((r) => r.step)).toEqual([1, 2, 3, 4, 5])
})
