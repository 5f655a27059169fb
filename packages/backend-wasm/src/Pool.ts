/**
 * Threads only where they pay: XNNPACK runs every operator on tfjs's one thread pool, so with N
 * threads each of the ~1000 small kernels of a UNet forward (adds, small products) wakes the pool and
 * waits for all its threads; on a busy machine a thread that is not running stalls the kernel for a
 * scheduler time slice. The backend keeps two pools, the N-thread one and a one-thread one (which
 * starts no thread), and points tfjs's pool variable (`tfjs::backend::threadpool`, a word in the
 * module's static data) at the N-thread pool only around products and convolutions of at least
 * `minParallelFlops`. The thread count never changes results (XNNPACK splits work by output tiles),
 * so neither does the switch.
 *
 * The variable's address is found, not assumed: the backend's constructor created the N-thread pool;
 * `init_with_threads_count(1)` then creates the one-thread pool and stores it in the variable; of the
 * static words that changed, the one that makes `get_threads_count()` answer N again when given its
 * old value is the variable. If none does (another build), the N-thread pool stays for every kernel.
 */
import { tf } from "@disendiff/core"
import type { EmscriptenModule } from "./Module.js"

/** Products and convolutions below this many FLOPs run on one thread (~0.3 ms on one core). */
export const minParallelFlops = 2 ** 22

interface Switch {
  readonly threads: number
  readonly word: number
  readonly many: number
  readonly one: number
}

interface ModuleHeap {
  readonly HEAPU8: Uint8Array
  readonly tfjs: { readonly initWithThreadsCount: (n: number) => void; readonly getThreadsCount: () => number }
}

const switches = new WeakMap<object, Switch>()

/** The thread count a module's large kernels get (1 without a switch). */
export const threadsOf = (module: object): number => switches.get(module)?.threads ?? 1

/** How much of the heap's start is searched for the variable (static data sits below the heap). */
const searchBytes = 8 * 2 ** 20

/** Sets up the two pools of a module whose backend was built with `threads` (> 1) threads. */
export const installPoolSwitch = (module: EmscriptenModule, threads: number): boolean => {
  const m = module as unknown as ModuleHeap
  if (threads <= 1 || m.tfjs.getThreadsCount() !== threads) return false
  const words = () => new Uint32Array(m.HEAPU8.buffer, 0, Math.min(searchBytes, m.HEAPU8.byteLength) >>> 2)
  const before = words().slice()
  m.tfjs.initWithThreadsCount(1)
  const heap = words()
  for (let i = 0; i < before.length; i++) {
    if (heap[i] === before[i]) continue
    const one = heap[i]!
    heap[i] = before[i]!
    if (m.tfjs.getThreadsCount() === threads) {
      heap[i] = one
      if (m.tfjs.getThreadsCount() !== 1) break
      switches.set(module, { threads, word: i, many: before[i]!, one })
      return true
    }
    heap[i] = one
  }
  // not found: the variable keeps the one-thread pool (the other changed words are the allocator's)
  return false
}

let view: { buffer: ArrayBufferLike; words: Uint32Array } | undefined

/**
 * Runs `f` (a kernel of about `flops` FLOPs) on the N-thread pool when it is large enough, else on
 * the one-thread pool; modules without a switch run it as they are.
 */
export const withThreadsFor = <A>(module: object, flops: number, f: () => A): A => {
  const s = switches.get(module)
  if (s === undefined || flops < minParallelFlops) return f()
  const buffer = (module as unknown as ModuleHeap).HEAPU8.buffer
  if (view?.buffer !== buffer) view = { buffer, words: new Uint32Array(buffer) }
  const heap = view.words
  heap[s.word] = s.many
  try {
    return f()
  } finally {
    heap[s.word] = s.one
  }
}

type TensorInfo = ReturnType<tf.KernelFunc> extends infer R ? Exclude<R, Array<unknown>> : never
const size = (shape: ReadonlyArray<number>) => shape.reduce((a, b) => a * b, 1)

/** FLOPs of the kernels that run on the N-thread pool when large. */
const flopsOf: Record<string, (inputs: Record<string, TensorInfo>, attrs: Record<string, unknown>) => number> = {
  // output size ~ input size / stride^2 x output channels; each output sums kh x kw x in
  Conv2D: (i, a) => convFlops(i["x"]!, i["filter"]!, a),
  FusedConv2D: (i, a) => convFlops(i["x"]!, i["filter"]!, a),
  _FusedMatMul: (i, a) => matMulFlops(i["a"]!, i["b"]!, a)
}

const convFlops = (x: TensorInfo, filter: TensorInfo, attrs: Record<string, unknown>) => {
  const strides = attrs["strides"]
  const [sh, sw] = typeof strides === "number" ? [strides, strides] : (strides as [number, number] | undefined) ?? [1, 1]
  const [kh, kw, , cout] = filter.shape as [number, number, number, number]
  return (2 * size(x.shape) * kh * kw * cout) / (sh * sw)
}

/** FLOPs of a (batched) product, either operand possibly transposed. */
export const matMulFlops = (a: TensorInfo, b: TensorInfo, attrs: Record<string, unknown>) => {
  const batch = Math.max(size(a.shape.slice(0, -2)), size(b.shape.slice(0, -2)))
  const n = b.shape[b.shape.length - (attrs["transposeB"] === true ? 2 : 1)]!
  return 2 * batch * size(a.shape.slice(-2)) * n
}

let installed = false

/**
 * Wraps wasm's product and convolution kernels once per process so that large ones run on the
 * N-thread pool (BatchMatMul.ts decides for its own kernel, per product slice).
 */
export const installThreadedKernels = (): void => {
  if (installed) return
  for (const name of Object.keys(flopsOf)) {
    const original = tf.getKernel(name, "wasm")
    if (original === undefined) continue
    const flops = flopsOf[name]!
    tf.unregisterKernel(name, "wasm")
    tf.registerKernel({
      ...original,
      kernelFunc: (args) =>
        withThreadsFor((args.backend as unknown as { wasm: object }).wasm, flops(args.inputs as Record<string, TensorInfo>, args.attrs as Record<string, unknown>), () => original.kernelFunc(args))
    })
  }
  installed = true
}
