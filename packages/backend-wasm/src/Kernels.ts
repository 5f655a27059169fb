/**
 * Kernel overrides for the wasm backend where its own kernels are slow for training
 * (measured: bench/ and docs/benchmarks.md):
 * - Identity copies its input; the gradient tape clones every tensor it saves, so a backward pass
 *   copied ~1.4 GB in a small UNet step. Tensors are immutable, so the clone now shares the data
 *   (as the cpu backend does).
 * - Transpose runs at ~240 MB/s for 2-D inputs; a blocked JavaScript permutation on the wasm heap is
 *   several times faster.
 * - Sum and Mean over non-innermost axes transpose first (with that slow transpose); a JavaScript
 *   reduction over the heap does it in one pass.
 * The batched matMul override lives in BatchMatMul.ts.
 */
import { tf } from "@disendiff/core"

type TensorInfo = ReturnType<tf.KernelFunc> extends infer R ? Exclude<R, Array<unknown>> : never
type Heap = Float32Array | Int32Array | Uint8Array

interface Backend {
  incRef: (dataId: unknown) => void
  makeOutput: (shape: Array<number>, dtype: TensorInfo["dtype"]) => TensorInfo
  typedArrayFromHeap: (t: TensorInfo) => Heap
}

/** Drops size-1 axes and merges axes that stay adjacent and in order under the permutation. */
const simplify = (shape: ReadonlyArray<number>, perm: ReadonlyArray<number>) => {
  const keep = perm.filter((p) => shape[p] !== 1)
  const order = [...keep].sort((a, b) => a - b)
  const rank = new Map(order.map((a, i) => [a, i]))
  // axes of the input (in input order) grouped into runs that are consecutive in `keep` too
  const groups: Array<Array<number>> = []
  for (const a of keep) {
    const last = groups[groups.length - 1]
    if (last !== undefined && rank.get(last[last.length - 1]!)! + 1 === rank.get(a)! && last[last.length - 1]! + 1 === a) last.push(a)
    else groups.push([a])
  }
  const byInput = [...groups].sort((g, h) => g[0]! - h[0]!)
  const newShape = byInput.map((g) => g.reduce((s, a) => s * shape[a]!, 1))
  const newPerm = groups.map((g) => byInput.indexOf(g))
  return { shape: newShape, perm: newPerm }
}

/** dst[out index] = src[permuted index], for any rank. */
export const permute = (src: Heap, dst: Heap, shape0: ReadonlyArray<number>, perm0: ReadonlyArray<number>): void => {
  const { shape, perm } = simplify(shape0, perm0)
  const n = shape.reduce((a, b) => a * b, 1)
  if (perm.length <= 1 || perm.every((p, i) => p === i)) {
    dst.set(src.subarray(0, n))
    return
  }
  const strides = new Array<number>(shape.length)
  for (let i = shape.length - 1, s = 1; i >= 0; i--) {
    strides[i] = s
    s *= shape[i]!
  }
  stridedCopy(src, dst, perm.map((p) => shape[p]!), perm.map((p) => strides[p]!), 0)
}

/**
 * dst (dense, row-major over `outShape`) from src at `base + sum_i index_i * inStride_i`; strides may be
 * negative (a reversed axis).
 */
const stridedCopy = (src: Heap, dst: Heap, outShape: ReadonlyArray<number>, inStride: ReadonlyArray<number>, base0: number): void => {
  const r = outShape.length
  const n = outShape.reduce((a, b) => a * b, 1)
  if (r === 2) {
    // blocked 2-D transpose: both sides stay in cache
    const [R, C] = outShape as [number, number]
    const [s0, s1] = inStride as [number, number]
    const T = 32
    for (let i0 = 0; i0 < R; i0 += T) {
      for (let j0 = 0; j0 < C; j0 += T) {
        const iEnd = Math.min(i0 + T, R)
        const jEnd = Math.min(j0 + T, C)
        for (let i = i0; i < iEnd; i++) {
          let o = i * C + j0
          let s = base0 + i * s0 + j0 * s1
          for (let j = j0; j < jEnd; j++, s += s1) dst[o++] = src[s]!
        }
      }
    }
    return
  }
  if (r <= 4) {
    // explicit loops over up to four axes (leading axes padded with size 1)
    const pad = 4 - r
    const [A, B, C, D] = [...Array<number>(pad).fill(1), ...outShape] as [number, number, number, number]
    const [sa, sb, sc, sd] = [...Array<number>(pad).fill(0), ...inStride] as [number, number, number, number]
    let o = 0
    for (let a = 0; a < A; a++) {
      for (let b = 0; b < B; b++) {
        for (let c = 0; c < C; c++) {
          let s = base0 + a * sa + b * sb + c * sc
          for (let d = 0; d < D; d++, s += sd) dst[o++] = src[s]!
        }
      }
    }
    return
  }
  // general: odometer over the output, innermost output axis in a tight loop
  const inner = outShape[r - 1]!
  const innerStride = inStride[r - 1]!
  const idx = new Array<number>(r - 1).fill(0)
  let base = base0
  for (let o = 0; o < n;) {
    for (let j = 0, s = base; j < inner; j++, s += innerStride) dst[o++] = src[s]!
    for (let k = r - 2; k >= 0; k--) {
      idx[k]!++
      base += inStride[k]!
      if (idx[k]! < outShape[k]!) break
      base -= inStride[k]! * outShape[k]!
      idx[k] = 0
    }
  }
}

