/** Runs the built `disendiff` command as a child process, as a user would. */
import { spawn } from "node:child_process"
import * as fs from "node:fs/promises"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const bin = path.join(root, "packages/cli/bin/disendiff.js")

export interface Result {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

export type LineHandler = (line: string, kill: (signal: NodeJS.Signals) => void) => void

export interface RunOptions {
  readonly cwd?: string
  readonly onStdoutLine?: LineHandler | undefined
  readonly env?: NodeJS.ProcessEnv
}

export const disendiff = (args: ReadonlyArray<string>, options: RunOptions = {}): Promise<Result> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], {
      cwd: options.cwd ?? root,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...options.env }
    })
    let stdout = ""
    let stderr = ""
    let pending = ""
    child.stdout.on("data", (d: Buffer) => {
      stdout += d
      pending += d
      const lines = pending.split("\n")
      pending = lines.pop()!
      for (const line of lines) options.onStdoutLine?.(line, (s) => child.kill(s))
    })
    child.stderr.on("data", (d: Buffer) => (stderr += d))
    child.on("error", reject)
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }))
  })

export const tempDir = () => fs.mkdtemp(path.join(os.tmpdir(), "disendiff-cli-"))

/** `checkpoint inspect --json`'s digest. */
export const digestOf = async (file: string): Promise<string> => {
  const r = await disendiff(["checkpoint", "inspect", "--json", file])
  if (r.code !== 0) throw new Error(`inspect failed: ${r.stderr}`)
  return JSON.parse(r.stdout).digest
}

/** A TCP port that was free a moment ago on the loopback. */
export const freePort = () =>
  new Promise<number>((resolve) => {
    const s = net.createServer()
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })
