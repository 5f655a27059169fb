/**
 * A backbone as plain data, so that a worker thread can build the same one as the caller (the weights
 * come from the same file or seed): the built-in model or the fake test backbone. Stable Diffusion is
 * left out on purpose: a copy per thread would not fit wasm's heap for long.
 */
import type { Effect, Layer } from "effect"
import type { OutOfMemory } from "@disendiff/core/tensor/TensorRuntime.js"
import type { PromptError } from "@disendiff/core/tokenizer/Tokenizer.js"
import type { TrainConfig } from "@disendiff/core/training/TrainConfig.js"
import type { TrainEvent } from "@disendiff/core/training/Trainer.js"
import type { WorkerError } from "@disendiff/core/training/WorkerError.js"
import { type Backbone, type ModelError } from "@disendiff/core/backbone/Backbone.js"
import * as FakeBackbone from "@disendiff/core/backbone/FakeBackbone.js"
import type { SampleWorkers } from "@disendiff/core/sampling/SampleJob.js"
import type { TensorRuntime } from "@disendiff/core/tensor/TensorRuntime.js"
import type { TrainWorkers } from "@disendiff/core/training/TrainMicroBatch.js"
import * as ToyBackbone from "./ToyBackbone.js"

export type BackboneSpec =
  | { readonly kind: "toy"; readonly options: ToyBackbone.ToyBackboneOptions }
  | { readonly kind: "fake"; readonly options: FakeBackbone.FakeBackboneOptions }

export const backboneSpecLayer = (spec: BackboneSpec): Layer.Layer<Backbone, ModelError, TensorRuntime> =>
  spec.kind === "toy" ? ToyBackbone.layer(spec.options) : FakeBackbone.layer(spec.options)

/** A whole personalisation run, as `Trainer.train` takes it (its services follow from the config: `trainingServices`). */
export interface TrainRun {
  readonly config: TrainConfig
  readonly out: string
  readonly termGradientsEvery?: number | undefined
}

/**
 * Worker threads (the CLI's pool) put to work for one backbone: a training run's micro-batches, a whole
 * training run, or a sampling job's batches. Results never depend on `count`.
 */
export interface BackboneWorkers {
  readonly count: number
  readonly train: (spec: BackboneSpec) => TrainWorkers
  /** The run on one worker, its events passed on as they come (the same run as in this thread). */
  readonly trainRun: (spec: BackboneSpec, run: TrainRun, onEvent: (e: TrainEvent) => Effect.Effect<void>) => Effect.Effect<void, WorkerError | OutOfMemory | PromptError>
  readonly sample: (spec: BackboneSpec) => SampleWorkers
}
