/**
 * @disendiff/backend-node: native and GPU tensor backends for Node, each loaded only when asked for.
 */
export * as NodeBackend from "./NodeBackend.js"
export * as WebGpu from "./WebGpu.js"
