/**
 * Which model a command samples from: a backbone (built-in, a diffusers folder, or the fake), and
 * optionally trained weights over it, from a checkpoint or from Custom Diffusion deltas.
 */
import {
  Backbone,
  backboneKinds,
  CheckpointError,
  CheckpointFile,
  CustomDiffusion,
  defaultTrainConfig,
  modifiersOf,
  type TensorRuntime,
  HostTensors,
  type TrainConfig
} from "@disendiff/core"
import { Effect, Layer, Option } from "effect"
import { Flag } from "effect/cli"
import { backendLayer, backendNames, threadsFlag } from "./Backends.js"
import { backboneLayer, backboneSpec } from "./commands/Train.js"

export const modelFlags = {
  backbone: Flag.Literals("backbone", backboneKinds).pipe(Flag.withDescription("toy (built-in, default), sd (a diffusers folder) or fake"), Flag.optional),
  model: Flag.String("model").pipe(Flag.withDescription("a diffusers SD 1.x folder (--backbone sd), or a built-in-model weights file (--backbone toy)"), Flag.optional),
  checkpoint: Flag.String("checkpoint").pipe(Flag.withDescription("trained weights: a checkpoint from `disendiff train`"), Flag.optional),
  deltas: Flag.String("deltas").pipe(Flag.withDescription("trained weights: a Custom Diffusion deltas folder"), Flag.optional),
  backend: Flag.Literals("backend", backendNames).pipe(Flag.withDescription("tensor backend"), Flag.withDefault("wasm" as const)),
  threads: threadsFlag
}

export interface ModelFlags {
  readonly backbone: Option.Option<TrainConfig["backbone"]>
  readonly model: Option.Option<string>
  readonly checkpoint: Option.Option<string>
  readonly deltas: Option.Option<string>
  readonly backend: (typeof backendNames)[number]
  readonly threads: Option.Option<number>
}

/** The configuration the backbone is built from, and the modifier tokens it needs. */
const resolve = (f: ModelFlags, prompts: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    if (Option.isSome(f.checkpoint)) {
      const snapshot = yield* CheckpointFile.load(f.checkpoint.value)
      const trainedWith = snapshot.header.config as TrainConfig
      // --model names the base model where the checkpoint's config does not (the demo's and compare's runs
      // on a --weights file); the identity check below still refuses any other model
      const config = Option.isSome(f.model) ? { ...trainedWith, model: f.model.value } : trainedWith
      return { config, modifiers: modifiersOf(config.prompt), snapshot }
    }
    const modifiers = [...new Set(prompts.flatMap(modifiersOf))]
    const config = {
      ...defaultTrainConfig({ backbone: Option.getOrElse(f.backbone, () => "toy" as const), image: "", prompt: prompts.join(" ") }),
      model: Option.getOrNull(f.model),
      modifierInit: "class" as const
    }
    return { config, modifiers, snapshot: undefined }
  })

/** The backbone layer (with its tensor backend) and the trained tensors to sample with. */
export const loadModel = (f: ModelFlags, prompts: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const r = yield* resolve(f, prompts)
    const layer = backboneLayer(r.config, r.modifiers).pipe(Layer.provideMerge(backendLayer(f.backend, { threads: f.threads })))
    const trained = (backbone: Backbone["Service"]) =>
      Effect.gen(function*() {
        if (r.snapshot !== undefined) {
          if (r.snapshot.header.baseModel.identity !== backbone.info.identity) {
            return yield* new CheckpointError({
              path: Option.getOrElse(f.checkpoint, () => ""),
              reason: `it was trained on ${r.snapshot.header.baseModel.name}, not ${backbone.info.name}`,
              fix: `give the base model it was trained on: --model ${r.config.backbone === "sd" ? "DIR" : "FILE"} (${r.snapshot.header.baseModel.name})`
            })
          }
          return HostTensors.toTensors(r.snapshot.trainable)
        }
        if (Option.isSome(f.deltas)) {
          const deltas = yield* CustomDiffusion.importDeltas(f.deltas.value, r.modifiers)
          return new Map([...backbone.parameters.trainable, ...deltas])
        }
        return undefined
      })
    return { layer, trained, modifiers: r.modifiers, config: r.config, spec: backboneSpec(r.config, r.modifiers) }
  })

export type ModelLayer = Layer.Layer<Backbone | TensorRuntime, unknown>