/** dst = src with the given axes reversed. */
export const reverse = (src: Heap, dst: Heap, shape: ReadonlyArray<number>, axes: ReadonlyArray<number>): void => {
  const strides = new Array<number>(shape.length)
  for (let i = shape.length - 1, s = 1; i >= 0; i--) {
    strides[i] = s
    s *= shape[i]!
  }
  let base = 0
  const inStride = strides.map((st, i) => {
    if (!axes.includes(i)) return st
    base += (shape[i]! - 1) * st
    return -st
  })
  stridedCopy(src, dst, shape, inStride, base)
}

/** Sums over `axes`: `out[kept index] += src[index]`, one pass over the input. */
const reduceSum = (src: Float32Array, dst: Float32Array, shape: ReadonlyArray<number>, axes: ReadonlyArray<number>) => {
  dst.fill(0)
  const r = shape.length
  const reduced = shape.map((_, i) => axes.includes(i))
  // output strides for kept axes, 0 for reduced ones
  const outStride = new Array<number>(r).fill(0)
  for (let i = r - 1, s = 1; i >= 0; i--) {
    if (!reduced[i]) {
      outStride[i] = s
      s *= shape[i]!
    }
  }
  const inner = shape[r - 1]!
  const innerOut = outStride[r - 1]!
  const idx = new Array<number>(r - 1).fill(0)
  let base = 0
  const n = src.length
  for (let i = 0; i < n;) {
    if (innerOut === 0) {
      let acc = 0
      for (let j = 0; j < inner; j++) acc += src[i++]!
      dst[base] += acc
    } else {
      for (let j = 0, o = base; j < inner; j++, o++) dst[o] += src[i++]!
    }
    for (let k = r - 2; k >= 0; k--) {
      idx[k]!++
      base += outStride[k]!
      if (idx[k]! < shape[k]!) break
      base -= outStride[k]! * shape[k]!
      idx[k] = 0
    }
  }
}

/** Reduction axes as tfjs reads them: null means every axis; negatives count from the end. */
const normaliseAxes = (axis: number | Array<number> | null | undefined, rank: number) =>
  axis === null || axis === undefined
    ? Array.from({ length: rank }, (_, i) => i)
    : [...new Set((Array.isArray(axis) ? axis : [axis]).map((a) => (a < 0 ? a + rank : a)))].sort((a, b) => a - b)

const innermost = (axes: ReadonlyArray<number>, rank: number) => axes.every((a, i) => a === rank - axes.length + i)

/**
 * One-pass normalisation over `x [B,N,G,C]` (statistics over N and C per (B, G)), in memory order with
 * float64 accumulators: y, xhat and rstd [B,G] (core's nn/Norm.ts `DisendiffNormalize`).
 */
