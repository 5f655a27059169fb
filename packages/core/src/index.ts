/**
 * @disendiff/core: DisenDiff personalisation of text-to-image diffusion models, as Effect services.
 */
export { tf, registerGradients } from "./tensor/Tf.js"
export * from "./tensor/TensorRuntime.js"
export * as CpuBackend from "./tensor/CpuBackend.js"
export * as nn from "./nn/index.js"
