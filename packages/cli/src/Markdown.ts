/** Generated sections of the docs: text between `<!-- NAME:begin -->` and `<!-- NAME:end -->` markers. */
import * as fs from "node:fs/promises"

export const replaceBetween = async (file: string, name: string, body: string) => {
  const [begin, end] = [`<!-- ${name}:begin -->`, `<!-- ${name}:end -->`]
  const text = await fs.readFile(file, "utf8")
  const [before, rest] = text.split(begin)
  if (rest === undefined) throw new Error(`${file} has no ${begin} marker`)
  await fs.writeFile(file, `${before}${begin}\n${body}\n${end}${rest.split(end)[1] ?? ""}`)
}
