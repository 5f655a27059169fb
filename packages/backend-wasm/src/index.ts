/**
 * @disendiff/backend-wasm: the default tensor backend, tfjs WebAssembly with SIMD.
 */
export * as WasmBackend from "./WasmBackend.js"
