/**
 * tfjs's WebGPU backend in Node, on Dawn's Node binding (the `webgpu` package, which ships the
 * `dawn.node` binaries), as a `TensorRuntime` layer (docs/reference/tfjs-backends.md §3).
 *
 * It takes a real GPU adapter (Vulkan, Metal or D3D12) when there is one. On machines without a GPU
 * it takes Mesa's software OpenGL (llvmpipe) in WebGPU compatibility mode, which needs
 * `EGL_PLATFORM=surfaceless`: 5-10x slower than wasm, good for correctness. `adapter` (or the
 * `DISENDIFF_WEBGPU_ADAPTER` environment variable) restricts the choice to one of the two. When no
 * adapter starts, the typed `BackendUnavailable` names what is missing and the Debian packages to install.
 *
 * GPU tensors have no synchronous read in Node (tfjs reads them back through `OffscreenCanvas`), so
 * this runtime has `syncReads: false` and callers read with `await t.data()`.
 */
import { BackendUnavailable, engineMemory, registerGradients, TensorRuntime, tf } from "@disendiff/core"
import { Effect, Layer } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

/** Which adapter to take: a GPU, Mesa's software OpenGL, or the first of the two that starts. */
export type AdapterChoice = "auto" | "gpu" | "software"
export const adapterChoices: ReadonlyArray<AdapterChoice> = ["auto", "gpu", "software"]

/** Environment variable that picks the adapter when the layer's options do not. */
export const adapterEnv = "DISENDIFF_WEBGPU_ADAPTER"

export interface Options {
  readonly adapter?: AdapterChoice
}

/** The adapter the backend runs on. */
export interface Adapter {
  readonly kind: "gpu" | "software"
  /** The driver's own words, e.g. "OpenGL version 4.5 (Core Profile) Mesa 22.3.6, llvmpipe-llvm-15-0-6-256-bits-". */
  readonly description: string
  /** The largest single buffer, and the largest one a shader can bind: a tensor above the second cannot be used. */
  readonly maxBufferSize: number
  readonly maxStorageBufferBindingSize: number
}

const packageName = "webgpu"
const setupScript = "bash scripts/install-webgpu-deps.sh"
const mesaPackages = "libegl-dev libegl-mesa0 libgl1-mesa-dri"
const vulkanDrivers = "the GPU's Vulkan driver (mesa-vulkan-drivers for AMD and Intel; for NVIDIA, the driver with nvidia-vulkan-icd from non-free)"

const unavailable = (reason: string, fix: string) => new BackendUnavailable({ backend: "webgpu", packageName, reason, fix })

/** The `adapter` option, else the environment variable, else "auto"; an unknown value is an error. */
export const adapterChoice = (options: Options = {}): Effect.Effect<AdapterChoice, BackendUnavailable> => {
  const value = options.adapter ?? process.env[adapterEnv] ?? "auto"
  return adapterChoices.includes(value as AdapterChoice)
    ? Effect.succeed(value as AdapterChoice)
    : Effect.fail(unavailable(`${adapterEnv}=${value} is not an adapter choice`, `set it to one of ${adapterChoices.join(", ")}`))
}

// Dawn's node binding, typed by the parts used here: its own types declare the browser's WebGPU
// globals (`navigator.gpu`, `GPUBuffer`, ...) for the whole program, so it is imported untyped.
interface GpuAdapter {
  readonly info: { readonly vendor: string; readonly architecture: string; readonly device: string; readonly description: string; readonly isFallbackAdapter?: boolean }
  readonly limits: { readonly maxBufferSize: number; readonly maxStorageBufferBindingSize: number }
}
interface Gpu {
  requestAdapter(options?: Record<string, unknown>): Promise<GpuAdapter | null>
}
interface Dawn {
  readonly create: (flags: Array<string>) => Gpu
  readonly globals: Record<string, unknown>
}

const importUntyped = (name: string): Promise<unknown> => import(name)

// llvmpipe (GL) and lavapipe (Vulkan) are Mesa's CPU rasterisers, SwiftShader is Google's.
const isSoftware = (a: GpuAdapter) =>
  a.info.isFallbackAdapter === true || /llvmpipe|lavapipe|swiftshader|software/i.test(`${a.info.architecture} ${a.info.device} ${a.info.description}`)

const describe = (kind: Adapter["kind"], a: GpuAdapter): Adapter => ({
  kind,
  description: [a.info.vendor, a.info.description, a.info.device].filter((s) => s !== "").join(", "),
  maxBufferSize: a.limits.maxBufferSize,
  maxStorageBufferBindingSize: a.limits.maxStorageBufferBindingSize
})

