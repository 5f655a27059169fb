/**
 * Starts tfjs-backend-wasm's WebAssembly module with a chosen number of threads, in Node.
 *
 * tfjs starts the single-threaded SIMD build in Node: its flag `WASM_HAS_MULTITHREAD_SUPPORT` is
 * false there (tfjs issue 3830), because its loader hands the pthread worker and the main script to
 * the Emscripten glue as Blob URLs, which Node's worker_threads cannot start. The glue of the
 * threaded-SIMD build has a complete Node branch (pthreads on worker_threads, shared memory), so
 * this module loads that build itself, from the package's `wasm-out/` folder (WasmBackend.ts keeps
 * tfjs's own loader for one thread):
 *
 * - the worker script is a file (../pthread-worker.cjs) and the main script a path;
 * - XNNPACK's thread pool has `min(threads, 8, cores / 2)` threads
 *   where `cores` is the glue's `emscripten_num_logical_cores` (it halves it for hyper-threading);
 *   the import is replaced to answer `2 * threads`, so the pool has exactly `threads` (at most 8).
 *   The glue pre-starts a fixed 8 workers before the module is ready; it is patched to pre-start
 *   `threads - 1`, the ones the pool takes (a worker started later would wait for the main thread's
 *   event loop, which a blocking `pthread_create` never returns to: a deadlock).
 *
 * Both builds are the same C++ (XNNPACK): their results are the same bit for bit, with any number
 * of threads (XNNPACK splits products and convolutions by output tiles, each output summed in the
 * same order: test/threads.test.ts).
 */
import { createRequire } from "node:module"
import * as fs from "node:fs"
import * as path from "node:path"
import * as vm from "node:vm"
import { fileURLToPath } from "node:url"

/** XNNPACK's own cap on the thread pool (tfjs backend.cc `max_num_threads`). */
export const maxThreads = 8

export interface EmscriptenModule {
  readonly cwrap: (name: string, ret: string | null, args: Array<string>) => (...args: Array<unknown>) => unknown
  readonly PThread?: { readonly runningWorkers: ReadonlyArray<{ unref: () => void }>; readonly terminateAllThreads: () => void }
  tfjs?: unknown
  _malloc: (n: number) => number
  _free: (p: number) => void
}

type Factory = (config: Record<string, unknown>) => Promise<EmscriptenModule>

/** The WebAssembly JS API (the project's TypeScript lib has no DOM types). */
const WebAssemblyApi = (globalThis as unknown as {
  WebAssembly: { Module: new(bytes: Uint8Array) => object; Instance: new(module: object, imports: object) => { exports: object } }
}).WebAssembly

const require = createRequire(import.meta.url)
const wasmOut = () => path.join(path.dirname(require.resolve("@tensorflow/tfjs-backend-wasm")), "..", "wasm-out")

let threadedFactory: Factory | undefined

/** The threaded glue with its pre-started worker pool sized by `Module.pthreadPoolSize`. */
const loadThreadedFactory = (glue: string): Factory => {
  if (threadedFactory !== undefined) return threadedFactory
  const source = fs.readFileSync(glue, "utf8")
  const pool = "var pthreadPoolSize=8"
  if (!source.includes(pool)) throw new Error(`tfjs-backend-wasm's threaded glue changed: '${pool}' not found in ${glue}`)
  const patched = source.replace(pool, `var pthreadPoolSize=Module["pthreadPoolSize"]`)
  const wrapper = vm.runInThisContext(`(function (exports, require, module, __filename, __dirname) {${patched}\n})`, { filename: glue }) as (
    exports: unknown,
    require: NodeJS.Require,
    module: { exports: unknown },
    filename: string,
    dirname: string
  ) => void
  const module = { exports: {} as unknown }
  wrapper(module.exports, createRequire(glue), module, glue, path.dirname(glue))
  threadedFactory = module.exports as Factory
  return threadedFactory
}

/** Instantiates the chosen build; the tfjs wrapper functions are added as tfjs's own loader does. */
export const startModule = async (threads: number): Promise<EmscriptenModule> => {
  const out = wasmOut()
  const glue = path.join(out, "tfjs-backend-wasm-threaded-simd.js")
  const wasmFile = path.join(out, "tfjs-backend-wasm-threaded-simd.wasm")
  const worker = fileURLToPath(new URL("../pthread-worker.cjs", import.meta.url))
  const n = Math.max(1, Math.min(threads, maxThreads))
  const module = await loadThreadedFactory(glue)({
    pthreadPoolSize: n - 1,
    locateFile: (p: string, prefix: string) => (p.endsWith(".worker.js") ? worker : p.endsWith(".wasm") ? wasmFile : prefix + p),
    mainScriptUrlOrBlob: glue,
    instantiateWasm: (info: { env: Record<string, unknown> }, receive: (instance: object, module: object) => void) => {
      info.env["emscripten_num_logical_cores"] = () => 2 * n
      // synchronously, so that a failure rejects the module's promise instead of leaving it pending
      const compiled = new WebAssemblyApi.Module(fs.readFileSync(wasmFile))
      const instance = new WebAssemblyApi.Instance(compiled, info)
      receive(instance, compiled)
      return instance.exports
    }
  })
  module.tfjs = {
    init: module.cwrap("init", null, []),
    initWithThreadsCount: module.cwrap("init_with_threads_count", null, ["number"]),
    getThreadsCount: module.cwrap("get_threads_count", "number", []),
    registerTensor: module.cwrap("register_tensor", null, ["number", "number", "number"]),
    disposeData: module.cwrap("dispose_data", null, ["number"]),
    dispose: module.cwrap("dispose", null, [])
  }
  return module
}

/** Lets the process exit while XNNPACK's pool threads wait for work (Emscripten refs a running pthread's worker). */
export const unrefThreads = (module: EmscriptenModule): void => {
  for (const w of module.PThread?.runningWorkers ?? []) w.unref()
}
