/**
 * A backbone as plain data, so that a worker thread can build the same one as the caller (the weights
 * come from the same file or seed): the built-in model or the fake test backbone. Stable Diffusion is
 * left out on purpose: a copy per thread would not fit wasm's heap for long.
 */
import type { Layer } from "effect"
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

/**
 * Worker threads (the CLI's pool) put to work for one backbone: a training run's micro-batches, or a
 * sampling job's chunks. Results never depend on `count`.
 */
export interface BackboneWorkers {
  readonly count: number
  readonly train: (spec: BackboneSpec) => TrainWorkers
  readonly sample: (spec: BackboneSpec) => SampleWorkers
}