/** Whether `name` is in a directory the dynamic loader searches, or in its cache (as a whole path). */
const hasLibrary = (name: string): boolean => {
  const dirs = [...(process.env["LD_LIBRARY_PATH"] ?? "").split(":").filter((d) => d !== ""), ...systemLibDirs()]
  if (dirs.some((d) => fs.existsSync(path.join(d, name)))) return true
  try {
    return fs.readFileSync("/etc/ld.so.cache").includes(`/${name}\0`)
  } catch {
    return false
  }
}

const systemLibDirs = () => {
  const triple = process.arch === "arm64" ? "aarch64-linux-gnu" : "x86_64-linux-gnu"
  return [`/usr/lib/${triple}`, `/lib/${triple}`, "/usr/lib64", "/usr/lib", "/lib64", "/lib"]
}

/**
 * An adapter with the Dawn instance that made it: the instance must outlive the adapter and its
 * device (Dawn crashes once it is collected).
 */
interface Found {
  readonly gpu: Gpu
  readonly adapter: GpuAdapter
}

/** Why an adapter did not start, and what would fix that. */
interface Miss {
  readonly reason: string
  readonly fix: string
}

/** A hardware adapter from the platform's native API (Vulkan on Linux), or why there is none. */
const gpuAdapter = async (dawn: Dawn): Promise<Found | Miss> => {
  if (process.platform === "linux" && !hasLibrary("libvulkan.so.1")) {
    return { reason: "no Vulkan loader (libvulkan.so.1 is not installed)", fix: `apt-get install libvulkan1 and ${vulkanDrivers}` }
  }
  const gpu = dawn.create([])
  const a = await gpu.requestAdapter({ powerPreference: "high-performance" })
  const fix = process.platform === "linux" ? `install ${vulkanDrivers}` : "install or update the GPU's driver"
  if (a === null) return { reason: "no GPU adapter (no GPU, or no Vulkan/Metal/D3D12 driver for it)", fix }
  if (isSoftware(a)) return { reason: `only a software adapter (${a.info.description || a.info.device}), not a GPU`, fix }
  return { gpu, adapter: a }
}

/** Mesa's llvmpipe through EGL without a display, in WebGPU compatibility mode, or why it did not start. */
const softwareAdapter = async (dawn: Dawn): Promise<Found | Miss> => {
  if (process.platform !== "linux") return { reason: "the software adapter (Mesa's OpenGL) is set up for Linux only", fix: "use --backend wasm" }
  const missing = [
    // Dawn opens the unversioned name, which only Debian's -dev package links
    ["libEGL.so", "libegl-dev"],
    ["libEGL_mesa.so.0", "libegl-mesa0"],
    ["dri/swrast_dri.so", "libgl1-mesa-dri"]
  ].filter(([file]) => !hasLibrary(file!))
  if (missing.length > 0) {
    return {
      reason: `no Mesa EGL/GL (missing ${missing.map(([f, p]) => `${f} from ${p}`).join(", ")})`,
      fix: `${setupScript} (or apt-get install ${missing.map(([, p]) => p).join(" ")})`
    }
  }
  process.env["EGL_PLATFORM"] ??= "surfaceless"
  process.env["XDG_RUNTIME_DIR"] ??= os.tmpdir()
  const gpu = dawn.create(["backend=opengl"])
  const a = await gpu.requestAdapter({ featureLevel: "compatibility" })
  if (a !== null) return { gpu, adapter: a }
  const platform = process.env["EGL_PLATFORM"]
  return {
    reason: `Mesa's OpenGL adapter did not start with EGL_PLATFORM=${platform}`,
    fix: platform === "surfaceless"
      ? `reinstall ${mesaPackages}, or use --backend wasm`
      : "unset EGL_PLATFORM (this backend sets it to surfaceless, which needs no display)"
  }
}

const isMiss = (r: Found | Miss): r is Miss => "reason" in r

/** Loads Dawn and picks an adapter, without starting tfjs. */
const findAdapter = (choice: AdapterChoice) =>
  Effect.gen(function*() {
    const dawn = yield* Effect.tryPromise({
      try: () => importUntyped(packageName) as Promise<Dawn>,
      catch: (e) =>
        unavailable(`the package does not load: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}`, "npm install webgpu@0.6.2")
    })
    let gpuMiss: Miss | undefined
    if (choice !== "software") {
      const r = yield* Effect.promise(() => gpuAdapter(dawn))
      if (!isMiss(r)) return { dawn, ...r, info: describe("gpu", r.adapter) }
      if (choice === "gpu") {
        return yield* unavailable(r.reason, `${r.fix}; without a GPU, set ${adapterEnv}=software (Mesa's OpenGL) or use --backend wasm`)
      }
      gpuMiss = r
    }
    const r = yield* Effect.promise(() => softwareAdapter(dawn))
    if (!isMiss(r)) return { dawn, ...r, info: describe("software", r.adapter) }
    return yield* gpuMiss === undefined
      ? unavailable(r.reason, r.fix)
      : unavailable(`${gpuMiss.reason}; and ${r.reason}`, `for a GPU, ${gpuMiss.fix}; for the software adapter, ${r.fix}`)
  })

