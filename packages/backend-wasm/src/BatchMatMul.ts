/**
 * A faster `BatchMatMul` for the wasm backend. tfjs-wasm runs a product on XNNPACK only when neither
 * operand is transposed and both batch sizes are 1; every batched product (attention's Q K^T and
 * P V, per head) falls to a naive loop about 10x slower (docs/reference/tfjs-backends.md §1.3).
 * This kernel runs each batch slice as its own 2-D XNNPACK product, in place: the slices are
 * registered with the wasm backend as temporary tensors that alias the operands' memory, so nothing
 * is copied. XNNPACK caches a packed operator per right-hand tensor id, so every temporary id is
 * fresh and disposed right after use (which also frees its cached operator). Transposed or
 * broadcasting products are reshaped where that is free, else left to the original kernel.
 */
import { tf } from "@disendiff/core"
import { matMulFlops, withThreadsFor } from "./Pool.js"

type TensorInfo = ReturnType<tf.KernelFunc> extends infer R ? Exclude<R, Array<unknown>> : never

interface WasmBackendInternals {
  readonly wasm: {
    readonly cwrap: (name: string, ret: null, args: Array<string>) => (...args: Array<unknown>) => void
    readonly tfjs: {
      readonly registerTensor: (id: number, size: number, offset: number) => void
      readonly disposeData: (id: number) => void
    }
  }
  readonly dataIdMap: { get: (dataId: unknown) => { id: number; memoryOffset: number } }
  dataIdNextNumber: number
  makeOutput: (shape: Array<number>, dtype: "float32") => TensorInfo
}

const shapeBytes = (shape: Array<number>) => new Uint8Array(new Int32Array(shape).buffer)

let installed = false

/** Replaces wasm's BatchMatMul kernel once per process (the wasm backend must be registered). */
export const installFastBatchMatMul = (): void => {
  if (installed) return
  const original = tf.getKernel("BatchMatMul", "wasm")
  if (original === undefined) throw new Error("the wasm backend's BatchMatMul kernel is not registered")
  // one wrapper per module: the backend restarts when its thread count changes
  const matmuls = new WeakMap<object, (...args: Array<unknown>) => void>()
  const fast: tf.KernelFunc = (args) => {
    const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo }
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean }
    const backend = args.backend as unknown as WasmBackendInternals
    const batchA = a.shape.slice(0, -2).reduce((x, y) => x * y, 1)
    const batchB = b.shape.slice(0, -2).reduce((x, y) => x * y, 1)
    if (transposeA || transposeB || a.dtype !== "float32" || batchA === 1 || (batchB !== 1 && batchB !== batchA)) {
      return withThreadsFor(backend.wasm, matMulFlops(a, b, args.attrs as Record<string, unknown>), () => original.kernelFunc(args))
    }
    let matmul = matmuls.get(backend.wasm)
    if (matmul === undefined) {
      matmul = backend.wasm.cwrap("BatchMatMul", null, ["number", "array", "number", "number", "array", "number", "number", "number", "number"])
      matmuls.set(backend.wasm, matmul)
    }
    const [M, K] = a.shape.slice(-2) as [number, number]
    const N = b.shape[b.shape.length - 1]!
    const outShape = [...(a.shape.length >= b.shape.length ? a.shape : b.shape).slice(0, -2), M, N]
    const out = backend.makeOutput(outShape, "float32")
    const aInfo = backend.dataIdMap.get(a.dataId)
    const bInfo = backend.dataIdMap.get(b.dataId)
    const oInfo = backend.dataIdMap.get(out.dataId)
    const { registerTensor, disposeData } = backend.wasm.tfjs
    const view = (offset: number, size: number) => {
      const id = backend.dataIdNextNumber++
      registerTensor(id, size, offset)
      return id
    }
    if (batchB === 1) {
      // one right-hand matrix for every slice: a single [batch*M, K] x [K, N] product
      const aId = view(aInfo.memoryOffset, batchA * M * K)
      const oId = view(oInfo.memoryOffset, batchA * M * N)
      withThreadsFor(backend.wasm, 2 * batchA * M * K * N, () => matmul(aId, shapeBytes([1, batchA * M, K]), 3, bInfo.id, shapeBytes([1, K, N]), 3, false, false, oId))
      disposeData(aId)
      disposeData(oId)
      return out
    }
    const [as, bs] = [shapeBytes([1, M, K]), shapeBytes([1, K, N])]
    for (let i = 0; i < batchA; i++) {
      const aId = view(aInfo.memoryOffset + 4 * i * M * K, M * K)
      const bId = view(bInfo.memoryOffset + 4 * i * K * N, K * N)
      const oId = view(oInfo.memoryOffset + 4 * i * M * N, M * N)
      withThreadsFor(backend.wasm, 2 * M * K * N, () => matmul(aId, as, 3, bId, bs, 3, false, false, oId))
      disposeData(aId)
      disposeData(bId)
      disposeData(oId)
    }
    return out
  }
  tf.unregisterKernel("BatchMatMul", "wasm")
  tf.registerKernel({ ...original, kernelFunc: fast })
  installed = true
}