export const normalizeForward = (
  x: Float32Array, gamma: Float32Array, beta: Float32Array, shape: readonly [number, number, number, number], eps: number,
  y: Float32Array, xhat: Float32Array, rstd: Float32Array
) => {
  const [B, N, G, C] = shape
  const count = N * C
  const mean = new Float64Array(B * G)
  const m2 = new Float64Array(B * G)
  let i = 0
  for (let b = 0; b < B; b++) for (let n = 0; n < N; n++) for (let g = 0; g < G; g++) {
    let s = 0
    for (let c = 0; c < C; c++) s += x[i++]!
    mean[b * G + g] += s
  }
  for (let k = 0; k < B * G; k++) mean[k] /= count
  i = 0
  for (let b = 0; b < B; b++) for (let n = 0; n < N; n++) for (let g = 0; g < G; g++) {
    const mu = mean[b * G + g]!
    let s = 0
    for (let c = 0; c < C; c++, i++) s += (x[i]! - mu) * (x[i]! - mu)
    m2[b * G + g] += s
  }
  for (let k = 0; k < B * G; k++) rstd[k] = 1 / Math.sqrt(m2[k]! / count + eps)
  i = 0
  for (let b = 0; b < B; b++) for (let n = 0; n < N; n++) for (let g = 0; g < G; g++) {
    const mu = mean[b * G + g]!
    const r = rstd[b * G + g]!
    for (let c = 0; c < C; c++, i++) {
      const h = (x[i]! - mu) * r
      xhat[i] = h
      y[i] = h * gamma[g * C + c]! + beta[g * C + c]!
    }
  }
}

/** The normalisation's backward: dx, dgamma, dbeta (core's `DisendiffNormalizeGrad`). */
export const normalizeBackward = (
  dy: Float32Array, xhat: Float32Array, rstd: Float32Array, gamma: Float32Array, shape: readonly [number, number, number, number],
  dx: Float32Array, dgamma: Float32Array, dbeta: Float32Array
) => {
  const [B, N, G, C] = shape
  const count = N * C
  const mg = new Float64Array(B * G)
  const mgx = new Float64Array(B * G)
  const dga = new Float64Array(G * C)
  const dbe = new Float64Array(G * C)
  let i = 0
  for (let b = 0; b < B; b++) for (let n = 0; n < N; n++) for (let g = 0; g < G; g++) {
    let s = 0
    let sx = 0
    for (let c = 0; c < C; c++, i++) {
      const d = dy[i]!
      const q = d * gamma[g * C + c]!
      s += q
      sx += q * xhat[i]!
      dga[g * C + c] += d * xhat[i]!
      dbe[g * C + c] += d
    }
    mg[b * G + g] += s
    mgx[b * G + g] += sx
  }
  for (let k = 0; k < B * G; k++) {
    mg[k] /= count
    mgx[k] /= count
  }
  i = 0
  for (let b = 0; b < B; b++) for (let n = 0; n < N; n++) for (let g = 0; g < G; g++) {
    const k = b * G + g
    const r = rstd[k]!
    for (let c = 0; c < C; c++, i++) dx[i] = r * (dy[i]! * gamma[g * C + c]! - mg[k]! - xhat[i]! * mgx[k]!)
  }
  for (let k = 0; k < G * C; k++) {
    dgamma[k] = dga[k]!
    dbeta[k] = dbe[k]!
  }
}

let installed = false

