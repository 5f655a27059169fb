/**
 * Writing one of a run's output files (figures, reports, metrics), its folder made on the way. A failure
 * becomes the caller's typed error, which names the file and says what to check.
 */
import { Effect } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"

export const writeOutputFile = <E>(
  file: string,
  bytes: string | Uint8Array,
  error: (fields: { readonly path: string; readonly reason: string; readonly fix: string }) => E
): Effect.Effect<void, E> =>
  Effect.tryPromise({
    try: async () => {
      await fs.mkdir(path.dirname(file), { recursive: true })
      await fs.writeFile(file, bytes)
    },
    catch: (e) => error({ path: file, reason: `cannot write (${String(e)})`, fix: "check the output folder, its permissions and the free disk space" })
  })
