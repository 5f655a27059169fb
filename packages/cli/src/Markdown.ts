/** Generated sections of the docs: text between `<!-- NAME:begin -->` and `<!-- NAME:end -->` markers. */
import { Effect } from "effect"
import * as fs from "node:fs/promises"
import { OutputError } from "./Errors.js"

const markers = (name: string) => [`<!-- ${name}:begin -->`, `<!-- ${name}:end -->`] as const

export const replaceBetween = async (file: string, name: string, body: string) => {
  const [begin, end] = markers(name)
  const text = await fs.readFile(file, "utf8")
  const [before, rest] = text.split(begin)
  if (rest === undefined) throw new Error(`${file} has no ${begin} marker`)
  await fs.writeFile(file, `${before}${begin}\n${body}\n${end}${rest.split(end)[1] ?? ""}`)
}

/**
 * Before any work: the markdown file a command will update exists, can be written, and holds every
 * section's begin and end markers, so that an hour's measurement is not lost to a typo in `--docs`.
 */
export const checkSections = Effect.fn("preflight.markdownSections")(function*(flag: string, file: string, names: ReadonlyArray<string>) {
  const fail = (reason: string, fix: string) => new OutputError({ flag, path: file, reason, fix })
  const text = yield* Effect.tryPromise({
    try: async () => {
      await fs.access(file, fs.constants.W_OK)
      return await fs.readFile(file, "utf8")
    },
    catch: (e) =>
      (e as NodeJS.ErrnoException).code === "ENOENT"
        ? fail("no such file", `give the markdown file to update (it needs the markers ${names.map((n) => `<!-- ${n}:begin -->`).join(", ")} and their ends)`)
        : fail(`cannot be read and written (${(e as NodeJS.ErrnoException).code ?? String(e)})`, "give a markdown file you can write")
  })
  for (const name of names) {
    const [begin, end] = markers(name)
    const at = text.indexOf(begin)
    if (at < 0 || text.indexOf(end, at) < 0) {
      return yield* fail(`has no ${at < 0 ? begin : end} marker`, `add the lines "${begin}" and "${end}" where the section belongs`)
    }
  }
})
