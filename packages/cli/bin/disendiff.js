#!/usr/bin/env node
// Launcher for the `disendiff` command. It is plain JavaScript, committed, so that npm links it at
// install time (before `prepare` builds dist/), and it runs the CLI on Node >= 22.19: when started by
// an older Node (the system Node 20 of some machines), it re-runs itself with the project's pinned
// Node 22 from the `node` dev dependency.
import { spawnSync } from "node:child_process"
import { existsSync } from "node:fs"
import { createRequire } from "node:module"
import { fileURLToPath } from "node:url"

const [major, minor] = process.versions.node.split(".").map(Number)
if (major < 22 || (major === 22 && minor < 19)) {
  const require = createRequire(import.meta.url)
  let node
  try {
    node = require.resolve("node/bin/node")
  } catch {}
  if (node === undefined || !existsSync(node)) {
    process.stderr.write(`disendiff needs Node >= 22.19 (this is ${process.version}); run it with npx in the project, or install Node 22\n`)
    process.exit(1)
  }
  const r = spawnSync(node, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: "inherit" })
  process.exit(r.status ?? 1)
}
const dist = new URL("../dist/bin.js", import.meta.url)
if (!existsSync(fileURLToPath(dist))) {
  process.stderr.write("disendiff is not built yet: run `npm run build` (npm ci does it)\n")
  process.exit(1)
}
await import(dist.href)
