/** The `disendiff` command tree. */
import { Command } from "effect/cli"
import { checkModel } from "./commands/CheckModel.js"
import { checkpoint } from "./commands/Checkpoint.js"
import { compare } from "./commands/Compare.js"
import { demo } from "./commands/Demo.js"
import { attention } from "./commands/Attention.js"
import { bench } from "./commands/Bench.js"
import { builtinReport } from "./commands/BuiltinReport.js"
import { exportBuiltin, pretrain } from "./commands/Pretrain.js"
import { recipeSearch } from "./commands/RecipeSearch.js"
import { sample } from "./commands/Sample.js"
import { serve } from "./commands/Serve.js"
import { train } from "./commands/Train.js"

export const version = "0.1.0"

export const disendiff = Command.make("disendiff").pipe(
  Command.withDescription("DisenDiff: personalise text-to-image diffusion models from one image holding several concepts"),
  Command.withSubcommands([demo, compare, train, sample, attention, checkpoint, checkModel, bench, pretrain, exportBuiltin, builtinReport, recipeSearch, serve])
)

export const run = Command.run(disendiff, { version })
