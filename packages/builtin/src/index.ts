/**
 * @disendiff/builtin: the built-in model and its world. A procedural shapes world (scenes, captions,
 * unnamed variation, augmentation, an analytic evaluator), a small model of Stable Diffusion's
 * architecture trained on it (`pretrain`, its quality gate), and the demo that personalises it with
 * DisenDiff and with Custom Diffusion side by side. The method itself is `@disendiff/core`'s and knows
 * nothing of this world.
 */
export * as ToyBackbone from "./backbone/ToyBackbone.js"
export { type BackboneSpec, backboneSpecLayer, type BackboneWorkers, type TrainRun } from "./backbone/BackboneSpec.js"
export * as ToyModel from "./models/ToyModel.js"
export * as World from "./world/index.js"
export * as Pretraining from "./pretraining/Pretrain.js"
export * as MicroBatch from "./pretraining/MicroBatch.js"
export { GradientWorkerError } from "./pretraining/MicroBatch.js"
export { defaultPretrainConfig, learningRateAt, PretrainConfig } from "./pretraining/PretrainConfig.js"
export type { PretrainError, PretrainEvent } from "./pretraining/Pretrain.js"
export * as BuiltinEvaluation from "./pretraining/Evaluate.js"
export * as BuiltinGate from "./pretraining/Gate.js"
export * as RecipeSearch from "./pretraining/RecipeSearch.js"
export * as BenchSuite from "./bench/Suite.js"
