/**
 * The one place the project imports TensorFlow.js from.
 *
 * `@tensorflow/tfjs-core`'s Node bundle registers no gradient functions (only the union package
 * `@tensorflow/tfjs` does, see docs/reference/tfjs-backends.md §2.2). The gradient configs ship
 * only as extensionless ESM files, which Node cannot load as they are; `registerGradients` adds a
 * module-resolution hook that appends `.js` to relative imports inside tfjs-core's `dist/` and then
 * loads `register_all_gradients.js`. The ESM copy it loads shares tfjs's global engine and registries
 * with the CJS copy, so the gradients land where `tf.grad` looks for them.
 */
import * as tf from "@tensorflow/tfjs-core"
import { createRequire, registerHooks } from "node:module"
import { pathToFileURL } from "node:url"
import * as path from "node:path"

export { tf }
export type Tensor = tf.Tensor
export type Rank = tf.Rank

let gradientsRegistered = false

/** Registers tfjs-core's gradient functions once per process. Synchronous and idempotent. */
export const registerGradients = (): void => {
  if (gradientsRegistered) return
  const require = createRequire(import.meta.url)
  const coreMain = require.resolve("@tensorflow/tfjs-core")
  const coreDist = pathToFileURL(path.dirname(coreMain) + path.sep).href
  registerHooks({
    resolve(specifier, context, next) {
      if (
        context.parentURL?.startsWith(coreDist) && specifier.startsWith(".") && !specifier.endsWith(".js")
      ) {
        return next(`${specifier}.js`, context)
      }
      return next(specifier, context)
    }
  })
  require(path.join(path.dirname(coreMain), "register_all_gradients.js"))
  gradientsRegistered = true
}