export const installFastKernels = (): void => {
  if (installed) return
  const replace = (name: string, make: (original: tf.KernelConfig) => tf.KernelFunc) => {
    const original = tf.getKernel(name, "wasm")
    if (original === undefined) throw new Error(`the wasm backend has no ${name} kernel`)
    tf.unregisterKernel(name, "wasm")
    tf.registerKernel({ ...original, kernelFunc: make(original) })
  }

  replace("Identity", (original) => (args) => {
    const x = args.inputs.x as TensorInfo
    if (x.dtype === "string") return original.kernelFunc(args)
    ;(args.backend as unknown as Backend).incRef(x.dataId)
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype }
  })

  replace("Transpose", (original) => (args) => {
    const x = args.inputs.x as TensorInfo
    const perm = (args.attrs as { perm: Array<number> }).perm
    if (x.dtype === "string" || x.dtype === "complex64") return original.kernelFunc(args)
    const backend = args.backend as unknown as Backend
    const out = backend.makeOutput(perm.map((p) => x.shape[p]!), x.dtype)
    // views after the allocation: growing the heap replaces its buffer
    permute(backend.typedArrayFromHeap(x), backend.typedArrayFromHeap(out), x.shape, perm)
    return out
  })

  replace("Reverse", (original) => (args) => {
    const x = args.inputs.x as TensorInfo
    if (x.dtype === "string" || x.dtype === "complex64") return original.kernelFunc(args)
    const dims = (args.attrs as { dims: number | Array<number> }).dims
    const axes = (Array.isArray(dims) ? dims : [dims]).map((a) => (a < 0 ? a + x.shape.length : a))
    const backend = args.backend as unknown as Backend
    const out = backend.makeOutput([...x.shape], x.dtype)
    reverse(backend.typedArrayFromHeap(x), backend.typedArrayFromHeap(out), x.shape, axes)
    return out
  })

  const reduction = (mean: boolean) => (original: tf.KernelConfig): tf.KernelFunc => (args) => {
    const x = args.inputs.x as TensorInfo
    const { axis, keepDims } = args.attrs as { axis: number | Array<number> | null; keepDims: boolean }
    const axes = normaliseAxes(axis, x.shape.length)
    if (x.dtype !== "float32" || axes.length === 0 || innermost(axes, x.shape.length)) return original.kernelFunc(args)
    const backend = args.backend as unknown as Backend
    const outShape = keepDims ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : x.shape.filter((_, i) => !axes.includes(i))
    const out = backend.makeOutput(outShape, "float32")
    const dst = backend.typedArrayFromHeap(out) as Float32Array
    reduceSum(backend.typedArrayFromHeap(x) as Float32Array, dst, x.shape, axes)
    if (mean) {
      const count = axes.reduce((a, i) => a * x.shape[i]!, 1)
      for (let i = 0; i < dst.length; i++) dst[i] = dst[i]! / count
    }
    return out
  }
  const f32 = (backend: Backend, t: TensorInfo) => backend.typedArrayFromHeap(t) as Float32Array
  tf.registerKernel({
    kernelName: "DisendiffNormalize",
    backendName: "wasm",
    kernelFunc: (args) => {
      const { x, gamma, beta } = args.inputs as { x: TensorInfo; gamma: TensorInfo; beta: TensorInfo }
      const { eps } = args.attrs as { eps: number }
      const backend = args.backend as unknown as Backend
      const shape = x.shape as [number, number, number, number]
      const outs = [backend.makeOutput([...shape], "float32"), backend.makeOutput([...shape], "float32"), backend.makeOutput([shape[0], shape[2]], "float32")]
      normalizeForward(f32(backend, x), f32(backend, gamma), f32(backend, beta), shape, eps, f32(backend, outs[0]!), f32(backend, outs[1]!), f32(backend, outs[2]!))
      return outs
    }
  })
  tf.registerKernel({
    kernelName: "DisendiffNormalizeGrad",
    backendName: "wasm",
    kernelFunc: (args) => {
      const { dy, xhat, rstd, gamma } = args.inputs as { dy: TensorInfo; xhat: TensorInfo; rstd: TensorInfo; gamma: TensorInfo }
      const backend = args.backend as unknown as Backend
      const shape = dy.shape as [number, number, number, number]
      const outs = [backend.makeOutput([...shape], "float32"), backend.makeOutput([...gamma.shape], "float32"), backend.makeOutput([...gamma.shape], "float32")]
      normalizeBackward(f32(backend, dy), f32(backend, xhat), f32(backend, rstd), f32(backend, gamma), shape, f32(backend, outs[0]!), f32(backend, outs[1]!), f32(backend, outs[2]!))
      return outs
    }
  })
  // concatenation along the last axis with short rows: element copies beat a subarray per row
  replace("Concat", (original) => (args) => {
    const inputs = (args.inputs as unknown as Array<TensorInfo>).filter((t) => t.shape.reduce((a, b) => a * b, 1) > 0)
    const rank = inputs[0]?.shape.length ?? 0
    const axis = (args.attrs as { axis: number }).axis
    const last = axis === -1 || axis === rank - 1
    if (!last || inputs.length < 2 || inputs.some((t) => t.dtype !== "float32") || inputs[0]!.shape[rank - 1]! > 256) return original.kernelFunc(args)
    const backend = args.backend as unknown as Backend
    const widths = inputs.map((t) => t.shape[rank - 1]!)
    const total = widths.reduce((a, b) => a + b, 0)
    const rows = inputs[0]!.shape.slice(0, -1).reduce((a, b) => a * b, 1)
    const out = backend.makeOutput([...inputs[0]!.shape.slice(0, -1), total], "float32")
    const dst = f32(backend, out)
    const srcs = inputs.map((t) => f32(backend, t))
    for (let r = 0; r < rows; r++) {
      let o = r * total
      for (let k = 0; k < srcs.length; k++) {
        const w = widths[k]!
        const src = srcs[k]!
        for (let j = 0, s = r * w; j < w; j++) dst[o++] = src[s + j]!
      }
    }
    return out
  })

  replace("Sum", reduction(false))
  replace("Mean", reduction(true))
  installed = true
}
