/**
 * `disendiff recipe-search`: the built-in model's recipe comparison (short equal-compute pretraining runs)
 * and sampler comparison (on a long-run checkpoint), written between markers into docs/built-in-model.md.
 */
import { Checkpoints } from "@disendiff/core"
import { RecipeSearch } from "@disendiff/builtin"
import { Console, Effect, Layer, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { backendLayer, backendNames, threadsFlag } from "../Backends.js"
import { checkSections, replaceBetween } from "../Markdown.js"

export const recipeSearch = Command.make(
  "recipe-search",
  {
    out: Flag.String("out").pipe(Flag.withDescription("folder of the runs (one subfolder per variant; finished runs are reused)")),
    steps: Flag.Int("steps").pipe(Flag.withDescription("optimizer steps per run"), Flag.withDefault(250)),
    batch: Flag.Int("batch").pipe(Flag.withDescription("batch size per step"), Flag.withDefault(16)),
    n: Flag.Int("n").pipe(Flag.withDescription("held-out prompts per group in each evaluation"), Flag.withDefault(32)),
    only: Flag.String("only").pipe(Flag.withDescription("comma-separated variant names (default: all)"), Flag.optional),
    sampler: Flag.String("sampler-checkpoint").pipe(Flag.withDescription("also compare sampler settings on this pretraining checkpoint"), Flag.optional),
    skipRecipes: Flag.Boolean("skip-recipes").pipe(Flag.withDescription("only the sampler comparison"), Flag.withDefault(false)),
    docs: Flag.String("docs").pipe(Flag.withDescription("the markdown file to update (markers recipes, samplers)"), Flag.withDefault("docs/built-in-model.md")),
    backend: Flag.Literals("backend", backendNames).pipe(Flag.withDescription("tensor backend"), Flag.withDefault("wasm" as const)),
    threads: threadsFlag
  },
  (f) =>
    Effect.gen(function*() {
      yield* checkSections("docs", f.docs, [...(f.skipRecipes ? [] : ["recipes"]), ...(Option.isSome(f.sampler) ? ["samplers"] : [])])
      const log = (name: string, event: string) => Effect.sync(() => process.stderr.write(`${name}: ${event}\n`))
      if (!f.skipRecipes) {
        const options = { out: f.out, steps: f.steps, batchSize: f.batch, evalSamples: f.n, only: Option.getOrUndefined(Option.map(f.only, (s) => s.split(","))), onRun: log }
        const results = yield* RecipeSearch.runRecipeSearch(options)
        const md = RecipeSearch.recipeMarkdown(results, options, f.backend)
        yield* Effect.promise(() => replaceBetween(f.docs, "recipes", md))
        yield* Console.log(md)
      }
      if (Option.isSome(f.sampler)) {
        const r = yield* RecipeSearch.runSamplerSearch(f.sampler.value, f.n)
        const md = RecipeSearch.samplerMarkdown(r, f.sampler.value, f.n)
        yield* Effect.promise(() => replaceBetween(f.docs, "samplers", md))
        yield* Console.log(md)
      }
    }).pipe(Effect.provide(Layer.merge(backendLayer(f.backend, { threads: f.threads }), Checkpoints.layer)))
).pipe(Command.withDescription("compare pretraining recipes (short equal-compute runs) and sampler settings of the built-in model"))