/** The adapter the layer would run on, or why there is none (tests use it to decide whether to run). */
export const probe = (options: Options = {}): Effect.Effect<Adapter, BackendUnavailable> =>
  adapterChoice(options).pipe(Effect.flatMap(findAdapter), Effect.map((r) => r.info))

// tfjs registers one 'webgpu' backend per process, bound to the adapter it was first given; `gpu`
// keeps its Dawn instance alive for as long as the process runs.
let started: { readonly adapter: Adapter; readonly gpu: Gpu } | undefined

const start = (choice: AdapterChoice) =>
  Effect.gen(function*() {
    if (started !== undefined) {
      if (choice !== "auto" && choice !== started.adapter.kind) {
        return yield* unavailable(
          `this process already runs WebGPU on a ${started.adapter.kind} adapter, not a ${choice} one`,
          "pick one adapter per process"
        )
      }
      yield* Effect.promise(() => tf.setBackend("webgpu"))
      return started.adapter
    }
    const { dawn, gpu: instance, adapter, info } = yield* findAdapter(choice)
    // tfjs-backend-webgpu registers itself on import only when `navigator.gpu` exists, and then asks
    // it for an adapter: hand it the one chosen here. Its shaders use the GPU* constants as globals.
    for (const [k, v] of Object.entries(dawn.globals)) if (!(k in globalThis)) Object.defineProperty(globalThis, k, { value: v, configurable: true, writable: true })
    const gpu = { requestAdapter: () => Promise.resolve(adapter) }
    if (globalThis.navigator === undefined) Object.defineProperty(globalThis, "navigator", { value: { gpu }, configurable: true })
    else Object.defineProperty(globalThis.navigator, "gpu", { value: gpu, configurable: true })
    registerGradients()
    yield* Effect.tryPromise({
      try: async () => {
        await import("@tensorflow/tfjs-backend-webgpu")
        if (!(await tf.setBackend("webgpu"))) throw new Error("tf.setBackend('webgpu') failed")
      },
      catch: (e) =>
        unavailable(`the ${info.kind} adapter (${info.description}) did not start tfjs: ${e instanceof Error ? e.message : String(e)}`, "use --backend wasm, and report this")
    })
    failReadsAfterGpuErrors()
    started = { adapter: info, gpu: instance }
    return info
  })

/**
 * WebGPU reports invalid work (e.g. a kernel that binds more buffers than the adapter allows) as an
 * event, not an exception, and the results read back as zeros. After the first such error every read
 * rejects, so no wrong number leaves the GPU silently.
 */
const failReadsAfterGpuErrors = () => {
  const backend = tf.backend() as unknown as {
    readonly device: EventTarget
    read: (dataId: object) => Promise<unknown>
  }
  let first: string | undefined
  backend.device.addEventListener("uncapturederror", (e) => {
    first ??= (e as Event & { readonly error: { readonly message: string } }).error.message.split("\n")[0]
  })
  const read = backend.read.bind(backend)
  backend.read = async (dataId) => {
    const values = await read(dataId)
    if (first !== undefined) {
      throw new Error(`WebGPU rejected a kernel, so tensors computed since are wrong: ${first} (use --backend wasm, and report this)`)
    }
    return values
  }
}

const gib = (n: number) => `${(n / 2 ** 30).toFixed(n < 2 ** 30 ? 3 : 1)} GiB`

/** One line for messages: the adapter and its buffer limits. */
export const describeAdapter = (a: Adapter) =>
  `${a.kind} adapter ${a.description}; largest buffer ${gib(a.maxBufferSize)}, largest shader binding ${gib(a.maxStorageBufferBindingSize)}`

/**
 * The WebGPU runtime. Memory is tfjs's own count of live tensor bytes: WebGPU does not report the
 * device's memory, so there is no limit besides the adapter's per-buffer ones in `device`.
 */
export const make = (options: Options = {}): Layer.Layer<TensorRuntime, BackendUnavailable> =>
  Layer.effect(
    TensorRuntime,
    Effect.gen(function*() {
      const adapter = yield* start(yield* adapterChoice(options))
      const { memory, resetPeak } = engineMemory()
      return TensorRuntime.of({ backend: "webgpu", syncReads: false, memory, resetPeak, device: describeAdapter(adapter) })
    })
  )

/** The runtime on the adapter `DISENDIFF_WEBGPU_ADAPTER` picks (auto: a GPU, else Mesa's software GL). */
export const layer: Layer.Layer<TensorRuntime, BackendUnavailable> = make()
